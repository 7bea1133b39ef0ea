"""The decision core: who may pass, and why. Pure: no clock, no I/O.

    decision = decide(verdict, reading, entry, policy, GateMoment(...))

The caller passes everything in: the pass verdict, the temperature reading,
what the registry copy knows about the person, the site's policy, and the
moment (site, direction, trusted wall time, monotonic time). The result is
admit or deny, a fever flag, stable reason codes (DESIGN.md), and message
keys for the guard screen and the public display (`gateway.messages`).

Rules, in the order they are checked:

1. **Credential.** No pass: ``no_credential`` (a visitor registered at the
   gate may enter without one). A pass that failed verification keeps its
   reasons (``malformed``, ``unknown_issuer``, ``bad_signature``). Validity is
   re-checked against the *trusted* now, max(wall, watermark), so a clock
   rolled back cannot revive an expired pass. A pass for another site:
   ``wrong_site``.
2. **Registry.** ``revoked`` pass, ``moved_out`` person, ``wrong_site`` when
   the person belongs to another site, and ``under_observation`` on **exit**
   for people under home observation (on entry they go home, subject to the
   temperature check).
3. **Outsiders** (entry only). Couriers never enter: ``visitor_policy`` with a
   message pointing to the drop-off point. Visitors: in "register" mode they
   need a registration record (and a normal temperature); in "deny" mode a
   special case registered and filed.
4. **Passback.** The same pass in the same direction within
   ``policy.passback_s`` by the monotonic clock.
5. **Temperature** (entry; exit too if the policy says so): ``fever``,
   ``no_reading``, ``reading_out_of_range``, ``sensor_fault``.
6. **Health code** (entry only), per policy: ``health_code_red``,
   ``health_code_yellow``, ``health_code_missing``.

Before all of these, the gate itself: ``gate_closed`` when the policy lists
this gate as closed (L607; the screen points to the open entrance), and
``unstaffed`` when nobody has been on duty past the policy's grace and the
policy refuses automatic entry meanwhile. A refusal the guard entered
(``no_mask``, ``refused_measurement``) is a reason like any other. On the
way out a yellow or red health code refuses as discreetly as home
observation (L1732, L1129). Passback counts a return as legitimate when the
pass went the other way in between. Two passes in one frame are not decided
at all: `crowd_decision` (``one_at_a_time``).

HARD enforcement (the default) denies on any of these. SOFT enforcement
admits residents, staff and volunteers despite a temperature problem, flags
it and alerts the guard; visitors still need a normal temperature (1 Feb
rule). A guard override admits whatever the reasons, adding
``guard_override`` and keeping the reasons it overrode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from gateway.passes import PassVerdict, validity_reasons
from gateway.policy import Policy, default_policy
from gateway.thermometry import Reading, RemeasureResult, is_fever

Direction = Literal["in", "out"]
HealthCode = Literal["green", "yellow", "red"]

# Every reason code decide() can return. Codes are stable: add, never reuse.
REASON_CODES = (
    "ok",
    "fever",
    "no_reading",
    "reading_out_of_range",
    "sensor_fault",
    "no_credential",
    "malformed",
    "bad_signature",
    "unknown_issuer",
    "expired",
    "not_yet_valid",
    "wrong_site",
    "revoked",
    "moved_out",
    "under_observation",
    "passback",
    "registry_stale",
    "visitor_policy",
    "health_code_red",
    "health_code_yellow",
    "health_code_missing",
    "guard_override",
    "internal_error",
    # gate rules from the notices (issue 12)
    "gate_closed",
    "unstaffed",
    "no_mask",
    "refused_measurement",
    "one_at_a_time",
    "tailgate",
    "vehicle_outside",
    "vehicle_exception",
    "vehicle_no_pass",
)
# Codes that decide() itself never returns: the loop's crowd and beam checks
# and the vehicle lane (gateway/vehicles.py) produce them.
OTHER_PATH_CODES = frozenset({"one_at_a_time", "tailgate", "vehicle_outside", "vehicle_exception",
                              "vehicle_no_pass"})
# Refusals the guard enters with one tap (L1123/L1390 masks, L349 refused measurement).
GUARD_REFUSALS = ("no_mask", "refused_measurement")
TEMPERATURE_REASONS = frozenset({"fever", "no_reading", "reading_out_of_range", "sensor_fault"})
DISCREET_REASONS = frozenset({"under_observation"})
# On the way out a yellow or red code is home observation (L1732, L1129): as discreet.
DISCREET_ON_EXIT = frozenset({"health_code_yellow", "health_code_red"})
CREDENTIAL_REASONS = frozenset({"malformed", "bad_signature", "unknown_issuer"})
# Kinds that live or work here: SOFT enforcement may admit them despite a
# temperature problem. Everyone else needs a normal reading.
MEMBER_KINDS = frozenset({"resident", "staff", "volunteer"})


@dataclass(frozen=True)
class GateMoment:
    """Where and when: the gate's site, the lane direction, the trusted wall
    time (see `trusted_now`) and the monotonic time in seconds.
    `registry_stale`: the registry copy (revocations, home observation) is
    older than the configured limit, so the kiosk cannot vouch for a pass."""

    site_id: str
    direction: Direction
    now: datetime
    mono_s: float
    registry_stale: bool = False
    gate_id: str = ""  # for the policy's closed gates and unit doors
    unstaffed: bool = False  # nobody on duty past the policy's grace (gateway/staffing.py)


@dataclass(frozen=True)
class RegistryEntry:
    """What the kiosk's registry copy knows about a person and their pass."""

    person_id: str
    site_id: str | None = None
    status: Literal["active", "under_observation", "moved_out"] = "active"
    observation_until: datetime | None = None  # None while under observation: open-ended
    pass_revoked: bool = False
    name: str = ""  # shown to the guard only, for the holder check
    unit: str = ""
    visitor_registered: bool = False  # a visitor registration is on file (register mode)
    visitor_special_case: bool = False  # a special case registered and filed (deny mode)


