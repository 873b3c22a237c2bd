"""``fastlookup doctor``: find the set-ups that let mail through unchecked.

Every front fails open on purpose (a stopped service must never refuse
mail), so a broken set-up is silent: Postfix logs one ``warning: connect
to ...`` and accepts everybody. This module looks at what the host shows —
the config, Postfix's ``postconf``, master.cf chroot flags, the sockets and
their owners, the upstream resolvers — and names each problem with its fix.

A finding is ``error`` when mail would pass unchecked (doctor exits 1),
``warning`` when something looks wrong but checks still happen, ``ok``
otherwise. Probes are bounded: every connection and DNS query has a
timeout, ``postconf`` output is capped.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from typing import Iterable

from .config import Config, PolicyConfig

__all__ = ["Finding", "diagnose", "postfix_endpoints", "checks_nothing", "render"]

#: Postfix parameters that can hold check_policy_service / socketmap entries.
RESTRICTIONS = (
    "smtpd_client_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_sender_restrictions",
    "smtpd_relay_restrictions",
    "smtpd_recipient_restrictions",
    "smtpd_data_restrictions",
    "smtpd_end_of_data_restrictions",
)
MAX_OUTPUT = 1 << 20  # bytes of postconf output read
POSTCONF_TIMEOUT_S = 30.0  # postconf reads every file of the configuration; slow on a loaded host
CHROOT_FIX = (
    'listen on loopback TCP: [postfix] listen = "inet:127.0.0.1:10040" and '
    "check_policy_service { inet:127.0.0.1:10040, timeout=2s, default_action=DUNNO } (docs/access.md)"
)


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # "error" | "warning" | "ok"
    what: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A place Postfix connects to: ``kind`` is "policy" or "socketmap"; ``address`` as main.cf writes it."""

    kind: str
    address: str  # "unix:/run/x.sock", "unix:private/x", "inet:127.0.0.1:10040"
    param: str


# --- policy ---------------------------------------------------------------------------------


def checks_nothing(policy: PolicyConfig) -> bool:
    """True when the policy can never refuse or tag anybody: no lists, requirements or blocked networks."""
    return not (
        policy.dnsbl
        or policy.rhsbl
        or policy.block
        or policy.require_ptr != "off"
        or policy.require_fcrdns != "off"
        or policy.sender_domain_exists != "off"
    )


def _policy_findings(config: Config) -> list[Finding]:
    out = []
    names = dict.fromkeys(["default", config.postfix.policy])
    for name in names:
        policy = config.policy.get(name)
        if policy is None:
            continue
        if checks_nothing(policy):
            out.append(Finding(
                "error",
                f"policy {name!r} checks nothing: no dnsbl/rhsbl lists, no require_ptr/require_fcrdns/"
                "sender_domain_exists, no blocked networks; every client is accepted",
                f'add lists to [policy.{name}], e.g. dnsbl = ["zen.spamhaus.org"] (docs/postfix.md)',
            ))
        else:
            out.append(Finding("ok", f"policy {name!r} has checks"))
    if not (config.dnsbl or config.rhsbl or any(p.dnsbl or p.rhsbl for p in config.policy.values())):
        out.append(Finding(
            "error", "no DNSBL or RHSBL zone is configured: `fastlookup lookup dnsbl` has nothing to ask",
            'configure zones ([dnsbl."zen.spamhaus.org"], [policy.default] dnsbl = [...])',
        ))
    return out


# --- Postfix --------------------------------------------------------------------------------


def _run(argv: list[str], timeout_s: float) -> str:
    done = subprocess.run(argv, capture_output=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode("utf-8", "replace")[:500].strip() or f"{argv[0]} exited {done.returncode}")
    return done.stdout[:MAX_OUTPUT].decode("utf-8", "replace")


_POLICY = re.compile(r"check_policy_service\s*(\{[^}]*\}|[^\s,]+)")
_SOCKETMAP = re.compile(r"socketmap:(unix:[^\s,:}]+|inet:(?:\[[^\]]+\]|[^\s,:}]+):\d+):[^\s,}]+")


def postfix_endpoints(values: dict[str, str]) -> list[Endpoint]:
    """The check_policy_service and socketmap endpoints in ``{parameter: value}`` (postconf -x output)."""
    out = []
    for param, value in values.items():
        for m in _POLICY.finditer(value):
            target = m.group(1)
            if target.startswith("{"):
                target = target[1:-1].split(",")[0].strip()
            if not target.startswith(("unix:", "inet:")):
                target = "inet:" + target if re.search(r":\d+$", target) and not target.startswith("/") else "unix:" + target
            out.append(Endpoint("policy", target, param))
        for m in _SOCKETMAP.finditer(value):
            out.append(Endpoint("socketmap", m.group(1), param))
    return out


def _postconf(postconf: str, conf_dir: str | None, args: list[str], timeout_s: float) -> str:
    argv = [postconf] + (["-c", conf_dir] if conf_dir else []) + args
    return _run(argv, timeout_s)


