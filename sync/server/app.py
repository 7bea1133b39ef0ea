"""The registry server's HTTP API (FastAPI). `create_app(db_url)` builds it.

Gate endpoints (bearer token from `checkpoint registry gate add`):
    POST /api/v1/streams/{stream_id}/events        upload a batch
    GET  /api/v1/sites/{site}/registry              change feed (since, ETag/304, 410)
    GET  /api/v1/sites/{site}/registry/snapshot     paged current state
Staff endpoints (bearer token from `checkpoint registry staff add`) under
/api/v1/staff/...: people, observation, revocations, keys, policy, visitor
cases, fever alerts, daily report. Each checks the account's role and sites.
Staff pages (password log-in) live under /registry (sync.server.web).
    GET  /api/v1/time                               server time (no auth)

Every response carries `X-Server-Time`. Bodies over 1 MiB get 413, malformed
ones 422 (or 400 for a broken gzip body); database contention is 503 with
Retry-After, never a 500.

Health data older than `retention_days` is purged at start-up and hourly in a
worker thread (sync.server.retention).
"""


import asyncio
import contextlib
import json
import logging
import threading
import zlib
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sync import protocol as p
from sync.server import auth, notify, people_api, registry, web
from sync.server.web import site_guard
from sync.server.db import DEFAULT_DB_URL, Database, open_database
from sync.server.append_async import AsyncAppender
from sync.server.enrolment import enrolment_router
from sync.server.ingest import Diverged, Gap, StreamForbidden, ingest
from sync.server.notify_config import NotifyConfig
from sync.server.ratelimit import LoginThrottle, RateLimiter
from sync.server.retention import DEFAULT_RETENTION_DAYS, PURGE_INTERVAL_S, check_retention_days, purge_periodically
from sync.server.schema import migrate

log = logging.getLogger(__name__)

StreamPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
SitePath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9*][A-Za-z0-9_.-]*$")]
IdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")]
MAX_INFLATED_BYTES = 4 * p.MAX_BODY_BYTES


def _now_iso() -> str:
    return p.utcnow().isoformat()


def _error(status: int, error: str, detail: Any = None, headers: dict | None = None) -> Response:
    return _reply(p.ErrorReply(error=error, detail=jsonable_encoder(detail), server_time=p.utcnow()),
                  status, headers)


def _reply(model: p.Wire, status: int = 200, headers: dict | None = None, **dump) -> Response:
    """Every sync reply is built as its `sync.protocol` model, so its shape is checked here."""
    return Response(model.model_dump_json(**dump), status_code=status, headers=headers,
                    media_type="application/json")


