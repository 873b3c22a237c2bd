"""fastlookup-rblsmtpd: the original rblsmtpd's options, RBLSMTPD semantics and SMTP dialogue, byte for byte."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastlookup.adapters.rblsmtpd import (
    ACCEPT,
    BLOCK_PERM,
    BLOCK_TEMP,
    MAX_TIMEOUT_S,
    UsageError,
    _sources,
    decide,
    dialogue,
    message_for,
    parse_args,
)

ENTRY = Path(sys.executable).with_name("fastlookup-rblsmtpd")
IP = "192.0.2.99"
HIT = {"listed": True, "hits": [{"zone": "bl.example", "codes": ["127.0.0.2"], "text": "Listed: go away"}], "unknown": []}
NOHIT = {"listed": False, "hits": [], "unknown": []}
UNKNOWN = {"listed": False, "hits": [], "unknown": [{"zone": "bl.example", "status": "timeout"}]}
NOTXT = {"listed": True, "hits": [{"zone": "bl.example", "codes": ["127.0.0.2"], "text": None}], "unknown": []}
REJECT = {"action": "reject", "smtp_code": 554, "text": "no reverse DNS", "fail_open": False}
DEFER = {"action": "defer", "smtp_code": 450, "text": "try later", "fail_open": False}
ACCEPTED = {"action": "accept", "smtp_code": None, "text": "", "fail_open": False}
FAILOPEN = {"action": "accept", "smtp_code": None, "text": "", "fail_open": True}
FAILED = None  # the lookup failed (service unreachable, error answer)


# --- command line ----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, steps, socket_path, program",
    [
        (["-r", "a.example", "qmail-smtpd"], [("r", "a.example")], None, ["qmail-smtpd"]),
        (["-bc", "-t5", "-ra.example", "x", "-r", "y"], [("b", ""), ("c", ""), ("t", "5"), ("r", "a.example")], None,
         ["x", "-r", "y"]),
        (["-a", "ok.example", "-r", "bl.example:blocked %IP%", "-p", "strict", "smtpd", "arg"],
         [("a", "ok.example"), ("r", "bl.example:blocked %IP%"), ("p", "strict")], None, ["smtpd", "arg"]),
        (["--socket=/tmp/s", "-B", "--", "-smtpd"], [("B", "")], "/tmp/s", ["-smtpd"]),
        (["--socket", "/tmp/s", "-C", "smtpd"], [("C", "")], "/tmp/s", ["smtpd"]),
    ],
)
def test_options_are_kept_in_order(argv, steps, socket_path, program):
    """Options are parsed like the original's getopt: in order, bundled or not, up to the program."""
    opts = parse_args(argv)
    assert (opts.steps, opts.socket, opts.program) == (steps, socket_path, program)


@pytest.mark.parametrize("argv", [[], ["-r", "x"], ["-x", "smtpd"], ["-t"], ["--socket"]])
def test_bad_command_lines_are_usage_errors(argv):
    """A missing program, an unknown option or a missing argument is a usage error (exit 100)."""
    with pytest.raises(UsageError):
        parse_args(argv)


def test_default_policy_is_applied_when_no_list_or_policy_is_named():
    """Without -r or -p the service's default policy is asked, last (the original's built-in list)."""
    assert _sources(parse_args(["-a", "ok.example", "smtpd"])) == [("a", "ok.example", None), ("p", "default", None)]
    assert _sources(parse_args(["-r", "bl.example:text", "smtpd"])) == [("r", "bl.example", "text")]


# --- decisions --------------------------------------------------------------------


def run_decide(argv: list[str], results: list | None, env: str | None = None, ip: str = IP):
    opts = parse_args(argv + ["smtpd"])
    return decide(opts, ip, env, results, _sources(opts))


@pytest.mark.parametrize(
    "env, decision, text, code",
    [
        ("", ACCEPT, "", None),
        ("-go away", BLOCK_PERM, "go away", 553),
        ("slow down", BLOCK_TEMP, "slow down", 451),
    ],
)
def test_rblsmtpd_environment(env, decision, text, code):
    """RBLSMTPD empty allows, '-text' blocks with 553, other text with 451; no lookup is consulted."""
    assert run_decide(["-r", "bl.example"], None, env)[:3] == (decision, text, code)


