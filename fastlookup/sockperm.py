"""File mode and group of the unix sockets fastlookup listens on.

The MTA reaches the sockets through its group (``server.socket_group``,
``socket_mode`` 0660). Containers often know only the numeric gid, so a
group given as digits is a gid, otherwise a group name.
"""

from __future__ import annotations

import os

__all__ = ["apply_socket_access"]


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