@dataclass(frozen=True)
class VisitorRegistration:
    """A visitor registered at the gate by the guard (SPEC rule 6)."""

    record_id: str
    special_case: bool = False
    filed_ref: str = ""  # the filing reference; a special case needs one


@dataclass(frozen=True)
class Override:
    """The guard opens the gate: who and why, both required."""

    operator: str
    reason: str

    def __post_init__(self):
        if not isinstance(self.operator, str) or not self.operator.strip():
            raise ValueError("an override needs the operator's id")
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise ValueError("an override needs a reason")


@dataclass(frozen=True)
class Decision:
    """The outcome for one person at the gate. See `to_record()` for the log."""

    decision: Literal["admit", "deny"]
    flagged: bool
    reasons: list[str]
    guard_message: str
    public_message: str
    direction: str
    alert: bool = False  # tell the guard (and the server, at once, if flagged)
    message_fields: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None
    pass_id: str | None = None
    person_id: str | None = None
    name: str = ""
    unit: str = ""
    reading: Reading | None = None
    remeasure: RemeasureResult | None = None
    threshold_c: float | None = None
    override: Override | None = None
    health_code: str | None = None
    visitor_record: str | None = None
    policy_version: int | None = None
    enforcement: str | None = None

    @property
    def admitted(self) -> bool:
        return self.decision == "admit"

    @property
    def guard_reasons(self) -> list[str]:
        """The reasons the guard screen may show: home observation stays
        undisclosed even to the guard (SPEC rule 9); the log keeps it. So is a
        yellow or red code on the way out."""
        hidden = DISCREET_REASONS | (DISCREET_ON_EXIT if self.direction == "out" else frozenset())
        return [r for r in self.reasons if r not in hidden]

    @property
    def operator(self) -> str | None:
        """The guard who overrode, if any (the journal's `operator`)."""
        return self.override.operator if self.override else None

    def to_record(self) -> dict[str, Any]:
        """The decision JSON fields of DESIGN.md (seq, time and gate are added
        by the journal and the loop), plus `offset_c` and a `detail` dict."""
        r = self.reading
        detail: dict[str, Any] = {
            "kind": self.kind,
            "reading_status": r.status if r else None,
            "ambient_warning": bool(r and r.ambient_warning),
            "guard_message": self.guard_message,
            "public_message": self.public_message,
            "policy_version": self.policy_version,
            "enforcement": self.enforcement,
        }
        if r is not None and r.detail:
            detail["reading_detail"] = r.detail
        if self.override:
            detail["override"] = {"operator": self.override.operator, "reason": self.override.reason}
        if self.remeasure:
            first = self.remeasure.first
            detail["remeasure"] = {
                "outcome": self.remeasure.outcome,
                "first_object_c": first.object_c,
                "first_body_c": first.body_c,
            }
        if self.health_code:
            detail["health_code"] = self.health_code
        if self.visitor_record:
            detail["visitor_record"] = self.visitor_record
        return {
            "direction": self.direction,
            "pass_id": self.pass_id,
            "person_id": self.person_id,
            "object_c": r.object_c if r else None,
            "ambient_c": r.ambient_c if r else None,
            "offset_c": r.offset_c if r else None,
            "body_c": r.body_c if r else None,
            "threshold_c": self.threshold_c,
            "decision": self.decision,
            "flagged": self.flagged,
            "reasons": list(self.reasons),
            "detail": detail,
        }


