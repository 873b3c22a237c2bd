"""Fixtures that run a real fastlookup service (a pytest plugin listed in conftest).

- ``short_tmp``: a short temporary directory (unix socket paths are limited
  to 107 bytes, and pytest's ``tmp_path`` can be longer).
- ``fl_config``: a factory of test configs on a socket in ``short_tmp``:
  ``fl_config(policy={...}, server={...})``.
- ``make_service``: starts ``ServiceThread``\\ s (stopped after the test):
  ``make_service(upstream=..., loop="asyncio"|"uvloop", **tables)``; by default its upstream is
  ``routed_upstream`` (rbldnsd for the ``*.test`` lists, ``dns_server`` for
  the rest).
- ``fl_service`` / ``fl_client``: one default service and a client of it.

The default service's policy checks the rbldnsd lists: DNSBL ``bl.test``,
RHSBL ``dbl.test``, nothing in ``allow``, deadline 1 s.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fastlookup.client import Client
from fastlookup.config import Config
from fastlookup.testing.service import RoutedUpstream, ServiceThread, service_config

RBL_ROUTES = ("bl.test", "dbl.test", "listall.test", "errorcode.test")

DEFAULT_TABLES: dict[str, Any] = {
    "policy": {"default": {"dnsbl": ["bl.test"], "rhsbl": ["dbl.test"], "allow": [], "deadline_s": 1.0}},
}


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A short private directory for sockets, removed after the test."""
    path = tempfile.mkdtemp(prefix="fl-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def routed_upstream(dns_server, rbldnsd) -> Callable[[], RoutedUpstream]:
    """A factory of upstreams: the rbldnsd fixture for the ``*.test`` lists, ``dns_server`` for the rest."""
    return lambda: RoutedUpstream({zone: rbldnsd.address for zone in RBL_ROUTES}, dns_server.address)


@pytest.fixture
def fl_config(short_tmp, dns_server) -> Callable[..., Config]:
    """``fl_config(**tables)``: a Config on ``short_tmp/fl.sock`` with the default test policy."""

    def make(socket_name: str = "fl.sock", **tables: Any) -> Config:
        merged = {**DEFAULT_TABLES, **tables}
        return service_config(f"{short_tmp}/{socket_name}", [dns_server.address], **merged)

    return make


@pytest.fixture
def make_service(fl_config, routed_upstream) -> Iterator[Callable[..., ServiceThread]]:
    """``make_service(config=None, upstream=None, **tables)``: a started ServiceThread, stopped after the test."""
    started: list[ServiceThread] = []

    def make(config: Config | None = None, upstream: Any = None, loop: str = "asyncio", **tables: Any) -> ServiceThread:
        if config is None:
            config = fl_config(**tables)
        svc = ServiceThread(config, upstream=upstream if upstream is not None else routed_upstream(), loop=loop)
        svc.start()
        started.append(svc)
        return svc

    yield make
    for svc in reversed(started):
        svc.stop()


@pytest.fixture
def fl_service(make_service) -> ServiceThread:
    """A running service with the default test config."""
    return make_service()


@pytest.fixture
def fl_client(fl_service) -> Iterator[Client]:
    """A sync client of ``fl_service`` (timeout 2 s)."""
    with fl_service.client(timeout=2.0) as client:
        yield client
