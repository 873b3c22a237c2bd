"""The sans-IO msgpack-rpc framing: encoding, request validation, the streaming decoder."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastlookup import wire
from fastlookup.errors import BadRequest, RpcError, TooLarge


def test_ping_bytes_match_the_documented_example():
    """The bytes of a ping request and its response are the ones docs/protocol.md shows."""
    assert wire.encode_request(1, "ping").hex() == "940001a470696e6790"
    response = wire.encode_response(1, {"ok": True})
    assert response.hex() == "940101c081a26f6bc3"
    assert wire.encode_error(None, "bad_request", "x").hex() == "9401c082a4636f6465ab6261645f72657175657374a76d657373616765a178c0"


ENCODE_CASES = [
    (wire.encode_request(7, "a", {"name": "x.test"}), [0, 7, "a", [{"name": "x.test"}]]),
    (wire.encode_request(7, "ping"), [0, 7, "ping", []]),
    (wire.encode_request(7, "ping", {}), [0, 7, "ping", []]),
    (wire.encode_response(7, {"ok": True}), [1, 7, None, {"ok": True}]),
    (wire.encode_response(None, None), [1, None, None, None]),
    (wire.encode_error(7, "too_large", "big"), [1, 7, {"code": "too_large", "message": "big"}, None]),
]


@pytest.mark.parametrize("data, expected", ENCODE_CASES)
def test_encoders_produce_the_contract_arrays(data, expected):
    """Requests, responses and errors encode to the msgpack-rpc arrays of the contract."""
    assert msgpack.unpackb(data, raw=False) == expected


PARSE_OK = [
    ([0, 0, "ping", []], (0, "ping", {})),
    ([0, wire.MAX_MSGID, "a", [{"name": "x"}]], (wire.MAX_MSGID, "a", {"name": "x"})),
    ([2, "ping", []], (None, "ping", {})),
    ([2, "a", [{"name": "x"}]], (None, "a", {"name": "x"})),
]


@pytest.mark.parametrize("obj, expected", PARSE_OK)
def test_parse_request_accepts_requests_and_notifications(obj, expected):
    """A request gives (msgid, method, args), as a Request or a plain tuple (the server's); a notification has msgid None."""
    assert tuple(wire.parse_request(obj)) == expected
    assert wire.parse_request_tuple(obj) == expected


PARSE_BAD = [
    # (object, error class, msgid carried by the error)
    ("ping", BadRequest, None),
    ([0, 1, "ping"], BadRequest, None),
    ([1, 1, None, None], BadRequest, None),
    ([0, -1, "ping", []], BadRequest, None),
    ([0, wire.MAX_MSGID + 1, "ping", []], BadRequest, None),
    ([0, True, "ping", []], BadRequest, None),
    ([0, 3, None, []], BadRequest, 3),
    ([0, 3, "ping", {}], BadRequest, 3),
    ([0, 3, "ping", [{}, {}]], BadRequest, 3),
    ([0, 3, "ping", ["x"]], BadRequest, 3),
    ([2, 5, []], BadRequest, None),
]


@pytest.mark.parametrize("obj, cls, msgid", PARSE_BAD)
def test_parse_request_refuses_wrong_shapes(obj, cls, msgid):
    """A wrong shape raises BadRequest carrying the msgid when one was readable, from either parser."""
    for parse in (wire.parse_request, wire.parse_request_tuple):
        with pytest.raises(cls) as info:
            parse(obj)
        assert info.value.msgid == msgid


def test_parse_request_refuses_an_oversized_frame_by_msgid():
    """A frame over the limit raises TooLarge with its msgid, so it can be answered."""
    with pytest.raises(TooLarge) as info:
        wire.parse_request([0, 9, "ping", []], size=2000, max_frame=1024)
    assert info.value.msgid == 9


def test_decoder_reports_each_frame_size():
    """Each decoded object comes with its own frame length in bytes."""
    frames = [wire.encode_request(1, "ping"), wire.encode_request(2, "a", {"name": "host.example"})]
    dec = wire.Decoder()
    dec.feed(b"".join(frames))
    assert [size for _, size in dec] == [len(f) for f in frames]


def test_decoder_refuses_a_frame_too_big_to_buffer():
    """Feeding more than the buffer allows raises FramingError (the connection must close)."""
    dec = wire.Decoder(max_frame=1024)
    with pytest.raises(wire.FramingError):
        dec.feed(wire.encode_request(1, "a", {"name": "x" * 400_000}))


def test_decoder_refuses_huge_announced_arrays():
    """An array header longer than max_array_len is a FramingError, not a big allocation."""
    dec = wire.Decoder(max_array_len=1024)
    dec.feed(b"\xdd\x00\x10\x00\x00")
    with pytest.raises(wire.FramingError):
        list(dec)


def test_decoder_skips_over_limit_arrays_without_building_them():
    """An array over max_array_len that could fit in a frame is skipped, not allocated: it waits for its bytes."""
    dec = wire.Decoder(max_array_len=1024)
    dec.feed(b"\xdd\x00\x01\x00\x00")  # an array announcing 65,536 entries, none sent
    assert list(dec) == [] and not dec.idle


@pytest.mark.parametrize("split", [None, 1, 7, 100])
def test_decoder_yields_oversized_frames_by_msgid_and_stays_in_sync(split):
    """A frame with an array or map over the entry limit becomes Oversized(msgid); the next frame still decodes."""
    frames = [
        wire.encode_request(1, "batch", {"calls": [["ping", {}]] * 1025}),
        wire.encode_request(2, "ping"),
        wire.encode_request(3, "dnsbl", {"ip": {str(i): i for i in range(2000)}}),
        wire.encode_request(4, "ping"),
    ]
    data = b"".join(frames)
    dec = wire.Decoder(max_array_len=1024)
    got = []
    step = split or len(data)
    for i in range(0, len(data), step):
        dec.feed(data[i : i + step])
        for obj, size in dec:
            try:
                got.append(wire.parse_request(obj, size).msgid)
            except TooLarge as exc:
                got.append(("too_large", exc.msgid))
    assert got == [("too_large", 1), 2, ("too_large", 3), 4]
    assert dec.idle


@pytest.mark.parametrize(
    "data",
    [b"\xc1", b"\x81\x80\x00", b"\x81\x90\x00", b"\xa2\xff\xfe"],
    ids=["never-used-byte", "map-key-is-a-map", "map-key-is-an-array", "invalid-utf8"],
)
def test_decoder_refuses_bytes_that_are_not_a_valid_message(data):
    """Bytes msgpack cannot turn into a value (0xc1, unhashable map keys, bad UTF-8) raise FramingError."""
    dec = wire.Decoder()
    dec.feed(data)
    with pytest.raises(wire.FramingError):
        list(dec)


# --- properties --------------------------------------------------------------------------

_text = st.text(max_size=20)
_values = st.one_of(_text, st.integers(-(2**63), 2**64 - 1), st.booleans(), st.none(), st.lists(_text, max_size=4))
_requests = st.lists(
    st.tuples(st.integers(0, wire.MAX_MSGID), _text, st.dictionaries(_text, _values, max_size=4)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests, st.data())
def test_any_split_of_a_valid_stream_decodes_identically(requests, data):
    """Cutting a stream of valid frames at arbitrary points yields the same requests and sizes."""
    frames = [wire.encode_request(m, method, args) for m, method, args in requests]
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    dec = wire.Decoder()
    got = []
    last = 0
    for cut in cuts + [len(stream)]:
        dec.feed(stream[last:cut])
        last = cut
        got.extend(dec)
    assert [size for _, size in got] == [len(f) for f in frames]
    parsed = [tuple(wire.parse_request(obj, size)) for obj, size in got]
    assert parsed == [(m, method, args) for m, method, args in requests]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_random_bytes_only_raise_framing_or_request_errors(chunks):
    """Random bytes never crash the decoder: only FramingError, or RpcError from validation."""
    dec = wire.Decoder(max_frame=4096, max_array_len=1024)
    try:
        for chunk in chunks:
            dec.feed(chunk)
            for obj, size in dec:
                try:
                    wire.parse_request(obj, size, 4096)
                except RpcError:
                    pass
    except wire.FramingError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8) | st.binary(max_size=8),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
                    max_leaves=20))
