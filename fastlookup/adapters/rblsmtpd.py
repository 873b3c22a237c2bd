"""``fastlookup-rblsmtpd``: a drop-in for ucspi-tcp's ``rblsmtpd`` that asks fastlookup.

Run by ``tcpserver`` in front of ``qmail-smtpd``, once per connection::

    tcpserver -x rules.cdb 0 smtp fastlookup-rblsmtpd -r zen.spamhaus.org qmail-smtpd

It behaves as D. J. Bernstein's rblsmtpd (ucspi-tcp 0.88) does:

* ``$RBLSMTPD`` set and empty: accept; set to ``-text``: block with ``553 text``;
  set to other text: block with ``451 text``; unset: look the client up.
* Options act in order, as the original's getopt loop does: ``-b``/``-B``
  (553/451 for listed clients), ``-c``/``-C`` (fail closed/open), ``-t N``
  (drop the blocked dialogue after N seconds, 0: answer once and exit),
  ``-r zone`` (a blocklist: the first that lists the client decides, its TXT
  is the text), ``-a zone`` (an allowlist: a listed client is accepted). A
  source after a decision is not consulted; a failed lookup makes any block
  ``451`` and, with ``-c``, blocks with "temporary RBL lookup error".
* When blocking: one line on stderr ``rblsmtpd: IP pid PID: 451 text``, then
  the greeting ``220 rblsmtpd.local``, ``250 rblsmtpd.local`` to HELO, EHLO,
  MAIL, RSET and NOOP, the error to anything else (RCPT, DATA...), ``221
  rblsmtpd.local`` to QUIT; the text is cut to 200 characters and any byte
  outside 32..126 becomes ``?``. Otherwise it execs the rest of its command line.

Additions:

* ``-r zone:text`` (the widely used patch): a list that publishes A records
  only; ``text`` is the error text (``%IP%`` in it becomes the client's address).
  Plain ``-r zone`` is the original's TXT-only mode: a listing with an A record
  and no TXT passes.
* ``-p NAME``: apply the fastlookup policy NAME (``check``) at that point:
  reject/defer verdicts block with the verdict's code and text. With neither
  ``-r`` nor ``-p``, the ``default`` policy is applied last — where the
  original used its built-in list (``rbl.maps.vix.com``, long gone).
* ``--socket PATH`` (else ``$FASTLOOKUP_SOCKET``, else the default path) and
  ``$TCP6REMOTEIP`` when ``$TCPREMOTEIP`` is not set.
* ``-t N`` beyond what ``alarm(2)`` takes (``-t 4294967296``) is cut to
  ``MAX_TIMEOUT_S`` instead of failing; a ``$TCPREMOTEIP`` holding control
  bytes (a newline, ESC) is written ``\\xNN``-escaped in the log line, so it
  cannot forge or garble log lines.

All lookups are asked in one batch call; if the service cannot be reached
every source counts as a failed lookup (fail open unless ``-c``).

Start-up matters: tcpserver starts this once per SMTP connection, so the
whole process should cost about what a bare ``python -I -S`` does. The
installed ``fastlookup-rblsmtpd`` is a small launcher (``fastlookup-rblsmtpd`` beside this file) that runs
``python -IS`` (no site-packages scan, no entry-point wrapper) and imports this
module as a top-level module from its own directory, so no ``fastlookup``
package ``__init__`` runs either. It is stdlib-only: the built-in ``posix`` and ``sys`` (not ``os``,
which a ``-S`` start has not loaded), and for a lookup ``_socket`` and the few lines of msgpack in ``minipack`` instead of the
``msgpack`` package and the client. ``bench/qmail_front.py`` measures it
against the bare interpreter.
"""


import posix  # not "os": with -S nothing has imported it yet, and it costs 15% of the interpreter's start
import sys

__all__ = ["main", "parse_args", "Options", "decide", "message_for", "dialogue", "USAGE"]

PROG = "fastlookup-rblsmtpd"
USAGE = (
    f"{PROG}: usage: {PROG} [ -b ] [ -B ] [ -c ] [ -C ] [ -t timeout ] [ -r base[:text] ] [ -a base ] "
    "[ -p policy ] [ --socket path ] smtpd [ arg ... ]"
)
LOG_PREFIX = "rblsmtpd: "  # the original's stderr line, so existing log parsers keep working
CLIENT_TIMEOUT_S = 3.0  # above a policy's deadline (default 1.5 s): the service answers first
MAX_LINE = 1 << 20  # the original's line buffer has no bound; ours stops at 1 MiB
#: -t larger than this (alarm(2) takes an unsigned int) is cut to it: ~68 years.
MAX_TIMEOUT_S = (1 << 31) - 1
MAX_IP = 64  # a longer $TCPREMOTEIP is no address: not sent to the service
MAX_RESPONSE = 1 << 20
DEFAULT_SOCKET = "/run/fastlookup/fastlookup.sock"  # as fastlookup.config (not imported: start-up cost)

