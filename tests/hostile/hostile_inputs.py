"""Hostile inputs shared by the hostile suite: reproduced cases and hypothesis strategies."""

from __future__ import annotations

from hypothesis import strategies as st

#: Reproduced hostile strings (issue 12): scoped IPv6, padding, control bytes, odd Unicode.
HOSTILE_TEXT = [
    "fe80::1%eth0",
    "[fe80::1%25eth0]",
    "::ffff:192.0.2.1%lo",
    " " * 100_000 + "192.0.2.1" + " " * 100_000,
    " " * 100_000 + "example.test",
    "a" * 300,
    "exa\x00mple.test",
    "\x1b[31m\nforged=line",
    "ex\u2028ample.test",
    "ßtraße.example",
    "xn--zz.example",
    "..",
    "%",
    "",
]

_atoms = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True), st.binary(max_size=40),
    st.text(max_size=40), st.sampled_from(HOSTILE_TEXT[:3] + HOSTILE_TEXT[5:]),
    st.sampled_from(["192.0.2.1", "2001:db8::1", "example.test", "bl.test", "A", "PTR", "default", "nope"]),
)
_zone_specs = st.one_of(
    st.sampled_from(["bl.test", "bl.test*x", "*", "bl.test*", "bl.test*nan", "bl.test=127.0.0.[0..20000000]", "bl.test&0.0.0.8",
                     "bl.test!=127.0.0.2", "bl.test!&0.0.0.8", "bl.test=127.0.[0..255].[1;3]*2", "k3y.zen.dq.spamhaus.net",
                     "bl.test==1", "bl.test=,", "bl.test=127.0.0.2-", "=", "&", "!"]),
    st.text(alphabet="bl.test=&!*[];0123456789-/,", max_size=60),
)
_values = st.recursive(_atoms | _zone_specs, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_KEYS = ["ip", "name", "domain", "type", "zones", "helo", "sender", "recipient", "policy", "calls", "x"]


def arg_maps():
    """Argument maps for any method: known keys with hostile values, zones lists of hostile specs, batches."""
    zones = st.lists(_zone_specs, max_size=6)
    calls = st.lists(st.lists(st.one_of(st.sampled_from(["ping", "dnsbl", "a", "check", "batch", "nope"]), _atoms), max_size=3), max_size=4)
    return st.dictionaries(st.sampled_from(_KEYS), st.one_of(_values, zones, calls), max_size=5)
