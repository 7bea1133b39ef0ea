"""Seeded inputs for `decide()` and `decide_vehicle()`, and their outputs as text.

The characterisation test (tests/test_decision_characterisation.py) replays
these cases against outputs recorded from the code before a refactor, so a
change in any decision, reason, its order or a message key shows up. The
generator is deterministic: case `i` of seed `s` is the same on every run.

Record again only when a decision is *meant* to change:

    python -m tests.decision_cases   # rewrites tests/fixtures/decide_cases.json.gz
"""

from __future__ import annotations

import gzip
import json
import math
import random
from dataclasses import asdict, is_dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gateway.decision import GateMoment, Override, RegistryEntry, VisitorRegistration, decide
from gateway.passes import KINDS, PassVerdict
from gateway.policy import HealthCodeRules, Policy, StaffingRules
from gateway.thermometry import Reading, RemeasureResult
from gateway.vehicles import Occupant, VehicleException, decide_vehicle

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "decide_cases.json.gz"
SEED = 20261201
PERSON_CASES = 12_000
VEHICLE_CASES = 3_000
# Each input is ordinary this often, so that cases with no reason or one or two
# reasons (where precedence and messages matter) are common, not just the pile-ups.
ORDINARY = 0.7

T0 = datetime(2026, 2, 10, 8, 0, tzinfo=timezone.utc)
SITES = ("site-1", "site-2")
GATES = ("", "east-1", "west-2", "unit-3")
PASS_REASONS = ("malformed", "bad_signature", "unknown_issuer", "expired", "not_yet_valid", "wrong_site", "odd")
READING_STATUSES = ("ok", "ok", "ok", "no_reading", "reading_out_of_range", "sensor_fault", "weird")
BODY_C = (36.5, 37.2, 37.3, 37.4, 38.5, 35.0, None, math.nan, math.inf)


def _odd(rng: random.Random, ordinary, *odd):
    """`ordinary` most of the time, else one of `odd`."""
    return ordinary if rng.random() < ORDINARY else rng.choice(odd)


def _when(rng: random.Random) -> datetime:
    return T0 + timedelta(hours=rng.choice((-400, -24, -1, 0, 1, 24, 400)))


def policy(rng: random.Random) -> Policy | None:
    if rng.random() < 0.03:
        return None  # not a Policy: decide falls back to the default
    if rng.random() < 0.3:
        return Policy(enforcement=rng.choice(("hard", "soft")), visitor_mode=rng.choice(("register", "deny")))
    return Policy(
        version=rng.randint(1, 3),
        enforcement=rng.choice(("hard", "soft")),
        visitor_mode=rng.choice(("register", "deny")),
        health_code=HealthCodeRules(required=rng.random() < 0.5, yellow=rng.choice(("admit", "guard", "deny")),
                                    red=rng.choice(("admit", "guard", "deny"))),
        passback_s=rng.choice((0.0, 30.0, 120.0)),
        passback=rng.choice(("deny", "alert")),
        observation_blocks_exit=rng.random() < 0.7,
        stale_registry=rng.choice(("guard_confirm", "admit")),
        check_temperature_on_exit=rng.random() < 0.3,
        health_code_blocks_exit=rng.random() < 0.7,
        closed_gates=rng.choice(([], ["east-1"], ["west-2", "unit-3"])),
        unit_door_gates=rng.choice(([], ["unit-3"])),
        unit_doors=rng.choice(("open", "members_only")),
        staffing=StaffingRules(unattended=rng.choice(("screen", "refuse"))),
    )