@pytest.mark.parametrize(
    "argv, results, decision, text, code",
    [
        (["-r", "bl.example"], [HIT], BLOCK_TEMP, "Listed: go away", 451),
        (["-b", "-r", "bl.example"], [HIT], BLOCK_PERM, "Listed: go away", 553),
        (["-r", "bl.example", "-b"], [HIT], BLOCK_TEMP, "Listed: go away", 451),  # -b after the lookup: too late
        (["-b", "-B", "-r", "bl.example"], [HIT], BLOCK_TEMP, "Listed: go away", 451),
        (["-r", "bl.example"], [NOHIT], 0, "", None),
        (["-a", "ok.example", "-r", "bl.example"], [HIT, HIT], ACCEPT, "", None),
        (["-r", "bl.example", "-a", "ok.example"], [HIT, HIT], BLOCK_TEMP, "Listed: go away", 451),
        (["-r", "one.example", "-r", "two.example"], [NOHIT, HIT], BLOCK_TEMP, "Listed: go away", 451),
        (["-r", "bl.example:Blocked %IP%, see https://x/"], [NOTXT], BLOCK_TEMP, f"Blocked {IP}, see https://x/", 451),
        (["-r", "bl.example"], [NOTXT], 0, "", None),  # TXT only, as the original: an A record alone passes
        # -C (default): a failed lookup is "not listed", but any later block is 451 even with -b.
        (["-b", "-r", "down.example", "-r", "bl.example"], [FAILED, HIT], BLOCK_PERM, "Listed: go away", 451),
        (["-b", "-r", "down.example", "-r", "bl.example"], [UNKNOWN, HIT], BLOCK_PERM, "Listed: go away", 451),
        (["-r", "down.example"], [FAILED], 0, "", None),
        # -c: a failed lookup blocks (451); a failed allowlist is not an allowlisting.
        (["-c", "-r", "down.example"], [FAILED], BLOCK_TEMP, "temporary RBL lookup error", 451),
        (["-a", "down.example", "-r", "bl.example"], [FAILED, HIT], ACCEPT, "", None),
        (["-c", "-b", "-a", "down.example", "-r", "bl.example"], [FAILED, HIT], BLOCK_PERM, "Listed: go away", 451),
    ],
)
def test_sources_in_order(argv, results, decision, text, code):
    """The first source that decides wins; -b/-c act on the lookups after them, as in the original."""
    assert run_decide(argv, results)[:3] == (decision, text, code)


@pytest.mark.parametrize(
    "argv, results, decision, text, code",
    [
        (["-p", "strict"], [REJECT], BLOCK_PERM, "no reverse DNS", 554),
        (["-p", "strict"], [DEFER], BLOCK_TEMP, "try later", 450),
        (["-p", "strict"], [ACCEPTED], 0, "", None),
        (["-p", "strict"], [FAILOPEN], 0, "", None),
        (["-c", "-p", "strict"], [FAILOPEN], BLOCK_TEMP, "temporary RBL lookup error", 451),
        (["-r", "down.example", "-p", "strict"], [FAILED, REJECT], BLOCK_PERM, "no reverse DNS", 451),
        ([], [REJECT], BLOCK_PERM, "no reverse DNS", 554),  # the default policy
    ],
)
def test_named_policy(argv, results, decision, text, code):
    """-p applies a fastlookup policy: its reject/defer blocks with the verdict's code and text."""
    assert run_decide(argv, results)[:3] == (decision, text, code)


@pytest.mark.parametrize(
    "value, timeout",
    [("5", 5), ("0", 0), ("12abc", 12), ("abc", 0), ("4294967296", MAX_TIMEOUT_S), ("9" * 5000, MAX_TIMEOUT_S),
     ("\u0663", 0)],  # a non-ASCII digit is no digit for scan_ulong
)
def test_timeout_option_reads_leading_digits(value, timeout):
    """-t N reads N as the original's scan_ulong does (leading digits, else 0), bounded to what alarm(2) takes."""
    assert run_decide(["-t", value], None, "x")[3] == timeout


