"""Scenarios for `checkpoint simulate`: who arrives when, with what pass and temperature.

A scenario file is YAML or JSON. In its simplest form (the DESIGN.md
contract) it is a list of arrivals::

    - at: 0                 # seconds from the start
      qr: "CP1:...."        # the pass text the camera sees, or null for none
      object_c: 36.4        # raw forehead value the fake thermometer reports
      ambient_c: 22.0       # raw ambient value (default 22.0)
      direction: in         # in | out (default: the gate's direction, or in)
    - at: 5
      qr: null
      sensor: fault         # the thermometer stops answering for this arrival

Passes must be genuinely signed, so `qr` may also be a *template* that the
simulator signs with a demo issuer key (created next to the config's first
`passes.issuer_keys` file when neither key file exists)::

      qr: {pass: {person: r-101, kind: resident, days: 30}}

Template keys: `person` (required), `kind` (resident, staff, volunteer,
visitor, courier; default resident), `id` (pass id; default p-<person>),
`site` (default the gate's site), `from_days` (valid from, days relative to
now; default -1), `days` (valid until, days relative to now; default 30;
negative gives an expired pass), `issuer` (`demo`, default; `forged`: signed
by a stranger's key but claiming the demo key's id, so the signature fails;
`unknown`: a stranger's key under its own id). The same template gives the
same pass text throughout a run, so showing it twice can trigger passback.

The mapping form adds a name, a description and registry entries the kiosk
should know (people, revocations), with dates relative to today (`+14d`)::

    name: Returnee
    registry:
      person:
        r-301: {name: 赵女士, unit: 5-1-302, observation_until: +13d, returnee: true}
      revocation:
        p-r-105: {reason: lost}
    arrivals:
      - {at: 0, qr: {pass: {person: r-301}}, object_c: 36.3, direction: out}

Gate rules (issue 12): `also: [<qr>, ...]` shows more passes in the same
frame (one at a time), `guard: no_mask | refused_measurement` has the guard
refuse the person while they are measured, and `vehicle: {plate, occupants:
[36.5, 37.5], driver, exception}` is a vehicle the guard enters at a vehicle
lane (with `qr` its vehicle pass, `kind: vehicle, id: BJ-A12345`, or null).

An arrival may also carry a `note` for people reading the file and an
`expect` (`{decision: deny, reasons: [fever], flagged: true}`): what it should
lead to. The simulator ignores both; the tests of `examples/` check `expect`.

Errors name the file, the arrival and the key: ``rush.yaml: arrivals[3].object_c
= 'hot': must be a number``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.files import read_text_file

log = logging.getLogger(__name__)

MAX_ARRIVALS = 10_000
NOBODY_MARGIN_S = 0.3  # between arrivals nobody is in view for the loop's view_gone_s plus this
DEFAULT_AMBIENT_C = 22.0


class ScenarioError(ValueError):
    """A scenario file that cannot be used; one line per problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PassTemplate(_Strict):
    person: str = Field(min_length=1, max_length=32)
    kind: Literal["resident", "staff", "volunteer", "visitor", "courier", "vehicle"] = "resident"
    id: str | None = Field(None, min_length=1, max_length=32)
    site: str | None = Field(None, min_length=1, max_length=32)
    from_days: float = Field(-1.0, ge=-3650, le=3650)
    days: float = Field(30.0, ge=-3650, le=3650)
    issuer: Literal["demo", "forged", "unknown"] = "demo"

    @model_validator(mode="after")
    def _order(self):
        if self.days <= self.from_days:
            raise ValueError("days (valid until) must be after from_days (valid from)")
        return self


class _TemplateBox(_Strict):
    pass_: PassTemplate = Field(alias="pass")


class Expect(_Strict):
    """What an arrival should lead to; the example tests check it."""

    decision: Literal["admit", "deny"]
    reasons: list[str] | None = None
    flagged: bool = False


class VehicleArrival(_Strict):
    """A vehicle at a vehicle lane: the plate the guard reads, each occupant's
    temperature as the guard enters it, and an exception reason for an outside vehicle."""

    plate: str = Field(min_length=1, max_length=12)
    occupants: list[float] = Field(min_length=1, max_length=9)
    driver: str = Field("", max_length=40)
    exception: str = Field("", max_length=200)


