"""Front ends that turn verdicts into what mail servers speak.

One small module per protocol; none is imported by this package, so the
qmail front (``rblsmtpd``, started once per SMTP connection) loads nothing
it does not use:

- ``listen``: ``unix:/path`` / ``inet:host:port`` addresses, the listener
  that tracks its connections and stops in stages.
- ``connection``: the base ``asyncio.Protocol`` of the in-service fronts
  (bounded buffers, idle timeout, one request at a time, fail-open answers).
- ``replies``: verdict -> SMTP reply parts (code, RFC 3463 status, text, header).
- ``postfix_policy``: Postfix SMTPD access policy delegation.
- ``socketmap``: the Postfix/Sendmail netstring socketmap.
- ``exim``: a one-line protocol for Exim's ``${readsocket}``.
- ``rblsmtpd``: ``fastlookup-rblsmtpd``, the drop-in for ucspi-tcp's rblsmtpd.

The first three are used by the service's ``LISTENERS`` table as
``async serve(listen, service)``.
"""
