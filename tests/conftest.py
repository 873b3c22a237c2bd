"""Shared pytest setup: fixtures live in plugin modules, listed in ``pytest_plugins``.

``tests/`` is not a package; pytest puts this directory on ``sys.path`` before
it imports this file, so plugin modules import by their bare name. To add
fixtures, write ``tests/fixtures_<topic>.py`` and append it below.

- ``fixtures_servers``: ``dns_server``, ``rbldnsd``, ``redis_server`` (real
  servers on loopback, from ``fastlookup.testing``).
- ``fixtures_service``: ``fl_service``, ``fl_client``, ``make_service``,
  ``fl_config`` (a real fastlookup service in a thread, on a private socket).
"""

pytest_plugins = ["fixtures_servers", "fixtures_service"]

# hypothesis's pytest plugin imports hypothesis lazily, in the terminal summary, when no
# test module did; by then a run that ends with many finalizable objects can hit CPython
# 3.11's "AST constructor recursion depth mismatch" (a GC finaliser running during the
# assertion rewriter's compile) and crash pytest after every test passed. Importing it
# here, at start-up, compiles it before any test has run.
import hypothesis  # noqa: E402,F401