def credential(rng: random.Random) -> Any:
    kind = rng.choice(("resident", "resident", "staff", "volunteer", "visitor", "courier"))
    if rng.random() < ORDINARY:
        return PassVerdict(valid=True, reasons=[], kid="k1", pass_id="P-1", person_id="R-1", site_id="site-1",
                           kind=kind, valid_from=T0 - timedelta(days=1), valid_to=T0 + timedelta(days=13),
                           signature_ok=True)
    roll = rng.random()
    if roll < 0.25:
        return None
    if roll < 0.3:
        return rng.choice(("CP1:not-a-verdict", 42, {"pass_id": "x"}))
    signature_ok = rng.random() < 0.7
    reasons = rng.sample(PASS_REASONS, rng.choice((0, 1, 1, 2)))
    start = _when(rng)
    return PassVerdict(
        valid=signature_ok and not reasons, reasons=reasons, kid="k1",
        pass_id=f"P-{rng.randint(1, 9)}", person_id=f"R-{rng.randint(1, 9)}", site_id=rng.choice(SITES),
        kind=rng.choice((*KINDS, None)), valid_from=start, valid_to=start + timedelta(hours=rng.choice((1, 48, 800))),
        signature_ok=signature_ok,
    )


def one_reading(rng: random.Random) -> Any:
    if rng.random() < ORDINARY:
        return Reading(status="ok", object_c=36.5, ambient_c=22.0, offset_c=0.0, body_c=36.5, n_samples=5)
    status = rng.choice(READING_STATUSES)
    body = rng.choice(BODY_C)
    return Reading(status=status, object_c=body, ambient_c=rng.choice((22.0, None)), offset_c=0.0, body_c=body,
                   ambient_warning=rng.random() < 0.1, n_samples=5, spread_c=0.1, mono_s=1000.0,
                   detail=rng.choice(("", "spike")))