def trusted_now(wall: datetime, watermark: datetime | None) -> datetime:
    """max(wall, watermark): the time to judge pass validity by. A clock that
    went backwards (power cut, no RTC, tampering) cannot go below the highest
    time the kiosk has already seen."""
    wall = _aware(wall)
    if watermark is None:
        return wall
    return max(wall, _aware(watermark))


def decide(
    credential: PassVerdict | None,
    reading: Reading | RemeasureResult | None,
    entry: RegistryEntry | None,
    policy: Policy,
    moment: GateMoment,
    *,
    threshold_c: float,
    last_use_mono_s: float | None = None,
    visitor: VisitorRegistration | None = None,
    health_code: HealthCode | None = None,
    override: Override | None = None,
    last_opposite_mono_s: float | None = None,
    guard_refusal: str | None = None,
) -> Decision:
    """Admit or deny one person. Never raises: should a bug slip through, the
    result is a deny with ``internal_error`` (fail closed; the guard can still
    override).

    `threshold_c` is ``temperature.threshold_c`` from the config. `reading`
    may be a `RemeasureResult`: its effective reading decides and both
    readings go to the log. `last_use_mono_s` is when this pass last
    passed this gate in this direction, by the same boot's monotonic clock;
    `last_opposite_mono_s` when it last passed the other way: a passage the
    other way in between makes a quick return legitimate (in, out, in).
    `guard_refusal` is a refusal the guard entered (`GUARD_REFUSALS`).
    """
    try:
        return _decide(
            credential, reading, entry, policy, moment, threshold_c,
            last_use_mono_s, visitor, health_code, override, last_opposite_mono_s, guard_refusal,
        )
    except Exception as exc:  # noqa: BLE001 - the gate must always get an answer
        valid_override = override if _valid_override(override) else None
        reasons = ["internal_error"] + (["guard_override"] if valid_override else [])
        return Decision(
            decision="admit" if valid_override else "deny",
            flagged=False,
            reasons=reasons,
            guard_message="guard.override" if valid_override else "guard.internal_error",
            public_message="public.welcome" if valid_override else "public.see_staff",
            direction=str(getattr(moment, "direction", "?")),
            alert=True,
            override=valid_override,
            message_fields={"error": f"{type(exc).__name__}: {exc}"[:200]},
        )


