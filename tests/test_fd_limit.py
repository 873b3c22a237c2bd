"""Out of file descriptors: misses end status error, counted as fd_exhausted and logged once (issue 12 item 12)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import asyncio, logging, os, resource, sys, time
    from fastlookup.logs import setup
    from fastlookup.stats import Stats
    from fastlookup.upstream.pool import UpstreamPool
    from fastlookup.upstream.servers import Server

    setup("kv", "info")
    port = int(sys.argv[1])

    async def main():
        stats = Stats()
        pool = UpstreamPool([Server.parse(f"127.0.0.1:{port}")], timeout_s=0.5, max_in_flight=64, stats=stats)
        hog = []
        try:  # use up every descriptor but none: the next socket() fails with EMFILE
            while True:
                hog.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        answers = await asyncio.gather(*(pool.query(f"n{i}.example.test", "A", time.monotonic() + 2) for i in range(20)))
        for fd in hog:
            os.close(fd)
        print("STATUSES", sorted({a.status for a in answers}), flush=True)
        print("FD_EXHAUSTED", stats.total("fd_exhausted"), flush=True)
        await pool.close()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    asyncio.run(main())
''')


def test_fd_exhaustion_is_counted_and_logged_once(dns_server):
    """20 misses past the fd limit: all status error, fd_exhausted counts every failed socket (40), one log line."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(dns_server.port)], capture_output=True, text=True, timeout=60, env=env)
    assert "STATUSES ['error']" in out.stdout, out.stdout + out.stderr
    assert "FD_EXHAUSTED 40" in out.stdout, out.stdout + out.stderr  # each of the 2 attempts per query failed to open a socket
    lines = [line for line in out.stderr.splitlines() if "out of file descriptors" in line]
    assert len(lines) == 1, out.stderr