def test_any_msgpack_value_parses_or_raises_an_rpc_error(obj):
    """Every decodable value is a request, or a BadRequest/TooLarge — never another exception."""
    dec = wire.Decoder()
    dec.feed(msgpack.packb(obj, use_bin_type=True))
    for value, size in dec:
        try:
            wire.parse_request(value, size)
        except RpcError as exc:
            assert isinstance(exc, (BadRequest, TooLarge))


def test_decoder_is_idle_only_between_frames():
    """idle is true when no partial frame is held, so the server may lend the decoder to another connection."""
    frame = wire.encode_request(1, "a", {"name": "host.example"})
    dec = wire.Decoder()
    assert dec.idle
    dec.feed(frame[:5])
    assert list(dec) == [] and not dec.idle
    dec.feed(frame[5:] + frame[:3])
    assert [size for _, size in dec] == [len(frame)] and not dec.idle
    dec.feed(frame[3:])
    assert len(list(dec)) == 1 and dec.idle and dec.largest == len(frame)


@pytest.mark.parametrize("step", [1000, 65536])
def test_a_frame_over_max_frame_is_walked_not_buffered(step):
    """The bytes held for a frame in progress never exceed max_frame (+ one read); the frame is still answered by msgid."""
    dec = wire.Decoder(max_frame=4096, max_array_len=1024)
    data = wire.encode_request(5, "a", {"name": "x" * 9000}) + wire.encode_request(6, "ping")
    got, most = [], 0
    for i in range(0, len(data), step):
        dec.feed(data[i : i + step])
        for obj, size in dec:
            try:
                got.append(wire.parse_request(obj, size, 4096).msgid)
            except TooLarge as exc:
                got.append(("too_large", exc.msgid))
        most = max(most, dec.buffered)
    assert got == [("too_large", 5), 6] and dec.idle
    assert most <= 4096 + step


@given(st.lists(st.integers(1, 300), min_size=1, max_size=40))
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_walked_frames_keep_the_stream_in_sync_at_any_split(cuts):
    """Over-limit frames (bytes or entries) between normal ones come out as too_large by msgid at any read split."""
    frames = [
        wire.encode_request(1, "ping"),
        wire.encode_request(2, "a", {"name": "y" * 5000}),
        wire.encode_request(3, "batch", {"calls": [["ping", {}]] * 1100}),
        wire.encode_request(4, "ping"),
    ]
    data = b"".join(frames)
    dec = wire.Decoder(max_frame=4096, max_array_len=1024)
    got, at, i = [], 0, 0
    while at < len(data):
        n = cuts[i % len(cuts)]
        i += 1
        dec.feed(data[at : at + n])
        at += n
        for obj, size in dec:
            try:
                got.append(wire.parse_request(obj, size, 4096).msgid)
            except TooLarge as exc:
                got.append(("too_large", exc.msgid))
    assert got == [1, ("too_large", 2), ("too_large", 3), 4]
