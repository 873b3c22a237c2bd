"""The checks: pure functions from answers to results (DNSBL/RHSBL, FCrDNS, policy).

Each is an ``evaluate(get)`` function for ``fastlookup.lookup``: it never
does I/O itself, so the same code answers a memory hit synchronously and a
miss after upstream answered.
"""
