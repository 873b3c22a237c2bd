"""The ``check`` method: a named policy turns lookups into one Verdict.

``PolicyEngine.prepare(args)`` validates a call and returns a pure
``evaluate(get)`` for ``fastlookup.lookup`` (with ``deadline_s`` set to the
policy's). One pass asks every question it can (PTR, the DNSBL and allowlist
zones, the sender's MX), so they are resolved concurrently; dependent
questions (PTR -> A, A -> TXT, MX -> A) come in the next pass. The rules, in
the spirit of Postfix's ``reject_rbl_client``/postscreen:

* ``allow`` CIDRs: accepted before any lookup; ``block`` CIDRs: rejected, no lookup.
* ``require_ptr`` / ``require_fcrdns`` / ``sender_domain_exists``: each
  ``off | tag | defer | reject``.
* DNSBL zones on the client IP, RHSBL zones on the names each zone targets
  (``client``: the FCrDNS-verified name only; ``helo``; ``sender`` and
  ``recipient``: the address's domain), allowlist zones (dnswl-style) whose
  weight counts negative. Each zone counts once; the listing action
  (``on_listed``) applies when a blocklist hit brings the sum to ``threshold``.
* The most severe outcome wins (reject > defer > tag); its reason is
  ``reasons[0]`` and its text the reply. ``tag`` accepts with ``"tag": true``.
* Anything that could not be checked (timeout, SERVFAIL, a list's error
  code, a zone disabled by health probes) is skipped: it never rejects, the
  verdict says ``fail_open: true``, the ``fail_open`` counter counts it and
  one warning per zone and reason is logged per ``note_interval_s``. The one
  exception is ``tempfail`` (see ``tempfail.py``): a PTR/FCrDNS lookup that
  fails while upstream answers other questions defers with 450, as Postfix.
* Texts follow Postfix's: ``default_rbl_reply`` for listings (``$class
  [$what] blocked using $zone; $txt``), ``cannot find your reverse hostname,
  [$ip]`` for rDNS, with no "Client host rejected:" prefix (Postfix adds it).
* Zones with ``action = "ignore"`` are asked and their hits logged and
  counted (``ignored_hits``), but never decide nor add to the score.
* An ``authenticated`` call (SASL submission) is accepted without lookups
  unless the policy says ``authenticated = "check"``.

Each non-accept verdict (and each tag) is logged once, on the final pass, to
the ``fastlookup.verdict`` logger in one greppable line::

    verdict action=reject code=554 ip=192.0.2.1 name=- helo=mx.example reasons=dnsbl:zen.spamhaus.org:127.0.0.2 elapsed_ms=1.2 policy=default score=1.0 fail_open=false
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..config import Config
from ..errors import BadRequest, InvalidArgument
from ..lookup import Get, final
from ..model import Answer, Reason, Verdict
from ..names import IPAddress, domain_of_address, normalize_domain, parse_ip, reverse_name
from ..stats import Stats
from .fcrdns import fcrdns
from .listing import dnsbl_listing, rhsbl_listing
from .maildomain import mail_domain
from .rules import CompiledPolicy, network_of, weight_of
from .templates import CLASS, TXT_MAX, address, clean, listing_text, render
from .tempfail import REPLIED, UpstreamSeen, defers
from .verdictlog import NOTE_INTERVAL_S, Notes, log_verdict
from .zones import Zone, ZoneRegistry

__all__ = ["PolicyEngine", "CompiledPolicy", "SEVERITY", "NOTE_INTERVAL_S"]

#: Which outcome wins when several apply.
SEVERITY = {"tag": 1, "defer": 2, "reject": 3}
_EPSILON = 1e-9
#: A temporary DNS failure always gives 450, even where 5xx is configured (as Postfix).
TEMPFAIL_CODE = 450

@dataclass(frozen=True, slots=True)
class _Request:
    """The validated arguments of one ``check`` call."""

    ip: IPAddress
    helo_raw: str | None
    helo: str | None  # a name worth looking up, else None
    sender_raw: str | None
    sender_domain: str | None
    recipient_raw: str | None
    recipient_domain: str | None
    authenticated: bool = False


class _Finding:
    """An outcome that asks for an action: which, why, and the reply template."""

    __slots__ = ("action", "reasons", "template", "values", "code")

    def __init__(
        self, action: str, reasons: list[Reason], template: str | None, values: dict[str, str] | None = None,
        code: int | None = None,
    ):
        self.action = action
        self.reasons = reasons
        self.template = template
        self.values = values or {}
        self.code = code  # forced (a temporary failure: 450), else the policy's code


def _opt_str(args: Mapping, key: str) -> str | None:
    value = args.get(key)
    if value is None:
        return None
    if type(value) is not str:
        raise BadRequest(f"argument {key!r} must be a string, got {type(value).__name__}")
    return value


def _lookup_name(text: str | None, what: str) -> str | None:
    """A domain worth a DNS question, or None: malformed names are not errors, just not looked up."""
    if not text:
        return None
    try:
        name = normalize_domain(text, what)
    except InvalidArgument:
        return None  # "[192.0.2.1]", "my host", "a..b": not a name
    # Single labels ("test", the RFC 5782 RHSBL test point; "localhost") are
    # looked up like any domain, as Postfix's reject_rhsbl_* do.
    try:
        ipaddress.ip_address(name)
        return None  # "HELO 192.0.2.1": an address is not a name
    except ValueError:
        return name


def _codes(codes: tuple[str, ...]) -> str:
    return ",".join(codes)


def _authenticated(args: Mapping) -> bool:
    """The ``authenticated`` argument: true, or a non-empty SASL user name; false/""/absent otherwise."""
    value = args.get("authenticated")
    if value is None:
        return False
    if type(value) is bool:
        return value
    if type(value) is str:
        return bool(value.strip())
    raise BadRequest(f"argument 'authenticated' must be a boolean or a string, got {type(value).__name__}")


class PolicyEngine:
    """Compiles the configured policies and prepares ``check`` calls against them."""

    def __init__(
        self,
        config: Config,
        zones: ZoneRegistry,
        stats: Stats,
        clock: Callable[[], float] = time.monotonic,
        *,
        note_interval_s: float = NOTE_INTERVAL_S,
        upstream_seen: UpstreamSeen | None = None,
    ) -> None:
        self.zones = zones
        self.stats = stats
        self.clock = clock
        self.notes = Notes(clock, note_interval_s)
        # Fed by the resolver (service.py wires its ``on_upstream``); an engine
        # nobody feeds never sees upstream answer, so ``auto`` fails open.
        self.upstream_seen = upstream_seen if upstream_seen is not None else UpstreamSeen(clock)
        self.policies: dict[str, CompiledPolicy] = {
            name: CompiledPolicy.build(name, conf, zones) for name, conf in config.policy.items()
        }
        stats.declare("verdicts", "action")
        stats.declare("fail_open", "reason")
        stats.declare("ignored_hits", "zone")

    # --- validation -------------------------------------------------------

    def prepare(self, args: Mapping[str, Any]) -> Callable[[Get], dict | None]:
        """Validate a ``check`` call; the evaluator of its verdict (``deadline_s`` set)."""
        start = self.clock()
        if not isinstance(args, Mapping):
            raise BadRequest("check: arguments must be a map")
        ip_text = args.get("ip")
        if ip_text is None:
            raise BadRequest("missing argument 'ip'")
        if type(ip_text) is not str:
            raise BadRequest(f"argument 'ip' must be a string, got {type(ip_text).__name__}")
        ip = parse_ip(ip_text)
        policy_name = _opt_str(args, "policy") or "default"
        policy = self.policies.get(policy_name)
        if policy is None:
            known = ", ".join(sorted(self.policies))
            raise InvalidArgument(f"policy: {policy_name[:64]!r} is not a configured policy (known: {known})")
        helo_raw = _opt_str(args, "helo")
        sender_raw = _opt_str(args, "sender")
        recipient_raw = _opt_str(args, "recipient")
        request = _Request(
            ip=ip,
            helo_raw=helo_raw,
            helo=_lookup_name(helo_raw, "helo"),
            sender_raw=sender_raw,
            sender_domain=_lookup_name(domain_of_address(sender_raw), "sender"),
            recipient_raw=recipient_raw,
            recipient_domain=_lookup_name(domain_of_address(recipient_raw), "recipient"),
            authenticated=_authenticated(args),
        )

        def evaluate(get: Get) -> dict | None:
            return self._evaluate(policy, request, get, start)

        evaluate.deadline_s = policy.conf.deadline_s  # type: ignore[attr-defined]
        return evaluate

    # --- the pure logic ---------------------------------------------------

    def _evaluate(self, policy: CompiledPolicy, req: _Request, get: Get, start: float) -> dict | None:
        conf = policy.conf
        ip = req.ip
        net = network_of(ip, policy.allow)
        if net is not None:  # internal clients and relays: no lookup at all
            return self._finish(policy, req, get, start, [], [Reason("allow", None, str(net))], [], None)
        net = network_of(ip, policy.block)
        if net is not None:  # an explicit block wins over authentication too
            finding = _Finding("reject", [Reason("block", None, str(net))], conf.block_text)
            return self._finish(policy, req, get, start, [finding], [], [], None)
        if req.authenticated and conf.authenticated == "accept":  # submission: PBL-listed IPs by design
            return self._finish(policy, req, get, start, [], [Reason("authenticated", None, "no lookups")], [], None)

        missing = False

        def ask(name: str, rdtype: str) -> Answer | None:
            nonlocal missing
            answer = get(name, rdtype)
            if answer is None:
                missing = True
            return answer

        findings: list[_Finding] = []
        notes: list[Reason] = []  # reasons that decide nothing by themselves
        skipped: list[tuple] = []  # (check, zone, status[, why])
        tempfails: list[tuple[str, str, str, str, bool]] = []  # (check, status, mode, template, replied): decided last
        disabled = self.zones.disabled

        # Reverse DNS (Postfix's reject_unknown_reverse_client_hostname and
        # reject_unknown_client_hostname; RFC 7372 §3 "5.7.25").
        name: str | None = None
        fcrdns_result = None
        confirmation = None
        if policy.want_fcrdns:
            confirmation = fcrdns(ask, ip)
            if confirmation is not None:
                fcrdns_result = confirmation.result
                name = confirmation.confirmed
        if conf.require_ptr != "off":
            ptr = ask(reverse_name(ip), "PTR")
            if ptr is not None:
                if ptr.failed:
                    tempfails.append(("ptr", ptr.status, conf.require_ptr, conf.ptr_text, ptr.status in REPLIED))
                elif not (ptr.ok and ptr.records):
                    findings.append(_Finding(conf.require_ptr, [Reason("ptr", None, "no PTR record")], conf.ptr_text))
        if conf.require_fcrdns != "off" and fcrdns_result is not None:
            if fcrdns_result == "temperror":
                replied = _replied(ask, ip, confirmation.names if confirmation is not None else ())
                tempfails.append(("fcrdns", "temperror", conf.require_fcrdns, conf.fcrdns_text, replied))
            elif fcrdns_result in ("none", "fail"):
                detail = "no PTR record" if fcrdns_result == "none" else "PTR name does not resolve back"
                findings.append(_Finding(conf.require_fcrdns, [Reason("fcrdns", None, detail)], conf.fcrdns_text))
        elif policy.client_rhsbl and fcrdns_result == "temperror":
            skipped.append(("fcrdns", None, "temperror"))

        # The sender's domain must be able to take the bounce (RFC 5321 §5.1, RFC 7505).
        if conf.sender_domain_exists != "off" and req.sender_domain:
            outcome = mail_domain(ask, req.sender_domain)
            if outcome == "temperror":
                skipped.append(("sender_domain", None, "temperror"))
            elif outcome in ("nxdomain", "null_mx", "no_address"):
                detail = {"nxdomain": "domain not found", "null_mx": "null MX", "no_address": "no MX or address"}
                reason = Reason("sender_domain", req.sender_domain, detail[outcome])
                findings.append(_Finding(conf.sender_domain_exists, [reason], conf.sender_text))

        # Blocklists and allowlists: each zone counts once.
        score = 0.0
        hits: list[tuple[Reason, dict[str, str], Zone]] = []  # blocklist hits, in policy order
        if policy.dnsbl:
            listing = dnsbl_listing(ask, ip, policy.dnsbl, disabled)
            by_display = {z.display: z for z in policy.dnsbl}
            for hit in listing.hits:
                zone = by_display[hit.zone]
                if zone.ignore:
                    notes.append(Reason("ignored", hit.zone, "dnsbl " + _codes(hit.codes)))
                    continue
                weight = weight_of(zone, False)
                score += weight
                reason = Reason("allow" if weight < 0 else "dnsbl", hit.zone, _codes(hit.codes))
                if weight < 0:
                    notes.append(reason)
                else:
                    values = {"zone": zone.reply_name or hit.zone, "code": _codes(hit.codes),
                              "txt": clean(hit.text, TXT_MAX), "class": CLASS["ip"], "what": str(ip)}
                    hits.append((reason, values, zone))
            skipped.extend(("dnsbl", u.zone, u.status) for u in listing.unknown)
        if policy.allow_zones:
            listing = dnsbl_listing(ask, ip, policy.allow_zones, disabled)
            by_display = {z.display: z for z in policy.allow_zones}
            for hit in listing.hits:
                if by_display[hit.zone].ignore:
                    notes.append(Reason("ignored", hit.zone, "allow " + _codes(hit.codes)))
                    continue
                score += weight_of(by_display[hit.zone], True)
                notes.append(Reason("allow", hit.zone, _codes(hit.codes)))
            skipped.extend(("allow", u.zone, u.status) for u in listing.unknown)
        if policy.rhsbl:
            score += self._rhsbl(policy, req, name, ask, disabled, hits, notes, skipped)

        positive = [h for h in hits if h[2].weight > 0]
        if positive and score >= conf.threshold - _EPSILON:
            reason, values, zone = positive[0]
            others = [h[0] for h in hits if h[0] is not reason]
            findings.insert(0, _Finding(conf.on_listed, [reason] + others, *listing_text(zone.message, conf.reject_text, values)))
        else:
            notes[:0] = [h[0] for h in hits]

        if missing:
            return None
        # Last, once every answer of the call arrived (each one from upstream was
        # already told to the tracker by the resolver): the client's DNS, or ours?
        seen = self.upstream_seen
        for check, status, mode, template, replied in tempfails:
            if mode not in ("defer", "reject"):
                skipped.append((check, None, status))
                continue
            defer, why = defers(conf.tempfail, seen, replied)
            if defer:
                reason = Reason(check, None, f"temporary failure: {status}; {why}")
                findings.append(_Finding("defer", [reason], template, code=TEMPFAIL_CODE))
            else:
                skipped.append((check, None, status, why))
        return self._finish(policy, req, get, start, findings, notes, skipped, name, score)

    def _rhsbl(
        self,
        policy: CompiledPolicy,
        req: _Request,
        name: str | None,
        ask: Get,
        disabled: set[str],
        hits: list,
        notes: list[Reason],
        skipped: list,
    ) -> float:
        """RHSBL zones on their targets; adds hits, returns the weight they add."""
        values = {"client": name, "helo": req.helo, "sender": req.sender_domain, "recipient": req.recipient_domain}
        what = {"client": clean(name), "helo": clean(req.helo_raw), "sender": address(req.sender_raw),
                "recipient": address(req.recipient_raw)}
        # One query per (zone, domain), even when the HELO name is the sender's domain.
        by_domain: dict[str, dict[Zone, list[str]]] = {}
        for zone in policy.rhsbl:
            for target in zone.targets:
                domain = values.get(target)
                if domain:
                    by_domain.setdefault(domain, {}).setdefault(zone, []).append(target)
        score = 0.0
        counted: set[str] = set()
        for domain, zone_targets in by_domain.items():
            zones = tuple(zone_targets)
            listing = rhsbl_listing(ask, domain, zones, disabled)
            by_display = {z.display: z for z in zones}
            for hit in listing.hits:
                zone = by_display[hit.zone]
                targets = ",".join(zone_targets[zone])
                reason = Reason("rhsbl", hit.zone, f"{_codes(hit.codes)} {targets}={domain}")
                if zone.ignore:
                    notes.append(Reason("ignored", hit.zone, f"rhsbl {_codes(hit.codes)} {targets}={domain}"))
                    continue
                if zone.display not in counted:
                    counted.add(zone.display)
                    score += weight_of(zone, False)
                if zone.weight < 0 or zone.allow:
                    notes.append(reason)
                    continue
                first = zone_targets[zone][0]  # Postfix names the item that was looked up
                hit_values = {
                    "zone": zone.reply_name or hit.zone, "code": _codes(hit.codes), "txt": clean(hit.text, TXT_MAX),
                    "domain": domain, "class": CLASS[first], "what": what[first],
                }
                hits.append((reason, hit_values, zone))
            skipped.extend(("rhsbl", u.zone, u.status) for u in listing.unknown)
        return score

    # --- the verdict ------------------------------------------------------

    def _finish(
        self,
        policy: CompiledPolicy,
        req: _Request,
        get: Get,
        start: float,
        findings: list[_Finding],
        notes: list[Reason],
        skipped: list[tuple[str, str | None, str]],
        name: str | None,
        score: float = 0.0,
    ) -> dict:
        conf = policy.conf
        decisive: _Finding | None = None
        for finding in findings:  # the first of the most severe
            if decisive is None or SEVERITY[finding.action] > SEVERITY[decisive.action]:
                decisive = finding
        reasons: list[Reason] = []
        if decisive is not None:
            reasons.extend(decisive.reasons)
        for finding in findings:
            if finding is not decisive:
                reasons.extend(finding.reasons)
        reasons.extend(notes)
        reasons.extend(Reason(s[0], s[1], f"skipped: {s[2]}" + (f" ({s[3]})" if len(s) > 3 else "")) for s in skipped)

        action, code, text, tag = "accept", None, "", False
        if decisive is not None:
            values = {
                "ip": str(req.ip),
                "name": name or "unknown",
                "helo": clean(req.helo_raw),
                "sender": address(req.sender_raw) or "<>",
                "recipient": address(req.recipient_raw),
                "policy": policy.name,
                "zone": "",
                "code": "",
                "txt": "",
                "class": CLASS["ip"],
                "what": str(req.ip),
                "domain": "",
            }
            values.update(decisive.values)
            message = values.pop("_message", None)
            if message:
                values["txt"] = clean(render(message, dict(values)), TXT_MAX)
            text = render(decisive.template or conf.reject_text, values)
            if decisive.action == "reject":
                action, code = "reject", decisive.code or conf.reject_code
            elif decisive.action == "defer":
                action, code = "defer", decisive.code or conf.defer_code
            else:
                tag = True
        verdict = Verdict(
            action=action,
            smtp_code=code,
            text=text,
            score=round(score, 3),
            reasons=tuple(reasons),
            fail_open=bool(skipped),
            elapsed_ms=round((self.clock() - start) * 1000.0, 3),
            tag=tag,
        )
        if final(get):
            self._account(policy, req, verdict, name, skipped)
        return verdict.to_wire()

    def _account(
        self, policy: CompiledPolicy, req: _Request, verdict: Verdict, name: str | None, skipped: list
    ) -> None:
        """Once per call: counters, the verdict log line, rate-limited notes on skipped zones."""
        stats = self.stats
        stats.inc("verdicts", (verdict.action,))
        for reason in verdict.reasons:
            if reason.check == "ignored":
                stats.inc("ignored_hits", (reason.zone,))
        for status in {s[2] for s in skipped}:
            stats.inc("fail_open", (status,))
        for check, zone, status, *_ in skipped:
            self.notes(check, zone or "-", status)
        log_verdict(verdict, req.ip, name, req.helo_raw, policy.name)


def _replied(ask: Get, ip: IPAddress, names: tuple[str, ...]) -> bool:
    """Whether upstream replied (SERVFAIL, REFUSED) to a failed question behind an FCrDNS temperror.

    A reply means upstream is reachable and the client's zones fail; no reply
    at all (timeout) may be our own outage. Only on the temperror path: every
    question asked here was answered already in this pass.
    """
    ptr = ask(reverse_name(ip), "PTR")
    if ptr is not None and ptr.failed:
        return ptr.status in REPLIED
    rdtype = "A" if ip.version == 4 else "AAAA"
    return any((a := ask(n, rdtype)) is not None and a.status in REPLIED for n in names)