ACCEPT, BLOCK_TEMP, BLOCK_PERM = 1, 2, 3  # the original's decisions (0: undecided)


class UsageError(Exception):
    pass


class Options:
    """The parsed command line: steps in order, the socket, the program to exec."""

    __slots__ = ("steps", "socket", "program")

    def __init__(self) -> None:
        self.steps: list[tuple[str, str]] = []  # ("b"|"B"|"c"|"C"|"t"|"r"|"a"|"p", value)
        self.socket: str | None = None
        self.program: list[str] = []


def parse_args(argv: list[str]) -> Options:
    """Parse like the original's getopt ("bBcCt:r:a:", plus p: and --socket); order kept."""
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg.startswith("--socket"):
            if arg.startswith("--socket="):
                opts.socket = arg[9:]
            elif arg == "--socket" and i + 1 < len(argv):
                i += 1
                opts.socket = argv[i]
            else:
                raise UsageError(f"bad option {arg}")
            i += 1
            continue
        if not arg.startswith("-") or arg == "-":
            break
        j = 1
        while j < len(arg):
            flag = arg[j]
            if flag in "bBcC":
                opts.steps.append((flag, ""))
                j += 1
            elif flag in "tarp":
                value = arg[j + 1 :]
                if not value:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"option requires an argument -- {flag}")
                    value = argv[i]
                opts.steps.append((flag, value))
                break
            else:
                raise UsageError(f"illegal option -- {flag}")
        i += 1
    opts.program = argv[i:]
    if not opts.program:
        raise UsageError("no program to run")
    return opts


def _scan_ulong(text: str) -> int:
    """scan_ulong: the leading digits, 0 when there are none (``-t x`` means 0, as in the original).

    Bounded to ``MAX_TIMEOUT_S`` (and to 20 digits read), so ``-t 4294967296``
    waits "for ever" instead of raising OverflowError in ``signal.alarm``.
    """
    digits = ""
    for ch in text[:20]:
        if not "0" <= ch <= "9":
            break
        digits += ch
    return min(int(digits), MAX_TIMEOUT_S) if digits else 0


def _sources(opts: Options) -> list[tuple[str, str, str | None]]:
    """The lookups the steps may need: ("r"|"a"|"p", zone or policy, fixed text)."""
    out = []
    for flag, value in opts.steps:
        if flag == "r":
            zone, _, text = value.partition(":")
            out.append(("r", zone, text or None))
        elif flag in "ap":
            out.append((flag, value, None))
    if not any(s[0] in "rp" for s in out):
        out.append(("p", "default", None))  # the original's built-in list, our default policy
    return out


def lookup(ip: str, sources: list[tuple[str, str, str | None]], socket: str | None) -> list[object]:
    """One batch call for every source; per source a result map, or None if it failed."""
    calls = []
    for kind, name, _ in sources:
        if kind == "p":
            calls.append(["check", {"ip": ip, "policy": name}])
        else:
            calls.append(["dnsbl", {"ip": ip, "zones": [name]}])
    if len(ip) > MAX_IP or not ip.isascii():
        _warn(f"TCPREMOTEIP {log_ip(ip).decode()} is no address; treating lookups as failed")
        return [None] * len(sources)
    path = socket or _env("FASTLOOKUP_SOCKET") or DEFAULT_SOCKET
    try:
        error, answer = _call(path, "batch", {"calls": calls}, CLIENT_TIMEOUT_S)
        if error is not None:
            raise ValueError(f"service error: {_get(error, 'message') or error}")
    except Exception as exc:  # unreachable, timed out, refused, garbled: every source failed
        _warn(f"cannot ask fastlookup ({type(exc).__name__}: {exc}); treating lookups as failed")
        return [None] * len(sources)
    results = answer if isinstance(answer, list) else _get(answer, "results")
    out: list[object] = []
    for i in range(len(sources)):
        try:
            error, result = results[i][0], results[i][1]
        except (IndexError, KeyError, TypeError):
            error, result = {"message": "missing result"}, None
        if error:
            _warn(f"{sources[i][0]} {sources[i][1]}: {_get(error, 'message') or error}")
            out.append(None)
        else:
            out.append(result)
    return out


# --- the msgpack-rpc call ------------------------------------------------------------------------