class Arrival(_Strict):
    at: float = Field(ge=0, le=7 * 86400, description="Seconds from the start")
    qr: str | _TemplateBox | None = Field(None, description="Pass text, a pass template, or null")
    object_c: float | None = Field(None, ge=-70, le=380)
    ambient_c: float = Field(DEFAULT_AMBIENT_C, ge=-40, le=125)
    sensor: Literal["ok", "fault"] = "ok"
    direction: Literal["in", "out"] | None = None
    also: list[str | _TemplateBox] = Field(
        [], max_length=4, description="More passes shown in the same frame (a crowd at the gate)"
    )
    guard: Literal["no_mask", "refused_measurement"] | None = Field(
        None, description="The guard refuses this person with one tap while they are measured"
    )
    vehicle: VehicleArrival | None = Field(
        None, description="A vehicle (qr: its vehicle pass, or null for an outside vehicle); the guard enters it"
    )
    note: str = Field("", max_length=200, description="What this arrival shows (for people reading the file)")
    expect: Expect | None = Field(None, description="Optional: the decision this arrival should get")

    @model_validator(mode="after")
    def _temperature(self):
        if self.sensor == "fault" and self.object_c is not None:
            raise ValueError('give object_c or sensor: "fault", not both')
        if self.sensor == "ok" and self.object_c is None and self.vehicle is None:
            raise ValueError('object_c is required (or sensor: "fault")')
        if isinstance(self.qr, str) and len(self.qr) > 4096:
            raise ValueError("qr text longer than 4096 characters cannot be put in a QR code")
        return self

    @property
    def template(self) -> PassTemplate | None:
        return self.qr.pass_ if isinstance(self.qr, _TemplateBox) else None

    @property
    def uses_templates(self) -> bool:
        return self.template is not None or any(isinstance(q, _TemplateBox) for q in self.also)


class _ScenarioDoc(_Strict):
    name: str = ""
    description: str = ""
    registry: dict[Literal["person", "revocation", "visitor_case", "key", "policy"], dict[str, dict[str, Any]]] = {}
    arrivals: list[Arrival] = Field(max_length=MAX_ARRIVALS)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    arrivals: list[Arrival]
    registry: dict[str, dict[str, dict[str, Any]]]
    source: Path | None = None

    @property
    def duration_s(self) -> float:
        return max((a.at for a in self.arrivals), default=0.0)


def parse_scenario(data: Any, source: str | Path = "scenario") -> Scenario:
    """Validate already-parsed YAML/JSON (a list of arrivals, or the mapping form)."""
    name = Path(source).name
    if isinstance(data, list):
        data = {"arrivals": data}
    if not isinstance(data, dict):
        raise ScenarioError(f"{name}: a scenario is a list of arrivals (or a mapping with 'arrivals')")
    try:
        doc = _ScenarioDoc.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError("\n".join(_problem(name, e) for e in exc.errors())) from None
    if not doc.arrivals:
        raise ScenarioError(f"{name}: no arrivals")
    arrivals = sorted(doc.arrivals, key=lambda a: a.at)  # stable: equal times keep file order
    return Scenario(doc.name or Path(source).stem, doc.description, arrivals, doc.registry,
                    Path(source) if not isinstance(source, Path) else source)


def load_scenario(path: str | Path) -> Scenario:
    """Read a .yaml/.yml/.json scenario file. Raises ScenarioError naming the file."""
    path = Path(path)
    text = read_text_file(path, "scenario", ScenarioError)
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise ScenarioError(f"{path.name}: not valid {kind}: {str(exc).splitlines()[0]}") from None
    return parse_scenario(data, path)


def _problem(name: str, err: dict) -> str:
    loc_parts = [p for p in err["loc"] if not (isinstance(p, str) and (p.startswith("function-") or p in ("str", "_TemplateBox", "none")))]
    loc = ""
    for part in loc_parts:
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"{name}: {loc}: unknown key"
    if err["type"] == "missing":
        return f"{name}: {loc}: required key is missing"
    value = err.get("input")
    if isinstance(value, (dict, list)):
        return f"{name}: {loc or '(top level)'}: {msg}"
    if err["type"] in ("float_parsing", "float_type"):
        msg = "must be a number"
    return f"{name}: {loc} = {value!r}: {msg}"


# --- relative dates in registry entries -----------------------------------------------------

_RELATIVE = re.compile(r"^([+-]\d{1,4})d$")
BEIJING = timezone(timedelta(hours=8))


def beijing_today(now: datetime | None = None) -> date:
    """Today in Beijing: the kiosk reads registry dates as Beijing dates
    (gateway.registry_copy), so `+0d` must mean the same day, whatever the
    host's time zone (between 16:00 and 24:00 UTC it is already tomorrow)."""
    return (now or datetime.now(timezone.utc)).astimezone(BEIJING).date()


