"""Reply texts of verdicts: ``$ip``-style templates over sanitised values.

A verdict's text goes into an SMTP reply line, a Postfix policy answer or a
header, so every value that comes from outside (TXT records, HELO names,
envelope addresses) is cut down to printable ASCII with no CR/LF before it is
substituted, and the finished text is cleaned again: a template from the
config may hold non-ASCII too. RFC 5321 §4.5.3.1.5 limits a reply line to
512 octets with its code, so texts stop well short of that.

The default listing text is Postfix's ``default_rbl_reply`` without the code,
so a postmaster moving a list from ``reject_rbl_client`` to fastlookup sees
the same words::

    Service unavailable; $class [$what] blocked using $zone${txt?; $txt}

Templates use ``string.Template.safe_substitute`` (an unknown ``$word`` stays
as written instead of failing a check) plus Postfix's conditional forms:
``${name?text}`` is ``text`` when ``$name`` is not empty, ``${name:text}``
when it is (``text`` may hold ``$variables`` but no braces). Variables:

=============  ==================================================================
``$ip``        the client's address
``$name``      its forward-confirmed host name, else ``unknown``
``$zone``      the list that hit, by its public name (``reply_name``, never a DQS key)
``$code``      the list's reply codes (``127.0.0.2``, comma-separated)
``$txt``       the list's TXT (sanitised, cut to 200), else the zone's ``message``
``$class``     what was listed: ``Client host``, ``Helo command``, ``Sender address``,
               ``Recipient address``
``$what``      the listed item as Postfix shows it: the IP, the client name, the
               HELO, the sender or recipient address
``$domain``    the domain that was looked up (RHSBL)
``$helo $sender $recipient $policy``   the request's values and the policy name
``$rbl_class $rbl_what $rbl_domain $rbl_reason $rbl_code``   Postfix's names for
               ``$class $what $zone $txt $code``
=============  ==================================================================
"""

from __future__ import annotations

import re
from string import Template

__all__ = [
    "clean", "render", "address", "listing_text", "CLASS", "TXT_MAX", "VALUE_MAX", "TEXT_MAX",
    "DEFAULT_REJECT_TEXT", "POSTFIX_ALIASES",
]

#: Cut of a list's TXT text, as rblsmtpd does (200 characters).
TXT_MAX = 200
#: Cut of other outside values (HELO names, addresses) inside a text.
VALUE_MAX = 256
#: Cut of a finished text: a reply line is 512 octets with code and CRLF.
TEXT_MAX = 450
#: Postfix's default_rbl_reply, without the code: the default listing text.
DEFAULT_REJECT_TEXT = "Service unavailable; $class [$what] blocked using $zone${txt?; $txt}"
#: Postfix's template variable names, as aliases of ours.
POSTFIX_ALIASES = {"rbl_class": "class", "rbl_what": "what", "rbl_domain": "zone", "rbl_reason": "txt", "rbl_code": "code"}

#: What Postfix calls each kind of listed item in its replies ($rbl_class).
CLASS = {"ip": "Client host", "client": "Client host", "helo": "Helo command",
         "sender": "Sender address", "recipient": "Recipient address"}

_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_SPACES = re.compile(r"\s+")
_CONDITIONAL = re.compile(r"\$\{(\w+)([?:])([^{}]*)\}")
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


def _conditionals(text: str, values: dict[str, str]) -> str:
    """Postfix's ``${name?text}`` / ``${name:text}``: keep ``text`` when the value is set / empty."""
    if "${" not in text:
        return text

    def one(match: re.Match) -> str:
        key, op, body = match.group(1), match.group(2), match.group(3)
        if key not in values:
            return match.group(0)  # not ours: left as written, like an unknown $word
        present = bool(values[key])
        return body if present == (op == "?") else ""

    return _CONDITIONAL.sub(one, text)


def render(template: str | None, values: dict[str, str]) -> str:
    """The finished text: ``template`` (or the default) with ``values`` substituted.

    Values must already be cleaned. A trailing ``:`` left by an empty
    ``$txt`` ("listed on $zone: $txt" for a list without TXT) is dropped.
    """
    for alias, key in POSTFIX_ALIASES.items():
        if key in values and alias not in values:
            values[alias] = values[key]
    text = _template(_conditionals(template or DEFAULT_REJECT_TEXT, values)).safe_substitute(values)
    text = clean(text, TEXT_MAX).rstrip(" :;,")
    if text:
        return text
    return clean(_template(_conditionals(DEFAULT_REJECT_TEXT, values)).safe_substitute(values), TEXT_MAX).rstrip(" :;,")


def address(raw: str | None) -> str:
    """An envelope address as a text shows it: cleaned, without its angle brackets."""
    return clean((raw or "").strip().strip("<>"))


def listing_text(message: str | None, reject_text: str, values: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The template of a listing and its values.

    A zone's ``message`` is the text the list does not publish (Sun's dns_verify
    "default text"): with no TXT it becomes ``$txt``; with a TXT the TXT wins.
    A ``message`` that itself names ``$txt`` is a whole reply template (older form).
    The message is rendered last, with every value known (``_message``).
    """
    if not message:
        return reject_text, values
    if "$txt" in message or "${txt" in message:
        return message, values
    if not values.get("txt"):
        values["_message"] = message
    return reject_text, values
