"""The site policy page's service: one form, validated by the kiosk's own model.

The staff edit visitor mode (1 Feb register / 9 Feb deny), fever threshold,
skin offset, enforcement, the rules posted at the gate and the duty person
and phone (L605, L422). `publish()` merges the form into the site's current
document, bumps the version, validates the result with `gateway.policy.Policy`
(the model the kiosks parse it with, so a document the server accepts is one
every gate accepts) and appends it to the registry feed, which pushes it to
the gates on their next sync.

The rules posted and the duty person/phone are Policy fields added on the
`rules` branch (issue 12); the form offers them when the model has them.

One setting is the server's alone: whether printed pass sheets mask names
(张*), kept in `meta` and never sent to the gates.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from gateway.policy import Policy, default_policy
from sync.server import registry
from sync.server.db import Database
from sync.server.people import _audit
from sync.server.schema import meta, registry_state

FORM_FIELDS = ("visitor_mode", "enforcement", "threshold_c", "offset_c", "posted_rules", "duty_person", "duty_phone")


def supported(field: str) -> bool:
    return field in Policy.model_fields


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
        if field in ("threshold_c", "offset_c"):
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
    document = {k: v for k, v in base.items() if k in Policy.model_fields}
    document.update(values)
    document["version"] = int(base.get("version") or 0) + 1
    document["issued_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    document["name"] = str(form.get("name") or base.get("name") or f"{site_id} policy")[:100]
    try:
        Policy.model_validate(document)
    except ValidationError as exc:
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "policy"
            errors.setdefault(field, err["msg"])
    if errors:
        return None, errors
    return json.loads(Policy.model_validate(document).model_dump_json(exclude_none=True)), {}


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
