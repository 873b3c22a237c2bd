"""Fuzz each parser that reads bytes from outside with seeded, mutated inputs (issue 12).

    python -m bench.fuzz --parser frame --count 1000000
    python -m bench.fuzz --parser all --count 1000000 --seed 7

Parsers: ``frame`` (the msgpack-rpc frame decoder + request validation, fed
in random splits), ``postfix`` (policy delegation attribute blocks),
``socketmap`` (netstrings), ``exim`` (the ``${readsocket}`` line) and ``dns``
(the upstream reply decoder: the fast codec, with dnspython where it is
unsure, and for one input in 200 both, compared). Inputs are valid seeds
mutated by bit flips, byte insertions and deletions, truncation, splicing
and repetition, plus plain random bytes.

For the fronts, each request the parser cuts out is answered by the
front's own ``respond`` with the real method table behind it (a real
``Context`` and policy engine; every lookup answered at once by a fake), so
argument validation is fuzzed too. Checked per input: only the documented
outcomes (``FramingError``/``Violation``/RPC errors other than ``internal``,
or an answer), the frame decoder's buffer within ``max_frame`` + one read,
and no input slower than ``--slow-ms`` (a stall: the slowest input is
timed again alone, so a busy machine's hiccup is not one). Not part of the test suite: a
benchmark-style run whose command and totals go into the issue's closing
note. Exit 0 when every parser ran clean, 1 otherwise.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, Callable

__all__ = ["main", "PARSERS", "mutate"]


# --- mutation -------------------------------------------------------------------------------


def mutate(rnd: random.Random, seeds: list[bytes]) -> bytes:
    """One input: a seed with 1-4 random edits, a splice of two seeds, or random bytes."""
    roll = rnd.random()
    if roll < 0.05:
        return rnd.randbytes(rnd.randint(0, 64))
    data = bytearray(rnd.choice(seeds))
    if roll < 0.12:
        other = rnd.choice(seeds)
        cut = rnd.randint(0, len(data))
        data = data[:cut] + other[rnd.randint(0, len(other)) :]
    for _ in range(rnd.randint(1, 4)):
        op = rnd.random()
        if not data:
            data += rnd.randbytes(rnd.randint(1, 8))
            continue
        i = rnd.randrange(len(data))
        if op < 0.35:
            data[i] ^= 1 << rnd.randrange(8)
        elif op < 0.5:
            data[i] = rnd.choice((0, 0xFF, 0x7F, 0x80, 0xC0, 0xC1, 0x0A, 0x3A, 0x2C, 0x20, 0x25, rnd.randrange(256)))
        elif op < 0.65:
            data[i:i] = rnd.randbytes(rnd.randint(1, 6))
        elif op < 0.78:
            del data[i : i + rnd.randint(1, 6)]
        elif op < 0.88:
            del data[i:]
        else:
            j = rnd.randrange(len(data))
            piece = data[min(i, j) : max(i, j) + 1]
            data[i:i] = piece * rnd.randint(1, 4)
    return bytes(data)


# --- the method table behind the fronts -------------------------------------------------------


class FakeService:
    """The real ``rpc.prepare`` on a real Context, every lookup answered at once by a fake."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        from fastlookup.config import load_config
        from fastlookup.service import Service

        config = load_config(environ={}, overrides={
            "server": {"socket": "/tmp/fuzz-never-bound.sock"}, "health": {"interval_s": 0},
            "policy": {"default": {"allow": [], "dnsbl": ["bl.test", "zen.spamhaus.org=127.0.0.[2..11]*2"], "rhsbl": ["dbl.test"]}},
        })

        class NoUpstream:
            async def query(self, name, rdtype, deadline):
                raise AssertionError("not used")

            async def close(self):
                pass

        self.ctx = Service(config, upstream=NoUpstream()).ctx
        self.config = config
        self.stats = None
        self.server = SimpleNamespace(in_flight=0, max_in_flight=10**9)
        self.internal = 0

    async def call(self, method: str, args: dict) -> Any:
        from fastlookup import rpc
        from fastlookup.errors import RpcError
        from fastlookup.model import Answer

        def get(name: str, rdtype: str) -> Answer:
            if rdtype == "A":
                return Answer("ok", ("127.0.0.2",), 300)
            if rdtype == "PTR":
                return Answer("ok", ("host.example.test",), 300)
            return Answer("nxdomain", (), 300)

        try:
            prepared = rpc.prepare(self.ctx, method, args)
            return prepared.value if type(prepared) is rpc.Ready else prepared(get)
        except RpcError as exc:
            if exc.code == "internal":
                self.internal += 1
            raise


def drive(coro: Any) -> Any:
    """Run a coroutine that never really waits (the fake service answers at once)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the coroutine waited")


def answers(conn: Any, requests: Iterable[Any], errors: tuple[str, ...] = ("InvalidArgument", "BadRequest")) -> Iterator[bytes]:
    """Each request answered by the front's own ``respond``; a request it refuses must raise one of ``errors``."""
    for request in requests:
        try:
            reply = drive(conn.respond(request))
        except Exception as exc:  # noqa: BLE001 - the front answers fallback for any failure; internal is counted
            assert type(exc).__name__ in errors, repr(exc)
            continue
        yield reply