class BodyLimitAndServerTime:
    """ASGI middleware: stamp every response with the server time; refuse big
    bodies before the app parses them; inflate gzip request bodies (bounded)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_time(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((p.SERVER_TIME_HEADER.lower().encode(), _now_iso().encode()))
                message = {**message, "headers": headers}
            await send(message)

        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send_with_time)

        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > p.MAX_BODY_BYTES):
            return await _error(413, "too_large", f"bodies are limited to {p.MAX_BODY_BYTES} bytes")(
                scope, receive, send_with_time)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > p.MAX_BODY_BYTES:
                return await _error(413, "too_large", f"bodies are limited to {p.MAX_BODY_BYTES} bytes")(
                    scope, receive, send_with_time)
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        encoding = headers.get(b"content-encoding", b"").lower()
        if encoding == b"gzip":
            try:
                inflater = zlib.decompressobj(wbits=31)
                body = inflater.decompress(body, MAX_INFLATED_BYTES)
                if inflater.unconsumed_tail:
                    return await _error(413, "too_large", "the inflated body is too large")(
                        scope, receive, send_with_time)
            except zlib.error as exc:
                return await _error(400, "bad_encoding", f"not valid gzip: {exc}")(scope, receive, send_with_time)
        elif encoding not in (b"", b"identity"):
            return await _error(415, "bad_encoding", "only gzip request bodies are supported")(
                scope, receive, send_with_time)
        new_headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"content-encoding")]
        new_headers.append((b"content-length", str(len(body)).encode()))
        scope = {**scope, "headers": new_headers}
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send_with_time)


# --- staff request bodies --------------------------------------------------------


class StaffBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        return p.no_nul_anywhere(data)  # PostgreSQL text cannot hold NUL: a 422, not a 500


class PersonIn(StaffBody):
    person_id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=64)
    unit: str = Field("", max_length=64)
    status: str = Field("active", pattern="^(active|moved_out)$")
    observation_until: date | None = None
    risk: str | None = Field(None, pattern="^(green|yellow|red)$")
    returnee: bool = False


class ObservationIn(StaffBody):
    until: date | None = Field(description="Last day of observation; null ends it")
    risk: str | None = Field(None, pattern="^(green|yellow|red)$")
    returnee: bool | None = None
    reason: str | None = Field(None, max_length=200, description="Required to change an end date already set")


class RevocationIn(StaffBody):
    pass_id: str = Field(min_length=1, max_length=128)
    reason: str = Field("", max_length=200)


class KeyIn(StaffBody):
    public_pem: str = Field(min_length=1, max_length=2000)


class PolicyIn(StaffBody):
    document: dict[str, Any]


class VisitorCaseIn(StaffBody):
    case_id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=64)
    phone: str = Field("", max_length=32)
    visiting: str = Field("", max_length=64)
    valid_until: date


class ChangeOut(BaseModel):
    change_seq: int | None = None
    result: dict[str, Any] | str | int | None = None


def create_app(db_url: str = DEFAULT_DB_URL, *, db: Database | None = None, gate_rate: float = 50.0,
               gate_burst: float = 100.0, global_rate: float = 2000.0, global_burst: float = 4000.0,
               retention_days: int = DEFAULT_RETENTION_DAYS, purge_interval_s: float = PURGE_INTERVAL_S,
               notify_config: NotifyConfig | None = None, redis_url: str | None = None,
               issuer_passphrase: bytes | None = None) -> FastAPI:
    """The registry server. Migrates the database on creation.

    While it runs (under an ASGI lifespan) health data older than
    `retention_days` is purged at start-up and every `purge_interval_s`, and
    street-office notices go out through `notify_config`'s channels
    (sync.server.notify). With `redis_url`, per-gate rate limits are shared
    by every process on that Redis.
    """
    check_retention_days(retention_days)
    if not purge_interval_s > 0:
        raise ValueError(f"purge_interval_s = {purge_interval_s!r}: must be a positive number of seconds")
    db = db or open_database(db_url)
    migrate(db)
    instance = notify.instance_id(db)
    limiter = RateLimiter(per_key_rate=gate_rate, per_key_burst=gate_burst,
                          global_rate=global_rate, global_burst=global_burst,
                          storage_url=redis_url, namespace=instance)
    contacts = notify.ContactLog()
    appender = AsyncAppender(db)  # issue 14: small uploads from the event loop

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        stop, wake = threading.Event(), asyncio.Event()
        task = asyncio.create_task(purge_periodically(db, retention_days, purge_interval_s, stop, wake))
        notifier = notify.Notifier(db, notify_config, contacts).start()
        try:
            yield
        finally:
            stop.set()
            wake.set()
            await task  # a running purge stops after its current batch
            await asyncio.to_thread(notifier.stop)

    app = FastAPI(title="Gate checkpoint registry", version="1", docs_url=None,
                  openapi_url="/api/openapi.json", redoc_url=None, lifespan=lifespan)
    app.state.retention_days = retention_days
    app.state.db = db
    app.state.limiter = limiter
    app.state.contacts = contacts  # last contact per gate: the gates board and the offline notice
    # For the staff login (failures per account name), shared like the limits.
    app.state.login_throttle = LoginThrottle(storage_url=redis_url, namespace=instance)
    app.add_middleware(BodyLimitAndServerTime)
    bearer = HTTPBearer(auto_error=False)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        detail = exc.detail if isinstance(exc.detail, dict) else {"error": _code(exc.status_code), "detail": exc.detail}
        return _error(exc.status_code, detail["error"], detail.get("detail"), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()[:20]]
        return _error(422, "invalid", errors)

    @app.exception_handler(IntegrityError)
    async def _conflict(request, exc):
        log.error("integrity error: %s", exc.orig)
        return _error(409, "conflict", "the request conflicts with stored data")

    @app.exception_handler(OperationalError)
    async def _busy(request, exc):
        log.warning("database busy: %s", exc.orig)
        return _error(503, "busy", "the database is busy; retry", {"Retry-After": "1"})

    def refuse(status: int, error: str, detail: str, headers: dict | None = None):
        raise HTTPException(status, {"error": error, "detail": detail}, headers=headers)

    def require_token(creds: HTTPAuthorizationCredentials | None) -> str:
        wait = limiter.take_global()
        if wait:
            refuse(429, "rate_limited", "the server is busy", {"Retry-After": str(wait)})
        if creds is None:
            refuse(401, "unauthorized", "a bearer token is required", {"WWW-Authenticate": "Bearer"})
        return creds.credentials

    def gate_for(token: str, known: auth.Gate | None = None) -> auth.Gate:
        gate = known or auth.gate_for_token(db, token)
        if gate is None:
            refuse(401, "unauthorized", "unknown or revoked token", {"WWW-Authenticate": "Bearer"})
        contacts.saw(gate.id)
        wait = limiter.take(gate.id)
        if wait:
            refuse(429, "rate_limited", f"gate {gate.name} is sending too fast", {"Retry-After": str(wait)})
        return gate

    def admitted_gate(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> auth.Gate:
        return gate_for(require_token(creds))

    def staff_member(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> auth.Staff:
        if creds is None:
            refuse(401, "unauthorized", "a staff bearer token is required", {"WWW-Authenticate": "Bearer"})
        member = auth.staff_for_token(db, creds.credentials)
        if member is None:
            refuse(401, "unauthorized", "unknown or revoked staff token", {"WWW-Authenticate": "Bearer"})
        return member

    def own_site(site_id: str, gate: auth.Gate) -> None:
        if site_id != gate.site_id:
            refuse(403, "forbidden", f"gate {gate.name} belongs to site {gate.site_id}, not {site_id}")

    GateDep = Annotated[auth.Gate, Depends(admitted_gate)]
    StaffDep = Annotated[auth.Staff, Depends(staff_member)]

    app.include_router(enrolment_router(db, limiter))  # one-time enrolment codes (sync.server.enrolment)

    @app.get(f"{p.API_PREFIX}/time", response_model=p.TimeReply, tags=["sync"])
    def server_time():
        return {"server_time": p.utcnow()}

    upload_body = {
        "security": [{"HTTPBearer": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": p.UploadBatch.model_json_schema(
                ref_template="#/components/schemas/{model}")}},
        }
    }

    @app.post(
        f"{p.API_PREFIX}/streams/{{stream_id}}/events",
        response_model=p.UploadReply, tags=["sync"], openapi_extra=upload_body,
        responses={409: {"model": p.GapReply | p.DivergedReply}, 401: {"model": p.ErrorReply}, 403: {"model": p.ErrorReply},
                   413: {"model": p.ErrorReply}, 422: {"model": p.ErrorReply}, 429: {"model": p.ErrorReply}},
    )
    async def upload(stream_id: StreamPath, request: Request):
        # The bearer header is read here rather than through Depends(bearer):
        # FastAPI's dependency solving cost a tenth of a small upload's CPU
        # (issue 14). openapi_extra keeps the security scheme in the docs.
        token = require_token(await bearer(request))
        # Parsed by pydantic-core straight from the bytes: much cheaper than
        # FastAPI's json.loads + model validation for 500 events.
        body = await request.body()
        try:
            batch = p.ValidUploadBatch.model_validate_json(body)
            seqs = [e.seq for e in batch.events]
        except ValidationError:
            try:
                batch = p.UploadBatch.model_validate_json(body)
            except ValidationError as exc:
                errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()[:20]]
                return _error(422, "invalid", errors)
            seqs = [e.get("seq") for e in batch.events]
        for i, seq in enumerate(seqs):
            if isinstance(seq, int) and seq != batch.first_seq + i:
                refuse(422, "not_contiguous", f"events[{i}].seq is {seq}; expected {batch.first_seq + i}")
        # Issue 14: a gate this process knows, sending plain events right
        # after its watermark, is stored from the event loop in one statement
        # (sync/server/append_async.py); anything else, or a miss, takes the
        # thread-pool path below. Not with Redis limits (a network call).
        known = auth.cached_gate(db, token) if redis_url is None else None
        if known is not None:
            gate_for(token, known)  # last contact and the gate's rate limit, once
            result = await appender.append(known, stream_id, batch.first_seq, batch.events)
            if result is not None:
                return _reply(p.UploadReply(acked_through=result.acked_through, results=result.results,
                                            server_time=p.utcnow()), exclude_none=True)

        def authorise_and_ingest():
            # One trip to the thread pool for both database steps.
            gate = known or gate_for(token)
            return gate, ingest(db, gate, stream_id, batch.first_seq, batch.events)

        try:
            gate, result = await run_in_threadpool(authorise_and_ingest)
        except Gap as gap:
            return _reply(p.GapReply(detail=str(gap), acked_through=gap.acked_through, server_time=p.utcnow()), 409)
        except Diverged as diverged:
            return _reply(p.DivergedReply(
                detail=str(diverged), acked_through=diverged.acked_through, diverged_at=diverged.diverged_at,
                server_time=p.utcnow()), 409)
        except StreamForbidden as exc:
            refuse(403, "forbidden", str(exc))
        if result.alerts:
            log.warning("fever alert: %d flagged event(s) from gate %s at site %s",
                        result.alerts, gate.name, gate.site_id)
        return _reply(p.UploadReply(acked_through=result.acked_through, results=result.results,
                                    server_time=p.utcnow()), exclude_none=True)

    @app.get(
        f"{p.API_PREFIX}/sites/{{site_id}}/registry",
        response_model=p.RegistryPage, tags=["sync"],
        responses={304: {"description": "Nothing new since the ETag"}, 410: {"model": p.ErrorReply}},
    )
    def registry_feed(
        site_id: SitePath, gate: GateDep,
        since: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=p.MAX_REGISTRY_PAGE)] = p.MAX_REGISTRY_PAGE,
        if_none_match: Annotated[str | None, Header(max_length=100)] = None,
    ):
        own_site(site_id, gate)
        current = registry.head(db, site_id)
        etag = p.etag_for(current)
        if if_none_match == etag and since >= current:
            return Response(status_code=304, headers={"ETag": etag})
        if since > current:
            # The kiosk has seen changes this server does not have (restored
            # from a backup): its copy cannot be patched, only replaced.
            return _error(410, "must_refetch", f"cursor {since} is ahead of this server's feed ({current})")
        try:
            changes, cursor, up_to_date = registry.feed_page(db, site_id, since, limit)
        except registry.FeedExpired as exc:
            return _error(410, "must_refetch", str(exc))
        return _reply(p.RegistryPage(changes=changes, next_cursor=str(cursor), up_to_date=up_to_date,
                                     server_time=p.utcnow()), headers={"ETag": etag})

    @app.get(f"{p.API_PREFIX}/sites/{{site_id}}/registry/snapshot", response_model=p.SnapshotPage, tags=["sync"])
    def registry_snapshot(
        site_id: SitePath, gate: GateDep,
        after: Annotated[str | None, Query(max_length=400, description="next_after of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=p.MAX_REGISTRY_PAGE)] = p.MAX_REGISTRY_PAGE,
    ):
        own_site(site_id, gate)
        key = None
        if after:
            try:
                key = json.loads(after)
            except ValueError:
                key = None
            if not (isinstance(key, list) and len(key) == 3 and all(isinstance(k, str) for k in key)):
                refuse(422, "invalid", "after must be the next_after value of the previous page")
        changes, cursor, next_after = registry.snapshot_page(db, site_id, tuple(key) if key else None, limit)
        return _reply(p.SnapshotPage(
            changes=changes, cursor=str(cursor),
            next_after=json.dumps(list(next_after), ensure_ascii=False) if next_after else None,
            server_time=p.utcnow(),
        ))

    # --- staff ---------------------------------------------------------------

    def staff_call(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except registry.RegistryError as exc:
            refuse(409, "conflict", str(exc))

    staff_prefix = f"{p.API_PREFIX}/staff/sites/{{site_id}}"
    # Every staff endpoint checks role and site on each call (site_guard).
    # Residents, passes, visitor cases and policy: admins and community
    # workers; issuer keys: admins only (site "*": a global admin).
    REGISTRY_EDITORS = ("admin", "worker")

    @app.post(f"{staff_prefix}/people", response_model=ChangeOut, tags=["staff"])
    def staff_add_person(site_id: SitePath, body: PersonIn, who: StaffDep):
        site_guard(who, site_id, change=True, roles=REGISTRY_EDITORS)
        data = body.model_dump()
        person_id = data.pop("person_id")
        result = staff_call(registry.add_person, db, site_id, person_id, by=who.name, **data)
        return {"result": result}

    @app.put(f"{staff_prefix}/people/{{person_id}}/observation", response_model=ChangeOut, tags=["staff"])
    def staff_observation(site_id: SitePath, person_id: IdPath, body: ObservationIn, who: StaffDep):
        site_guard(who, site_id, change=True, roles=REGISTRY_EDITORS)
        result = staff_call(registry.set_observation, db, site_id, person_id, body.until,
                            risk=body.risk, returnee=body.returnee, by=who.name, reason=body.reason)
        return {"result": result}

    @app.post(f"{staff_prefix}/revocations", response_model=ChangeOut, tags=["staff"])
    def staff_revoke(site_id: SitePath, body: RevocationIn, who: StaffDep):
        site_guard(who, site_id, change=True, roles=REGISTRY_EDITORS)
        return {"result": staff_call(registry.revoke_pass, db, site_id, body.pass_id, body.reason, by=who.name)}

    @app.post(f"{staff_prefix}/keys", response_model=ChangeOut, tags=["staff"])
    def staff_key(site_id: SitePath, body: KeyIn, who: StaffDep):
        # Every gate trusts a key for site '*': only an administrator whose own scope is
        # every site may add one (site_guard: can_change('*') needs the '*' scope).
        site_guard(who, site_id, change=True, roles=("admin",))
        return {"result": staff_call(registry.add_key, db, site_id, body.public_pem, by=who.name)}

    @app.put(f"{staff_prefix}/policy", response_model=ChangeOut, tags=["staff"])
    def staff_policy(site_id: SitePath, body: PolicyIn, who: StaffDep):
        site_guard(who, site_id, change=True, roles=REGISTRY_EDITORS)
        return {"result": staff_call(registry.set_policy, db, site_id, body.document, by=who.name)}

    @app.post(f"{staff_prefix}/visitor-cases", response_model=ChangeOut, tags=["staff"])
    def staff_visitor_case(site_id: SitePath, body: VisitorCaseIn, who: StaffDep):
        site_guard(who, site_id, change=True, roles=REGISTRY_EDITORS)
        data = body.model_dump()
        case_id = data.pop("case_id")
        return {"result": staff_call(registry.add_visitor_case, db, site_id, case_id, by=who.name, **data)}

    @app.delete(f"{staff_prefix}/registry/{{entity}}/{{entity_id}}", response_model=ChangeOut, tags=["staff"])
    def staff_remove(site_id: SitePath, entity: IdPath, entity_id: IdPath, who: StaffDep):
        site_guard(who, site_id, change=True, roles=("admin",) if entity == "key" else REGISTRY_EDITORS)
        return {"change_seq": staff_call(registry.remove, db, site_id, entity, entity_id, by=who.name)}

    @app.get(f"{staff_prefix}/alerts", tags=["staff"])
    def staff_alerts(site_id: SitePath, who: StaffDep,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 200):
        site_guard(who, site_id, change=False)
        return {"alerts": registry.open_alerts(db, site_id, limit), "server_time": _now_iso()}

    @app.post(f"{p.API_PREFIX}/staff/alerts/{{alert_id}}/ack", tags=["staff"])
    def staff_ack(alert_id: Annotated[int, Path(ge=1, le=2**62)], who: StaffDep):
        site = registry.alert_site(db, alert_id)
        if site is None or not who.can_read(site):
            refuse(404, "not_found", f"no alert {alert_id}")
        site_guard(who, site, change=True)
        return {"alert": staff_call(registry.acknowledge_alert, db, alert_id, who.name, site_id=site),
                "server_time": _now_iso()}

    @app.get(f"{staff_prefix}/reports/daily", tags=["staff"])
    def staff_daily(site_id: SitePath, day: Annotated[date, Query(alias="date")], who: StaffDep,
                    tz: Annotated[str, Query(max_length=64)] = "Asia/Shanghai"):
        site_guard(who, site_id, change=False)
        from sync.server.daily import site_daily
        from sync.server.reports import ReportError

        try:
            return site_daily(db, site_id, day, tz)
        except ReportError as exc:
            refuse(422, "invalid", str(exc))

    web.install(app)  # staff pages under /registry, offline /api/docs; after the JSON error handlers
    people_api.install(app, issuer_passphrase)  # residents, imports, passes, site policy (pages + API)
    return app


def _code(status: int) -> str:
    return {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 409: "conflict", 413: "too_large", 422: "invalid",
            429: "rate_limited"}.get(status, "error")