def test_message_is_cut_and_made_printable():
    """The text is cut to 200 bytes and every byte outside 32..126 becomes '?'."""
    message = message_for(451, "a\r\nb\tcé" + "x" * 300)
    assert message.startswith(b"451 a??b?c??")
    assert len(message) == 4 + 200


def test_dialogue_transcript():
    """The blocked dialogue: 220 greeting, 250 to HELO/EHLO/MAIL/RSET/NOOP, the error to the rest, 221 to QUIT."""
    client_in, server_out = os.pipe()
    server_in, client_out = os.pipe()
    os.write(client_out, b"EHLO x\r\nmail FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nRSET\r\nNOOP\r\nHELO\r\nVRFY x\r\n"
                         b"\r\nQUITX\r\nQuit now\r\nHELO after\r\n")
    os.close(client_out)
    dialogue(b"451 go away", read_fd=server_in, write_fd=server_out)
    os.close(server_out)
    out = os.read(client_in, 65536)
    os.close(client_in)
    os.close(server_in)
    ok, err = b"250 rblsmtpd.local\r\n", b"451 go away\r\n"
    assert out == b"220 rblsmtpd.local\r\n" + ok + ok + err + err + ok + ok + ok + err + err + err + b"221 rblsmtpd.local\r\n"


# --- the program ---------------------------------------------------------------------


def run_entry(args: list[str], env: dict, stdin: bytes = b"QUIT\r\n", timeout: float = 10) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("RBLSMTPD", "TCPREMOTEIP", "TCP6REMOTEIP")}
    full.update(env)
    return subprocess.run([str(ENTRY), *args], input=stdin, env=full, capture_output=True, timeout=timeout)


@pytest.mark.parametrize(
    "rblsmtpd, stdout, log",
    [
        ("", b"EXEC\n", b""),
        ("-Go away", b"220 rblsmtpd.local\r\n553 Go away\r\n221 rblsmtpd.local\r\n", b"553 Go away"),
        ("Come back later", b"220 rblsmtpd.local\r\n451 Come back later\r\n221 rblsmtpd.local\r\n", b"451 Come back later"),
    ],
)
def test_rblsmtpd_variable_end_to_end(rblsmtpd, stdout, log):
    """With RBLSMTPD set no service is asked: empty execs, text blocks with the original's transcript and log line."""
    done = run_entry(["-r", "bl.example", "echo", "EXEC"], {"RBLSMTPD": rblsmtpd, "TCPREMOTEIP": IP},
                     stdin=b"RCPT TO:<a@b>\r\nQUIT\r\n")
    assert done.returncode == 0
    assert done.stdout == stdout
    if log:
        assert done.stderr == b"rblsmtpd: " + IP.encode() + b" pid %d: " % _pid_in(done.stderr) + log + b"\n"
    else:
        assert done.stderr == b""


def _pid_in(stderr: bytes) -> int:
    return int(stderr.split(b" pid ", 1)[1].split(b":", 1)[0])


def test_huge_timeout_is_bounded_not_an_overflow():
    """-t 4294967296 (beyond alarm(2)) blocks with the normal dialogue instead of an OverflowError traceback."""
    done = run_entry(["-t", "4294967296", "echo", "EXEC"], {"RBLSMTPD": "-no", "TCPREMOTEIP": IP},
                     stdin=b"RCPT TO:<a@b>\r\nQUIT\r\n")
    assert (done.returncode, done.stdout) == (0, b"220 rblsmtpd.local\r\n553 no\r\n221 rblsmtpd.local\r\n")
    assert b"Traceback" not in done.stderr


@pytest.mark.parametrize(
    "remote, logged",
    [
        ("192.0.2.1\nrblsmtpd: 10.0.0.1 pid 1: 250 ok", b"192.0.2.1\\x0arblsmtpd:\\x2010.0.0.1\\x20pid\\x201:\\x20250\\x20ok"),
        ("192.0.2.1\x1b[2J", b"192.0.2.1\\x1b[2J"),
        ("a\\b", b"a\\x5cb"),
        ("2001:db8::1", b"2001:db8::1"),
    ],
)
def test_remote_ip_is_escaped_in_the_log_line(remote, logged):
    """A $TCPREMOTEIP holding newlines, ESC or spaces is \\xNN-escaped in the log line: no forged or garbled lines."""
    done = run_entry(["-t", "0", "true"], {"RBLSMTPD": "-no", "TCPREMOTEIP": remote}, stdin=b"")
    assert done.stderr == b"rblsmtpd: " + logged + b" pid %d: 553 no\n" % _pid_in(done.stderr)