def _call(path: str, method: str, args: dict, timeout: float) -> tuple[object, object]:
    """``(error, result)`` of one msgpack-rpc request over the unix socket ``path``."""
    import _socket  # not "socket": its enum classes cost more than the whole lookup
    from time import monotonic  # a built-in module: no file to load

    if __package__:
        from .minipack import pack, unpack
    else:  # run by the qmail launcher, with this directory on sys.path and no package import
        from minipack import pack, unpack  # type: ignore[no-redef]

    deadline = monotonic() + timeout  # for the whole call: a service dripping bytes cannot hold us
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(pack([0, 1, method, [args]]))
        data = b""
        while True:
            left = deadline - monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete answer within {timeout:g} s")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the service closed the connection")
            data += chunk
            if len(data) > MAX_RESPONSE:
                raise ValueError(f"a response over {MAX_RESPONSE} bytes")
            try:
                message, _ = unpack(data, 0)
            except IndexError:  # not all of it yet
                continue
            if not (isinstance(message, list) and len(message) == 4 and message[0] == 1 and message[1] == 1):
                raise ValueError("not a msgpack-rpc response to our request")
            return message[2], message[3]
    finally:
        sock.close()


def _get(obj: object, key: str) -> object:
    try:
        return obj[key]  # type: ignore[index]
    except (KeyError, TypeError, IndexError):
        return getattr(obj, key, None)


def _warn(text: str) -> None:
    try:
        posix.write(2, f"{PROG}: warning: {text}\n".encode("ascii", "replace"))
    except OSError:
        pass


def decide(
    opts: Options, ip: str, env_value: str | None, results: list[object] | None, sources: list
) -> tuple[int, str, int | None, int]:
    """The original's state machine: ``(decision, text, code, timeout)``.

    ``code`` is the SMTP code for the message (None: 451/553 as the original
    picks); ``results`` holds one entry per source (None: lookup failed).
    """
    decision, text, code = 0, "", None
    if env_value is not None:
        if not env_value:
            decision = ACCEPT
        elif env_value.startswith("-"):
            decision, text = BLOCK_PERM, env_value[1:]
        else:
            decision, text = BLOCK_TEMP, env_value
    bounce = failclosed = mustnotbounce = False
    timeout = 60
    index = 0
    steps = list(opts.steps)
    if not any(f in "rp" for f, _ in steps):
        steps.append(("p", "default"))
    for flag, value in steps:
        if flag == "b":
            bounce = True
        elif flag == "B":
            bounce = False
        elif flag == "c":
            failclosed = True
        elif flag == "C":
            failclosed = False
        elif flag == "t":
            timeout = _scan_ulong(value)
        elif flag in "rap":
            source = sources[index]
            result = results[index] if results is not None else None
            index += 1
            if decision:
                continue
            if result is None:  # the lookup failed
                mustnotbounce = True
                if flag == "a":
                    if not failclosed:
                        decision = ACCEPT
                elif failclosed:
                    decision, text = BLOCK_TEMP, "temporary RBL lookup error"
                continue
            if flag == "a":
                if _get(result, "listed"):
                    decision = ACCEPT
                elif _get(result, "unknown"):
                    mustnotbounce = True
                    if not failclosed:
                        decision = ACCEPT
            elif flag == "r":
                hits = _get(result, "hits") or []
                fixed = source[2]
                hit_text = _get(hits[0], "text") if hits else None
                if hits and (fixed is not None or hit_text):  # plain -r: TXT only, as the original
                    text = fixed.replace("%IP%", ip) if fixed is not None else str(hit_text)
                    decision = BLOCK_PERM if bounce else BLOCK_TEMP
                elif _get(result, "unknown"):
                    mustnotbounce = True
                    if failclosed:
                        decision, text = BLOCK_TEMP, "temporary RBL lookup error"
            else:  # a fastlookup policy
                action = _get(result, "action")
                if _get(result, "fail_open"):
                    mustnotbounce = True
                if action in ("reject", "defer"):
                    decision = BLOCK_PERM if action == "reject" else BLOCK_TEMP
                    text = str(_get(result, "text") or f"{ip} rejected by policy {source[1]}")
                    smtp_code = _get(result, "smtp_code")
                    code = smtp_code if isinstance(smtp_code, int) else None
                elif _get(result, "fail_open") and failclosed:
                    decision, text = BLOCK_TEMP, "temporary RBL lookup error"
    if decision >= BLOCK_TEMP:
        if mustnotbounce or decision == BLOCK_TEMP:
            code = code if code is not None and 400 <= code <= 499 else 451
        else:
            code = code if code is not None and 500 <= code <= 599 else 553
    return decision, text, code, timeout