def _decide(credential, reading, entry, policy, moment, threshold_c, last_use_mono_s, visitor, health_code, override,
            last_opposite_mono_s=None, guard_refusal=None) -> Decision:
    case = _case(credential, reading, entry, policy, moment, visitor)
    # The rules in the order of the module docstring; a reason two rules find
    # (a pass and its holder both of another site) is listed once, first place.
    reasons = list(dict.fromkeys([
        *_gate_reasons(case, guard_refusal),
        *_credential_reasons(case),
        *_registry_reasons(case),
        *_stale_registry_reasons(case),
        *_outsider_reasons(case),
        *_passback_reasons(case, last_use_mono_s, last_opposite_mono_s),
        *_temperature_reasons(case, threshold_c),
        *_health_code_reasons(case, health_code),
    ]))
    flagged = "fever" in reasons  # noted even on an unchecked exit
    notes = [r for r in reasons if not _blocks(r, case)]
    valid_override = override if _valid_override(override) else None
    if valid_override is not None:
        outcome, final = "admit", [*reasons, "guard_override"]
    elif len(notes) < len(reasons):
        outcome, final = "deny", reasons
    else:
        outcome, final = "admit", notes or ["ok"]
    return _decision(case, outcome, final, flagged=flagged, alert=flagged or bool(notes) or valid_override is not None,
                     threshold_c=threshold_c, override=valid_override, health_code=health_code)


@dataclass(frozen=True)
class _Case:
    """The inputs of one decision, normalised: anything of the wrong type is
    dropped (as if absent), the direction is "in" or "out", times are aware."""

    policy: Policy
    moment: GateMoment
    direction: Direction
    now: datetime
    credential: Any  # a PassVerdict, None, or junk (refused as malformed)
    trusted: bool  # a PassVerdict whose signature verified: its fields can be believed
    kind: str | None
    entry: RegistryEntry | None
    visitor: VisitorRegistration | None
    reading: Reading | None
    remeasure: RemeasureResult | None

    @property
    def entering(self) -> bool:
        return self.direction == "in"

    @property
    def gate_id(self) -> str:
        return getattr(self.moment, "gate_id", "")

    @property
    def checks_temperature(self) -> bool:
        return self.entering or self.policy.check_temperature_on_exit


def _case(credential, reading, entry, policy, moment, visitor) -> _Case:
    if not isinstance(policy, Policy):
        policy = default_policy()
    direction = moment.direction if moment.direction in ("in", "out") else "in"
    now = _aware(moment.now)
    remeasure = reading if isinstance(reading, RemeasureResult) else None
    if remeasure is not None:
        reading = remeasure.reading
    if not isinstance(visitor, VisitorRegistration):
        visitor = None
    trusted = isinstance(credential, PassVerdict) and credential.signature_ok
    if trusted:
        kind = credential.kind
    elif credential is None and visitor is not None and direction == "in":
        kind = "visitor"  # registered at the gate, no pass needed
    else:
        kind = None
    return _Case(
        policy=policy, moment=moment, direction=direction, now=now, credential=credential, trusted=trusted,
        kind=kind, entry=entry if isinstance(entry, RegistryEntry) else None, visitor=visitor,
        reading=reading if isinstance(reading, Reading) else None, remeasure=remeasure,
    )


def _gate_reasons(case: _Case, guard_refusal: object) -> list[str]:
    """0. The gate itself: closed by the community (L607); nobody on duty and
    the policy refuses automatic entry meanwhile; a refusal the guard entered."""
    reasons = []
    if case.gate_id and case.gate_id in case.policy.closed_gates:
        reasons.append("gate_closed")
    # "refuse automatic *entry*": nobody is kept in because the guard is missing.
    if case.entering and getattr(case.moment, "unstaffed", False) is True \
            and case.policy.staffing.unattended == "refuse":
        reasons.append("unstaffed")
    if guard_refusal in GUARD_REFUSALS:
        reasons.append(guard_refusal)
    return reasons


def _credential_reasons(case: _Case) -> list[str]:
    """1. The pass: present, verified, valid at the trusted now, of this site."""
    credential = case.credential
    if credential is None:
        return [] if case.kind == "visitor" else ["no_credential"]
    if not isinstance(credential, PassVerdict):
        return ["malformed"]
    if not case.trusted:
        return [r for r in credential.reasons if r in CREDENTIAL_REASONS] or ["malformed"]
    validity = (*credential.reasons, *validity_reasons(credential.valid_from, credential.valid_to, case.now))
    reasons = [r for r in validity if r in ("expired", "not_yet_valid")]
    if credential.site_id != case.moment.site_id:
        reasons.append("wrong_site")
    return reasons


