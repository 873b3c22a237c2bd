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
* ``-p NAME``: apply the fastlookup policy NAME (``check``) at that point:
  reject/defer verdicts block with the verdict's code and text. With neither
  ``-r`` nor ``-p``, the ``default`` policy is applied last — where the
  original used its built-in list (``rbl.maps.vix.com``, long gone).
* ``--socket PATH`` (else ``$FASTLOOKUP_SOCKET``, else the default path) and
  ``$TCP6REMOTEIP`` when ``$TCPREMOTEIP`` is not set.
* A listed client whose list publishes no TXT is blocked with
  ``IP listed on zone`` (the original would let it through silently).

All lookups are asked in one batch call; if the service cannot be reached
every source counts as a failed lookup (fail open unless ``-c``).

Start-up matters (one process per SMTP connection): this module imports only
``os`` and ``sys``; the client is imported only when a lookup is needed.
"""

from __future__ import annotations

import os
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
    """scan_ulong: the leading digits, 0 when there are none (``-t x`` means 0, as in the original)."""
    digits = ""
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else 0


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
            calls.append(("check", {"ip": ip, "policy": name}))
        else:
            calls.append(("dnsbl", {"ip": ip, "zones": [name]}))
    try:
        from fastlookup.client import Client  # lazy: only a lookup pays for it

        client = Client(socket, timeout=CLIENT_TIMEOUT_S)
        try:
            answer = client.batch(calls)
        finally:
            close = getattr(client, "close", None)
            if close is not None:
                close()
    except Exception as exc:  # unreachable, timed out, refused: every source failed
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


def _get(obj: object, key: str) -> object:
    try:
        return obj[key]  # type: ignore[index]
    except (KeyError, TypeError, IndexError):
        return getattr(obj, key, None)


def _warn(text: str) -> None:
    try:
        os.write(2, f"{PROG}: warning: {text}\n".encode("ascii", "replace"))
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
                if hits:
                    fixed = source[2]
                    hit_text = _get(hits[0], "text")
                    if fixed is not None:
                        text = fixed.replace("%IP%", ip)
                    else:
                        text = hit_text if hit_text else f"{ip} listed on {source[1]}"
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
            chunk = os.read(read_fd, 4096)
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
            n = os.write(fd, data)
        except OSError:
            os._exit(0)  # the client went away: nothing left to do (the original exits too)
        data = data[n:]


def block(ip: str, message: bytes, timeout: int) -> None:
    """Log the original's stderr line, then answer (and exit)."""
    try:
        os.write(2, LOG_PREFIX.encode() + ip.encode("ascii", "replace") + b" pid %d: " % os.getpid() + message + b"\n")
    except OSError:
        pass
    if not timeout:
        _write(1, message + b"\r\n")
        return
    import signal

    signal.signal(signal.SIGALRM, lambda *_: os._exit(0))  # drop the conversation, exit 0 as the original
    signal.alarm(timeout)
    dialogue(message)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fastlookup-rblsmtpd``; execs the program unless the client is blocked."""
    args = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(args)
    except UsageError as exc:
        os.write(2, f"{PROG}: {exc}\n{USAGE}\n".encode())
        return 100
    env = os.environ
    ip = env.get("TCPREMOTEIP") or env.get("TCP6REMOTEIP") or ""
    env_value = env.get("RBLSMTPD")
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
        os.execvp(opts.program[0], opts.program)
    except OSError as exc:
        os.write(2, f"{PROG}: fatal: unable to run {opts.program[0]}: {exc.strerror or exc}\n".encode("utf-8", "replace"))
        return 111
    return 111  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
