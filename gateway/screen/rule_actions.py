"""The guard's gate-rule actions (issue 12), beside `actions.GuardActions`:

- ``refuse``: one tap, "no mask" (L1123, L1390) or "refused to be measured"
  (L349): the person in front is refused and logged with the operator;
- ``vehicle``: a vehicle at the vehicle lane, with every occupant's
  temperature (L1123, L1125, L424; gateway/vehicles.py).

Both go through the loop (`control`), which commits to the journal first.
"""

from __future__ import annotations

from gateway.decision import GUARD_REFUSALS
from gateway.journal import JournalWriteError
from gateway.screen.actions import ActionError, GuardActions, _Form, _int_or_none
from gateway.vehicles import MAX_OCCUPANTS, Occupant, PlateError, normalise_plate


def rule_actions(guard: GuardActions) -> dict:
    """The screen's handlers by action name (merged into the app's table)."""
    return {"refuse": lambda data: refuse(guard, data), "vehicle": lambda data: vehicle(guard, data),
            "vehicle-reading": lambda data: vehicle_reading(guard)}


def vehicle_reading(guard: GuardActions) -> dict:
    """An occupant measured by the kiosk's thermometer: its body-equivalent value, for the form."""
    guard.operator()
    reading = guard.control.thermometer_now()
    if reading is None:
        raise ActionError({"form": ("err.no_thermometer_reading", {})})
    return {"ok": True, "body_c": round(reading.body_c, 1)}


def refuse(guard: GuardActions, data: dict) -> dict:
    operator = guard.operator()
    refusal = str(data.get("refusal") or "")
    if refusal not in GUARD_REFUSALS:
        raise ActionError({"form": ("err.refusal", {})})
    if refusal == "no_mask" and not guard.control.policy.mask_required:
        raise ActionError({"form": ("err.mask_not_required", {})})
    try:
        event = guard.control.guard_refuse(operator, refusal, _int_or_none(data.get("for_seq")))
    except JournalWriteError as exc:
        raise ActionError({"form": ("err.journal", {"detail": str(exc)})}, status=503) from exc
    guard.state.set_notice(f"done.{refusal}", operator=operator)
    return {"ok": True, "seq": event.get("seq")}


def vehicle(guard: GuardActions, data: dict) -> dict:
    operator = guard.operator()
    form = _Form(data)
    plate = form.text("plate", max_len=12)
    if plate and "plate" not in form.errors:
        try:
            plate = normalise_plate(plate)
        except PlateError:
            form.errors["plate"] = ("err.plate", {})
    direction = str(data.get("direction") or "in")
    if direction not in ("in", "out"):
        form.errors["direction"] = ("err.direction", {})
    occupants = []
    for i in range(MAX_OCCUPANTS):
        raw = data.get(f"occupant_{i}_c")
        if raw in (None, ""):
            continue
        temperature = form.temperature(f"occupant_{i}_c")
        name = form.text(f"occupant_{i}_name", max_len=40, required=False)
        source = "thermometer" if data.get(f"occupant_{i}_source") == "thermometer" else "guard"
        occupants.append(Occupant(body_c=temperature, name=name, source=source))
    if not occupants:
        form.errors["occupant_0_c"] = ("err.occupants", {})
    exception = form.text("exception", max_len=200, required=False)
    form.raise_if_bad()
    try:
        event = guard.control.vehicle_passage(operator, plate, occupants, direction, exception)
    except JournalWriteError as exc:
        raise ActionError({"form": ("err.journal", {"detail": str(exc)})}, status=503) from exc
    guard.state.set_notice("done.vehicle", plate=plate)
    return {"ok": True, "seq": event.get("seq"), "decision": event.get("decision")}