def test_launcher_runs_without_site_or_the_package():
    """The installed launcher runs Python with -I -S and imports neither site, os, socket nor the package."""
    done = subprocess.run([str(ENTRY), "--socket", "/nonexistent", "true"],
                          env={"TCPREMOTEIP": IP, "PATH": os.environ["PATH"]}, capture_output=True, timeout=10)
    assert done.returncode == 0 and b"cannot ask fastlookup" in done.stderr  # a lookup was tried, and failed open
    traced = subprocess.run(["sh", "-c", 'exec "$0" -v -IS "$1" --socket /nonexistent true',
                             str(ENTRY.parent / "python3"), str(ENTRY)],
                            env={"TCPREMOTEIP": IP, "PATH": os.environ["PATH"]}, capture_output=True, timeout=10)
    imported = {line.split("'")[1] for line in traced.stderr.decode().splitlines() if line.startswith("import '")}
    assert "rblsmtpd" in imported and "minipack" in imported
    assert not imported & {"site", "os", "socket", "fastlookup", "msgpack", "signal", "enum"}, imported


def test_timeout_zero_answers_once_without_greeting():
    """-t 0 writes the error once and exits, with no greeting (as the original)."""
    done = run_entry(["-t", "0", "echo", "EXEC"], {"RBLSMTPD": "-no", "TCPREMOTEIP": IP}, stdin=b"")
    assert (done.returncode, done.stdout) == (0, b"553 no\r\n")


def test_dialogue_is_dropped_after_the_timeout():
    """A client that says nothing is dropped after -t seconds, exit status 0."""
    proc = subprocess.Popen([str(ENTRY), "-t", "1", "true"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "RBLSMTPD": "x", "TCPREMOTEIP": IP})
    try:
        start = time.monotonic()
        assert proc.wait(timeout=5) == 0
        assert 0.9 < time.monotonic() - start < 4
        assert proc.stdout.read() == b"220 rblsmtpd.local\r\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()


def test_unreachable_service_fails_open(tmp_path):
    """With no service behind the socket the client is let through (exec), with a warning."""
    done = run_entry(["--socket", str(tmp_path / "none.sock"), "-r", "bl.example", "echo", "EXEC"], {"TCPREMOTEIP": IP})
    assert (done.returncode, done.stdout) == (0, b"EXEC\n")
    assert b"warning" in done.stderr


def test_unreachable_service_fails_closed_with_c(tmp_path):
    """With -c an unreachable service blocks with 451 temporary RBL lookup error."""
    done = run_entry(["--socket", str(tmp_path / "none.sock"), "-c", "-r", "bl.example", "echo", "EXEC"],
                     {"TCPREMOTEIP": IP})
    assert done.stdout == b"220 rblsmtpd.local\r\n221 rblsmtpd.local\r\n"
    assert done.stderr.endswith(b": 451 temporary RBL lookup error\n")


def test_usage_error_exits_100():
    """A bad command line prints the usage and exits 100, as the original."""
    done = run_entry(["-x"], {})
    assert done.returncode == 100 and b"usage:" in done.stderr


def test_exec_failure_exits_111():
    """A program that cannot be run is a fatal error with exit code 111, as the original."""
    done = run_entry(["/nonexistent/smtpd"], {"RBLSMTPD": ""})
    assert done.returncode == 111 and b"unable to run /nonexistent/smtpd" in done.stderr


