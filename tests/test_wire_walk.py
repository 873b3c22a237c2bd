"""The msgpack walker finds where a value ends without keeping it, at any read split."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastlookup.wire_walk import MAX_DEPTH, Walker

VALUES = [
    1, -1, None, True, False, 1.5, 2**63, -(2**40), "", "x" * 40, "é" * 70_000, b"", b"x" * 300,
    [], {}, [1, [2, [3, {}]]], {"a": [1, 2, {"b": b"x" * 70_000}]}, list(range(70_000)), [None, True, False, 1, -1] * 300,
    msgpack.ExtType(3, b"abc"), msgpack.ExtType(4, b"x" * 5000), msgpack.ExtType(5, b"12345678"),
    [["ab", [1, 2, "cd"], {"x": [1] * 30}]] * 50, {str(i): [i, "v" * i] for i in range(100)},
]


def walk(data: bytes, cuts: list[int]) -> int | None:
    """Feed ``data`` in pieces of the given sizes (cycled); the stream index where the value ended."""
    walker, at, k = Walker(), 0, 0
    while at < len(data):
        n = cuts[k % len(cuts)]
        k += 1
        end = walker.feed(data[at : at + n])
        if end is not None:
            return at + end
        at += n
    return None


@pytest.mark.parametrize("value", VALUES, ids=[f"v{i}" for i in range(len(VALUES))])
@pytest.mark.parametrize("cuts", [[10**9], [1], [7, 3, 100], [65536]], ids=["whole", "bytewise", "odd", "64k"])
def test_walker_finds_the_end_of_each_value(value, cuts):
    """The walker stops exactly after the value, whatever follows and however the bytes arrive."""
    data = msgpack.packb(value, use_bin_type=True)
    assert walk(data + b"\x01\x02\x03", cuts) == len(data)


@given(value=st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=30) | st.binary(max_size=30),
    lambda inner: st.lists(inner, max_size=12) | st.dictionaries(st.text(max_size=4), inner, max_size=6), max_leaves=60),
    cuts=st.lists(st.integers(1, 50), min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_walker_agrees_with_msgpack_on_generated_values(value, cuts):
    """For generated values the walker's end is msgpack's own frame length."""
    data = msgpack.packb(value, use_bin_type=True)
    assert walk(data + b"\xc0", cuts) == len(data)


def test_walker_refuses_bytes_that_are_not_msgpack_and_deep_nesting():
    """0xc1 is never a msgpack header; nesting deeper than MAX_DEPTH is refused, not followed."""
    with pytest.raises(ValueError):
        Walker().feed(b"\x92\xc1")
    with pytest.raises(ValueError):
        Walker().feed(b"\x91" * (MAX_DEPTH + 5))


def test_walker_keeps_no_bytes():
    """A 2 MB value fed in reads leaves the walker with a handful of integers, not a buffer."""
    walker = Walker()
    data = msgpack.packb(["y" * 100] * 20_000)
    stop = len(data) - 10
    for i in range(0, stop, 65536):
        assert walker.feed(data[i : min(i + 65536, stop)]) is None
    assert len(walker._stack) <= 2 and len(walker._len) <= 4