def _parse_params(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            out[name.strip()] = value.strip()
        elif line.endswith(" ="):
            out[line[:-2].strip()] = ""
    return out


def chrooted_smtpd(master: str) -> list[str]:
    """Names of master.cf ``smtpd`` services with chroot on (``postconf -M`` lines); "-" is off since Postfix 3.0."""
    out = []
    for line in master.splitlines():
        fields = line.split()
        if len(fields) >= 8 and fields[7] == "smtpd" and fields[4] == "y":
            out.append(f"{fields[0]}/{fields[1]}")
    return out


def _ids_of(user: str) -> tuple[int, int] | None:
    """(uid, gid) of ``user`` or ``user:group``; None when it does not exist here."""
    import grp
    import pwd

    name, _, group = user.partition(":")
    try:
        pw = pwd.getpwnam(name)
        gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    except KeyError:
        return None
    return pw.pw_uid, gid


def connect_as(path: str, ids: tuple[int, int] | None, root: str | None, timeout_s: float) -> str:
    """Try to connect to unix socket ``path`` as (uid, gid) with no other groups, inside ``root``; "" or the error.

    As root this forks and really drops to the user (after chroot when
    given), so the kernel decides, as it will for the MTA; otherwise it
    connects as the current user.
    """
    if ids is None or os.geteuid() != 0:
        target = os.path.join(root, path.lstrip("/")) if root else path
        return _connect_unix(target, timeout_s)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 1
        try:
            os.close(read_fd)
            if root:
                os.chroot(root)
                os.chdir("/")
            os.setgroups([])
            os.setgid(ids[1])
            os.setuid(ids[0])
            err = _connect_unix(path, timeout_s)
            os.write(write_fd, err.encode()[:500])
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported through the pipe
            try:
                os.write(write_fd, f"probe failed: {exc}".encode()[:500])
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        message = fh.read(1000).decode("utf-8", "replace")
    os.waitpid(pid, 0)
    return message


def _connect_unix(path: str, timeout_s: float) -> str:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(path)
        return ""
    except OSError as exc:
        return f"{exc.strerror or exc} ({path})"
    finally:
        sock.close()


def _connect_inet(host: str, port: int, timeout_s: float) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return ""
    except OSError as exc:
        return str(exc.strerror or exc)


def _inet(address: str) -> tuple[str, int]:
    value = address[5:] if address.startswith("inet:") else address
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def _front_address(config: Config, kind: str) -> tuple[str, str]:
    """(config key, its address normalised) of the fastlookup front serving ``kind``."""
    from .adapters.listen import parse_listen

    key = "postfix.listen" if kind == "policy" else "postfix.socketmap"
    text = config.postfix.listen if kind == "policy" else config.postfix.socketmap
    if not text:
        return key, ""
    return key, str(parse_listen(text, key))


def _postfix_findings(config: Config, conf_dir: str | None, postconf: str, user: str, timeout_s: float) -> list[Finding]:
    out: list[Finding] = []
    try:
        values = _parse_params(_postconf(postconf, conf_dir, ["-x"] + list(RESTRICTIONS), POSTCONF_TIMEOUT_S))
        queue = _postconf(postconf, conf_dir, ["-h", "queue_directory"], POSTCONF_TIMEOUT_S).strip()
        master = _postconf(postconf, conf_dir, ["-M"], POSTCONF_TIMEOUT_S)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return [Finding("warning", f"postconf{' -c ' + conf_dir if conf_dir else ''} failed: {exc}", "pass --postfix-config DIR")]
    chroot = chrooted_smtpd(master)
    endpoints = postfix_endpoints(values)
    ids = _ids_of(user)
    if not endpoints:
        if config.postfix.listen or config.postfix.socketmap:
            out.append(Finding("warning", "Postfix's smtpd_*_restrictions name no check_policy_service or socketmap: "
                               "fastlookup's Postfix fronts are not used", "add the main.cf lines of docs/postfix.md"))
        return out
    for ep in endpoints:
        where = f"{ep.param}: {ep.kind} {ep.address}"
        key, front = _front_address(config, ep.kind)
        if ep.address.startswith("unix:"):
            path = ep.address[5:]
            relative = not path.startswith("/")
            if chroot and not relative:
                inside = os.path.join(queue, path.lstrip("/"))
                if not os.path.exists(inside):
                    out.append(Finding(
                        "error",
                        f"{where}: smtpd runs chrooted in {queue} ({', '.join(chroot)} in master.cf), so Postfix looks for "
                        f"{inside}, which does not exist: default_action applies and every client passes unchecked",
                        CHROOT_FIX,
                    ))
                    continue
            real = os.path.join(queue, path.lstrip("/")) if (relative or chroot) else path
            if front and os.path.normpath(front[5:]) != os.path.normpath(real):
                out.append(Finding("error", f"{where}: {key} is {front}, not this socket: Postfix asks nobody",
                                   "make them the same (docs/postfix.md)"))
                continue
            if not front:
                out.append(Finding("error", f"{where}: {key} is not set: no fastlookup front listens there",
                                   f'set [postfix] {key.split(".")[1]} = "{ep.address if not relative else "unix:" + real}"'))
                continue
            root = queue if chroot else None
            err = connect_as(path if not relative else os.path.join("/" if root else queue, path), ids, root, timeout_s)
            if err:
                out.append(Finding(
                    "error", f"{where}: user {user} cannot connect{' inside the chroot' if root else ''}: {err}",
                    f"start fastlookup, and give the socket Postfix's primary group: [postfix] "
                    f'{key.split(".")[1]}_group = "postfix" (docs/access.md)',
                ))
            else:
                out.append(Finding("ok", f"{where}: user {user} can connect{' from inside the chroot' if root else ''}"))
        else:
            try:
                host, port = _inet(ep.address)
            except ValueError:
                out.append(Finding("warning", f"{where}: cannot read the address"))
                continue
            if front and front != str(_front_norm(host, port)):
                out.append(Finding("error", f"{where}: {key} is {front}, not this address: Postfix asks nobody",
                                   "make them the same (docs/postfix.md)"))
                continue
            if not front:
                out.append(Finding("error", f"{where}: {key} is not set: no fastlookup front listens there",
                                   f'set [postfix] {key.split(".")[1]} = "{ep.address}"'))
                continue
            err = _connect_inet(host, port, timeout_s)
            if err:
                out.append(Finding("error", f"{where}: nothing answers ({err}): every client passes unchecked",
                                   "start fastlookup (systemctl start fastlookup)"))
            else:
                out.append(Finding("ok", f"{where}: answers"))
    return out


def _front_norm(host: str, port: int) -> str:
    from .adapters.listen import Address

    return str(Address("inet", host, port))


# --- other MTAs' users -------------------------------------------------------------------------


def _socket_user_findings(config: Config, exim_user: str, rblsmtpd_user: str | None, timeout_s: float) -> list[Finding]:
    from .adapters.listen import parse_listen

    out = []
    if config.postfix.exim:
        address = parse_listen(config.postfix.exim, "postfix.exim")
        ids = _ids_of(exim_user)
        if address.kind == "unix" and ids is not None:
            err = connect_as(address.host, ids, None, timeout_s)
            if err:
                out.append(Finding("error", f"postfix.exim {address}: user {exim_user} cannot connect: {err}; "
                                   "Exim's readsocket then answers its failure string (accept)",
                                   '[postfix] exim_group = "Debian-exim" and the unit drop-in exim.conf (docs/access.md)'))
            else:
                out.append(Finding("ok", f"postfix.exim {address}: user {exim_user} can connect"))
    if rblsmtpd_user:
        ids = _ids_of(rblsmtpd_user)
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


# --- resolvers ---------------------------------------------------------------------------------


def _resolver_findings(config: Config, timeout_s: float) -> list[Finding]:
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    from .upstream import Server, servers_from_resolv_conf

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


# --- all ---------------------------------------------------------------------------------------


def diagnose(
    config: Config,
    *,
    postfix_config: str | None = None,
    postfix_user: str = "postfix",
    exim_user: str = "Debian-exim",
    rblsmtpd_user: str | None = None,
    check_resolvers: bool = True,
    timeout_s: float = 2.0,
) -> list[Finding]:
    """Every finding about ``config`` and the MTA set-up visible on this host."""
    findings = _policy_findings(config)
    postconf = shutil.which("postconf") or (os.path.exists("/usr/sbin/postconf") and "/usr/sbin/postconf") or None
    if postconf and (postfix_config is None or os.path.isdir(postfix_config)):
        findings += _postfix_findings(config, postfix_config, postconf, postfix_user, timeout_s)
    elif postfix_config is not None:
        findings.append(Finding("warning", f"--postfix-config {postfix_config}: not a directory or no postconf"))
    findings += _socket_user_findings(config, exim_user, rblsmtpd_user, timeout_s)
    if check_resolvers:
        findings += _resolver_findings(config, timeout_s)
    return findings


def render(findings: Iterable[Finding]) -> str:
    """Findings as text, worst first, then a one-line summary."""
    order = {"error": 0, "warning": 1, "ok": 2}
    items = sorted(findings, key=lambda f: order.get(f.level, 3))
    label = {"error": "FAIL", "warning": "WARN", "ok": "ok  "}
    lines = []
    for f in items:
        lines.append(f"{label.get(f.level, f.level)}  {f.what}")
        if f.fix and f.level != "ok":
            lines.append(f"      fix: {f.fix}")
    errors = sum(f.level == "error" for f in items)
    warnings = sum(f.level == "warning" for f in items)
    if errors:
        lines.append(f"{errors} problem(s) would let mail through unchecked; {warnings} warning(s)")
    else:
        lines.append(f"no problem found; {warnings} warning(s)")
    return "\n".join(lines)
