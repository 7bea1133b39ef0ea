"""The site policy page's service: one form, validated by the kiosk's own model.

The staff edit visitor mode (1 Feb register / 9 Feb deny), fever threshold,
skin offset, enforcement, the rules posted at the gate and the duty person
and phone (L605, L422). `publish()` merges the form into the site's current
document, bumps the version, validates the result with `gateway.policy.Policy`
(the model the kiosks parse it with, so a document the server accepts is one
every gate accepts) and appends it to the registry feed, which pushes it to
the gates on their next sync.

The gate-rule fields of issue 12 are on the form too: the escalation preset
(level-1..3: choosing a new one sets its fields, which the next save may
edit one by one), mask required, staffing (shift length, hand-over warning,
unstaffed grace, screen or refuse while unstaffed), disinfection times and
overdue minutes, closed gates with the open entrance, vehicle-lane gates,
and the rules posted with the duty person and phone. Form names are flat
(`staffing_shift_h`); `PATHS` places them in the nested model.

One setting is the server's alone: whether printed pass sheets mask names
(张*), kept in `meta` and never sent to the gates.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from gateway.policy import PRESETS, Policy, default_policy
from sync.server import registry
from sync.server.db import Database
from sync.server.people import _audit
from sync.server.schema import meta, registry_state

FORM_FIELDS = ("visitor_mode", "enforcement", "threshold_c", "offset_c", "posted_rules", "duty_person", "duty_phone",
               # gate rules (issue 12): form name -> the Policy field's path in GATE_RULE_PATHS
               "mask_required", "staffing_shift_h", "staffing_handover_warning_min", "staffing_unstaffed_grace_min",
               "staffing_unattended", "disinfection_times", "disinfection_overdue_min", "closed_gates",
               "open_entrance_zh", "open_entrance_en", "vehicle_gates")
# A form name's place in the policy document (flat names on the page, nested in the model).
PATHS: dict[str, tuple[str, ...]] = {
    "staffing_shift_h": ("staffing", "shift_h"),
    "staffing_handover_warning_min": ("staffing", "handover_warning_min"),
    "staffing_unstaffed_grace_min": ("staffing", "unstaffed_grace_min"),
    "staffing_unattended": ("staffing", "unattended"),
    "open_entrance_zh": ("open_entrance", "zh"), "open_entrance_en": ("open_entrance", "en"),
    "vehicle_gates": ("vehicles", "vehicle_gates"),
}
NUMBERS = ("threshold_c", "offset_c")  # empty: None (the gate's own config)
AMOUNTS = ("staffing_shift_h", "staffing_handover_warning_min", "staffing_unstaffed_grace_min",
           "disinfection_overdue_min")  # empty: unchanged
LISTS = ("disinfection_times", "closed_gates", "vehicle_gates")  # separated by spaces, commas or lines


def path_of(field: str) -> tuple[str, ...]:
    return PATHS.get(field, (field,))


def supported(field: str) -> bool:
    return path_of(field)[0] in Policy.model_fields or field == "preset" and "level" in Policy.model_fields


def value_of(document: dict, field: str) -> Any:
    """A form field's value in a policy document (for the page)."""
    value: Any = document
    for key in path_of(field):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def current(db: Database, site_id: str) -> dict[str, Any]:
    """The site's policy document as published, or the kiosk default (version 0: never published)."""
    with db.read() as conn:
        row = conn.execute(select(registry_state.c.payload).where(
            registry_state.c.site_id == site_id, registry_state.c.entity == "policy",
            registry_state.c.entity_id == site_id)).first()
    if row is None:
        return {**default_policy().model_dump(mode="json"), "version": 0}
    return json.loads(row[0])


