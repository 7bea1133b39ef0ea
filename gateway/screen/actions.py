"""Guard actions: validate the form, write the journal, update the screen.

Each action is recorded with the operator who is signed in and the journal's
timestamp. Validation returns field errors as i18n keys (`err.*`) so the page
shows them next to the right field in the guard's language.

Actions that move the gate (override, visitor admission, re-measure) go
through the loop (`control`), which commits to the journal before it acts.
"""

from __future__ import annotations

import hmac
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.fever_case import OUTCOMES, CaseError, subject_of
from gateway.journal import Journal, JournalWriteError
from gateway.screen.state import ScreenState
from gateway.thermometry import is_fever

OVERRIDE_REASONS = ("resident_fault", "remeasured_ok", "registered_visitor", "emergency", "other")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0\d{2,3}-?\d{7,8}$")
_NAME_PUNCT = set(" ·•.-'")
TEMP_RANGE = (34.0, 43.0)


class GateControl(Protocol):
    """What the screen asks of the running loop."""

    fever: Any  # gateway.fever_flow.FeverFlow

    def guard_open(self, operator: str, reason: str, note: str, for_seq: int | None) -> dict: ...

    def request_remeasure(self, operator: str, for_seq: int | None) -> dict: ...

    def admit_visitor(self, operator: str, visitor: dict) -> dict: ...

    def fever_case(self, operator: str, case_id: str, *, clinical_c: float | None, outcome: str | None,
                   note: str) -> dict: ...

    def hand_recorded_fever(self, *, source: str, body_c: float, operator: str, name: str, subject: str,
                            trigger_seq: int | None): ...


class ActionError(Exception):
    """A guard action was refused: `errors` maps a field (or "form") to (key, values)."""

    def __init__(self, errors: dict[str, tuple[str, dict]], status: int = 422):
        super().__init__(json.dumps({k: v[0] for k, v in errors.items()}))
        self.errors = errors
        self.status = status

    def to_json(self) -> dict:
        return {"ok": False, "errors": {k: {"key": key, "values": values} for k, (key, values) in self.errors.items()}}


@dataclass
class _Form:
    data: dict[str, Any]
    errors: dict[str, tuple[str, dict]] = field(default_factory=dict)

    def text(self, name: str, *, max_len: int, required: bool = True) -> str:
        value = self.data.get(name)
        value = "" if value is None else str(value)
        # Strip control characters: a ledger is printed and exported.
        value = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C").strip()
        if required and not value:
            self.errors[name] = ("err.required", {})
        elif len(value) > max_len:
            self.errors[name] = ("err.too_long", {"max": max_len})
        return value

    def name(self, name: str, *, max_len: int = 40) -> str:
        value = self.text(name, max_len=max_len)
        if value and name not in self.errors:
            if any(not (ch.isalpha() or ch in _NAME_PUNCT) for ch in value):
                self.errors[name] = ("err.name", {})
        return value

    def phone(self, name: str) -> str:
        value = re.sub(r"[\s()]", "", self.text(name, max_len=20))
        if value and name not in self.errors:
            if value.startswith("+86"):
                value = value[3:]
            if not (_MOBILE.match(value) or _LANDLINE.match(value)):
                self.errors[name] = ("err.phone", {})
        return value

    def temperature(self, name: str) -> float | None:
        raw = self.data.get(name)
        if raw in (None, ""):
            self.errors[name] = ("err.required", {})
            return None
        try:
            value = round(float(str(raw).replace("℃", "").strip()), 1)
        except ValueError:
            self.errors[name] = ("err.temperature", {})
            return None
        if not TEMP_RANGE[0] <= value <= TEMP_RANGE[1]:
            self.errors[name] = ("err.temperature", {})
            return None
        return value

    def flag(self, name: str) -> bool:
        return str(self.data.get(name, "")).lower() in ("1", "true", "on", "yes")

    def raise_if_bad(self) -> None:
        if self.errors:
            raise ActionError({"form": ("err.form", {}), **self.errors})