def resolve_registry(registry: dict[str, dict[str, dict]], today: date) -> list[dict]:
    """Registry changes for `Journal.apply_registry_page`, with `+14d` dates made real."""
    changes = []
    seq = 1
    for entity, items in registry.items():
        for entity_id, payload in items.items():
            resolved = {}
            for key, value in (payload or {}).items():
                if isinstance(value, str) and (m := _RELATIVE.match(value.strip())):
                    value = (today + timedelta(days=int(m.group(1)))).isoformat()
                resolved[key] = value
            changes.append({"entity": entity, "entity_id": str(entity_id), "op": "upsert",
                            "payload": resolved, "change_seq": seq})
            seq += 1
    return changes


# --- signing pass templates --------------------------------------------------------------------


class DemoIssuer:
    """Signs pass templates with a demo issuer key kept beside the kiosk's public key.

    The kiosk trusts `passes.issuer_keys`; a demo key pair is created in the
    directory of the first of them when neither `issuer.key` nor the public
    file exists (never overwriting a real key). Passes are cached per
    template so the same template is the same pass text for the whole run.
    """

    def __init__(self, public_path: Path, site: str):
        from gateway.passes import generate_keypair, load_private_key

        self.public_path = Path(public_path)
        self.private_path = self.public_path.with_name("issuer.key")
        self.site = site
        if not self.public_path.exists() and not self.private_path.exists():
            private_pem, public_pem = generate_keypair()
            self.public_path.parent.mkdir(parents=True, exist_ok=True)
            self.private_path.write_bytes(private_pem)
            self.private_path.chmod(0o600)
            self.public_path.write_bytes(public_pem)
            log.info("created demo issuer keys in %s", self.public_path.parent)
        if not self.private_path.exists():
            raise ScenarioError(
                f"scenario uses pass templates, but there is no demo signing key {self.private_path} "
                f"beside {self.public_path.name}; use literal pass texts, or point passes.issuer_keys "
                "at a directory the simulator may create demo keys in"
            )
        self.key = load_private_key(self.private_path)
        self._stranger = None
        self._cache: dict[PassTemplate, str] = {}
        self.now = datetime.now(timezone.utc).replace(microsecond=0)

    @classmethod
    def for_settings(cls, settings) -> "DemoIssuer":
        if not settings.passes.issuer_keys:
            raise ScenarioError("scenario uses pass templates, but the config has no passes.issuer_keys")
        return cls(settings.passes.issuer_keys[0], settings.gate.site)

    def sign(self, template: PassTemplate) -> str:
        if template not in self._cache:
            self._cache[template] = self._issue(template)
        return self._cache[template]

    def _issue(self, t: PassTemplate) -> str:
        import base64

        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from gateway.passes import issue_pass, key_id

        key = self.key
        if t.issuer != "demo":
            self._stranger = self._stranger or Ed25519PrivateKey.generate()
            key = self._stranger
        text = issue_pass(
            key, pass_id=t.id or f"p-{t.person}", person_id=t.person, site_id=t.site or self.site, kind=t.kind,
            valid_from=self.now + timedelta(days=t.from_days), valid_to=self.now + timedelta(days=t.days),
        )
        if t.issuer == "forged":
            # A forger copies our key id into a pass signed with their own key.
            prefix, body = text.split(":", 1)
            raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            raw[:4] = bytes.fromhex(key_id(self.key))
            text = prefix + ":" + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
        return text


def pass_texts(scenario: Scenario, settings) -> list[str | tuple[str, ...] | None]:
    """The QR text each arrival shows, signing templates as needed (a tuple
    when several passes are in the same frame)."""
    issuer = DemoIssuer.for_settings(settings) if any(a.uses_templates for a in scenario.arrivals) else None

    def one(qr):
        if isinstance(qr, _TemplateBox):
            return issuer.sign(qr.pass_)
        return qr if isinstance(qr, str) else None

    texts = []
    for arrival in scenario.arrivals:
        text = one(arrival.qr)
        if arrival.also:
            text = tuple(t for t in (text, *(one(q) for q in arrival.also)) if t is not None)
        texts.append(text)
    return texts


# --- playing a scenario on the fake hardware ----------------------------------------------------


