"""Each upstream resolver asked for the first list's RFC 5782 test point."""

from __future__ import annotations

from ..config import Config
from .findings import Finding

__all__ = ["resolver_findings"]


def resolver_findings(config: Config, timeout_s: float) -> list[Finding]:
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    from ..upstream import Server, servers_from_resolv_conf

    try:
        servers = [Server.parse(s) for s in config.upstream.servers] or servers_from_resolv_conf()
    except (OSError, ValueError) as exc:
        return [Finding("error", f"no upstream resolver: {exc}", "set [upstream] servers")]
    zones = [z.split("=", 1)[0].split("*", 1)[0] for p in config.policy.values() for z in p.dnsbl] + list(config.dnsbl)
    name = f"2.0.0.127.{zones[0]}" if zones else "."
    rdtype = "A" if zones else "NS"
    out = []
    for server in servers[:8]:
        query = dns.message.make_query(name, rdtype)
        try:
            reply = dns.query.udp(query, server.host, port=server.port, timeout=timeout_s)
        except (dns.exception.DNSException, OSError) as exc:
            out.append(Finding("error", f"upstream {server.host}:{server.port} does not answer {name} {rdtype} "
                               f"({type(exc).__name__}): every lookup fails open",
                               "run a local resolver (unbound) or fix [upstream] servers"))
            continue
        rcode = dns.rcode.to_text(reply.rcode())
        if reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            out.append(Finding("ok", f"upstream {server.host}:{server.port} answers ({name} {rdtype}: {rcode})"))
        else:
            out.append(Finding("error", f"upstream {server.host}:{server.port} answers {name} {rdtype} with {rcode}: "
                               "lookups fail open", "use a resolver that recurses for this host"))
    return out
