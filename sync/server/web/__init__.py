"""Server-rendered staff pages on the registry app ("/registry/...").

Chinese (zh-CN) by default, English by a cookie; one CSS file, no script
framework, nothing loaded from another host, so it works offline on an old
office PC. `install(app)` (called once from create_app) mounts it all.

Writing a page module (e.g. sync/server/web/people.py):

    from fastapi import Form, Request
    from sync.server.web import StaffPage, page_router, render, site_guard

    router = page_router()                    # prefix /registry, CSRF on POST

    @router.get("/sites/{site_id}/people")
    def people(request: Request, site_id: str, staff: StaffPage):
        site_guard(staff, site_id, change=False)   # 403 outside the scope
        return render(request, "people.html", site=site_id, board="people", rows=...)

    @router.post("/sites/{site_id}/people")
    def add(request: Request, site_id: str, staff: StaffPage, name: str = Form()):
        site_guard(staff, site_id, change=True, roles=("admin", "worker"))
        with db.write() as conn: ... audit.record(conn, actor=staff.name, ...)

then include it with one line in `install` below (or from create_app), and
put it in the nav with `add_site_nav("people", "nav.people")` after
`i18n.register({"nav.people": ("居民", "Residents")})`.

Helpers:
- `StaffPage` / `current_staff`: dependency giving the logged-in `auth.Staff`
  (`name`, `role`, `sites`, `is_global`, `can_read(site)`,
  `can_change(site)`); without a session the page redirects to the log-in
  form and comes back afterwards.
- `site_guard(staff, site_id, change, roles=None, known=None)`: raises 403
  (outside the role or scope) or 404 (with `known`, a site that does not
  exist); the same function guards the JSON staff API.
- `render(request, template_name, **context)`: a template from
  ./templates, which should `{% extends "base.html" %}` and fill
  `{% block content %}`; pass `site=` and `board=` for the nav. Templates
  get `t(key, **fields)`, `csrf_field()`, `staff`, `sites`, `lang`.
- CSRF: every POST form includes `{{ csrf_field() }}`; a script sends the
  `X-CSRF-Token` header with `csrf_token` instead. `page_router()` refuses
  a state-changing request without it (403).
- `i18n.register({"key": ("中文", "English")})` adds a module's messages.
- `readable_sites(request, staff)`: site ids for lists and pickers.
- `add_site_nav(board, label_key, path=None)`: a per-site page in the nav.
- Audit: every change calls `sync.server.audit.record(conn, actor=staff.name,
  ...)` in its own transaction.

Roles: admin, worker, guard_supervisor change things at their sites;
inspector and street_officer only read (a street officer reads the sites of
its street offices). Site "*" (pushed to every gate) is changed only by an
administrator whose scope is "*".
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from sync.server.web import i18n
from sync.server.web.core import (
    PREFIX,
    STATIC_DIR,
    LoginRequired,
    StaffPage,
    add_site_nav,
    csrf_field,
    csrf_protect,
    current_staff,
    error_page,
    lang_of,
    page_router,
    readable_sites,
    render,
    site_guard,
)

__all__ = ["PREFIX", "StaffPage", "add_site_nav", "csrf_field", "csrf_protect", "current_staff", "i18n", "install", "lang_of",
           "page_router", "readable_sites", "render", "site_guard"]

DOCS_ASSETS = "/api/docs/assets"


def install(app: FastAPI) -> None:
    """Mount the pages, their static files, the offline API docs and the
    HTML error pages on the registry app."""
    from sync.server.web import boards_pages, core, report_pages

    app.include_router(core.public)
    app.include_router(core.router)
    app.include_router(boards_pages.router)
    app.include_router(report_pages.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="registry-static")
    _offline_docs(app)

    json_errors = app.exception_handlers.get(StarletteHTTPException)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired):
        from urllib.parse import quote

        return RedirectResponse(f"{PREFIX}/login?next={quote(exc.next_path)}", status_code=303)

    json_invalid = app.exception_handlers.get(RequestValidationError)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        if _is_page(request):
            from fastapi.concurrency import run_in_threadpool

            problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'][1:])}: {e['msg']}" for e in exc.errors()[:5])
            return await run_in_threadpool(error_page, request, 422, problems)
        return await json_invalid(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if _is_page(request):
            from fastapi.concurrency import run_in_threadpool

            return await run_in_threadpool(error_page, request, exc.status_code, exc.detail)
        return await json_errors(request, exc)


def _is_page(request: Request) -> bool:
    path = request.url.path
    return path.startswith(PREFIX + "/") and not path.startswith(PREFIX + "/static/")


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI from the swagger-ui-bundle package instead of a CDN."""
    import swagger_ui_bundle

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-assets")

    @app.get("/api/docs", include_in_schema=False)
    def api_docs():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title=f"{app.title} - API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )
