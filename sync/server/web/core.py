"""The page framework: log-in, sessions, CSRF, templates, language, guards.

See the package docstring (sync/server/web/__init__.py) for how a page
module uses it.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from sync.server import auth, sessions
from sync.server.sites import known_sites, site_rows
from sync.server.web import i18n

PREFIX = "/registry"
TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
SESSION_COOKIE = "ck_session"
LANG_COOKIE = "ck_lang"
LOGIN_CSRF_COOKIE = "ck_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
# No inline script or style, nothing from elsewhere: the pages work offline.
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
    autoescape=jinja2.select_autoescape(["html", "xml"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


# The per-site boards in the nav, in order: (board, message key, path under
# /registry/sites/{site}/, roles that see the link or None for all). Page
# modules add theirs with `add_site_nav`.
SITE_NAV: list[tuple[str, str, str, tuple[str, ...] | None]] = [
    ("gates", "nav.gates", "gates", None),
    ("fevers", "nav.fevers", "fevers", None),
    ("ledgers", "nav.ledgers", "ledgers", None),
    ("report", "nav.report", "report", None),
]


def add_site_nav(board: str, label_key: str, path: str | None = None, *,
                 roles: tuple[str, ...] | None = None) -> None:
    """Add a per-site page to the nav (and the site switcher's targets).

    `board` is what the page passes to render(board=...) to be highlighted;
    `path` (default: board) is its path under /registry/sites/{site}/;
    `roles` limits who sees the link (the page still guards itself).
    """
    if board not in {item[0] for item in SITE_NAV}:
        SITE_NAV.append((board, label_key, path or board, roles))


class LoginRequired(Exception):
    """No live session: the page answers with a redirect to the log-in form."""

    def __init__(self, next_path: str):
        super().__init__(next_path)
        self.next_path = next_path


# --- language -----------------------------------------------------------------


def lang_of(request: Request) -> str:
    """The page language: the `ck_lang` cookie, Chinese unless it says "en"."""
    value = request.cookies.get(LANG_COOKIE)
    return value if value in i18n.LANGS else i18n.DEFAULT_LANG


def safe_next(value: str | None) -> str:
    """Only paths of these pages: never another host (open redirect)."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX + "/"


# --- who is asking ---------------------------------------------------------------


def _session(request: Request) -> sessions.Session | None:
    if not hasattr(request.state, "session"):
        request.state.session = sessions.session_for(request.app.state.db, request.cookies.get(SESSION_COOKIE))
    return request.state.session


def current_staff(request: Request) -> auth.Staff:
    """FastAPI dependency: the logged-in staff member, else a redirect to log in.

    The returned `auth.Staff` has `name`, `role`, `sites` (readable site ids,
    "*" for all), `can_read(site)` and `can_change(site)`.
    """
    session = _session(request)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    request.state.staff = session.staff
    return session.staff


StaffPage = Annotated[auth.Staff, Depends(current_staff)]


def readable_sites(request: Request, staff: auth.Staff) -> list[str]:
    """The sites this account may read, for lists and the site switcher."""
    if staff.is_global:
        return known_sites(request.app.state.db)
    return sorted(staff.sites)


def site_guard(staff: auth.Staff, site_id: str, change: bool, *, roles: tuple[str, ...] | None = None,
               known: list[str] | None = None) -> None:
    """Raise unless `staff` may read (change=False) or change (change=True) `site_id`.

    403 when the account's role or scope does not cover the site (also for a
    site that does not exist, so scope cannot be probed); `roles` narrows a
    change further (e.g. ("admin",) for issuer keys). With `known` (the
    known site ids) a site the account could see but that does not exist is
    a 404. The error body suits both the JSON API and the HTML error page.
    """
    if not staff.can_read(site_id):
        raise HTTPException(403, {"error": "forbidden",
                                  "detail": f"{staff.name} ({staff.role}) may not read site {site_id}"})
    if change and (not staff.can_change(site_id) or (roles is not None and staff.role not in roles)):
        raise HTTPException(403, {"error": "forbidden",
                                  "detail": f"{staff.name} ({staff.role}) may not change site {site_id}"})
    if known is not None and site_id not in known:
        raise HTTPException(404, {"error": "not_found", "detail": f"no site {site_id}"})


# --- CSRF ---------------------------------------------------------------------------


async def _submitted_token(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # Starlette caches it; the endpoint's Form() reads the same
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def csrf_protect(request: Request) -> None:
    """Router dependency: every state-changing request carries the session's
    CSRF token (form field `csrf_token` or header `X-CSRF-Token`)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    session = _session(request)
    if session is None:
        raise LoginRequired(PREFIX + "/")
    submitted = await _submitted_token(request)
    if not submitted or not hmac.compare_digest(submitted.encode(), session.csrf_token.encode()):
        raise HTTPException(403, {"error": "csrf", "detail": "missing or wrong CSRF token"})


def csrf_token(request: Request) -> str:
    session = _session(request)
    return session.csrf_token if session else ""


def csrf_field(request: Request) -> Markup:
    """The hidden input every POST form of the pages must carry."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, csrf_token(request))


def page_router(**kwargs) -> APIRouter:
    """An APIRouter for staff pages: mounted under /registry, CSRF-checked on
    every POST/PUT/PATCH/DELETE, left out of the OpenAPI schema."""
    return APIRouter(prefix=PREFIX, dependencies=[Depends(csrf_protect)], include_in_schema=False, **kwargs)


# --- rendering --------------------------------------------------------------------


def render(request: Request, template_name: str, *, status_code: int = 200, **context) -> HTMLResponse:
    """Render a template from sync/server/web/templates with the layout's context.

    Every template gets: `t(key, **fields)` (translated), `lang`, `staff`
    (None on the log-in page), `sites` (readable site ids), `site_names`,
    `site` (the current one, if the page passes it), `refresh_s` (reload
    the page every N seconds, for boards left open on a screen), `csrf_field()`, `csrf_token`,
    `prefix` ("/registry"), `path` (this request's path).
    """
    lang = lang_of(request)
    staff = getattr(request.state, "staff", None)
    base = {
        "request": request,
        "lang": lang,
        "t": lambda key, **fields: i18n.translate(lang, key, **fields),
        "staff": staff,
        "sites": readable_sites(request, staff) if staff else [],
        "site": None,
        "site_names": {k: v["name"] for k, v in site_rows(request.app.state.db).items()} if staff else {},
        "board": None,
        "refresh_s": None,
        "csrf_token": csrf_token(request),
        "csrf_field": lambda: csrf_field(request),
        "prefix": PREFIX,
        "site_nav": SITE_NAV,
        "path": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    }
    base.update(context)
    html = _env.get_template(template_name).render(base)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    if not hasattr(request.state, "staff"):
        session = _session(request)
        request.state.staff = session.staff if session else None
    key = {403: "error.403", 404: "error.404", 422: "error.invalid"}.get(status)
    if isinstance(detail, dict) and detail.get("error") == "csrf":
        key = "error.csrf"
    return render(request, "error.html", status_code=status, message_key=key,
                  detail=detail.get("detail") if isinstance(detail, dict) else detail)


# --- log-in, log-out, language -----------------------------------------------------

public = APIRouter(prefix=PREFIX, include_in_schema=False)
router = page_router()


def _cookie_secure(request: Request) -> bool:
    # Behind TLS the cookie is Secure; on a plain-HTTP office LAN it cannot be.
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


@public.get("/login")
def login_form(request: Request, next: str | None = None, problem: str | None = None):
    token = secrets.token_urlsafe(32)
    request.state.staff = None
    response = render(request, "login.html", next=safe_next(next), login_csrf=token, problem=problem,
                      retry_after=None, name="")
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="lax", path=PREFIX + "/login",
                        secure=_cookie_secure(request))
    return response


@public.post("/login")
def login_submit(request: Request, name: Annotated[str, Form(max_length=64)] = "",
                 password: Annotated[str, Form(max_length=200)] = "",
                 csrf_token: Annotated[str, Form(max_length=100)] = "",
                 next: Annotated[str, Form(max_length=500)] = ""):
    request.state.staff = None
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf_token.encode()):
        return RedirectResponse(f"{PREFIX}/login?problem=expired&next={quote(safe_next(next))}", status_code=303)
    try:
        session_id, session = sessions.log_in(request.app.state.db, name, password)
    except sessions.LoginRefused as refused:
        status = 429 if refused.throttled else 401
        response = render(request, "login.html", status_code=status, next=safe_next(next), login_csrf=expected,
                          problem="throttled" if refused.throttled else "wrong",
                          retry_after=refused.retry_after_s, name=name)
        if refused.throttled:
            response.headers["Retry-After"] = str(refused.retry_after_s)
        return response
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="lax", path="/",
                        max_age=sessions.SESSION_HOURS * 3600, secure=_cookie_secure(request))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX + "/login")
    return response


@router.post("/logout")
def logout(request: Request):
    sessions.end_session(request.app.state.db, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@public.get("/lang")
def switch_language(request: Request, to: str = "zh", next: str | None = None):
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(LANG_COOKIE, to if to in i18n.LANGS else i18n.DEFAULT_LANG, samesite="lax", path="/",
                        max_age=365 * 86400)
    return response


@router.get("/")
def home(request: Request, staff: StaffPage):
    sites = readable_sites(request, staff)
    if not sites:
        return render(request, "error.html", message_key="home.no_sites", detail="")
    return RedirectResponse(f"{PREFIX}/sites/{quote(sites[0])}/gates", status_code=303)


@router.get("/go")
def go_to_site(request: Request, staff: StaffPage, site: str, board: str = "gates"):
    """The site switcher's target: the same board at another site."""
    site_guard(staff, site, change=False)
    paths = {item[0]: item[2] for item in SITE_NAV}
    return RedirectResponse(f"{PREFIX}/sites/{quote(site)}/{paths.get(board, 'gates')}", status_code=303)


def no_content() -> Response:
    return Response(status_code=204)