def _registry_reasons(case: _Case) -> list[str]:
    """2. What the registry copy knows about a verified pass and its holder."""
    entry = case.entry
    if not case.trusted or entry is None:
        return []
    reasons = []
    if entry.pass_revoked:
        reasons.append("revoked")
    if entry.status == "moved_out":
        reasons.append("moved_out")
    if entry.site_id and entry.site_id != case.moment.site_id:
        reasons.append("wrong_site")
    if not case.entering and case.policy.observation_blocks_exit and _under_observation(entry, case.now):
        reasons.append("under_observation")  # on entry they go home, subject to the temperature check
    return reasons


def _under_observation(entry: RegistryEntry, now: datetime) -> bool:
    """Under home observation now: open-ended, or until a time still ahead."""
    return entry.status == "under_observation" and (
        entry.observation_until is None or now < _aware(entry.observation_until))


def _stale_registry_reasons(case: _Case) -> list[str]:
    """A stale registry copy may miss a revocation or a home observation:
    per policy, a guard confirms (degraded mode) instead of silent acceptance."""
    return ["registry_stale"] if case.trusted and case.moment.registry_stale is True else []


def _outsider_reasons(case: _Case) -> list[str]:
    """3. Couriers, visitors, and unit doors for members only (entry only)."""
    if not case.entering:
        return []
    if case.kind == "courier":
        return ["visitor_policy"]
    if case.kind == "visitor" and not _visitor_allowed(case.policy, case.entry if case.trusted else None,
                                                        case.visitor):
        return ["visitor_policy"]
    # A registered visitor still meets the level-3 unit doors: for people who live or work here.
    policy = case.policy
    unit_door = case.gate_id and case.gate_id in policy.unit_door_gates and policy.unit_doors == "members_only"
    return ["visitor_policy"] if unit_door and case.kind not in MEMBER_KINDS else []


def _passback_reasons(case: _Case, last_use_mono_s: object, last_opposite_mono_s: object) -> list[str]:
    """4. The same pass, the same direction, within `policy.passback_s` by the
    monotonic clock; in, out, in: a passage the other way since makes the
    return legitimate."""
    mono_s = case.moment.mono_s
    if not (case.trusted and _finite(last_use_mono_s) and _finite(mono_s)):
        return []
    recent = 0 <= mono_s - last_use_mono_s < case.policy.passback_s
    returned = _finite(last_opposite_mono_s) and last_opposite_mono_s > last_use_mono_s
    return ["passback"] if recent and not returned else []


def _temperature_reasons(case: _Case, threshold_c: float) -> list[str]:
    """5. Entry, and exit if the policy says so. On an unchecked exit only a
    fever is noted (flag and alert, never block)."""
    reason, _ = _temperature(case.reading, threshold_c)
    return [reason] if reason and (case.checks_temperature or reason == "fever") else []


def _health_code_reasons(case: _Case, code: object) -> list[str]:
    """6. Entry per policy; on the way out yellow and red mean home
    observation (L1732, L1129), refused as discreetly as observation."""
    if case.entering:
        reason = _health_code(case.policy, code)
        return [reason] if reason else []
    if case.policy.health_code_blocks_exit and code in ("yellow", "red"):
        return [f"health_code_{code}"]
    return []


def _blocks(reason: str, case: _Case) -> bool:
    """Whether a reason keeps the gate shut, or is only a note for the guard:
    temperature under SOFT enforcement for members (or on an unchecked exit),
    passback in alert mode, a stale registry when the policy admits."""
    policy = case.policy
    if reason in TEMPERATURE_REASONS:
        soft_ok = policy.enforcement == "soft" and case.kind in MEMBER_KINDS
        return case.checks_temperature and not soft_ok
    if reason == "passback":
        return policy.passback != "alert"
    if reason == "registry_stale":
        return policy.stale_registry != "admit"
    return True