def test_start_up_imports_stay_small():
    """Blocking by RBLSMTPD imports neither the client nor msgpack, asyncio or dnspython."""
    code = (
        "import sys, os; os.environ['RBLSMTPD']='x'; os.environ['TCPREMOTEIP']='192.0.2.1';"
        "from fastlookup.adapters import rblsmtpd;"
        "opts = rblsmtpd.parse_args(['-r', 'z', 'smtpd']);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('msgpack', 'asyncio', 'dns', 'fastlookup')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['fastlookup', 'fastlookup.adapters', 'fastlookup.adapters.rblsmtpd']"


# --- real tcpserver: fastlookup-rblsmtpd against the original, on the same rbldnsd zones -------------
#
# The original resolves through djbdns's client library, which reads $DNSCACHEIP
# (addresses only: port 53 is fixed). So the test rbldnsd also listens on port 53
# of a spare loopback address (127.53.0.x); ours asks the fastlookup service,
# whose upstream is the same rbldnsd on its usual 127.0.0.1 port. Clients connect
# from 127.0.0.2 (listed by every RFC 5782 list) or 127.0.0.1 (never listed).

SMTPD = ["sh", "-c", "printf '220 real smtpd\\r\\n'; cat >/dev/null"]  # what tcpserver would run next
COMMANDS = b"HELO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nNOOP\r\nQUIT\r\n"
LOG_LINE = __import__("re").compile(r"^rblsmtpd: (\S+) pid \d+: (.*)$")


@pytest.fixture(scope="module")
def rbl53():
    """rbldnsd serving the test zones on 127.0.0.1:PORT and on 127.53.0.x:53 (for DNSCACHEIP)."""
    from fastlookup.testing import Rbldnsd
    from fastlookup.testing.ports import port_is_free

    from fixtures_servers import RBL_ZONES, skip_or_fail, start_or_skip

    address = next((f"127.53.0.{i}" for i in range(1, 10) if port_is_free(53, "udp", f"127.53.0.{i}")), None)
    if address is None or os.geteuid() != 0:
        why = "no spare 127.53.0.x:53 (or not root) for the original rblsmtpd's DNSCACHEIP"
        skip_or_fail(why)
    zones = {**RBL_ZONES, "aonly.test": [("ip4set", "127.0.0.2 :127.0.0.2:\n!127.0.0.1\n")]}  # A, no TXT
    server = Rbldnsd(zones, extra_args=["-b", f"{address}/53"])
    start_or_skip(server.start, "rbldnsd")
    server.dnscache_ip = address
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rbl_service(rbl53):
    """A fastlookup service whose upstream is the same rbldnsd."""
    from fastlookup.testing.service import ServiceThread, service_config

    def config(directory: str):
        return service_config(f"{directory}/fastlookup.sock", upstream=[rbl53.address],
                              policy={"default": {"allow": []}, "listed": {"allow": [], "dnsbl": ["bl.test"]}})

    with ServiceThread(config) as thread:
        os.chmod(os.path.dirname(thread.socket), 0o755)
        yield thread.socket


class TcpServer:
    """tcpserver on a free 127.0.0.1 port running ``argv`` per connection; stderr kept."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        from fastlookup.testing import free_port

        self.argv = argv
        self.env = env
        self.port = free_port("tcp")
        self.proc = None
        self.output = None

    def __enter__(self) -> "TcpServer":
        from fastlookup.testing._proc import OutputReader, find_binary, popen, wait_until
        from fastlookup.testing.ports import port_is_free

        binary = find_binary("tcpserver")
        # -q: no status lines; -R -H -l 0: no ident or DNS lookups of the peer or ourselves.
        self.proc = popen([binary, "-q", "-R", "-H", "-l", "0", "127.0.0.1", str(self.port), *self.argv], env=self.env)
        try:
            self.output = OutputReader(self.proc, watch=("rblsmtpd: ",))
            wait_until(lambda: not port_is_free(self.port, "tcp"), timeout_s=5, what="tcpserver", proc=self.proc,
                       output=self.output.tail)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        from fastlookup.testing._proc import stop_process

        stop_process(self.proc)  # by pid: only the tcpserver we started
        if self.output is not None:
            self.output.join()
        self.proc.stdout.close()

    def session(self, source: str, data: bytes) -> tuple[bytes, list[str]]:
        """Connect from ``source``, send ``data``, half-close, read to EOF; the transcript and new log lines."""
        seen = self.output.count("rblsmtpd: ")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.bind((source, 0))
            sock.connect(("127.0.0.1", self.port))
            if data:
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := sock.recv(65536):
                out += chunk
        self.output.wait_for_count("rblsmtpd: ", seen + (1 if out.startswith((b"220 rblsmtpd", b"4", b"5")) else 0), 5)
        lines = [line for line in self.output.tail(200).splitlines() if line.startswith("rblsmtpd: ")]
        return out, [LOG_LINE.sub(r"rblsmtpd: \1 pid PID: \2", line) for line in lines[seen:]]


BLOCKED = b"220 rblsmtpd.local\r\n250 rblsmtpd.local\r\n250 rblsmtpd.local\r\n%s\r\n%s\r\n250 rblsmtpd.local\r\n221 rblsmtpd.local\r\n"


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, rblsmtpd, source, transcript, log",
    [
        (["-r", "bl.test"], None, "127.0.0.2", BLOCKED % ((b"451 RFC 5782 test entry",) * 2),
         ["rblsmtpd: 127.0.0.2 pid PID: 451 RFC 5782 test entry"]),
        (["-r", "bl.test"], None, "127.0.0.1", b"220 real smtpd\r\n", []),
        (["-b", "-r", "bl.test"], None, "127.0.0.2", BLOCKED % ((b"553 RFC 5782 test entry",) * 2),
         ["rblsmtpd: 127.0.0.2 pid PID: 553 RFC 5782 test entry"]),
        (["-r", "bl.test", "-b"], None, "127.0.0.2", BLOCKED % ((b"451 RFC 5782 test entry",) * 2),
         ["rblsmtpd: 127.0.0.2 pid PID: 451 RFC 5782 test entry"]),
        (["-a", "listall.test", "-r", "bl.test"], None, "127.0.0.2", b"220 real smtpd\r\n", []),
        (["-r", "bl.test", "-a", "listall.test"], None, "127.0.0.2", BLOCKED % ((b"451 RFC 5782 test entry",) * 2),
         ["rblsmtpd: 127.0.0.2 pid PID: 451 RFC 5782 test entry"]),
        (["-r", "dbl.test", "-r", "listall.test"], None, "127.0.0.1", BLOCKED % ((b"451 everything",) * 2),
         ["rblsmtpd: 127.0.0.1 pid PID: 451 everything"]),
        (["-t", "0", "-r", "bl.test"], None, "127.0.0.2", b"451 RFC 5782 test entry\r\n",
         ["rblsmtpd: 127.0.0.2 pid PID: 451 RFC 5782 test entry"]),
        (["-r", "bl.test"], "", "127.0.0.2", b"220 real smtpd\r\n", []),
        (["-r", "bl.test"], "-Go away", "127.0.0.1", BLOCKED % ((b"553 Go away",) * 2),
         ["rblsmtpd: 127.0.0.1 pid PID: 553 Go away"]),
        (["-r", "bl.test"], "Slow down\ttoday", "127.0.0.1", BLOCKED % ((b"451 Slow down?today",) * 2),
         ["rblsmtpd: 127.0.0.1 pid PID: 451 Slow down?today"]),
        # -r is TXT-only: a listing with an A record and no TXT passes.
        (["-r", "aonly.test"], None, "127.0.0.2", b"220 real smtpd\r\n", []),
        (["-b", "-r", "aonly.test", "-r", "bl.test"], None, "127.0.0.2", BLOCKED % ((b"553 RFC 5782 test entry",) * 2),
         ["rblsmtpd: 127.0.0.2 pid PID: 553 RFC 5782 test entry"]),
        (["-c", "-t", "4294967296", "-r", "bl.test"], None, "127.0.0.2", BLOCKED % ((b"451 RFC 5782 test entry",) * 2),
         ["rblsmtpd: 127.0.0.2 pid PID: 451 RFC 5782 test entry"]),
    ],
)
def test_same_transcript_as_the_original_under_tcpserver(rbl53, rbl_service, args, rblsmtpd, source, transcript, log):
    """Under tcpserver, fastlookup-rblsmtpd's SMTP transcript and log line match the original's byte for byte."""
    compare_with_original(rbl53.dnscache_ip, rbl_service, args, rblsmtpd, source, transcript, log)


def compare_with_original(dnscache_ip, socket_path, args, rblsmtpd, source, transcript, log):
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONDONTWRITEBYTECODE")}
    if rblsmtpd is not None:
        base["RBLSMTPD"] = rblsmtpd
    data = b"" if "0" in args else COMMANDS
    original = TcpServer([shutil.which("rblsmtpd") or "rblsmtpd", *args, *SMTPD], {**base, "DNSCACHEIP": dnscache_ip})
    ours = TcpServer([str(ENTRY), *args, *SMTPD], {**base, "FASTLOOKUP_SOCKET": socket_path})
    with original, ours:
        theirs_out, theirs_log = original.session(source, data)
        ours_out, ours_log = ours.session(source, data)
    assert theirs_out == transcript and theirs_log == log  # the original does what we think it does
    assert ours_out == theirs_out
    assert ours_log == theirs_log


LOOKUP_ERROR_CASES = [
    (["-r", "bl.test"], "127.0.0.2", b"220 real smtpd\r\n", b""),  # -C (default): a failed lookup is ignored
    (["-c", "-r", "bl.test"], "127.0.0.2", BLOCKED % ((b"451 temporary RBL lookup error",) * 2),
     b"rblsmtpd: 127.0.0.2 pid PID: 451 temporary RBL lookup error\n"),
    (["-b", "-c", "-r", "bl.test"], "127.0.0.1", BLOCKED % ((b"451 temporary RBL lookup error",) * 2),
     b"rblsmtpd: 127.0.0.1 pid PID: 451 temporary RBL lookup error\n"),
    (["-c", "-a", "bl.test", "-r", "bl.test"], "127.0.0.2", BLOCKED % ((b"451 temporary RBL lookup error",) * 2),
     b"rblsmtpd: 127.0.0.2 pid PID: 451 temporary RBL lookup error\n"),
]


@pytest.mark.slow
def test_lookup_errors_like_the_original(tmp_path):
    """With every lookup failing (the original's DNS cache SERVFAILs, our service is down), -c/-C act as the original's.

    The original's DNS client gives up on a SERVFAILing cache only after ~11 s, so the
    original's runs go in parallel, as tcpserver would run them.
    """
    import re

    from fastlookup.testing import DnsServer, Faults
    from fastlookup.testing.ports import port_is_free

    address = next((f"127.53.1.{i}" for i in range(1, 20) if port_is_free(53, "udp", f"127.53.1.{i}")), None)
    if address is None or os.geteuid() != 0:
        pytest.fail("no spare 127.53.1.x:53 (or not root) for the original's failing DNS cache")
    pid = re.compile(rb" pid \d+: ")
    smtpd = ["sh", "-c", "printf '220 real smtpd\\r\\n'; cat >/dev/null"]
    base = {"PATH": os.environ["PATH"]}
    with DnsServer({}, hosts=(address,), port=53, faults=Faults(servfail=True)):
        originals = [subprocess.Popen([shutil.which("rblsmtpd") or "rblsmtpd", *args, *smtpd], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env={**base, "DNSCACHEIP": address, "TCPREMOTEIP": source})
                     for args, source, _, _ in LOOKUP_ERROR_CASES]
        try:
            theirs = [proc.communicate(COMMANDS, timeout=60) for proc in originals]
        finally:
            for proc in originals:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    for (args, source, transcript, log), (their_out, their_err) in zip(LOOKUP_ERROR_CASES, theirs):
        ours = run_entry(["--socket", str(tmp_path / "down.sock"), *args, *smtpd], {"TCPREMOTEIP": source}, stdin=COMMANDS)
        their_log = pid.sub(b" pid PID: ", their_err)
        our_log = b"".join(line for line in pid.sub(b" pid PID: ", ours.stderr).splitlines(True)
                           if line.startswith(b"rblsmtpd: "))
        assert (their_out, their_log) == (transcript, log), args  # the original does what we think it does
        assert (ours.stdout, our_log) == (their_out, their_log), args


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, source, transcript",
    [
        # A list answering its error code (127.255.255.254, "query via public resolver") is not a listing:
        # the original would block with the error TXT, fastlookup lets the client through.
        (["-r", "errorcode.test"], "127.0.0.2", b"220 real smtpd\r\n"),
        # -p applies a fastlookup policy: its verdict's code and text.
        (["-p", "listed"], "127.0.0.2",
         BLOCKED % ((b"554 Service unavailable; Client host [127.0.0.2] blocked using bl.test; RFC 5782 test entry",) * 2)),
        (["-p", "listed"], "127.0.0.1", b"220 real smtpd\r\n"),
        # -r zone:text, for lists with A records only.
        (["-r", "bl.test:Blocked %IP%, see https://bl.test/"], "127.0.0.2",
         BLOCKED % ((b"451 Blocked 127.0.0.2, see https://bl.test/",) * 2)),
    ],
)
def test_additions_under_tcpserver(rbl_service, args, source, transcript):
    """fastlookup's additions under real tcpserver: list error codes never block, -p policies, -r zone:text."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONDONTWRITEBYTECODE")}
    with TcpServer([str(ENTRY), *args, *SMTPD], {**env, "FASTLOOKUP_SOCKET": rbl_service}) as ours:
        out, _ = ours.session(source, COMMANDS)
    assert out == transcript


# --- the front's own msgpack ---------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fastlookup.adapters import minipack  # noqa: E402

_REQUEST_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**32 - 1) | st.text(max_size=300),
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=20), inner, max_size=20),
    max_leaves=30,
)
_RESPONSE_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=300)
    | st.binary(max_size=300),
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=20), inner, max_size=20),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_REQUEST_VALUES)
def test_minipack_packs_what_msgpack_reads(value):
    """Every request value the front packs is read back identically by the msgpack package."""
    import msgpack

    assert msgpack.unpackb(minipack.pack(value), raw=False, strict_map_key=False) == value


