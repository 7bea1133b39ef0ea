"""What the kiosk knows from its registry copy (kept in the journal by sync).

- `registry_entry()`: a verified pass's person, revocation, home observation,
  health-code colour and filed visitor case, as `decision.RegistryEntry`;
- `load_keys()`: issuer keys from the config plus those the registry pushed;
- `current_policy()`: the config's policy unless the registry pushed a newer one;
- `settings_under()`: the config with the policy's threshold and offset in force.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone
from typing import Any

from gateway.config import Settings
from gateway.decision import RegistryEntry
from gateway.journal import Journal
from gateway.passes import PassVerdict, load_public_keys
from gateway.policy import Policy, PolicyError, newest, parse_policy, policy_from_settings
from gateway.staleness import registry_staleness
from pydantic import ValidationError
from sync.protocol import registry_payload

log = logging.getLogger(__name__)

CHINA_TZ = timezone(timedelta(hours=8))  # registry dates (observation_until) are local dates


class BadRegistryRecord(ValueError):
    """A registry record the kiosk cannot read safely (not an object, an
    unreadable observation date). The loop refuses that person automatically
    and shows the guard why; everyone else goes on."""


def _record(journal: Journal, entity: str, entity_id: str) -> dict | None:
    """The record as `sync.protocol`'s payload model for its entity, as a dict; None if absent."""
    payload = journal.registry_get(entity, entity_id)
    if payload is None:
        return None
    if not isinstance(payload, dict):
        raise BadRegistryRecord(f"registry {entity} {entity_id} is not an object ({type(payload).__name__})")
    try:
        return registry_payload(entity, payload).model_dump()
    except ValidationError as exc:
        raise BadRegistryRecord(f"registry {entity} {entity_id}: {_short(exc)}") from None


def _short(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}"


def registry_entry(journal: Journal, verdict: PassVerdict | None, now: datetime) -> tuple[RegistryEntry | None, str | None]:
    """What the registry copy says about a verified pass: (entry, health code)."""
    if verdict is None or not verdict.signature_ok or not verdict.person_id:
        return None, None
    person = _record(journal, "person", verdict.person_id)
    revoked = journal.registry_get("revocation", verdict.pass_id) is not None if verdict.pass_id else False
    case = _record(journal, "visitor_case", verdict.person_id) if verdict.kind == "visitor" else None
    if case and case.get("valid_until"):
        case_until = _parse_until(case["valid_until"])
        if case_until is None or case_until <= now:  # unreadable: not honoured (fail closed)
            case = None
    if person is None and not revoked and case is None:
        return None, None
    person = person or {}
    until = _parse_until(person.get("observation_until"))
    if until is None and person.get("observation_until") and person.get("status") != "moved_out":
        # Dropping an unreadable end of home observation would admit the person.
        raise BadRegistryRecord(f"registry person {verdict.person_id}: observation_until "
                                f"{str(person.get('observation_until'))[:40]!r} is not a date")
    status = "active"
    if person.get("status") == "moved_out":
        status = "moved_out"
    elif until is not None and now < until:
        status = "under_observation"
    risk = person.get("risk")
    return RegistryEntry(
        person_id=verdict.person_id,
        site_id=person.get("site"),
        status=status,
        observation_until=until,
        pass_revoked=revoked,
        name=str(person.get("name") or ""),
        unit=str(person.get("unit") or ""),
        visitor_special_case=case is not None,
    ), (risk if risk in ("green", "yellow", "red") else None)


def _parse_until(value: Any) -> datetime | None:
    """An ISO date means "through that day" (China time); a datetime is taken as is."""
    if not value:
        return None
    try:
        if isinstance(value, str) and len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ) + timedelta(days=1)
        if not isinstance(value, str):
            raise ValueError("not a string")
        moment = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        log.warning("registry date %r is not ISO 8601; ignored", value)
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def registry_stale(journal: Journal, settings: Settings, now: datetime) -> bool:
    """Is the registry copy too old (or half-applied) to vouch for a pass?

    Only a kiosk that syncs can go stale; a kiosk without `[sync]` runs on
    the registry entries it was given. A copy never synced, or stopped in
    the middle of a snapshot, is stale: it may lack revocations.
    """
    limit = settings.sync.staleness_limit_h if settings.sync is not None else None
    return registry_staleness(journal.registry_synced_at(), journal.registry_cursor(), now, limit) is not None


def load_keys(settings: Settings, journal: Journal) -> dict:
    """Issuer keys from the config plus those the registry pushed."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from gateway.passes import key_id

    keys = load_public_keys(settings.passes.issuer_keys)
    for kid, payload in journal.registry_all("key").items():
        try:
            key = load_pem_public_key(str(payload.get("public_pem", "")).encode())
        except (ValueError, TypeError, AttributeError):
            log.warning("registry key %s is not a PEM public key; ignored", kid)
            continue
        if isinstance(key, Ed25519PublicKey):
            keys[key_id(key)] = key
    return keys


def current_policy(settings: Settings, journal: Journal) -> Policy:
    """The config's policy, unless the registry pushed a newer version for this site."""
    local = policy_from_settings(settings)
    pushed = journal.registry_get("policy", settings.gate.site)
    if pushed is None:
        return local
    try:
        return newest(local, parse_policy(pushed, source="registry policy"))
    except (PolicyError, ValueError, TypeError, AttributeError) as exc:  # a bad push never stops the kiosk
        log.warning("registry policy ignored: %s", exc)
        return local


def settings_under(policy: Policy, settings: Settings) -> Settings:
    """The kiosk's settings with the policy's fever threshold and skin offset,
    where the registry's site policy sets them (None keeps the config's)."""
    update = {k: getattr(policy, k) for k in ("threshold_c", "offset_c") if getattr(policy, k, None) is not None}
    if not update:
        return settings
    return settings.model_copy(update={"temperature": settings.temperature.model_copy(update=update)})