class GuardActions:
    """The guard's buttons. Each method raises ActionError or returns a result dict."""

    def __init__(self, *, journal: Journal, state: ScreenState, control: GateControl,
                 gate_id: str, pin: str | None, threshold_c: float, visitor_mode):
        self.journal = journal
        self.state = state
        self.control = control
        self.gate_id = gate_id
        self.pin = pin
        self.threshold_c = threshold_c
        # The policy can change while the kiosk runs (pushed by the registry).
        self._visitor_mode = visitor_mode if callable(visitor_mode) else (lambda: visitor_mode)

    # --- the shift ----------------------------------------------------------------

    def restore_shift(self) -> None:
        """After a restart the guard on shift stays signed in."""
        raw = self.journal.get_meta("shift_operator")
        if raw:
            self.state.set_operator(json.loads(raw))

    def operator(self) -> str:
        op = self.state.operator
        if not op:
            raise ActionError({"form": ("shift.need", {})}, status=403)
        return op["name"]

    def sign_in(self, data: dict) -> dict:
        form = _Form(data)
        name = form.text("name", max_len=40)
        pin = str(data.get("pin") or "")
        if self.pin and not hmac.compare_digest(pin.encode(), self.pin.encode()):
            form.errors["pin"] = ("err.pin", {})
        if name and self.control.fever.open_case_for(subject_of(staff=name)) is not None:
            form.errors["name"] = ("err.guard_fever", {})  # a guard with a fever stops work (SPEC rule 20)
        form.raise_if_bad()
        previous = self.state.operator
        try:
            if previous and previous["name"] != name:
                self.journal.add_ledger_entry("shifts", {"operator_id": previous["name"], "action": "sign_out"},
                                              operator=previous["name"], gate=self.gate_id)
            row = self.journal.add_ledger_entry("shifts", {"operator_id": name, "action": "sign_in"},
                                                operator=name, gate=self.gate_id)
        except JournalWriteError as exc:
            raise ActionError({"form": ("err.journal", {"detail": str(exc)})}, status=503) from exc
        operator = {"name": name, "since": row["time"]}
        self.journal.set_meta("shift_operator", json.dumps(operator, ensure_ascii=False))
        self.state.set_operator(operator)
        self.state.ask_for_relief(None)  # someone is on duty again
        self.state.set_notice("done.signin", operator=name)
        return {"ok": True, "operator": operator}

    def sign_out(self) -> dict:
        name = self.operator()
        self._ledger("shifts", {"operator_id": name, "action": "sign_out"}, name)
        self.journal.set_meta("shift_operator", "")
        self.state.set_operator(None)
        self.state.set_notice("done.signout", operator=name)
        return {"ok": True}

    # --- the gate -------------------------------------------------------------------

    def override(self, data: dict) -> dict:
        operator = self.operator()
        form = _Form(data)
        reason = str(data.get("reason") or "")
        if reason not in OVERRIDE_REASONS:
            form.errors["reason"] = ("err.reason", {})
        note = form.text("note", max_len=200, required=False)
        if reason == "other" and not note and "note" not in form.errors:
            form.errors["note"] = ("err.note_other", {})
        form.raise_if_bad()
        try:
            event = self.control.guard_open(operator, reason, note, _int_or_none(data.get("for_seq")))
        except ValueError as exc:  # OverrideRefused: not the person at the gate, or the wrong kind of person
            raise ActionError({"form": (getattr(exc, "key", "err.form"), {})}) from None
        if event.get("unlogged"):
            self.state.set_notice("done.override_unlogged")
        else:
            self.state.set_notice("done.override", operator=operator)
        return {"ok": True, "seq": event.get("seq"), "logged": not event.get("unlogged")}

    def remeasure(self, data: dict) -> dict:
        operator = self.operator()
        try:
            event = self.control.request_remeasure(operator, _int_or_none(data.get("for_seq")))
        except LookupError:
            raise ActionError({"form": ("err.no_decision", {})}) from None
        self.state.set_notice("done.remeasure")
        return {"ok": True, "seq": event["seq"]}

    def fever_case(self, data: dict) -> dict:
        """The case dialog: the clinical thermometer's reading, and/or the decision that closes it."""
        operator = self.operator()
        form = _Form(data)
        case_id = str(data.get("case_id") or "")
        clinical_c = form.temperature("clinical_c") if str(data.get("clinical_c") or "").strip() else None
        outcome = str(data.get("outcome") or "") or None
        if outcome is not None and outcome not in OUTCOMES:
            form.errors["outcome"] = ("err.case_outcome", {})
        note = form.text("note", max_len=200, required=outcome in ("referred", "refused"))
        if outcome is None and clinical_c is None and "clinical_c" not in form.errors:
            form.errors["clinical_c"] = ("err.case_nothing", {})
        form.raise_if_bad()
        try:
            result = self.control.fever_case(operator, case_id, clinical_c=clinical_c, outcome=outcome, note=note)
        except CaseError as exc:
            raise ActionError({"form": ("err.form", {}), exc.field: (exc.key, exc.values)}) from None
        except JournalWriteError as exc:
            raise ActionError({"form": ("err.journal", {"detail": str(exc)})}, status=503) from exc
        self.state.set_notice("done.case_" + (outcome or "clinical"), operator=operator)
        return {"ok": True, **result}

    # --- ledgers --------------------------------------------------------------------

    def register_visitor(self, data: dict) -> dict:
        operator = self.operator()
        form = _Form(data)
        entry = {
            "name": form.name("name"),
            "origin": form.text("origin", max_len=40),
            "phone": form.phone("phone"),
            "address": form.text("address", max_len=100),
            "reason": form.text("reason", max_len=100),
            "visiting": form.text("visiting", max_len=60),
            "temperature_c": form.temperature("temperature_c"),
            "special_case": int(form.flag("special_case")),
            "filed_ref": form.text("filed_ref", max_len=40, required=form.flag("special_case")) or None,
        }
        admit = form.flag("admit")
        if admit and entry["temperature_c"] is not None and is_fever(entry["temperature_c"], self.threshold_c):
            form.errors["temperature_c"] = ("err.fever_no_admit", {"threshold": self.threshold_c})
        if admit and self._visitor_mode() == "deny" and not (entry["special_case"] and entry["filed_ref"]):
            form.errors.setdefault("filed_ref", ("err.filed_ref", {}))
        form.raise_if_bad()
        row = self._ledger("visitors", entry, operator)
        result = {"ok": True, "visitor": row}
        case = self._hand_recorded("visitor_form", entry["temperature_c"], operator, entry["name"],
                                   subject_of(visitor=str(row["event_seq"])), row["event_seq"])
        if case is not None:
            result["case_id"] = case.case_id
        if admit:
            event = self.control.admit_visitor(operator, row)
            result["seq"] = event.get("seq")
        self.state.set_notice("done.visitor", name=entry["name"])
        return result

    def staff_temperature(self, data: dict) -> dict:
        operator = self.operator()
        form = _Form(data)
        person = form.name("person") if data.get("person") else operator
        period = str(data.get("period") or "")
        if period not in ("morning", "evening"):
            form.errors["period"] = ("err.period", {})
        temperature = form.temperature("temperature_c")
        form.raise_if_bad()
        row = self._ledger("staff_temperatures", {"person": person, "period": period, "temperature_c": temperature},
                           operator)
        case = self._hand_recorded("staff_form", temperature, operator, person, subject_of(staff=person),
                                   row["event_seq"])
        if case is None:
            self.state.set_notice("done.staff_temp", person=person)
            return {"ok": True}
        # A guard with a fever stops work (SPEC rule 20): signed out, the screen asks for relief.
        if self.state.operator and self.state.operator["name"] == person:
            self._ledger("shifts", {"operator_id": person, "action": "sign_out"}, person)
            self.journal.set_meta("shift_operator", "")
            self.state.set_operator(None)
        self.state.ask_for_relief(person, case.case_id)
        self.state.set_notice("done.staff_fever", person=person)
        return {"ok": True, "case_id": case.case_id, "relief": True}

    def disinfection(self, data: dict) -> dict:
        operator = self.operator()
        form = _Form(data)
        note = form.text("note", max_len=200, required=False)
        form.raise_if_bad()
        self._ledger("disinfections", {"note": note}, operator)
        self.state.set_notice("done.disinfect")
        return {"ok": True}

    # --- plumbing -------------------------------------------------------------------

    def _hand_recorded(self, source: str, body_c: float | None, operator: str, name: str, subject: str,
                       trigger_seq: int | None):
        if body_c is None or not is_fever(body_c, self.threshold_c):
            return None
        try:
            return self.control.hand_recorded_fever(source=source, body_c=body_c, operator=operator, name=name,
                                                    subject=subject, trigger_seq=trigger_seq)
        except JournalWriteError as exc:
            raise ActionError({"form": ("err.journal", {"detail": str(exc)})}, status=503) from exc

    def _ledger(self, table: str, entry: dict, operator: str) -> dict:
        try:
            return self.journal.add_ledger_entry(table, entry, operator=operator, gate=self.gate_id)
        except JournalWriteError as exc:
            raise ActionError({"form": ("err.journal", {"detail": str(exc)})}, status=503) from exc

    def _append(self, fields: dict) -> dict:
        try:
            return self.journal.append(fields)
        except JournalWriteError as exc:
            raise ActionError({"form": ("err.journal", {"detail": str(exc)})}, status=503) from exc


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
