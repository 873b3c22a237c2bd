"""The unix socket files fastlookup listens on: claiming the path, mode and group.

Before binding, a path is claimed: its directory is made, a stale socket
file (nobody accepts on it) is removed, and a live one is refused, since
binding over it would steal a running instance's address.

The MTA reaches the sockets through its group (``server.socket_group``,
``socket_mode`` 0660). Containers often know only the numeric gid, so a
group given as digits is a gid, otherwise a group name.
"""

from __future__ import annotations

import logging
import os
import socket
import stat

__all__ = ["apply_socket_access", "claim_socket_path", "access_error"]

log = logging.getLogger("fastlookup.socket")


#: sun_path holds 108 bytes, one for the terminating NUL (unix(7)).
MAX_SOCKET_PATH = 107


def claim_socket_path(
    path: str, key: str, error: type[Exception], owner: str = "server", busy_hint: str = "stop it or choose another path"
) -> None:
    """Make the directory; remove a stale socket file; raise ``error`` for a live or odd one.

    ``key`` names the config key in the message (``server.socket``,
    ``postfix.listen``...).
    """
    from .errors import ConfigError  # a bad path is a config error (exit 4), not a traceback

    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        raise ConfigError(f"{key}: {path[:80]!r}... is {size} bytes; a unix socket path is at most {MAX_SOCKET_PATH} bytes")
    directory = os.path.dirname(path)
    if directory:
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
        except OSError as exc:
            if isinstance(exc, (FileExistsError, NotADirectoryError)):  # a path component is a regular file
                raise ConfigError(f"{key}: cannot use {path!r}: its directory {directory!r} is not a directory") from None
            # e.g. /var/spool/postfix/private as a non-root user
            raise error(
                f"{key}: cannot make the socket directory {directory!r} ({exc.strerror or exc}); create it for "
                f"user {_user_name()} or choose a directory it may write (docs/access.md)"
            ) from None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:  # e.g. EACCES: the directory exists (made above) but cannot be searched
        raise ConfigError(f"{key}: cannot use {path!r}: its directory {directory!r} {exc.strerror or exc}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise error(f"{key}: {path!r} exists and is not a socket; remove it or choose another path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing stale socket file %s", path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    except OSError as exc:  # timeout (backlog full), permission denied: cannot tell, so refuse
        raise error(f"{key}: {path!r} exists and cannot be checked ({exc}); is another instance running?") from None
    finally:
        probe.close()
    raise error(f"{key}: another {owner} is already serving on {path!r}; {busy_hint}")


def apply_socket_access(path: str, mode: int, group: str = "") -> None:
    """chmod ``path`` to ``mode`` and, when ``group`` is set, chgrp it (name or gid).

    Raises OSError or LookupError (unknown group name) for the caller to report.
    """
    os.chmod(path, mode)
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            import grp

            gid = grp.getgrnam(group).gr_gid
        os.chown(path, -1, gid)


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def access_error(path: str, mode: int, group: str, exc: BaseException, key: str = "") -> str:
    """Why ``mode``/``group`` could not be given to ``path``, and the fix.

    chown(2) to a group needs no privilege only when the process is a member
    of that group; under systemd that is ``SupplementaryGroups=`` (the
    shipped drop-ins, docs/access.md).
    """
    what = f"cannot give {path!r} mode {mode:04o}" + (f" and group {group!r}" if group else "")
    if isinstance(exc, LookupError):
        return f"{what}: no group {group!r} on this host; name an existing group or a numeric gid"
    if isinstance(exc, PermissionError) and group:
        return (
            f"{what}: user {_user_name()} is not a member of group {group!r} ({exc.strerror}); add it "
            f"(systemd: SupplementaryGroups={group} in a drop-in, see docs/access.md) or set {key or 'the group'} to \"\""
        )
    return f"{what}: {exc}"