def reading(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.06:
        return None
    if roll < 0.08:
        return "37.0"  # not a reading
    if roll < 0.2:
        return RemeasureResult(outcome=rng.choice(("confirmed", "cleared", "unconfirmed")),
                               first=one_reading(rng), second=rng.choice((one_reading(rng), None)))
    return one_reading(rng)


def entry(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.3:
        return None
    if roll < 0.32:
        return {"person_id": "R-1"}  # not an entry
    if roll < 0.7:
        return RegistryEntry(person_id="R-1", site_id="site-1", name="张三", unit="3-2-401")
    return RegistryEntry(
        person_id=f"R-{rng.randint(1, 9)}", site_id=rng.choice((None, *SITES)),
        status=rng.choice(("active", "active", "under_observation", "moved_out")),
        observation_until=rng.choice((None, T0 - timedelta(days=1), T0 + timedelta(days=3),
                                      datetime(2026, 2, 12, 8, 0))),  # naive: UTC
        pass_revoked=rng.random() < 0.15, name=rng.choice(("", "张三")), unit=rng.choice(("", "3-2-401")),
        visitor_registered=rng.random() < 0.3, visitor_special_case=rng.random() < 0.2,
    )


def moment(rng: random.Random) -> Any:
    if rng.random() < 0.01:
        return GateMoment(site_id="site-1", direction="in", now="not a time", mono_s=1.0)  # type: ignore[arg-type]
    now = T0 + timedelta(minutes=rng.randint(-60, 60))
    if rng.random() < ORDINARY:
        return GateMoment(site_id="site-1", direction=rng.choice(("in", "out")), now=now, mono_s=1000.0,
                          gate_id=rng.choice(GATES))
    return GateMoment(
        site_id=rng.choice(SITES), direction=rng.choice(("in", "in", "out", "sideways")),
        now=now.replace(tzinfo=None) if rng.random() < 0.05 else now,
        mono_s=rng.choice((1000.0, 1000.0, math.nan, 5.0)), registry_stale=rng.random() < 0.15,
        gate_id=rng.choice(GATES), unstaffed=rng.choice((False, False, True, "yes")),
    )


def person_case(rng: random.Random) -> tuple[tuple, dict]:
    args = (credential(rng), reading(rng), entry(rng), policy(rng), moment(rng))
    kwargs = {
        "threshold_c": rng.choice((37.3, 37.5)),
        "last_use_mono_s": _odd(rng, None, 990.0, 900.0, 1001.0, math.nan, True),
        "visitor": _odd(rng, None, VisitorRegistration("V-1"),
                        VisitorRegistration("V-2", special_case=True, filed_ref="F-9"),
                        VisitorRegistration("V-3", special_case=True, filed_ref="  "), "V-4"),
        "health_code": _odd(rng, rng.choice((None, "green")), "yellow", "red", "purple"),
        "override": _odd(rng, None, Override("g-1", "known to me"), "g-1"),
        "last_opposite_mono_s": _odd(rng, None, 995.0, 980.0, math.inf),
        "guard_refusal": _odd(rng, None, "no_mask", "refused_measurement", "rude"),
    }
    return args, kwargs


def vehicle_case(rng: random.Random) -> tuple[tuple, dict]:
    roll = rng.random()
    if roll < 0.2:
        cred = None
    else:
        start = _when(rng)
        cred = PassVerdict(
            valid=True, reasons=[], kid="k1", pass_id=rng.choice(("BJ-A12345", "BJ-A12345.2", "BJ-B99999", "p-1")),
            person_id="h-8-1-401", site_id=rng.choice(SITES), kind=rng.choice(("vehicle", "vehicle", "resident")),
            valid_from=start, valid_to=start + timedelta(hours=rng.choice((1, 48, 800))),
            signature_ok=rng.random() < 0.9,
        )
    occupants = [Occupant(body_c=rng.choice((36.5, 37.3, 38.2, None)), name=rng.choice(("", "李四")))
                 for _ in range(rng.choice((0, 1, 1, 2, 3)))]
    m = GateMoment(site_id=rng.choice(SITES), direction=rng.choice(("in", "out")),
                   now=T0 + timedelta(minutes=rng.randint(-60, 60)), mono_s=1000.0,
                   gate_id=rng.choice(("", "car-1", "east-1")))
    pol = Policy(closed_gates=rng.choice(([], ["car-1"])), enforcement=rng.choice(("hard", "soft")))
    kwargs = {
        "threshold_c": 37.3,
        "revoked": rng.random() < 0.15,
        "exception": rng.choice((None, None, VehicleException("g-1", "delivery of a bed"), VehicleException(" ", "x"))),
    }
    return (cred, rng.choice(("京A12345", "京B99999")), occupants, pol, m), kwargs


def person_cases(seed: int = SEED, count: int = PERSON_CASES):
    rng = random.Random(seed)
    for _ in range(count):
        yield person_case(rng)


def vehicle_cases(seed: int = SEED, count: int = VEHICLE_CASES):
    rng = random.Random(seed + 1)
    for _ in range(count):
        yield vehicle_case(rng)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # JSON has no NaN; the text keeps it apart from None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def outcome_text(result: Any) -> str:
    """Everything a decision holds (and a vehicle's ledger detail), as canonical JSON."""
    return json.dumps(_plain(result), sort_keys=True, ensure_ascii=False)


def person_outcomes(seed: int = SEED, count: int = PERSON_CASES) -> list[str]:
    return [outcome_text(decide(*args, **kwargs)) for args, kwargs in person_cases(seed, count)]


def vehicle_outcomes(seed: int = SEED, count: int = VEHICLE_CASES) -> list[str]:
    return [outcome_text(decide_vehicle(*args, **kwargs)) for args, kwargs in vehicle_cases(seed, count)]


def pack(outcomes: list[str]) -> dict:
    """Distinct outcomes once, then one index per case: small on disk, exact."""
    distinct: dict[str, int] = {}
    order = [distinct.setdefault(text, len(distinct)) for text in outcomes]
    return {"distinct": list(distinct), "order": order}


def unpack(packed: dict) -> list[str]:
    return [packed["distinct"][i] for i in packed["order"]]


def record(path: Path = FIXTURE) -> None:
    data = {"seed": SEED, "person": pack(person_outcomes()), "vehicle": pack(vehicle_outcomes())}
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(text)  # mtime 0: the same outcomes give the same bytes


def recorded(path: Path = FIXTURE) -> dict:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


if __name__ == "__main__":
    record()
    print(f"recorded {PERSON_CASES} person and {VEHICLE_CASES} vehicle cases in {FIXTURE}")
