"""Mirror data: the config value, rbldnsd's value and TXT rules, and the bulk loader against the line parser."""

from __future__ import annotations

import random

import pytest

from fastlookup.config import ConfigError, load_config
from fastlookup.mirror.datasets import Ip4SetBuilder
from fastlookup.mirror.spec import MirrorSpec, parse_spec
from fastlookup.mirror.syntax import DEFAULT_RR, ip4range, ip6atos, ip6prefix, parse_a_txt, txtsubst
from fastlookup.mirror.loader import _Context, _parse_lines, load_files
from fastlookup.mirror.zonedata import MirrorLoadError, ZoneData

SPECS = [
    ("ip4set:/a", MirrorSpec("ip4set", paths=("/a",))),
    ("dnset:/a, /b", MirrorSpec("dnset", paths=("/a", "/b"))),
    ("axfr:192.0.2.1", MirrorSpec("axfr", host="192.0.2.1", port=53)),
    ("axfr:127.0.0.1:5353", MirrorSpec("axfr", host="127.0.0.1", port=5353)),
    ("axfr:[::1]:5353", MirrorSpec("axfr", host="::1", port=5353)),
    ("AXFR:::1", MirrorSpec("axfr", host="::1", port=53)),
]


@pytest.mark.parametrize("text, spec", SPECS)
def test_mirror_values_parse(text, spec):
    """``TYPE:PATH[,PATH...]`` and ``axfr:HOST[:PORT]`` parse to their parts."""
    assert parse_spec(text) == spec


BAD_SPECS = ["ip4set", "ip4tset:/a", "ip4set:/a,,/b", "axfr:ns.example", "axfr:127.0.0.1:0", "axfr:[::1", "nope:/a"]


@pytest.mark.parametrize("text", BAD_SPECS)
def test_a_bad_mirror_value_fails_config_loading_naming_the_key(text):
    """A bad ``mirror`` fails at load with the zone's key in the message."""
    with pytest.raises(ConfigError, match=r"dnsbl\.'bl\.test'\.mirror"):
        load_config(environ={}, overrides={"dnsbl": {"bl.test": {"mirror": text}}})


A_TXT = [
    # (value text, default, (A, TXT) or None)
    (":3:text $", DEFAULT_RR, (0x7F000003, "text $")),
    (":127.0.0.4", (0x7F000002, "dflt"), (0x7F000004, "dflt")),  # only A: the default's TXT
    (":127.5:x", DEFAULT_RR, (0x7F000005, "x")),
    ("plain words", (0x7F00000A, "d"), (0x7F00000A, "plain words")),
    (":0:bad", DEFAULT_RR, None),
    (":2x", DEFAULT_RR, None),
    (":2:" + "y" * 300, DEFAULT_RR, (0x7F000002, "y" * 255)),
]


@pytest.mark.parametrize("text, default, want", A_TXT)
def test_a_txt_values_follow_rbldnsd(text, default, want):
    """``:A:TXT``, ``:A`` (default TXT kept), bare TXT and bad values read as rbldnsd's parse_a_txt does."""
    assert parse_a_txt(text, default)[0] == want


SUBST = [
    # (template, queried, $0..$9 and $=, result)
    ("listed $", "1.2.3.4", {}, "listed 1.2.3.4"),
    ("$$ and $1 and $2", "q", {1: "one"}, "$ and one and $2"),
    ("own", "q", {10: "base [$=] for $"}, "base [own] for q"),
    ("", "q", {10: "base [$=]"}, "base [q]"),
    ("=raw $", "q", {10: "base"}, "raw q"),
    ("x" * 250 + "$", "1.2.3.4", {}, ("x" * 250 + "1.2.3.4")[:254]),
]


@pytest.mark.parametrize("template, queried, variables, want", SUBST)
def test_txt_substitution_follows_rbldnsd(template, queried, variables, want):
    """``$``, ``$$``, ``$n``, the ``$=`` base template and the 254-byte cut are rbldnsd's txtsubst."""
    subst = [None] * 11
    for k, v in variables.items():
        subst[k] = v
    assert txtsubst(template, queried, tuple(subst)) == want