@settings(max_examples=300, deadline=None)
@given(_RESPONSE_VALUES)
def test_minipack_reads_what_msgpack_packs(value):
    """Every response value the service's msgpack writes is read identically; a cut-short buffer asks for more."""
    import msgpack

    data = msgpack.packb(value, use_bin_type=True)
    assert minipack.unpack(data, 0) == (value, len(data))
    with pytest.raises(IndexError):
        minipack.unpack(data[: len(data) // 2], 0) if len(data) > 1 else minipack.unpack(b"", 0)


@pytest.mark.parametrize(
    "data, error",
    [(b"\xc1", ValueError), (b"\xdd\xff\xff\xff\xff", IndexError), (b"\x91" * 40 + b"\xc0", ValueError)],
)
def test_minipack_refuses_garbage_without_allocating(data, error):
    """An unknown type, an array length beyond the data or nesting beyond 32 levels is an error, not a hang."""
    with pytest.raises(error):
        minipack.unpack(data, 0)


@pytest.mark.slow
def test_qmail_front_benchmark_runs(tmp_path):
    """bench.qmail_front measures every row side by side and writes ratios against the bare interpreter (no timing asserted)."""
    out = tmp_path / "front.json"
    done = subprocess.run([sys.executable, "-m", "bench.qmail_front", "--runs", "20", "--json", str(out)],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr  # 1: a goal missed on a busy machine; not this test's business
    rows = __import__("json").loads(out.read_text())["rows"]
    kinds = {row["kind"] for row in rows}
    assert {"bare", "no lookup", "lookup"} <= kinds
    assert all(row["runs"] == 20 and row["median_ms"] > 0 for row in rows)
    assert next(row for row in rows if row["kind"] == "bare")["ratio"] == 1.0


def test_a_service_dripping_bytes_cannot_hold_the_front(tmp_path, monkeypatch):
    """A service that answers a byte at a time, never finishing, is given up on at the call's deadline (fail open)."""
    import threading

    from fastlookup.adapters import rblsmtpd

    path = str(tmp_path / "drip.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    stop = threading.Event()

    def drip() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"\x94\x01\x01\xc0\xdb\x00\x0f\xff\xff")  # [1, 1, nil, a ~1 MiB string...
            while not stop.wait(0.05):
                try:
                    conn.sendall(b"a")  # ... that arrives a byte at a time
                except OSError:
                    return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    monkeypatch.setattr(rblsmtpd, "CLIENT_TIMEOUT_S", 0.5)
    try:
        start = time.monotonic()
        results = rblsmtpd.lookup(IP, [("r", "bl.example", None)], path)
        assert results == [None] and time.monotonic() - start < 5
    finally:
        stop.set()
        server.close()
        thread.join(5)