def _form_values(form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    values, errors = {}, {}
    for field in FORM_FIELDS:
        if field not in form or not supported(field):
            continue
        raw = form[field]
        if field in AMOUNTS:
            text = str(raw).strip() if raw is not None else ""
            if text:
                try:
                    values[field] = float(text)
                except ValueError:
                    errors[field] = f"“{text}” 不是数字 / not a number"
            continue
        if field in LISTS:
            values[field] = [item for item in re.split(r"[\s,，、;；]+", str(raw or "")) if item]
            continue
        if field == "mask_required":
            values[field] = str(raw).strip().lower() in ("1", "true", "yes", "on", "是")
            continue
        if field in NUMBERS:
            text = str(raw).strip() if raw is not None else ""
            if not text:
                values[field] = None
                continue
            try:
                values[field] = round(float(text), 2)
            except ValueError:
                errors[field] = f"“{text}” 不是数字 / not a number"
        elif field == "posted_rules":
            lines = raw if isinstance(raw, list) else str(raw or "").splitlines()
            values[field] = [line.strip() for line in lines if line.strip()]
        else:
            values[field] = str(raw or "").strip()
    return values, errors


def validate(site_id: str, base: dict, form: dict[str, Any]) -> tuple[dict | None, dict[str, str]]:
    """The next document (version + 1) or per-field errors, checked by the kiosk's Policy model."""
    values, errors = _form_values(form)
    document = copy.deepcopy({k: v for k, v in base.items() if k in Policy.model_fields})
    preset_fields: set[str] = set()
    if "preset" in form and supported("preset"):
        preset = str(form["preset"] or "").strip()
        if preset and preset not in PRESETS:
            errors["preset"] = f"“{preset}” 不是预设等级 / not a preset ({', '.join(PRESETS)})"
        elif preset != (base.get("level") or ""):
            # A newly chosen level sets its fields; the form's values for those wait for the next save.
            if preset:
                document.update(copy.deepcopy(PRESETS[preset]))
                preset_fields = set(PRESETS[preset])
            document["level"] = preset or None
    for field, value in values.items():
        path = path_of(field)
        if path[0] in preset_fields:
            continue
        target = document
        for key in path[:-1]:
            target[key] = dict(target.get(key) or {})
            target = target[key]
        target[path[-1]] = value
    document["version"] = int(base.get("version") or 0) + 1
    document["issued_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    document["name"] = str(form.get("name") or base.get("name") or f"{site_id} policy")[:100]
    try:
        Policy.model_validate(document)
    except ValidationError as exc:
        for err in exc.errors():
            errors.setdefault(_field_of(err["loc"]), err["msg"])
    if errors:
        return None, errors
    return json.loads(Policy.model_validate(document).model_dump_json(exclude_none=True)), {}


def _field_of(loc: tuple) -> str:
    """The form field a validation error belongs to (the longest matching path)."""
    path = tuple(str(x) for x in loc)
    best = None
    for field in FORM_FIELDS:
        p = path_of(field)
        if path[:len(p)] == p and (best is None or len(p) > len(path_of(best))):
            best = field
    return best or (path[0] if path else "policy")


def publish(db: Database, site_id: str, form: dict[str, Any], *, by: str,
            expected_version: int | None = None) -> tuple[dict | None, dict[str, str]]:
    """Validate and publish; returns (document, {}) or (None, errors).

    `expected_version` is the version the form was loaded with: when someone
    else published in between, the form is refused instead of overwriting.
    """
    with db.write() as conn:
        row = conn.execute(select(registry_state.c.payload).where(
            registry_state.c.site_id == site_id, registry_state.c.entity == "policy",
            registry_state.c.entity_id == site_id)).first()
        base = json.loads(row[0]) if row else {**default_policy().model_dump(mode="json"), "version": 0}
        if expected_version is not None and int(base.get("version") or 0) != expected_version:
            return None, {"version": f"已被他人修改（现为第 {base.get('version')} 版），请刷新 / "
                                     f"changed by someone else (now version {base.get('version')}): reload"}
        document, errors = validate(site_id, base, form)
        if errors:
            return None, errors
        registry.record_change(db, conn, site_id, "policy", site_id, "upsert", document, by)  # audited there
    return document, {}


def _mask_key(site_id: str) -> str:
    return f"sheet_mask_names:{site_id}"[:64]


def mask_names(db: Database, site_id: str) -> bool:
    with db.read() as conn:
        row = conn.execute(select(meta.c.value).where(meta.c.key == _mask_key(site_id))).first()
    return bool(row and row[0] == "1")


def set_mask_names(db: Database, site_id: str, mask: bool, *, by: str) -> None:
    with db.write() as conn:
        before = conn.execute(select(meta.c.value).where(meta.c.key == _mask_key(site_id))).first()
        if (before is not None and before[0] == "1") == mask:
            return
        conn.execute(meta.delete().where(meta.c.key == _mask_key(site_id)))
        conn.execute(meta.insert().values(key=_mask_key(site_id), value="1" if mask else "0"))
        _audit(conn, actor=by, action="site.mask_names", site_id=site_id, entity="site", entity_id=site_id,
               before={"mask_names": not mask}, after={"mask_names": mask})
