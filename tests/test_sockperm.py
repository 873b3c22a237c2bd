"""Socket file mode and group: names and numeric gids."""

from __future__ import annotations

import grp
import os
import socket
import stat

import pytest

from fastlookup.sockperm import apply_socket_access


def _other_group() -> grp.struct_group:
    """A group the new socket does not already have (root: nogroup, 65534), so chown must act."""
    if os.geteuid() == 0:
        return grp.getgrgid(65534)
    others = [g for g in os.getgroups() if g != os.getegid()]
    if not others:
        pytest.skip("needs root or a supplementary group to show the chown")
    return grp.getgrgid(others[0])


@pytest.mark.parametrize("group_of", [lambda g: g.gr_name, lambda g: str(g.gr_gid)])
def test_mode_and_group_applied(tmp_path, group_of):
    """The socket gets the mode and the group, given by name or by numeric gid."""
    path = str(tmp_path / "s.sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    try:
        target = _other_group()
        assert os.stat(path).st_gid != target.gr_gid  # else the test could not tell chown happened
        apply_socket_access(path, 0o660, group_of(target))
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == target.gr_gid
    finally:
        sock.close()


def test_unknown_group_name_raises_lookup_error(tmp_path):
    """An unknown group name is an error the caller reports, not a silent skip."""
    path = str(tmp_path / "s.sock")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    try:
        with pytest.raises(LookupError):
            apply_socket_access(path, 0o660, "no-such-group-fastlookup")
    finally:
        sock.close()
