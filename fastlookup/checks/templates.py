"""Reply texts of verdicts: ``$ip``-style templates over sanitised values.

A verdict's text goes into an SMTP reply line, a Postfix policy answer or a
header, so every value that comes from outside (TXT records, HELO names,
envelope addresses) is cut down to printable ASCII with no CR/LF before it is
substituted, and the finished text is cleaned again: a template from the
config may hold non-ASCII too. RFC 5321 §4.5.3.1.5 limits a reply line to
512 octets with its code, so texts stop well short of that.

Templates use ``string.Template.safe_substitute``: an unknown ``$word`` stays
as written instead of failing a check. Variables: ``$ip $name $zone $code
$txt $helo $sender $recipient $policy``.
"""

from __future__ import annotations

import re
from string import Template

__all__ = ["clean", "render", "TXT_MAX", "VALUE_MAX", "TEXT_MAX", "DEFAULT_REJECT_TEXT"]

#: Cut of a list's TXT text, as rblsmtpd does (200 characters).
TXT_MAX = 200
#: Cut of other outside values (HELO names, addresses) inside a text.
VALUE_MAX = 256
#: Cut of a finished text: a reply line is 512 octets with code and CRLF.
TEXT_MAX = 450
#: Used when neither the zone nor the policy gives a text.
DEFAULT_REJECT_TEXT = "$ip listed on $zone"

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_SPACES = re.compile(r"\s+")
_TEMPLATES: dict[str, Template] = {}


def clean(value: str | None, limit: int = VALUE_MAX) -> str:
    """``value`` as one line of printable ASCII (others become ``?``), cut to ``limit``."""
    if not value:
        return ""
    text = _SPACES.sub(" ", value)  # CR, LF and tabs become one space
    return _UNPRINTABLE.sub("?", text).strip()[:limit]


def _template(text: str) -> Template:
    template = _TEMPLATES.get(text)
    if template is None:
        template = Template(text)
        if len(_TEMPLATES) < 1024:  # texts come from the config: a handful
            _TEMPLATES[text] = template
    return template


def render(template: str | None, values: dict[str, str]) -> str:
    """The finished text: ``template`` (or the default) with ``values`` substituted.

    Values must already be cleaned. A trailing ``:`` left by an empty
    ``$txt`` ("listed on $zone: $txt" for a list without TXT) is dropped.
    """
    text = _template(template or DEFAULT_REJECT_TEXT).safe_substitute(values)
    text = clean(text, TEXT_MAX).rstrip(" :;,")
    return text or clean(_template(DEFAULT_REJECT_TEXT).safe_substitute(values), TEXT_MAX)
