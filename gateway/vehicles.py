"""Vehicles at a vehicle lane (L607 人车分流, L611, L1123 车辆凭证出入, L1125, L424 车辆台账).

A community vehicle shows its vehicle pass: a pass of kind ``vehicle``,
signed like a person's pass (gateway/passes.py), whose ``person_id`` is the
household and whose ``pass_id`` carries the plate in ASCII (the province
character as its two-letter code, 京A12345 -> ``BJ-A12345``, then an optional
``.2`` serial for a re-issued pass). The pass format is unchanged; only the
kind code 6 is new.

Every occupant is measured (by the thermometer where possible, otherwise the
guard types the reading in) and any occupant's fever stops the vehicle.
Outside vehicles are refused by default (``vehicle_outside``); the guard may
let one in as an exception, with a reason that is logged
(``vehicle_exception``) -- an exception never lifts a fever. Each passage is
one journal event of kind ``vehicle``: the vehicle ledger (plate, driver,
occupants, temperatures, direction, time, operator).

`decide_vehicle()` is pure, like `gateway.decision.decide()`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from gateway.decision import Decision, GateMoment, _aware
from gateway.passes import PassFormatError, PassVerdict, issue_pass, validity_reasons
from gateway.policy import Policy
from gateway.thermometry import is_fever

# GB/T 2260 two-letter codes of the provinces' one-character plate prefixes.
PROVINCES = {
    "京": "BJ", "津": "TJ", "冀": "HE", "晋": "SX", "蒙": "NM", "辽": "LN", "吉": "JL", "黑": "HL",
    "沪": "SH", "苏": "JS", "浙": "ZJ", "皖": "AH", "闽": "FJ", "赣": "JX", "鲁": "SD", "豫": "HA",
    "鄂": "HB", "湘": "HN", "粤": "GD", "桂": "GX", "琼": "HI", "渝": "CQ", "川": "SC", "贵": "GZ",
    "云": "YN", "藏": "XZ", "陕": "SN", "甘": "GS", "青": "QH", "宁": "NX", "新": "XJ",
}
_BY_CODE = {code: char for char, code in PROVINCES.items()}
_PLATE = re.compile(r"^(.)([A-Z])([A-Z0-9]{5,6})$")
MAX_OCCUPANTS = 9


class PlateError(ValueError):
    """Not a plate this system can put on a pass."""


def normalise_plate(plate: str) -> str:
    """京a·12345 -> 京A12345 (spaces, dots and case do not matter). Raises PlateError."""
    text = re.sub(r"[\s·.\-]", "", str(plate or "")).upper()
    m = _PLATE.match(text)
    if not m or m.group(1) not in PROVINCES:
        raise PlateError(f"{plate!r} is not a plate like 京A12345")
    return text


def plate_id(plate: str) -> str:
    """The plate as it is carried in a pass id: 京A12345 -> BJ-A12345."""
    plate = normalise_plate(plate)
    return f"{PROVINCES[plate[0]]}-{plate[1:]}"


def plate_from_pass_id(pass_id: str | None) -> str | None:
    """BJ-A12345 or BJ-A12345.2 -> 京A12345; None when the id is not a plate."""
    m = re.fullmatch(r"([A-Z]{2})-([A-Z][A-Z0-9]{5,6})(?:\.\d{1,3})?", pass_id or "")
    if not m or m.group(1) not in _BY_CODE:
        return None
    return _BY_CODE[m.group(1)] + m.group(2)


def issue_vehicle_pass(private_key, *, plate: str, household: str, site_id: str, valid_from: datetime,
                       valid_to: datetime, serial: int = 1) -> str:
    """A signed vehicle pass bound to a plate and a household."""
    try:
        pass_id = plate_id(plate) + (f".{serial}" if serial > 1 else "")
    except PlateError as exc:
        raise PassFormatError(str(exc)) from None
    return issue_pass(private_key, pass_id=pass_id, person_id=household, site_id=site_id, kind="vehicle",
                      valid_from=valid_from, valid_to=valid_to)


@dataclass(frozen=True)
class Occupant:
    """One person in the vehicle; `body_c` None: not measured."""

    body_c: float | None
    name: str = ""
    source: str = "guard"  # guard (typed in) | thermometer


@dataclass(frozen=True)
class VehicleException:
    """The guard lets an outside vehicle in: who and why (both required)."""

    operator: str
    reason: str


def decide_vehicle(credential: PassVerdict | None, plate: str, occupants: list[Occupant], policy: Policy,
                   moment: GateMoment, *, threshold_c: float, revoked: bool = False,
                   exception: VehicleException | None = None) -> tuple[Decision, dict]:
    """Admit or stop one vehicle: (decision, ledger detail). `plate` is what the guard sees on the car."""
    entering = moment.direction == "in"
    flagged = any(o.body_c is not None and is_fever(o.body_c, threshold_c) for o in occupants)
    reasons = [
        *(["gate_closed"] if moment.gate_id and moment.gate_id in policy.closed_gates else []),
        *_vehicle_pass_reasons(credential, plate, moment, revoked),
        *_occupant_reasons(occupants, entering, flagged),
    ]
    reasons += _exception_reasons(reasons, exception)
    excepted = "vehicle_exception" in reasons
    lifted = {"vehicle_exception", "vehicle_outside"} if excepted else set()
    outcome = "deny" if set(reasons) - lifted else "admit"
    guard, public = (_vehicle_refusal_messages(reasons, flagged) if outcome == "deny"
                     else _vehicle_admit_messages(excepted, entering))
    household = _household(credential)
    verified = credential is not None and credential.signature_ok
    return Decision(
        decision=outcome, flagged=flagged, reasons=reasons or ["ok"], guard_message=guard, public_message=public,
        direction=moment.direction, alert=flagged or excepted,
        message_fields={"open_entrance": policy.open_entrance.as_dict()} if "gate_closed" in reasons else {},
        kind="vehicle", pass_id=credential.pass_id if verified else None,
        person_id=household, threshold_c=threshold_c, policy_version=policy.version,
        enforcement=policy.enforcement, name=plate, unit=household or "",
    ), _ledger_detail(plate, household, occupants, exception if excepted else None)


def _household(credential: PassVerdict | None) -> str | None:
    """The household of a verified vehicle pass, else None."""
    if credential is None or credential.kind != "vehicle" or not credential.signature_ok:
        return None
    return credential.person_id


def _vehicle_pass_reasons(credential: PassVerdict | None, plate: str, moment: GateMoment, revoked: bool) -> list[str]:
    """No pass: an outside vehicle (on the way in). Otherwise a verified vehicle
    pass, valid now, of this site, for this plate, not revoked."""
    if credential is None:
        return ["vehicle_outside"] if moment.direction == "in" else []
    if _household(credential) is None:
        return ["vehicle_no_pass"]
    reasons = list(validity_reasons(credential.valid_from, credential.valid_to, _aware(moment.now)))
    if credential.site_id != moment.site_id:
        reasons.append("wrong_site")
    if plate_from_pass_id(credential.pass_id) != plate:
        reasons.append("vehicle_no_pass")  # the pass belongs to another car
    if revoked:
        reasons.append("revoked")
    return reasons


def _occupant_reasons(occupants: list[Occupant], entering: bool, flagged: bool) -> list[str]:
    """Everyone in the car is measured on the way in; anyone's fever stops it."""
    reasons = []
    if entering and (not occupants or any(o.body_c is None for o in occupants)):
        reasons.append("no_reading")
    if flagged:
        reasons.append("fever")
    return reasons


