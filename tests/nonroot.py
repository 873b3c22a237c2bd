"""A Python prefix another user can run: the test venv's packages behind the system interpreter.

The development venv's interpreter may live where only root may enter
(``/root/.pyenv``), so tests that run fastlookup as an unprivileged user
(the MTA's, tcpserver's) get a small venv made from ``/usr/bin/python3``
whose one ``.pth`` adds this venv's site-packages, and console scripts
like a ``pip install`` writes them — the shape of ``/opt/fastlookup``.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig

SCRIPTS = {"fastlookup": "fastlookup.cli:main", "fastlookup-rblsmtpd": "fastlookup.adapters.rblsmtpd:main"}


def make_prefix(directory: str) -> str:
    """Build the prefix in ``directory`` (readable by all); return it. RuntimeError if impossible."""
    system = shutil.which("python3", path="/usr/bin:/bin")
    if system is None:
        raise RuntimeError("no /usr/bin/python3 (Debian python3, python3-venv)")
    version = subprocess.run([system, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True).stdout.strip()
    if version != str(tuple(sys.version_info[:2])):
        raise RuntimeError(f"/usr/bin/python3 is {version}, the test venv {sys.version_info[:2]}")
    subprocess.run([system, "-m", "venv", "--without-pip", directory], check=True, capture_output=True)
    purelib = sysconfig.get_paths()["purelib"]
    target = os.path.join(directory, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages")
    with open(os.path.join(target, "fastlookup-test.pth"), "w") as fh:
        fh.write(f"import site; site.addsitedir({purelib!r})\n")
    for name, entry in SCRIPTS.items():
        module, func = entry.split(":")
        path = os.path.join(directory, "bin", name)
        with open(path, "w") as fh:
            fh.write(f"#!{directory}/bin/python3\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
        os.chmod(path, 0o755)
    for root, dirs, files in os.walk(directory):
        os.chmod(root, 0o755)
    return directory


def open_dir(prefix: str = "fastlookup-") -> str:
    """A temp directory every user can enter (pytest's tmp_path sits under a 0700 directory)."""
    import tempfile

    directory = tempfile.mkdtemp(prefix=prefix)
    os.chmod(directory, 0o755)
    return directory


__all__ = ["make_prefix", "open_dir", "SCRIPTS"]
_ = site  # documented dependency: the .pth calls site.addsitedir