def message_for(code: int, text: str) -> bytes:
    """``CODE text``: text cut to 200 characters, every byte outside 32..126 made ``?``."""
    raw = f"{code} ".encode("ascii") + text.encode("utf-8", "replace")[:200]
    return bytes(b if 32 <= b <= 126 else 63 for b in raw)


_COMMANDS_250 = frozenset({b"helo", b"ehlo", b"mail", b"rset", b"noop"})


def dialogue(message: bytes, read_fd: int = 0, write_fd: int = 1) -> None:
    """The original's limited SMTP conversation until QUIT or end of input."""
    _write(write_fd, b"220 rblsmtpd.local\r\n")
    reply = message + b"\r\n"
    pending = b""
    while True:
        try:
            chunk = posix.read(read_fd, 4096)
        except OSError:
            return
        if not chunk:
            return  # a last line without LF is not a command (as in djb's commands())
        pending += chunk
        while True:
            end = pending.find(b"\n")
            if end < 0:
                break
            line, pending = pending[:end], pending[end + 1 :]
            if line.endswith(b"\r"):
                line = line[:-1]
            verb = line.split(b"\0", 1)[0].split(b" ", 1)[0].lower()
            if verb == b"quit":
                _write(write_fd, b"221 rblsmtpd.local\r\n")
                return
            _write(write_fd, b"250 rblsmtpd.local\r\n" if verb in _COMMANDS_250 else reply)
        if len(pending) > MAX_LINE:
            return


def _write(fd: int, data: bytes) -> None:
    while data:
        try:
            n = posix.write(fd, data)
        except OSError:
            posix._exit(0)  # the client went away: nothing left to do (the original exits too)
        data = data[n:]


def log_ip(ip: str) -> bytes:
    """``ip`` for the log line: bytes outside 33..126 and backslashes as ``\\xNN`` (no forged lines, no ESC)."""
    raw = ip.encode("utf-8", "surrogateescape")[:MAX_IP * 4]
    return b"".join(bytes((c,)) if 33 <= c <= 126 and c != 92 else b"\\x%02x" % c for c in raw)


def block(ip: str, message: bytes, timeout: int) -> None:
    """Log the original's stderr line, then answer (and exit)."""
    try:
        posix.write(2, LOG_PREFIX.encode() + log_ip(ip) + b" pid %d: " % posix.getpid() + message + b"\n")
    except OSError:
        pass
    if not timeout:
        _write(1, message + b"\r\n")
        return
    import _signal  # not "signal": its enums cost milliseconds

    _signal.signal(_signal.SIGALRM, lambda *_: posix._exit(0))  # drop the conversation, exit 0 as the original
    _signal.alarm(timeout)
    dialogue(message)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fastlookup-rblsmtpd``; execs the program unless the client is blocked."""
    args = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(args)
    except UsageError as exc:
        posix.write(2, f"{PROG}: {exc}\n{USAGE}\n".encode())
        return 100
    ip = _env("TCPREMOTEIP") or _env("TCP6REMOTEIP") or ""
    env_value = _env("RBLSMTPD")
    results = None
    sources = _sources(opts)
    if env_value is None and ip:
        results = lookup(ip, sources, opts.socket)
    elif env_value is None:  # no address to look up (not run by tcpserver?): nothing is listed
        results = [{"hits": [], "unknown": [], "listed": False, "action": "accept"} for _ in sources]
    decision, text, code, timeout = decide(opts, ip, env_value, results, sources)
    if decision >= BLOCK_TEMP:
        block(ip, message_for(code or 451, text), timeout)
        return 0
    sys.stdout.flush()
    try:
        execvp(opts.program[0], opts.program)
    except OSError as exc:
        posix.write(2, f"{PROG}: fatal: unable to run {opts.program[0]}: {exc.strerror or exc}\n".encode("utf-8", "replace"))
        return 111
    return 111  # not reached


def _env(name: str) -> str | None:
    """An environment variable as str (bytes the locale cannot decode kept as surrogates), or None."""
    value = posix.environ.get(name.encode())
    return None if value is None else value.decode("utf-8", "surrogateescape")


def execvp(file: str, args: list[str]) -> None:
    """``os.execvp`` without importing ``os``: ``file`` as a path, or searched in ``$PATH``."""
    if "/" in file:
        posix.execv(file, args)
    error: OSError | None = None
    for directory in (_env("PATH") or "/bin:/usr/bin").split(":"):
        try:
            posix.execv((directory or ".") + "/" + file, args)
        except OSError as exc:  # ENOENT, EACCES, ENOTDIR...: the next directory, as execvp(3)
            if error is None or exc.errno != 2:
                error = exc
    raise error or FileNotFoundError(2, "No such file or directory")


if __name__ == "__main__":
    raise SystemExit(main())
