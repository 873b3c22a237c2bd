"""The code blocks of docs/*.md, as tests read them: the docs are the snippet files.

A fenced block's info string says what it is: ``toml`` (a fastlookup config,
loaded by the real loader), ``main.cf`` (Postfix main.cf lines, checked by
``postconf``), ``exim`` (an Exim configuration part), ``console`` (a command,
continued by trailing backslashes, then its exact output).
"""

from __future__ import annotations

import pathlib
import re

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)


def blocks(doc: str, info: str) -> list[str]:
    """The bodies of the blocks fenced with ``info`` in ``docs/<doc>``, in order."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    return [m.group(2) for m in _FENCE.finditer(text) if m.group(1).strip() == info]


def console(block: str) -> tuple[str, str]:
    """Split a ``console`` block into its command and the output it shows."""
    lines = block.split("\n")
    command = []
    while lines:
        line = lines.pop(0)
        command.append(line)
        if not line.endswith("\\"):
            break
    return "\n".join(command), "\n".join(lines)


__all__ = ["DOCS", "blocks", "console"]
