"""Residents, returnees and passes on the registry app: the staff pages and the JSON API.

`install(app)` (one line in create_app) mounts the pages (sync.server.web:
people_pages, import_pages, pass_pages) and these staff endpoints, each
checked for the account's role and site by `site_guard`:

    GET  /api/v1/staff/sites/{site}/people?building=&name=&phone=&kind=&observation=
    POST /api/v1/staff/sites/{site}/returnees                 register a return (14 days from arrival)
    PUT  /api/v1/staff/sites/{site}/people/{id}/observation-end   {until, reason}
    POST /api/v1/staff/sites/{site}/passes                    issue for person_ids, a building or a household
    GET  /api/v1/staff/sites/{site}/people/{id}/passes        a person's passes
    POST /api/v1/staff/sites/{site}/people/{id}/passes/revoke every pass the person holds
    GET  /api/v1/staff/sites/{site}/passes/batches/{batch}.pdf   the printable sheet
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from sync import protocol as p
from sync.server import auth, issuing, people, sheets, site_policy
from sync.server.registry import RegistryError
from sync.server.web import site_guard

EDITORS = ("admin", "worker")
SitePath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
IdPath = Annotated[str, Path(min_length=1, max_length=128)]
_bearer = HTTPBearer(auto_error=False)


def staff_token(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> auth.Staff:
    """The staff account of the bearer token (a gate token is not one)."""
    if creds is None:
        raise HTTPException(401, {"error": "unauthorized", "detail": "a staff bearer token is required"},
                            headers={"WWW-Authenticate": "Bearer"})
    member = auth.staff_for_token(request.app.state.db, creds.credentials)
    if member is None:
        raise HTTPException(401, {"error": "unauthorized", "detail": "unknown or revoked staff token"},
                            headers={"WWW-Authenticate": "Bearer"})
    return member


StaffDep = Annotated[auth.Staff, Depends(staff_token)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReturneeIn(Body):
    person_id: str = Field(min_length=1, max_length=128)
    arrival_date: date
    origin: str = Field(min_length=1, max_length=64)
    contact: str = Field("", max_length=64)


class ObservationEndIn(Body):
    until: date | None = Field(description="Last day of observation; null ends it")
    reason: str = Field(min_length=1, max_length=200)


class IssueIn(Body):
    person_ids: list[Annotated[str, Field(max_length=128)]] = Field([], max_length=10_000)
    building: str = Field("", max_length=32)
    household_of: str = Field("", max_length=128, description="everyone living in this person's household")
    days: int = Field(30, ge=1, le=issuing.MAX_DAYS)


class RevokeIn(Body):
    reason: str = Field(min_length=1, max_length=200)


def _conflict(exc: Exception):
    raise HTTPException(409, {"error": "conflict", "detail": str(exc)})


def _json_person(row: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in row.items()
            if k not in ("natural_key", "updated_at")} | {"address": people.address(row)}


def _json_pass(row: dict) -> dict:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


router = APIRouter(prefix=f"{p.API_PREFIX}/staff/sites/{{site_id}}", tags=["staff: residents and passes"])


@router.get("/people")
def list_people(request: Request, site_id: SitePath, who: StaffDep, building: str = "", name: str = "",
                phone: str = "", kind: str = "", observation: str = "", status: str = "active",
                limit: int = 200, offset: int = 0):
    site_guard(who, site_id, change=False)
    filters = people.Filters(building=building[:32], name=name[:64], phone=phone[:32],
                             kind=kind if kind in people.KINDS else "",
                             observation=observation if observation in ("under", "returnee") else "",
                             status=status if status in ("", *people.STATUSES) else "active")
    rows, total = people.search(request.app.state.db, site_id, filters, limit=max(1, min(limit, 1000)),
                                offset=max(0, offset))
    return {"people": [_json_person(r) for r in rows], "total": total}


@router.post("/returnees")
def register_returnee(request: Request, site_id: SitePath, body: ReturneeIn, who: StaffDep):
    site_guard(who, site_id, change=True, roles=EDITORS)
    try:
        saved = people.register_returnee(request.app.state.db, site_id, body.person_id,
                                         arrival_date=body.arrival_date, origin=body.origin, contact=body.contact,
                                         by=who.name)
    except RegistryError as exc:
        _conflict(exc)
    return {"person": _json_person(saved.row)}


@router.put("/people/{person_id}/observation-end")
def change_observation_end(request: Request, site_id: SitePath, person_id: IdPath, body: ObservationEndIn,
                           who: StaffDep):
    site_guard(who, site_id, change=True, roles=EDITORS)
    try:
        saved = people.set_observation_end(request.app.state.db, site_id, person_id, body.until,
                                           reason=body.reason, by=who.name)
    except RegistryError as exc:
        _conflict(exc)
    return {"person": _json_person(saved.row)}


@router.post("/passes")
def issue_passes(request: Request, site_id: SitePath, body: IssueIn, who: StaffDep):
    site_guard(who, site_id, change=True, roles=EDITORS)
    db = request.app.state.db
    ids = list(body.person_ids)
    if body.building:
        rows, _ = people.search(db, site_id, people.Filters(building=body.building), limit=10_000)
        ids += [r["person_id"] for r in rows]
    if body.household_of:
        try:
            ids += [r["person_id"] for r in people.household(db, site_id, body.household_of) if r["status"] == "active"]
        except RegistryError as exc:
            _conflict(exc)
    if not ids:
        raise HTTPException(422, {"error": "invalid", "detail": "give person_ids, a building or household_of"})
    try:
        result = issuing.issue(db, site_id, ids, days=body.days, passphrase=request.app.state.issuer_passphrase,
                               by=who.name)
    except RegistryError as exc:
        _conflict(exc)
    return {"batch_id": result.batch_id, "issued": [_json_pass(r) for r in result.issued],
            "refused": [{"person_id": pid, "reason": why} for pid, why in result.refused]}


@router.get("/people/{person_id}/passes")
def person_passes(request: Request, site_id: SitePath, person_id: IdPath, who: StaffDep):
    site_guard(who, site_id, change=False)
    return {"passes": [_json_pass(r) for r in issuing.passes_of(request.app.state.db, site_id, person_id)]}


@router.post("/people/{person_id}/passes/revoke")
def revoke_person_passes(request: Request, site_id: SitePath, person_id: IdPath, body: RevokeIn, who: StaffDep):
    site_guard(who, site_id, change=True, roles=EDITORS)
    revoked = issuing.revoke_person(request.app.state.db, site_id, person_id, reason=body.reason, by=who.name)
    return {"revoked": revoked}


@router.get("/passes/batches/{batch_id}.pdf")
def batch_pdf(request: Request, site_id: SitePath, batch_id: Annotated[str, Path(max_length=40)], who: StaffDep):
    site_guard(who, site_id, change=False)
    db = request.app.state.db
    rows = issuing.batch(db, site_id, batch_id)
    if not rows:
        raise HTTPException(404, {"error": "not_found", "detail": f"no batch {batch_id}"})
    by_id = {r["person_id"]: r for r in people.people_by_ids(db, site_id, [r["person_id"] for r in rows])}
    pdf = sheets.render_pdf(sheets.cards_for(rows, by_id), site_name=sheets.site_title(db, site_id),
                            mask=site_policy.mask_names(db, site_id))
    return Response(pdf, media_type="application/pdf")


def install(app: FastAPI, issuer_passphrase: bytes | None = None) -> None:
    """Mount the residents/passes pages and API; the passphrase unlocks the issuing keys."""
    from sync.server.web import import_pages, pass_pages, people_pages

    app.state.issuer_passphrase = issuer_passphrase
    app.include_router(router)
    for module in (people_pages, import_pages, pass_pages):
        app.include_router(module.router)
