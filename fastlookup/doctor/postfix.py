"""Postfix as ``postconf`` shows it: check_policy_service and socketmap endpoints, smtpd chroot flags.

An absolute unix path under a chrooted smtpd is looked up inside the jail;
the connection fails, ``default_action=DUNNO`` applies and every client
passes unchecked with one log line. Each endpoint is checked against the
fastlookup front that should serve it and tried from where smtpd connects.
"""

from __future__ import annotations

import os
import re
import subprocess

from ..config import Config
from .findings import Endpoint, Finding
from .probe import connect_as, connect_inet, ids_of

__all__ = ["RESTRICTIONS", "postfix_endpoints", "chrooted_smtpd", "postfix_findings"]

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


def _inet(address: str) -> tuple[str, int]:
    value = address[5:] if address.startswith("inet:") else address
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def _front_address(config: Config, kind: str) -> tuple[str, str]:
    """(config key, its address normalised) of the fastlookup front serving ``kind``."""
    from ..adapters.listen import parse_listen

    key = "postfix.listen" if kind == "policy" else "postfix.socketmap"
    text = config.postfix.listen if kind == "policy" else config.postfix.socketmap
    if not text:
        return key, ""
    return key, str(parse_listen(text, key))


def postfix_findings(config: Config, conf_dir: str | None, postconf: str, user: str, timeout_s: float) -> list[Finding]:
    out: list[Finding] = []
    try:
        values = _parse_params(_postconf(postconf, conf_dir, ["-x"] + list(RESTRICTIONS), POSTCONF_TIMEOUT_S))
        queue = _postconf(postconf, conf_dir, ["-h", "queue_directory"], POSTCONF_TIMEOUT_S).strip()
        master = _postconf(postconf, conf_dir, ["-M"], POSTCONF_TIMEOUT_S)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return [Finding("warning", f"postconf{' -c ' + conf_dir if conf_dir else ''} failed: {exc}", "pass --postfix-config DIR")]
    chroot = chrooted_smtpd(master)
    endpoints = postfix_endpoints(values)
    ids = ids_of(user)
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
            err = connect_inet(host, port, timeout_s)
            if err:
                out.append(Finding("error", f"{where}: nothing answers ({err}): every client passes unchecked",
                                   "start fastlookup (systemctl start fastlookup)"))
            else:
                out.append(Finding("ok", f"{where}: answers"))
    return out


def _front_norm(host: str, port: int) -> str:
    from ..adapters.listen import Address

    return str(Address("inet", host, port))