# --- parsers ----------------------------------------------------------------------------------


def frame_parser(rnd: random.Random) -> tuple[list[bytes], Callable[[bytes], None]]:
    from fastlookup import wire
    from fastlookup.errors import RpcError

    seeds = [
        wire.encode_request(1, "ping"),
        wire.encode_request(2, "dnsbl", {"ip": "192.0.2.1", "zones": ["bl.test=127.0.0.[2..11]*2", "x.test&0.0.0.8"]}),
        wire.encode_request(3, "batch", {"calls": [["a", {"name": "example.test"}], ["ptr", {"ip": "fe80::1%eth0"}]]}),
        wire.encode_request(4, "check", {"ip": "2001:db8::1", "helo": "mx.example", "sender": "a@b.example"}),
        wire.encode_request(5, "batch", {"calls": [["ping", {}]] * 40}),
        b"\x93\x02\xa4ping\x90",
        b"\xdd\x00\x00\x04\x01" + b"\x00" * 16,
    ]
    max_frame = 4096

    def run(data: bytes) -> None:
        dec = wire.Decoder(max_frame=max_frame, max_array_len=32)
        at = 0
        try:
            while at < len(data):
                n = rnd.randint(1, 64)
                dec.feed(data[at : at + n])
                at += n
                for obj, size in dec:
                    try:
                        wire.parse_request_tuple(obj, size, max_frame)
                    except RpcError as exc:
                        assert exc.code in ("bad_request", "too_large"), exc.code
                assert dec.buffered <= max_frame + wire.READ_SLACK
        except wire.FramingError:
            pass

    return seeds, run


def postfix_parser(rnd: random.Random) -> tuple[list[bytes], Callable[[bytes], None]]:
    from fastlookup.adapters.connection import Violation
    from fastlookup.adapters.postfix_policy import PolicyConnection

    service = FakeService()
    seeds = [
        b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.99\nhelo_name=mx.example\n"
        b"sender=a@b.example\nrecipient=c@d.example\ninstance=1.2.3\n\n",
        b"request=smtpd_access_policy\nclient_address=fe80::1%eth0\npolicy_context=default\n\n",
        b"client_address=2001:db8::1\nhelo_name=[192.0.2.1]\nsender=<>\n\n",
        b"request=junk\n\n\n\n",
    ]

    def run(data: bytes) -> None:
        import collections

        conn = object.__new__(PolicyConnection)
        conn.service = service
        conn.buffer = bytearray(data)
        conn.lines = []
        conn.tagged = collections.deque(maxlen=64)
        try:
            requests = conn.parse()
        except Violation:
            return
        for reply in answers(conn, requests, ("InvalidArgument", "BadRequest", "UnknownMethod", "TooLarge")):
            assert reply.startswith(b"action=") and reply.endswith(b"\n\n") and reply.count(b"\n") == 2, reply

    return seeds, run


def socketmap_parser(rnd: random.Random) -> tuple[list[bytes], Callable[[bytes], None]]:
    from fastlookup.adapters.connection import Violation
    from fastlookup.adapters.socketmap import SocketmapConnection

    service = FakeService()
    seeds = [b"18:default 192.0.2.99,", b"17:strict 192.0.2.1,", b"21:default fe80::1%eth0,", b"9:default 1,0:,", b"3:a b,"]

    def run(data: bytes) -> None:
        conn = object.__new__(SocketmapConnection)
        conn.service = service
        conn.buffer = bytearray(data)
        try:
            requests = conn.parse()
        except Violation:
            return
        for reply in answers(conn, requests):
            head, _, rest = reply.partition(b":")
            assert head.isdigit() and rest.endswith(b",") and int(head) == len(rest) - 1, reply

    return seeds, run


def exim_parser(rnd: random.Random) -> tuple[list[bytes], Callable[[bytes], None]]:
    from fastlookup.adapters.exim import EximConnection

    service = FakeService()
    seeds = [
        b"ip=192.0.2.99 helo=mx.example sender=a@b.example recipient=c@d.example\n",
        b'ip=2001:db8::1 helo="quoted \\"helo\\"\\n" policy=default\n',
        b"ip=fe80::1%eth0\n",
        b"helo=only\n",
    ]

    def run(data: bytes) -> None:
        conn = object.__new__(EximConnection)
        conn.service = service
        conn.buffer = bytearray(data)
        conn.at_eof = False
        requests = list(conn.parse()) or list(conn.parse_eof())
        for reply in answers(conn, requests):
            assert reply.endswith(b"\n") and reply.count(b"\n") == 1, reply

    return seeds, run