class ScenarioPlayer:
    """Plays arrivals in front of the fake camera and thermometer of a running app.

    Each arrival appears at `at / speed` seconds (or when the previous person
    has been decided, whichever is later), stays until the loop has decided
    (or `reading_timeout_s` + 2 s have passed), then leaves; between people
    nobody is in view for longer than the loop needs to see them gone, so one
    person's pass or readings never count for the next.
    """

    def __init__(self, app, scenario: Scenario, *, speed: float = 1.0, repeat: bool = False,
                 texts: list[str | None] | None = None,
                 on_arrival: Callable[[int, Arrival], None] | None = None):
        self.app = app
        self.scenario = scenario
        self.speed = speed
        self.repeat = repeat
        self.on_arrival = on_arrival
        # Sign templates before the app loads its issuer keys (a demo key may be created).
        self.texts = texts if texts is not None else pass_texts(scenario, app.settings)
        self.played = 0
        self.done = threading.Event()
        self._decided = threading.Condition()
        self._decisions = 0
        app.checkpoint.listeners.append(self._count)

    def seed_registry(self) -> None:
        if self.scenario.registry:
            journal = self.app.journal
            today = beijing_today()
            journal.apply_registry_page(resolve_registry(self.scenario.registry, today),
                                        journal.registry_cursor() or "")

    def _count(self, event, decision) -> None:
        with self._decided:
            self._decisions += 1
            self._decided.notify_all()

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self._play_once(stop)
                if not self.repeat:
                    break
                stop.wait(3.0)
        finally:
            self._nobody()
            self.done.set()

    def _play_once(self, stop: threading.Event) -> None:
        start = time.monotonic()
        settle_until = 0.0
        for index, arrival in enumerate(self.scenario.arrivals):
            due = max(start + arrival.at / self.speed, settle_until)
            if stop.wait(max(0.0, due - time.monotonic())):
                return
            self._show(index, arrival)
            if not self._wait_for_decision(stop):
                log.warning("arrival %d (at %.1f s): no decision within the timeout", index, arrival.at)
            stop.wait(max(0.15, 1.0 / self.speed))  # the person walks through
            self._nobody()
            gone = max(self.app.checkpoint.view_gone_s, self.app.checkpoint.presence_gone_s)
            settle_until = time.monotonic() + gone + NOBODY_MARGIN_S
            self.played += 1

    def _show(self, index: int, arrival: Arrival) -> None:
        hw = self.app.hardware
        gate_direction = self.app.settings.gate.direction
        direction = arrival.direction or (gate_direction if gate_direction in ("in", "out") else "in")
        self.app.checkpoint.set_direction(direction)
        with self._decided:
            self._expect_after = self._decisions
        if arrival.sensor == "fault":
            hw.thermometer.set_absent(True)
        else:
            hw.thermometer.set_absent(False)
            # A vehicle's occupants are measured by the guard: the kiosk's thermometer sees the room.
            object_c = arrival.object_c if arrival.object_c is not None else DEFAULT_AMBIENT_C - 1.0
            hw.thermometer.set(object_c, arrival.ambient_c)
        hw.camera.show(self.texts[index])
        if self.on_arrival:
            self.on_arrival(index, arrival)
        if arrival.guard:
            self._guard_refuses(arrival.guard)
        if arrival.vehicle:
            self._vehicle(arrival)

    def _vehicle(self, arrival: Arrival) -> None:
        """The guard enters the vehicle once its pass (if any) has been read."""
        from gateway.vehicles import Occupant

        checkpoint = self.app.checkpoint
        v = arrival.vehicle
        limit = time.monotonic() + self.app.settings.temperature.reading_timeout_s
        while arrival.qr is not None and checkpoint.vehicle_waiting is None and time.monotonic() < limit:
            time.sleep(0.02)
        occupants = [Occupant(body_c=t, name=v.driver if i == 0 else "") for i, t in enumerate(v.occupants)]
        checkpoint.vehicle_passage("simulator", v.plate, occupants, checkpoint.direction, v.exception)

    def _guard_refuses(self, refusal: str) -> None:
        """The guard taps the refusal once the person is being measured."""
        checkpoint = self.app.checkpoint
        limit = time.monotonic() + self.app.settings.temperature.reading_timeout_s
        while checkpoint._pending is None and time.monotonic() < limit:
            time.sleep(0.02)
        checkpoint.guard_refuse("simulator", refusal, None)

    def _wait_for_decision(self, stop: threading.Event) -> bool:
        limit = time.monotonic() + self.app.settings.temperature.reading_timeout_s + 3.0
        with self._decided:
            while self._decisions <= self._expect_after:
                remaining = limit - time.monotonic()
                if remaining <= 0 or stop.is_set():
                    return False
                self._decided.wait(min(remaining, 0.1))
        return True

    def _nobody(self) -> None:
        hw = self.app.hardware
        hw.camera.show(None)
        hw.thermometer.set_absent(False)
        hw.thermometer.set(DEFAULT_AMBIENT_C - 1.0, DEFAULT_AMBIENT_C)  # the room: below the floor