def _decision(case: _Case, outcome: str, reasons: list[str], *, flagged: bool, alert: bool, threshold_c: float,
              override: Override | None, health_code: object) -> Decision:
    policy, kind, credential, entry = case.policy, case.kind, case.credential, case.entry
    person_known = case.trusted or None
    holder = entry if case.trusted and entry else None
    return Decision(
        decision=outcome,
        flagged=flagged,
        reasons=reasons,
        guard_message=_guard_message(reasons, outcome, case.direction, kind, policy),
        public_message=_public_message(reasons, outcome, case.direction, kind, policy),
        direction=case.direction,
        alert=alert,
        message_fields=_message_fields(reasons, kind, policy),
        kind=kind,
        pass_id=credential.pass_id if person_known else None,
        person_id=credential.person_id if person_known else None,
        name=holder.name if holder else "",
        unit=holder.unit if holder else "",
        reading=case.reading,
        remeasure=case.remeasure,
        threshold_c=threshold_c,
        override=override,
        health_code=health_code if health_code in ("green", "yellow", "red") else None,
        visitor_record=case.visitor.record_id if case.visitor else None,
        policy_version=policy.version,
        enforcement=policy.enforcement,
    )


def crowd_decision(direction: str, passes_in_view: int) -> Decision:
    """Two or more different passes in one frame: decide nobody, open
    nothing, and ask the queue to come one at a time ("请逐一通过")."""
    return Decision(
        decision="deny", flagged=False, reasons=["one_at_a_time"], guard_message="guard.one_at_a_time",
        public_message="public.one_at_a_time", direction=direction if direction in ("in", "out") else "in",
        message_fields={"count": str(passes_in_view)},
    )


def tailgate_decision(direction: str) -> Decision:
    """The pass-through beam broke twice in one opening: someone followed (an incident, not a person's decision)."""
    return Decision(
        decision="deny", flagged=False, reasons=["tailgate"], guard_message="guard.tailgate",
        public_message="public.one_at_a_time", direction=direction if direction in ("in", "out") else "in",
        alert=True,
    )


def _temperature(reading: Reading | None, threshold_c: float) -> tuple[str | None, bool]:
    """(reason or None, flagged) for one reading."""
    if reading is None:
        return "no_reading", False
    if reading.status != "ok":
        known = reading.status in ("no_reading", "reading_out_of_range", "sensor_fault")
        return (reading.status if known else "sensor_fault"), False
    if not _finite(reading.body_c):
        return "sensor_fault", False  # an "ok" reading without a number is a driver bug
    if is_fever(reading.body_c, threshold_c):
        return "fever", True
    return None, False


def _message_fields(reasons: list[str], kind: str | None, policy: Policy) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if kind == "courier":
        fields["dropoff"] = policy.courier_dropoff.as_dict()
    if "gate_closed" in reasons:
        fields["open_entrance"] = policy.open_entrance.as_dict()
    return fields


def _visitor_allowed(policy: Policy, entry: RegistryEntry | None, visitor: VisitorRegistration | None) -> bool:
    if policy.visitor_mode == "register":
        # 1 Feb rule: registered at the gate, or a case the community registered
        # (a filed special case is a registration too).
        return visitor is not None or bool(entry and (entry.visitor_registered or entry.visitor_special_case))
    filed_at_gate = visitor is not None and visitor.special_case and bool(visitor.filed_ref.strip())
    return filed_at_gate or bool(entry and entry.visitor_special_case)


def _health_code(policy: Policy, code: object) -> str | None:
    rules = policy.health_code
    if code not in ("green", "yellow", "red"):
        return "health_code_missing" if rules.required else None
    if code == "green" or getattr(rules, code) == "admit":
        return None
    return f"health_code_{code}"


def _valid_override(override: object) -> bool:
    return (
        isinstance(override, Override)
        and isinstance(override.operator, str)
        and bool(override.operator.strip())
        and isinstance(override.reason, str)
        and bool(override.reason.strip())
    )