def dns_parser(rnd: random.Random) -> tuple[list[bytes], Callable[[bytes], None]]:
    import dns.message
    import dns.rrset

    from fastlookup.model import Answer
    from fastlookup.upstream import codec, fastcodec

    qid = 0x1234
    cases = [("a.zone.test", "A", ["192.0.2.1", "192.0.2.2"]), ("t.zone.test", "TXT", ['"listed" "see x"']),
             ("p.zone.test", "PTR", ["host.example."]), ("m.zone.test", "MX", ["10 mx.example."])]
    seeds = []
    for name, rdtype, rdatas in cases:
        query = dns.message.make_query(name, rdtype, use_edns=0)
        query.id = qid
        resp = dns.message.make_response(query)
        resp.answer.append(dns.rrset.from_text(name + ".", 300, "IN", rdtype, *rdatas))
        resp.authority.append(dns.rrset.from_text("zone.test.", 60, "IN", "SOA", "ns.zone.test. h.zone.test. 1 2 3 4 60"))
        seeds.append(resp.to_wire())
        nx = dns.message.make_response(query)
        nx.set_rcode(3)
        nx.authority.append(dns.rrset.from_text("zone.test.", 60, "IN", "SOA", "ns.zone.test. h.zone.test. 1 2 3 4 60"))
        seeds.append(nx.to_wire())
    asked = {wire: (name, rdtype) for wire, (name, rdtype, _) in zip(seeds[::2], cases)}
    names = [(c[0], c[1]) for c in cases]
    counter = [0]

    def run(data: bytes) -> None:
        name, rdtype = asked.get(data) or rnd.choice(names)
        fast = fastcodec.parse_answer(data, name, rdtype, qid)
        assert fast is None or fast is fastcodec.UNSURE or isinstance(fast, (Answer, fastcodec.Retry)), fast
        counter[0] += 1
        if fast is fastcodec.UNSURE or counter[0] % 200 == 0:
            slow = codec.parse_answer_dnspython(data, name, rdtype, qid)
            assert slow is None or isinstance(slow, (Answer, fastcodec.Retry)), slow
            if fast is not fastcodec.UNSURE:
                same = (fast == slow) if isinstance(fast, Answer) and isinstance(slow, Answer) else fast is slow
                if isinstance(fast, Answer) and isinstance(slow, Answer):
                    same = fast.status == slow.status and sorted(fast.records) == sorted(slow.records) and fast.ttl == slow.ttl
                assert same, (data, fast, slow)

    return seeds, run


PARSERS: dict[str, Callable[[random.Random], tuple[list[bytes], Callable[[bytes], None]]]] = {
    "frame": frame_parser,
    "postfix": postfix_parser,
    "socketmap": socketmap_parser,
    "exim": exim_parser,
    "dns": dns_parser,
}


def fuzz(name: str, count: int, seed: int, slow_ms: float) -> dict:
    """Run ``count`` inputs through parser ``name``; a summary dict (failures hold the first few inputs)."""
    rnd = random.Random(seed)
    seeds, run = PARSERS[name](rnd)
    failures: list[tuple[bytes, str]] = []
    slowest, slowest_input = 0.0, b""
    started = time.perf_counter()
    for i in range(count):
        data = mutate(rnd, seeds)
        t0 = time.perf_counter()
        try:
            run(data)
        except Exception as exc:  # noqa: BLE001 - every unexpected outcome is a finding
            if len(failures) < 5:
                failures.append((data[:200], f"{type(exc).__name__}: {str(exc)[:200]}"))
            else:
                failures.append((b"", ""))
        took = time.perf_counter() - t0
        if took > slowest:
            slowest, slowest_input = took, data
        if (i + 1) % 100_000 == 0:
            print(f"  {name}: {i + 1:,} inputs, {len(failures)} failures, {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    # A stall is a property of the input, not of a busy machine: time the slowest input again, alone.
    again = []
    for _ in range(3):
        t0 = time.perf_counter()
        try:
            run(slowest_input)
        except Exception:  # noqa: BLE001 - already counted above
            pass
        again.append(time.perf_counter() - t0)
    retimed = min(again)
    return {
        "parser": name, "count": count, "seed": seed, "failures": len(failures), "examples": failures[:5],
        "slowest_ms": round(slowest * 1000, 3), "slowest_again_ms": round(retimed * 1000, 3),
        "stalls": retimed * 1000 > slow_ms, "seconds": round(elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--parser", choices=[*PARSERS, "all"], default="all")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--slow-ms", type=float, default=100.0, help="an input taking longer than this is a stall")
    args = parser.parse_args(argv)
    names = list(PARSERS) if args.parser == "all" else [args.parser]
    ok = True
    for name in names:
        result = fuzz(name, args.count, args.seed, args.slow_ms)
        print(f"{name}: {result['count']:,} inputs in {result['seconds']}s, {result['failures']} failures, "
              f"slowest {result['slowest_ms']} ms (that input again, alone: {result['slowest_again_ms']} ms)"
              f"{' STALL' if result['stalls'] else ''}")
        for data, why in result["examples"]:
            print(f"    {why}\n      input {data!r}")
        ok = ok and not result["failures"] and not result["stalls"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
