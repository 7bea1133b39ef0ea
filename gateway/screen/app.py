"""The guard screen: a small FastAPI app served by the kiosk.

    app = create_app(ScreenDeps(state=..., actions=..., settings=..., camera_jpeg=...))

Pages: `/` (the guard), `/public` (the queue: admit or "please see the
staff", nothing else), `/login` (the PIN, for anyone not on this machine).
Live updates are server-sent events on `/api/events`; the camera picture is
`/camera.jpg` (the newest frame as JPEG; the page asks for the next one when
the last has arrived). Guard actions are JSON POSTs under `/api/`.

Access: localhost needs nothing. From the LAN the guard pages need the PIN
from `[screen] pin`; with no PIN configured they are refused outright, so a
kiosk bound to 0.0.0.0 by mistake does not publish its log.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from gateway.screen.actions import OVERRIDE_REASONS, ActionError, GuardActions
from gateway.screen.i18n import LANGUAGES, catalogue, pick_language
from gateway.screen.rule_actions import rule_actions
from gateway.screen.state import ScreenState

HERE = Path(__file__).parent
LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}
AUTH_COOKIE = "cp_auth"
LANG_COOKIE = "cp_lang"
FREE_PIN_FAILURES = 3  # then every further failure doubles the wait, for the whole kiosk
PIN_BACKOFF_BASE_S = 2.0
PIN_BACKOFF_CAP_S = 900.0
SESSION_S = 12 * 3600.0  # one shift
MAX_SESSIONS = 32
SSE_PING_S = 15.0


@dataclass
class ScreenDeps:
    state: ScreenState
    actions: GuardActions
    pin: str | None
    language: str = "zh"
    camera_jpeg: Callable[[], bytes | None] = lambda: None
    stopping: threading.Event = field(default_factory=threading.Event)


class _PinGuard:
    """PIN sessions and lockout for LAN access.

    Failures are counted for the whole kiosk, not per address: a LAN has
    plenty of addresses. After `FREE_PIN_FAILURES` every attempt waits
    `PIN_BACKOFF_BASE_S * 2**extra` seconds (capped) after the last failure,
    so a 6-digit PIN takes years to guess; the guard at the kiosk itself
    (localhost) needs no PIN and is never locked out. Each login gets its own
    random session token that expires after a shift.
    """

    def __init__(self, pin: str | None, now: Callable[[], float] = time.monotonic):
        self.pin = pin
        self.now = now
        self.session_s = SESSION_S
        self._sessions: dict[str, float] = {}  # sha256(token) -> expiry
        self._failures = 0
        self._last_failure = 0.0
        self._lock = threading.Lock()

    def new_session(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = self.now()
            self._sessions = {k: v for k, v in self._sessions.items() if v > now}
            while len(self._sessions) >= MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[_digest(token)] = now + self.session_s
        return token

    def authorised(self, request: Request) -> bool:
        if _is_local(request):
            return True
        if not self.pin:
            return False
        token = request.cookies.get(AUTH_COOKIE, "")
        expiry = self._sessions.get(_digest(token)) if token else None
        return expiry is not None and self.now() < expiry

    def wait_s(self) -> float:
        """How long after the last failure the next attempt is taken."""
        extra = self._failures - FREE_PIN_FAILURES
        if extra < 0:
            return 0.0
        return min(PIN_BACKOFF_CAP_S, PIN_BACKOFF_BASE_S * 2 ** min(extra, 20))

    def locked(self, host: str = "") -> bool:
        with self._lock:
            return self.now() - self._last_failure < self.wait_s()

    def check(self, host: str, pin: str) -> bool:
        with self._lock:
            if self.pin and hmac.compare_digest(pin.encode(), self.pin.encode()):
                self._failures = 0
                return True
            self._failures += 1
            self._last_failure = self.now()
            return False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _is_local(request: Request) -> bool:
    return bool(request.client) and request.client.host in LOCAL_HOSTS


def create_app(deps: ScreenDeps) -> FastAPI:
    app = FastAPI(title="Gate checkpoint screen", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    guard = _PinGuard(deps.pin)
    app.state.deps = deps
    app.state.pin_guard = guard
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def language(request: Request) -> str:
        return pick_language(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE), deps.language)

    def page(request: Request, name: str, view: str, **extra) -> HTMLResponse:
        lang = language(request)
        context = {
            "lang": lang,
            "other_lang": LANGUAGES[1 - LANGUAGES.index(lang)],
            "t": catalogue(lang),
            "catalogue_json": _script_json(catalogue(lang)),
            "snapshot_json": _script_json(deps.state.snapshot(view)),
            "override_reasons": OVERRIDE_REASONS,
            "pin_required": bool(deps.pin),
            **extra,
        }
        response = templates.TemplateResponse(request, name, context)
        if request.query_params.get("lang") in LANGUAGES:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict")
        return response

    @app.middleware("http")
    async def require_pin(request: Request, call_next):
        path = request.url.path
        open_paths = path.startswith("/static") or path in ("/login", "/public", "/healthz") or (
            path == "/api/events" and request.query_params.get("view") == "public")
        if open_paths or guard.authorised(request):
            return await call_next(request)
        if path.startswith("/api") or path.endswith(".jpg"):
            return JSONResponse({"ok": False, "error": "PIN required"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.get("/", response_class=HTMLResponse)
    def guard_page(request: Request):
        return page(request, "guard.html", "guard")

    @app.get("/public", response_class=HTMLResponse)
    def public_page(request: Request):
        return page(request, "public.html", "public")

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, error: str = ""):
        if guard.authorised(request):
            return RedirectResponse("/", status_code=303)
        return page(request, "login.html", "public", error=error)

    @app.post("/login")
    async def login(request: Request):
        host = request.client.host if request.client else "?"
        form = await request.form()
        if not deps.pin:
            return RedirectResponse("/login", status_code=303)
        if guard.locked(host):
            return RedirectResponse("/login?error=locked", status_code=303)
        if not guard.check(host, str(form.get("pin", ""))):
            return RedirectResponse("/login?error=bad", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(AUTH_COOKIE, guard.new_session(), httponly=True, samesite="strict",
                            max_age=int(guard.session_s))
        return response

    @app.get("/healthz")
    def healthz():
        return {"ok": not deps.state.paused, "paused": deps.state.paused}

    @app.get("/api/state")
    def state(view: str = "guard"):
        return JSONResponse(deps.state.snapshot("public" if view == "public" else "guard"))

    @app.get("/api/events")
    async def events(request: Request, view: str = "guard"):
        view = "public" if view == "public" else "guard"
        return StreamingResponse(
            _event_stream(request, deps, view),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/camera.jpg")
    async def camera():
        jpeg = await asyncio.to_thread(deps.camera_jpeg)
        if jpeg is None:
            return Response(status_code=204, headers={"Cache-Control": "no-store"})
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    actions = {
        "signin": deps.actions.sign_in,
        "signout": lambda data: deps.actions.sign_out(),
        "override": deps.actions.override,
        "remeasure": deps.actions.remeasure,
        "visitor": deps.actions.register_visitor,
        "staff-temperature": deps.actions.staff_temperature,
        "disinfection": deps.actions.disinfection,
        "fever-case": deps.actions.fever_case,
    }
    actions.update(rule_actions(deps.actions))  # no mask, refused measurement, vehicles (issue 12)

    @app.post("/api/{action}")
    async def act(action: str, request: Request):
        handler = actions.get(action)
        if handler is None:
            return JSONResponse({"ok": False, "error": f"no action {action!r}"}, status_code=404)
        # JSON only: a cross-site form cannot send it without a CORS preflight,
        # which this app never allows.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"ok": False, "error": "send JSON"}, status_code=415)
        try:
            data = await request.json()
        except ValueError:
            return JSONResponse({"ok": False, "error": "body is not JSON"}, status_code=400)
        if not isinstance(data, dict):
            return JSONResponse({"ok": False, "error": "body must be a JSON object"}, status_code=400)
        try:
            result = await asyncio.to_thread(handler, data)
        except ActionError as exc:
            return JSONResponse(exc.to_json(), status_code=exc.status)
        return JSONResponse(json.loads(json.dumps(result, default=str)))

    return app


async def _event_stream(request: Request, deps: ScreenDeps, view: str):
    queue = deps.state.subscribe()
    try:
        yield _sse(deps.state.snapshot(view))
        last_sent = time.monotonic()
        # Wake every second so a stopping kiosk ends its streams promptly.
        while not deps.stopping.is_set():
            try:
                await asyncio.wait_for(queue.get(), timeout=1.0)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    return
                if time.monotonic() - last_sent >= SSE_PING_S:
                    last_sent = time.monotonic()
                    yield ": ping\n\n"  # keeps proxies and the browser from timing out
                continue
            last_sent = time.monotonic()
            yield _sse(deps.state.snapshot(view))
    finally:
        deps.state.unsubscribe(queue)


def _script_json(value: Any) -> str:
    """JSON safe to put inside <script>: a name like "</script>" cannot end the tag."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sse(snapshot: dict[str, Any]) -> str:
    return f"event: state\ndata: {json.dumps(snapshot, ensure_ascii=False, default=str)}\n\n"