def _exception_reasons(reasons: list[str], exception: VehicleException | None) -> list[str]:
    """The guard's logged exception lifts `vehicle_outside` only, never a fever or a bad pass."""
    if "vehicle_outside" in reasons and exception and exception.operator.strip() and exception.reason.strip():
        return ["vehicle_exception"]
    return []


_PASS_PROBLEMS = frozenset({"vehicle_no_pass", "revoked", "expired", "wrong_site", "not_yet_valid"})


def _vehicle_refusal_messages(reasons: list[str], flagged: bool) -> tuple[str, str]:
    """(guard key, public key) for a vehicle kept out: a closed gate first, then a fever."""
    if "gate_closed" in reasons:
        return "guard.gate_closed", "public.gate_closed"
    public = "public.vehicle_outside" if "vehicle_outside" in reasons and not flagged else "public.see_staff"
    if flagged:
        return "guard.vehicle_fever", public
    if _PASS_PROBLEMS.intersection(reasons):
        return "guard.vehicle_no_pass", public
    return ("guard.vehicle_outside" if "vehicle_outside" in reasons else "guard.no_reading"), public


def _vehicle_admit_messages(excepted: bool, entering: bool) -> tuple[str, str]:
    return ("guard.vehicle_exception" if excepted else "guard.vehicle_admit",
            "public.welcome" if entering else "public.goodbye")


def _ledger_detail(plate: str, household: str | None, occupants: list[Occupant],
                   exception: VehicleException | None) -> dict:
    """The vehicle ledger's fields (车辆台账) for this passage."""
    temps = [o.body_c for o in occupants if o.body_c is not None]
    return {
        "plate": plate,
        "household": household,
        "driver": occupants[0].name if occupants else "",
        "occupants": [{"name": o.name, "body_c": o.body_c, "source": o.source} for o in occupants],
        "max_body_c": max(temps) if temps else None,
        "exception": {"operator": exception.operator, "reason": exception.reason} if exception else None,
    }


def vehicle_ledger(journal, limit: int = 200) -> list[dict]:
    """The vehicle ledger (车辆台账): newest first, one row per passage."""
    rows = journal.recent(limit, kinds=("vehicle",))
    return [{
        "time": r["time"], "gate": r["gate"], "direction": r["direction"], "decision": r["decision"],
        "reasons": r["reasons"], "operator": r["operator"], **{k: r["detail"].get(k) for k in
                                                                ("plate", "household", "driver", "occupants")},
    } for r in rows]
