"""Bad input is refused at once and cheaply, never ``internal`` (issue 12 items 1-3 and 7; Exim filters, issue 11 9b)."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from fastlookup.checks import zones as zones_mod
from fastlookup.checks.codes import CodeFilter
from fastlookup.checks.zones import ZoneRegistry
from fastlookup.errors import ConfigError, InvalidArgument
from fastlookup.names import client_ip, normalize_domain, parse_ip


@pytest.mark.parametrize(
    "spec",
    [
        "127.0.0.[0..20000000]",
        "127.0.0.[0..99999999999999999999]",
        "127.[0..255].[0..255].[0..1000]",
        "127.0.0.[0..999]",
        "127.0.0.[256]",
        "127.0.0.[" + ";".join(["1"] * 500) + "]",
        "127.0.0." + "1" * 1000,
        "&0.0.0.99999",
        "=127.0.0.2-127.0.0.1",
    ],
)
def test_huge_or_bad_reply_code_patterns_are_refused_before_any_work(spec):
    """A reply-code pattern is bounded (digits, 0..255, length) before anything is built: refused in well under a second."""
    started = time.perf_counter()
    with pytest.raises(ConfigError):
        CodeFilter.parse([spec], "x")
    assert time.perf_counter() - started < 0.5


def test_widest_pattern_costs_four_integers():
    """The widest legal pattern matches everything yet holds only four integers (octet sets are bit masks)."""
    f = CodeFilter.parse(["[0..255].[0..255].[0..255].[0..255]"])
    assert f.patterns == (((1 << 256) - 1,) * 4,)
    assert f.match("1.2.3.4") and f.match("255.255.255.255")


@pytest.mark.parametrize(
    "spec, codes, listed",
    [
        ("bl.test&0.0.0.8", ("127.0.0.8",), ("127.0.0.8",)),
        ("bl.test&0.0.0.8", ("127.0.0.12",), ("127.0.0.12",)),  # bit 8 set among others
        ("bl.test&0.0.0.8", ("127.0.0.4",), ()),
        ("bl.test&0.0.0.6", ("127.0.0.2",), ()),  # every bit of the mask must be set
        ("bl.test!=127.0.0.2", ("127.0.0.3",), ("127.0.0.3",)),
        ("bl.test!=127.0.0.2", ("127.0.0.2",), ()),
        ("bl.test!=127.0.0.2", ("127.0.0.2", "127.0.0.3"), ()),  # Exim: true only if none matches
        ("bl.test!&0.0.0.8", ("127.0.0.2",), ("127.0.0.2",)),
        ("bl.test!&0.0.0.8", ("127.0.0.8",), ()),
        ("bl.test=127.0.0.2,127.0.0.3", ("127.0.0.3",), ("127.0.0.3",)),
        ("bl.test=127.0.0.[2..3]*2", ("127.0.0.3",), ("127.0.0.3",)),
    ],
)
def test_exim_filter_forms(spec, codes, listed):
    """Exim's dnslists filters: &mask (all mask bits set), != and !& (listed when no code matches), comma lists."""
    assert ZoneRegistry().get(spec).classify(codes)[0] == listed


@pytest.mark.parametrize("spec", ["bl.test!==127.0.0.2", "bl.test=&0.0.0.1", "bl.test!=&0.0.0.1"])
def test_exim_all_match_forms_are_refused_plainly(spec):
    """Exim's all-must-match forms (==, =&, !==, !=&) are refused with a message, not misread."""
    with pytest.raises(InvalidArgument, match="not supported"):
        ZoneRegistry().get(spec)


@pytest.mark.parametrize("spec", ["bl.test*x", "*", "bl.test*", "bl.test*nan", "bl.test*inf", "bl.test*1e400", "bl.test*2*"])
def test_bad_zone_weights_are_invalid_argument(spec):
    """A weight suffix that is not a finite number within bounds is invalid_argument (was ValueError -> internal)."""
    with pytest.raises(InvalidArgument):
        ZoneRegistry().get(spec)


def test_zone_spec_length_is_capped():
    """A client-supplied zone spec over the cap is refused before it is parsed or cached."""
    with pytest.raises(InvalidArgument, match="limit"):
        ZoneRegistry().get("bl.test=" + "1" * 10_000)


def test_client_zone_specs_are_held_in_bounded_caches(monkeypatch):
    """Ever new client zone lists evict the oldest: the registry never holds more than its caps."""
    monkeypatch.setattr(zones_mod, "MAX_BUILT", 50)
    monkeypatch.setattr(zones_mod, "MAX_LISTS", 20)
    monkeypatch.setattr(zones_mod, "MAX_LIST_ZONES", 100)
    reg = ZoneRegistry()
    for i in range(500):
        reg.many([f"z{i}.test=127.0.[0..255].[0..255]*{i % 7}"])
    assert len(reg._built) <= 50 and len(reg._many) <= 20
    for i in range(500):
        reg.many([f"w{i}x{j}.test" for j in range(12)])
    assert sum(len(zones) for zones in reg._many.values()) == reg._many_zones <= 100


def test_equal_reply_code_filters_are_one_object():
    """Zones with the same filters share one CodeFilter, so thousands of zones hold a handful of filters."""
    reg = ZoneRegistry()
    a, b = reg.get("one.test"), reg.get("two.test")
    assert a.errors is b.errors and a.codes is b.codes


@pytest.mark.parametrize("text", ["fe80::1%eth0", "fe80::1%1", "[fe80::1%eth0]", "::ffff:1.2.3.4%x"])
def test_scoped_ipv6_is_invalid_argument(text):
    """An IPv6 address with a zone index is refused as invalid_argument (was AddressValueError -> internal)."""
    with pytest.raises(InvalidArgument, match="zone index"):
        client_ip(text)


@pytest.mark.parametrize(
    "fn, text",
    [
        (parse_ip, " " * 1_000_000 + "192.0.2.1"),
        (client_ip, "192.0.2.1" + " " * 1_000_000),
        (normalize_domain, " " * 1_000_000 + "example.com"),
    ],
)
def test_memoised_inputs_are_bounded_before_caching(fn, text):
    """Text far longer than any address or name is refused, so the memo caches never key on megabytes."""
    with pytest.raises(InvalidArgument):
        fn(text)


def test_many_padded_names_do_not_grow_memory():
    """400 requests of ~1 MB padded names keep no memory (was +389 MB); bound: < 5 MB retained."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(400):
        try:
            normalize_domain(" " * (1 << 20) + f"n{i}.example.com")
        except InvalidArgument:
            pass
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert retained < 5 * (1 << 20)
