"""Connecting to a front as the MTA will: as its user and primary group only, inside its chroot."""

from __future__ import annotations

import os
import socket

__all__ = ["ids_of", "connect_as", "connect_inet"]


def ids_of(user: str) -> tuple[int, int] | None:
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


def connect_inet(host: str, port: int, timeout_s: float) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return ""
    except OSError as exc:
        return str(exc.strerror or exc)
