"""No input to any method ever yields ``internal`` (issue 12 item 7), checked in-process with hypothesis.

The same policy engine and method table the service runs (``Service``'s
``_build_engine`` through a ``ServiceThread``-free path: ``rpc.prepare`` on a
real ``Context``), with every lookup answered by a fake ``get`` so thousands
of argument shapes run in seconds. The real-process suite next to this file
sends a smaller sample over the socket.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastlookup import rpc
from fastlookup.config import load_config
from fastlookup.errors import RpcError
from fastlookup.model import Answer

from hostile_inputs import HOSTILE_TEXT, arg_maps

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def ctx():
    """A real method context and policy engine, as ``fastlookup serve`` builds them."""
    from fastlookup.service import Service

    config = load_config(environ={}, overrides={
        "server": {"socket": "/tmp/never-bound.sock"}, "health": {"interval_s": 0},
        "policy": {"default": {"dnsbl": ["bl.test", "zen.spamhaus.org=127.0.0.[2..11]*2"], "rhsbl": ["dbl.test"]}},
    })

    class NoUpstream:
        async def query(self, name, rdtype, deadline):  # never called: prepare and evaluate only
            raise AssertionError("no upstream in this test")

        async def close(self):
            pass

    service = Service(config, upstream=NoUpstream())
    return service.ctx


def fake_get(name: str, rdtype: str) -> Answer:
    """Every question answered at once: listed on 127.0.0.2 for A, a name for PTR, nothing else."""
    if rdtype == "A":
        return Answer("ok", ("127.0.0.2",), 300)
    if rdtype == "PTR":
        return Answer("ok", ("host.example.test",), 300)
    return Answer("nxdomain", (), 300)


def evaluate(ctx, method, args):
    """prepare + run the evaluator synchronously on fake answers; the RpcError code, or 'ok'."""
    try:
        prepared = rpc.prepare(ctx, method, args)
        if type(prepared) is not rpc.Ready:
            run_sync(prepared)
    except RpcError as exc:
        assert exc.code != "internal", (method, args, exc)
        return exc.code
    return "ok"


def run_sync(evaluate_fn):
    """Drive an evaluator the way ``lookup.try_sync`` does, with every answer known."""
    from fastlookup.lookup import MISSING

    result = evaluate_fn(lambda name, rdtype: fake_get(name, rdtype))
    assert result is not MISSING
    return result


@pytest.mark.parametrize("method", sorted(rpc.METHODS))
@given(args=arg_maps())
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_argument_map_yields_internal(ctx, method, args):
    """Any argument map (hostile strings, wrong types, scoped IPv6, patterns, weights) to any method is never internal."""
    evaluate(ctx, method, args)


@pytest.mark.parametrize("text", HOSTILE_TEXT)
@pytest.mark.parametrize("method, key", [("ptr", "ip"), ("fcrdns", "ip"), ("dnsbl", "ip"), ("check", "ip"), ("a", "name"),
                                         ("rhsbl", "domain"), ("check", "helo"), ("check", "sender")])
def test_named_hostile_values_are_refused_not_internal(ctx, method, key, text):
    """The reproduced inputs (scoped IPv6, 1 MB padding, control bytes) are invalid_argument or answered, never internal."""
    args = {"ip": "192.0.2.1"} if method == "check" else {}
    args[key] = text
    assert evaluate(ctx, method, args) in ("ok", "invalid_argument", "bad_request")


@pytest.mark.parametrize("spec", ["bl.test*x", "*", "bl.test*", "bl.test=127.0.0.[0..20000000]", "bl.test!==127.0.0.2",
                                  "bl.test&999.0.0.1", "bl.test" + "=" * 5000])
def test_bad_zone_specs_in_a_batch_fail_only_their_call(ctx, spec):
    """A bad zone spec is invalid_argument for its own call; the rest of the batch is answered."""
    args = {"calls": [["dnsbl", {"ip": "192.0.2.1", "zones": [spec]}], ["ping", {}], ["dnsbl", {"ip": "192.0.2.1"}]]}
    result = run_sync(rpc.prepare(ctx, "batch", args))
    (err0, _), (err1, res1), (err2, res2) = result["results"]
    assert err0["code"] == "invalid_argument"
    assert err1 is None and res1 is not None and err2 is None and res2 is not None
