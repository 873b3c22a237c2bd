"""The one function that hides secrets in anything fastlookup prints.

Two secrets can reach text: a Spamhaus DQS access key, which is the first
label of a zone name (``KEY.zen.dq.spamhaus.net``), and a password in a URL
(``redis://:PASSWORD@host``). Every printer (``config show`` in text and
JSON, config errors at start, the "reload failed" line, every log record,
stats and metrics labels through ``Zone.display``) passes its text through
``mask_secrets``, so a new printer has one thing to call. Standard library
only: the CLI and logging import it.
"""

from __future__ import annotations

import re

__all__ = ["mask_secrets", "DQS_SUFFIX"]

#: A DQS zone is ``<key>.<list>.dq.spamhaus.net`` (or ``.com``): the key is the label before ``<list>``.
DQS_SUFFIX = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]+(\.[A-Za-z0-9-]+\.dq\.spamhaus\.(?:net|com))(?![A-Za-z0-9-])", re.I)
_URL_PASSWORD = re.compile(r"(://[^:/@,\s]*:)[^@/\s]+@")


def mask_secrets(text: str) -> str:
    """``text`` with every DQS key replaced by ``***`` and every URL password by ``***``.

    Idempotent (``***.zen.dq.spamhaus.net`` stays as it is); cheap when
    there is nothing to hide (two regex scans, no copy).
    """
    if "dq.spamhaus" in text.lower():
        text = DQS_SUFFIX.sub(r"***\1", text)
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\1***@", text)
    return text
