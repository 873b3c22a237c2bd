"""The other MTAs' users against their sockets: Exim's front, tcpserver's msgpack socket."""

from __future__ import annotations

from ..config import Config
from .findings import Finding
from .probe import connect_as, ids_of

__all__ = ["socket_user_findings"]


def socket_user_findings(config: Config, exim_user: str, rblsmtpd_user: str | None, timeout_s: float) -> list[Finding]:
    from ..adapters.listen import parse_listen

    out = []
    if config.postfix.exim:
        address = parse_listen(config.postfix.exim, "postfix.exim")
        ids = ids_of(exim_user)
        if address.kind == "unix" and ids is not None:
            err = connect_as(address.host, ids, None, timeout_s)
            if err:
                out.append(Finding("error", f"postfix.exim {address}: user {exim_user} cannot connect: {err}; "
                                   "Exim's readsocket then answers its failure string (accept)",
                                   '[postfix] exim_group = "Debian-exim" and the unit drop-in exim.conf (docs/access.md)'))
            else:
                out.append(Finding("ok", f"postfix.exim {address}: user {exim_user} can connect"))
    if rblsmtpd_user:
        ids = ids_of(rblsmtpd_user)
        if ids is None:
            out.append(Finding("warning", f"--rblsmtpd-user {rblsmtpd_user}: no such user or group here"))
        else:
            err = connect_as(config.server.socket, ids, None, timeout_s)
            if err:
                out.append(Finding("error", f"server.socket {config.server.socket}: tcpserver's user {rblsmtpd_user} cannot "
                                   f"connect: {err}; fastlookup-rblsmtpd fails open",
                                   '[server] socket_group = tcpserver\'s -g group (e.g. "nofiles") and the unit drop-in '
                                   "qmail.conf (docs/access.md)"))
            else:
                out.append(Finding("ok", f"server.socket {config.server.socket}: user {rblsmtpd_user} can connect"))
    return out
