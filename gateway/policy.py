"""The site's entry policy: a versioned document, data not code.

The community switches rules centrally (SPEC rule 5: the 1 Feb "register"
rule, the 9 Feb "deny" rule), so the policy is a JSON document with a
`version`; a newer version replaces an older one. The registry pushes it
through the sync feed; a kiosk can also read a local file
(``[policy] file``). Until either exists the kiosk runs `default_policy()`,
a closed-management default: hard enforcement, visitors refused unless a
filed special case, couriers to the drop-off point, red health code refused,
yellow sent to the guard.

    policy = load_policy("policy.json")          # raises PolicyError
    policy = newest(default_policy(), policy)    # the higher version wins
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.files import read_text_file

HealthAction = Literal["admit", "guard", "deny"]


class LocalText(BaseModel):
    """A text in Simplified Chinese and English, e.g. where the drop-off point is."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    zh: str = Field(max_length=200)
    en: str = Field("", max_length=200)

    def as_dict(self) -> dict[str, str]:
        return {"zh": self.zh, "en": self.en or self.zh}


class HealthCodeRules(BaseModel):
    """What each health-code colour means at this gate (entry only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    required: bool = Field(False, description="Entry needs a health code to be given")
    # green always admits (as far as the health code goes); no setting for it.
    yellow: HealthAction = Field("guard", description="guard: the gate stays shut until the guard checks")
    red: HealthAction = "deny"


GateId = Annotated[str, Field(min_length=1, max_length=64)]
_CLOCK_TIME = r"^([01]\d|2[0-3]):[0-5]\d$"


class StaffingRules(BaseModel):
    """No entrance without anyone on duty (L607 严禁出现无人值守的出入口)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    shift_h: float = Field(12.0, gt=0, le=24, description="A guard's sign-in lasts one shift of this length")
    handover_warning_min: float = Field(
        30.0, ge=0, le=240, description="The screen asks for the hand-over this long before the shift ends"
    )
    unstaffed_grace_min: float = Field(
        5.0, ge=0, le=240, description="Nobody on duty longer than this raises the unstaffed alarm"
    )
    unattended: Literal["screen", "refuse"] = Field(
        "screen",
        description="While unstaffed: screen (keep screening residents automatically) or refuse "
        "(no automatic entry until a guard signs in)",
    )


class VehicleRules(BaseModel):
    """Vehicles (L607 人车分流, L1123 车辆凭证出入, L1125 外来车辆原则上不得进入)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    vehicle_gates: list[GateId] = Field([], description="Gate ids that run as vehicle lanes")
    outside: Literal["deny"] = Field(
        "deny", description="Outside vehicles are refused; the guard may make a logged exception"
    )


class Policy(BaseModel):
    """One version of a site's entry policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(1, ge=1, description="Newer versions replace older ones")
    name: str = Field("closed-management default", max_length=100)
    issued_at: datetime | None = Field(None, description="When the registry issued this version")
    enforcement: Literal["hard", "soft"] = Field(
        "hard",
        description="hard: fever or a sensor failure keeps the gate shut (guard may override); "
        "soft: admit, flag and alert",
    )
    # Set on the registry's site policy page (issue 9); None keeps the kiosk's [temperature] config.
    threshold_c: float | None = Field(
        None, ge=34.0, le=39.0, description="Fever threshold, body-equivalent, inclusive (default: the config's)"
    )
    offset_c: float | None = Field(
        None, ge=-2.0, le=5.0, description="Skin-to-body compensation (default: the config's)"
    )
    visitor_mode: Literal["register", "deny"] = Field(
        "deny",
        description="register: normal temperature + registration record (1 Feb rule); "
        "deny: refused unless a special case is registered and filed (9 Feb rule)",
    )
    courier_dropoff: LocalText = Field(
        LocalText(zh="门口快递外卖存放点", en="the parcel and food drop-off point at the gate"),
        description="Where couriers leave parcels; shown to them on the public screen",
    )
    health_code: HealthCodeRules = HealthCodeRules()
    passback_s: float = Field(
        30.0, ge=0.0, le=3600.0, description="Same pass, same direction within this: passback"
    )
    passback: Literal["deny", "alert"] = Field("deny", description="deny, or admit and alert the guard")
    observation_blocks_exit: bool = Field(
        True, description="People under home observation may not go out (SPEC rule 9)"
    )
    stale_registry: Literal["guard_confirm", "admit"] = Field(
        "guard_confirm",
        description="When the registry copy is older than [sync] staleness_limit_h: guard_confirm "
        "refuses automatic entry (registry_stale) until the guard checks the pass and opens; "
        "admit lets valid passes through and warns the guard",
    )
    check_temperature_on_exit: bool = Field(
        False, description="Also enforce the temperature rules on the way out"
    )
    # --- gate rules from the notices (issue 12) ---
    level: str | None = Field(None, max_length=40, description="The escalation preset this policy started from")
    mask_required: bool = Field(False, description="Entry needs a mask (L1123; level 2 and up, L557)")
    health_code_blocks_exit: bool = Field(
        True, description="Yellow and red codes may not go out (home observation, L1732, L1129)"
    )
    closed_gates: list[GateId] = Field([], description="Gates closed by the community (L607): refuse everyone")
    open_entrance: LocalText = Field(
        LocalText(zh="小区正门", en="the main entrance"),
        description="Where the open entrance is; shown at a closed gate",
    )
    unit_door_gates: list[GateId] = Field([], description="Gates that are unit (building) doors")
    unit_doors: Literal["open", "members_only"] = Field(
        "open", description="members_only: unit doors admit only residents, staff and volunteers (level 3)"
    )
    staffing: StaffingRules = StaffingRules()
    disinfection_times: list[Annotated[str, Field(pattern=_CLOCK_TIME)]] = Field(
        [], max_length=24,
        description="Beijing times (HH:MM) the thermometer is disinfected (L613 定时消毒); "
        "none: no reminders (the level presets set three a day)",
    )
    disinfection_overdue_min: float = Field(30.0, ge=1, le=240, description="Due this long: overdue")
    vehicles: VehicleRules = VehicleRules()
    # --- posted at the gate (L605, L422) ---
    duty_person: str = Field("", max_length=40, description="The person responsible (责任人)")
    duty_phone: str = Field("", max_length=20, description="The duty phone (值守电话)")
    posted_rules: list[Annotated[str, Field(max_length=200)]] = Field(
        [], max_length=10, description="Extra lines posted at the gate"
    )

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