# Which reason the guard hears about first: the urgent and the discreet ones
# lead, the routine ones follow.
_GUARD_PRIORITY = (
    ("gate_closed", "guard.gate_closed"),
    ("unstaffed", "guard.unstaffed"),
    ("under_observation", "guard.observation"),
    ("fever", "guard.fever"),
    ("sensor_fault", "guard.sensor_fault"),
    ("reading_out_of_range", "guard.out_of_range"),
    ("health_code_red", None),  # refused or sent to the guard, per policy
    ("no_mask", "guard.no_mask"),
    ("refused_measurement", "guard.refused_measurement"),
    ("revoked", "guard.revoked"),
    ("moved_out", "guard.moved_out"),
    ("bad_signature", "guard.pass_invalid"),
    ("malformed", "guard.pass_invalid"),
    ("unknown_issuer", "guard.unknown_issuer"),
    ("wrong_site", "guard.wrong_site"),
    ("expired", "guard.expired"),
    ("not_yet_valid", "guard.not_yet_valid"),
    ("passback", "guard.passback"),
    ("registry_stale", "guard.registry_stale"),
    ("visitor_policy", None),  # depends on the kind and the visitor mode
    ("health_code_yellow", None),
    ("health_code_missing", "guard.health_code_missing"),
    ("no_credential", "guard.no_credential"),
    ("no_reading", "guard.no_reading"),
    ("internal_error", "guard.internal_error"),
)

_PUBLIC = {
    "gate_closed": "public.gate_closed",
    "unstaffed": "public.see_staff",
    "no_mask": "public.wear_mask",
    "refused_measurement": "public.see_staff",
    "registry_stale": "public.see_staff",
    "under_observation": "public.contact_community",
    "fever": "public.see_staff",
    "sensor_fault": "public.see_staff",
    "reading_out_of_range": "public.see_staff",
    "health_code_red": "public.see_staff",
    "health_code_yellow": "public.see_staff",
    "health_code_missing": "public.see_staff",
    "revoked": "public.pass_invalid",
    "moved_out": "public.pass_invalid",
    "bad_signature": "public.pass_invalid",
    "malformed": "public.pass_invalid",
    "unknown_issuer": "public.pass_invalid",
    "wrong_site": "public.wrong_site",
    "expired": "public.pass_expired",
    "not_yet_valid": "public.pass_invalid",
    "passback": "public.passback",
    "no_credential": "public.show_pass",
    "no_reading": "public.hold_still",
    "internal_error": "public.see_staff",
}


def _guard_message(reasons: list[str], outcome: str, direction: str, kind: str | None, policy: Policy) -> str:
    if "guard_override" in reasons:
        return "guard.override"
    if outcome == "admit":
        return _admit_guard_message(reasons, direction)
    if direction == "out" and DISCREET_ON_EXIT.intersection(reasons):
        return "guard.observation"
    for reason, key in _GUARD_PRIORITY:
        if reason in reasons:
            if key:
                return key
            if reason.startswith("health_code_"):
                action = getattr(policy.health_code, reason.removeprefix("health_code_"))
                return "guard.health_code_refused" if action == "deny" else "guard.health_code_check"
            return _visitor_key("guard", kind, policy)
    return "guard.internal_error"


def _admit_guard_message(reasons: list[str], direction: str) -> str:
    """Admitted with a note (SOFT temperature, passback alert, stale registry) or plainly."""
    if "fever" in reasons:
        return "guard.fever_soft"
    if TEMPERATURE_REASONS.intersection(reasons):
        return "guard.no_temperature_soft"
    if "passback" in reasons:
        return "guard.passback_alert"
    if "registry_stale" in reasons:
        return "guard.registry_stale_alert"
    return "guard.admit_exit" if direction == "out" else "guard.admit"


def _public_message(reasons: list[str], outcome: str, direction: str, kind: str | None, policy: Policy) -> str:
    if outcome == "admit":
        return "public.goodbye" if direction == "out" else "public.welcome"
    if direction == "out" and DISCREET_ON_EXIT.intersection(reasons):
        return "public.contact_community"
    for reason, _ in _GUARD_PRIORITY:
        if reason in reasons:
            return _PUBLIC.get(reason) or _visitor_key("public", kind, policy)
    return "public.see_staff"


def _visitor_key(audience: str, kind: str | None, policy: Policy) -> str:
    if kind == "courier":
        return f"{audience}.courier"
    if policy.visitor_mode == "register":
        return f"{audience}.visitor_register"
    return "guard.visitor_denied" if audience == "guard" else "public.visitors_refused"


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _aware(moment: datetime) -> datetime:
    """A naive time is UTC (the kiosk's clock module always gives aware times)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
