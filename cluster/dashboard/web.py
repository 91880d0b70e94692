"""The dashboard's HTTP face on the supervisor's own listener (``metrics.bind``), under /dashboard/.

Every route but the static files and the login form goes through the admin
check (``auth.refusal``); every POST also needs the CSRF token. Pages are
rendered here; their live part comes from the producer (SSE on
/dashboard/stream, or /dashboard/api/live when the page falls back to
polling).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from cluster.dashboard import auth, queue_ops, render
from cluster.config import PRIORITIES
from cluster.queues.connection import UNAVAILABLE_ERRORS
from cluster.dashboard.actions import ACTIONS, ActionError, show_job
from cluster.dashboard.producer import CLOSED

if TYPE_CHECKING:
    from cluster.dashboard.producer import Producer
    from cluster.dashboard.snapshot import SnapshotSource


class DashboardParts(Protocol):
    """What the routes use of the dashboard component."""

    supervisor: Any
    producer: "Producer"
    source: "SnapshotSource"

log = logging.getLogger("cluster.dashboard.web")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
KEEPALIVE = 5.0
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class DashboardWeb:
    def __init__(self, dashboard: DashboardParts) -> None:
        self.dashboard = dashboard
        self.sup = dashboard.supervisor
        self.sessions = auth.Sessions(self.sup.settings.dashboard.session_ttl)

    # -- plumbing -------------------------------------------------------------------

    @property
    def read_only(self) -> bool:
        return self.sup.settings.dashboard.read_only

    def _refusal(self, request: web.Request) -> tuple[int, str] | None:
        return auth.refusal(request.remote, request.headers, request.cookies, self.sessions,
                            self.sup.settings.admin.token)

    def guarded(self, handler: Handler, html: bool = True) -> Handler:
        """The admin check before ``handler``: a refused browser gets the login form, anything else JSON."""
        async def check(request: web.Request) -> web.StreamResponse:
            refused = self._refusal(request)
            if refused is None:
                return await handler(request)
            status, reason = refused
            if html and request.method == "GET":
                body = render.layout("Log in", "", render.login_form(reason, bool(self.sup.settings.admin.token)),
                                     csrf="")
                return web.Response(text=body, status=status, content_type="text/html", headers=SECURITY_HEADERS)
            return web.json_response({"error": reason, "status": status}, status=status)
        return check

    def _csrf(self, request: web.Request) -> tuple[str, bool]:
        """The client's CSRF token, and whether it is new (then it goes into a cookie)."""
        token = request.cookies.get(auth.CSRF_COOKIE)
        return (token, False) if token else (auth.new_csrf_token(), True)

    def _page(self, request: web.Request, title: str, current: str, body: str, live_page: str | None = None,
              status: int = 200) -> web.Response:
        token, new = self._csrf(request)
        html = render.layout(title, current, body, token, request.query.get("msg"), live_page, self.read_only,
                             logged_in=self.sessions.valid(request.cookies.get(auth.SESSION_COOKIE)))
        html = html.replace('name="csrf" value=""', f'name="csrf" value="{token}"')
        response = web.Response(text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS)
        if new:
            response.set_cookie(auth.CSRF_COOKIE, token, httponly=True, samesite="Strict", path=render.BASE)
        return response

    async def _snapshot(self) -> dict[str, Any]:
        return await self.dashboard.producer.current()

    # -- pages ----------------------------------------------------------------------

    async def live_page(self, request: web.Request) -> web.Response:
        page = request.match_info.get("page") or "overview"
        if page not in render.PAGES:
            raise web.HTTPNotFound()
        snapshot = await self._snapshot()
        body = f'<section id="live">{render.live(page, snapshot)}</section>'
        if page == "queues":
            body += await self._queue_details(request)
        response = self._page(request, render.PAGES[page], page, body, live_page=page)
        if "dead_ms" in request:
            response.headers["Server-Timing"] = f"dead;dur={request['dead_ms']:.1f}"
        return response

    async def _queue_details(self, request: web.Request) -> str:
        redis = self.dashboard.source.redis
        if redis is None:
            return ""
        queue = request.query.get("queue") or "high"
        name = request.query.get("name") or None
        try:
            started = time.perf_counter()
            page = await queue_ops.dead_page(redis, queue, request.query.get("cursor") or None, name)
            request["dead_ms"] = (time.perf_counter() - started) * 1000
            delayed = await queue_ops.delayed_jobs(redis, queue)
        except (queue_ops.QueueOpError, *UNAVAILABLE_ERRORS) as exc:
            return f'<p class="warn">{render.e(exc)}</p>'
        now = time.time()
        tabs = "".join(f'<a href="{render.BASE}queues?queue={q}"{" class=current" if q == queue else ""}>{q}</a>'
                       for q in PRIORITIES)
        jump = (f'<form method="get" class="search" action="{render.BASE}jobs"><input name="id" '
                f'placeholder="job id"><button>show job</button></form>')
        return (f'<nav class="tabs">{tabs}</nav>{jump}'
                + render.delayed_section(queue, delayed, self.read_only, now)
                + render.dead_section(page.to_dict(), name, self.read_only, now))

    async def dead_json(self, request: web.Request) -> web.Response:
        """A dead letter page as JSON, for scripts (the control socket's GET /queues/dead is the same)."""
        redis = self.dashboard.source.redis
        if redis is None:
            return web.json_response({"error": "the queue tier is off"}, status=503)
        try:
            page = await queue_ops.dead_page(redis, request.query.get("queue") or "high",
                                             request.query.get("cursor") or None, request.query.get("name") or None,
                                             int(request.query.get("limit") or 50))
        except (queue_ops.QueueOpError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except UNAVAILABLE_ERRORS as exc:
            return web.json_response({"error": f"Redis is unreachable: {exc}"}, status=503)
        return web.json_response(page.to_dict())

    async def job_page(self, request: web.Request) -> web.Response:
        job_id = request.match_info.get("job_id") or request.query.get("id", "")
        try:
            job = await show_job(self.sup, {"job": job_id})
        except ActionError as exc:
            return self._page(request, f"Job {job_id}", "queues", render.job_section(None, job_id) if exc.status == 404
                              else f'<p class="warn">{render.e(exc)}</p>', status=exc.status)
        return self._page(request, f"Job {job_id}", "queues", render.job_section(job, job_id))

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        text = resources.files("cluster.dashboard").joinpath("static", name).read_text()
        return web.Response(text=text, content_type=STATIC[name], headers={"Cache-Control": "max-age=300"})

    # -- live data ------------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        page = request.query.get("page", "overview")
        if page not in render.PAGES:
            raise web.HTTPNotFound()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        box = self.dashboard.producer.subscribe(page)
        try:
            await response.write(b"retry: 3000\n\n")
            while (message := await box.get(KEEPALIVE)) != CLOSED:
                await response.write(message or b"event: keepalive\ndata: 1\n\n")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.dashboard.producer.unsubscribe(box)
        return response

    async def live_json(self, request: web.Request) -> web.Response:
        """The polling fallback: what the stream would have sent for one page."""
        page = request.query.get("page", "overview")
        if page not in render.PAGES:
            raise web.HTTPNotFound()
        snapshot = await self._snapshot()
        return web.json_response({"version": self.dashboard.producer.version, "page": page, "at": snapshot["at"],
                                  "html": render.live(page, snapshot)})

    async def snapshot_json(self, request: web.Request) -> web.Response:
        return web.json_response(await self._snapshot())

    # -- login and actions ------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.Response:
        return self._page(request, "Log in", "", render.login_form("Give the admin token (CLUSTER_ADMIN_TOKEN).",
                                                                   bool(self.sup.settings.admin.token)))

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        sid = self.sessions.login(str(form.get("token", "")), self.sup.settings.admin.token)
        if sid is None:
            log.warning("dashboard login refused", extra={"peer": request.remote})
            body = render.login_form("That is not the admin token.", bool(self.sup.settings.admin.token))
            return self._page(request, "Log in", "", body, status=401)
        log.info("dashboard login", extra={"peer": request.remote})
        response = web.HTTPSeeOther(render.BASE)
        response.set_cookie(auth.SESSION_COOKIE, sid, httponly=True, samesite="Strict", path=render.BASE,
                            max_age=int(self.sup.settings.dashboard.session_ttl))
        return response  # type: ignore[return-value]

    async def logout(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not auth.csrf_ok(request.headers, request.cookies, str(form.get(auth.CSRF_FIELD, "")) or None):
            return web.json_response({"error": "missing or wrong CSRF token", "status": 403}, status=403)
        self.sessions.logout(request.cookies.get(auth.SESSION_COOKIE))
        response = web.HTTPSeeOther(f"{render.BASE}login")
        response.del_cookie(auth.SESSION_COOKIE, path=render.BASE)
        return response  # type: ignore[return-value]

    async def action(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        params: dict[str, Any] = dict(await request.post())
        wants_json = "Authorization" in request.headers or "application/json" in request.headers.get("Accept", "")
        try:
            if name not in ACTIONS:
                raise ActionError(404, f"no action {name!r}")
            if not auth.csrf_ok(request.headers, request.cookies, params.pop(auth.CSRF_FIELD, None) or None):
                raise ActionError(403, "missing or wrong CSRF token: reload the page and try again")
            if self.read_only:
                raise ActionError(403, "the dashboard is read-only (dashboard.read_only)")
            result = await ACTIONS[name](self.sup, params)
            message, status = f"{name}: done", 200
            log.info("dashboard action %s", name, extra={"action": name, "params": params, "peer": request.remote})
        except ActionError as exc:
            result, message, status = {"error": str(exc), "status": exc.status}, f"{name}: {exc}", exc.status
        self.dashboard.producer.changed()
        if wants_json or status == 403:
            return web.json_response(result, status=status)
        raise web.HTTPSeeOther(_back(request.headers.get("Referer"), message))

    def add_routes(self, app: web.Application) -> None:
        g = self.guarded
        base = render.BASE
        app.router.add_get(base.rstrip("/"), _to_dashboard)
        app.router.add_get(base, g(self.live_page))
        app.router.add_get(base + "login", self.login_form)
        app.router.add_post(base + "login", self.login)
        app.router.add_post(base + "logout", g(self.logout, html=False))
        app.router.add_get(base + "static/{name}", self.static)
        app.router.add_get(base + "stream", g(self.stream, html=False))
        app.router.add_get(base + "api/live", g(self.live_json, html=False))
        app.router.add_get(base + "api/snapshot", g(self.snapshot_json, html=False))
        app.router.add_get(base + "api/dead", g(self.dead_json, html=False))
        app.router.add_get(base + "jobs", g(self.job_page))
        app.router.add_get(base + "jobs/{job_id}", g(self.job_page))
        app.router.add_post(base + "action/{name}", g(self.action, html=False))
        app.router.add_get(base + "{page}", g(self.live_page))


async def _to_dashboard(request: web.Request) -> web.Response:
    raise web.HTTPFound(render.BASE)


def _back(referer: str | None, message: str) -> str:
    """Where an action sends the browser back to: the page it came from (ours only), with the outcome."""
    parts = urlsplit(referer or "")
    path = parts.path if parts.path.startswith(render.BASE) else render.BASE
    query = [kv for kv in parts.query.split("&") if kv and not kv.startswith("msg=")]
    return f"{path}?{'&'.join(query + [urlencode({'msg': message})])}"