# Escalation levels (L537-563): the community picks one by name, then may
# still change any field ("preset": "level-2", "visitor_mode": "deny").
TIMES_A_DAY = ["08:00", "14:00", "20:00"]
PRESETS: dict[str, dict] = {
    # (一) no case in the community: keep imports out (外防输入); 1 Feb visitor rule.
    "level-1": {"visitor_mode": "register", "mask_required": False, "disinfection_times": TIMES_A_DAY},
    # (二) a case in the community: masks on when going in and out (L557).
    "level-2": {"visitor_mode": "register", "mask_required": True, "disinfection_times": TIMES_A_DAY},
    # (三) community transmission: visitors refused unless filed (9 Feb rule, L1125),
    # unit doors for members only (L1123), health code required.
    "level-3": {"visitor_mode": "deny", "mask_required": True, "unit_doors": "members_only",
                "disinfection_times": TIMES_A_DAY,
                "health_code": {"required": True, "yellow": "guard", "red": "deny"}},
}


def apply_preset(data: dict) -> dict:
    """A policy document with its `preset` expanded: the preset's fields
    first, then every field the document gives itself."""
    if "preset" not in data:
        return data
    data = dict(data)
    name = data.pop("preset")
    if name not in PRESETS:
        raise PolicyError(f"preset = {name!r}: must be one of {', '.join(PRESETS)}")
    return {**PRESETS[name], "level": name, **data}


class PolicyError(ValueError):
    """A policy document that cannot be used; the message names the source and the key."""


def default_policy() -> Policy:
    """The closed-management default (version 1)."""
    return Policy()


def parse_policy(data: str | bytes | dict, source: str = "policy") -> Policy:
    """Validate a policy document (JSON text or an already-parsed dict)."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a policy must be a JSON object")
    try:
        return Policy.model_validate(apply_preset(data))
    except PolicyError as exc:
        raise PolicyError(f"{source}: {exc}") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            if err["type"] == "extra_forbidden":
                problems.append(f"{source}: {loc}: unknown key")
            else:
                problems.append(f"{source}: {loc} = {err.get('input')!r}: {err['msg']}")
        raise PolicyError("\n".join(problems)) from None


def load_policy(path: Path | str) -> Policy:
    """Read a policy JSON file. Raises PolicyError naming the file."""
    path = Path(path)
    text = read_text_file(path, "policy", PolicyError)
    return parse_policy(text, source=path.name)


def policy_from_settings(settings) -> Policy:
    """The kiosk's starting policy from its config: the default with the
    config's `[policy]` enforcement and visitor mode and `[passes]` passback
    window, or the local policy file when one is configured."""
    if settings.policy.file is not None:
        return load_policy(settings.policy.file)
    return Policy(
        version=1,
        name="local config",
        enforcement=settings.policy.enforcement,
        visitor_mode=settings.policy.visitor_mode,
        passback_s=settings.passes.passback_s,
    )


def newest(*policies: Policy | None) -> Policy:
    """The policy with the highest version (the first one on a tie)."""
    candidates = [p for p in policies if p is not None]
    if not candidates:
        return default_policy()
    best = candidates[0]
    for policy in candidates[1:]:
        if policy.version > best.version:
            best = policy
    return best