RANGES = [
    ("10.1", (16, 0x0A010000, 0x0A01FFFF)),
    ("127.0.0.1-2", (32, 0x7F000001, 0x7F000002)),
    ("1.2.3-1.2.5", (32, 0x01020300, 0x010205FF)),
    ("10", (-1, 0, 0)),
    ("1.2-1.2.3.4", (-1, 0, 0)),
    ("1.2.3.4/33", (-1, 0, 0)),
]


@pytest.mark.parametrize("text, want", RANGES)
def test_ip4_ranges_and_short_forms(text, want):
    """Short forms are prefixes, ``a-b`` ranges complete their last octets, bare numbers are refused."""
    assert ip4range(text)[:3] == want


def test_ip6_parse_and_print_round_trip_rbldnsd_style():
    """``ip6prefix`` expands ``::`` and ``ip6atos`` prints rbldnsd's compressed form."""
    bits, addr, _ = ip6prefix("2001:db8::1")
    assert bits == 128 and ip6atos(addr) == "2001:db8::1"
    assert ip6prefix("2001:db8:1")[0] == 48
    assert ip6atos(bytes(16)) == "::"


def test_bulk_loading_answers_as_the_line_parser(tmp_path):
    """A feed over several segments, loaded with the bulk path, answers every address as the plain line parser does."""
    rng = random.Random(5)
    lines = [":4:bulk $"]
    for i in range(120_000):
        a = rng.getrandbits(32)
        text = f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"
        if i % 500 == 0:
            text = f"!{text}" if i % 1000 == 0 else f"{text} :7:own"
        elif i % 777 == 0:
            text = "010.1.2.3"  # leading zero: read as decimal, not octal
        elif i % 901 == 0:
            text = "1.2.3.300"  # rbldnsd ignores it
        lines.append(text)
        if i == 60_000:
            lines.append(":9:second default")
    blob = "\n".join(lines) + "\n"
    assert len(blob) > (1 << 20)  # more than one segment
    path = tmp_path / "big.ip4set"
    path.write_text(blob)
    data, _ = load_files("ip4set", [str(path)])
    ref = Ip4SetBuilder(10**7)
    ref.start()
    _parse_lines(ref, blob, _Context(), 0)
    reference = ZoneData.of([ref.finish()], loaded_at=0.0)
    probes = ["3.2.1.10", "3.2.1.8"]
    for line in lines[1::97]:
        word = line.lstrip("!").split(" ")[0]
        probes.append(".".join(reversed(word.split("."))))
    assert data.entries == reference.entries
    assert data.warnings == sum(1 for line in lines if line == "1.2.3.300")
    assert [data.answer(p) for p in probes] == [reference.answer(p) for p in probes]
    assert any(data.answer(p)[0] for p in probes)


def test_too_many_entries_refuses_the_copy(tmp_path):
    """A copy over ``max_entries`` is refused as a whole, not cut short."""
    path = tmp_path / "f"
    path.write_text("".join(f"10.0.{i >> 8}.{i & 255}\n" for i in range(300)))
    with pytest.raises(MirrorLoadError, match="more than 100 entries"):
        load_files("ip4set", [str(path)], max_entries=100)


def test_mirror_public_api():
    """fastlookup.mirror exports exactly its documented names, and importing it loads no dnspython."""
    import subprocess
    import sys

    import fastlookup.mirror as mirror

    assert sorted(mirror.__all__) == sorted(
        ["MirrorSet", "MirrorSource", "Mirror", "FileMirror", "MirrorSpec", "parse_spec", "MirrorLoadError", "ZoneData", "load_files"]
    )
    code = "import sys, fastlookup.mirror, fastlookup.config; print(any(m.startswith('dns') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
