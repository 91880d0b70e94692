"""The dashboard's HTTP face on the supervisor's own listener (``metrics.bind``), under /dashboard/.

Every route but the static files and the login form goes through the admin
check (``auth.refusal``); every POST also needs the CSRF token and a same-origin
``Origin``/``Referer`` (``csrf``); logins are throttled (``login_throttle``). Pages are
rendered here; their live part comes from the producer (SSE on
/dashboard/stream, or /dashboard/api/live when the page falls back to
polling).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from cluster.dashboard import auth, queue_ops, render
from cluster.dashboard.csrf import FIELD as CSRF_FIELD, NONCE_COOKIE, CsrfTokens, same_origin
from cluster.dashboard.login_throttle import LoginThrottle
from cluster.config import PRIORITIES
from cluster.queues.connection import UNAVAILABLE_ERRORS
from cluster.dashboard.actions import ACTIONS, ActionError, show_job
from cluster.dashboard.producer import CLOSED
from cluster.workers.admin_auth import MISDIRECTED, AdminPolicy
from cluster.workers.client_ip import client_ip, is_https

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
        self.csrf = CsrfTokens(self.sessions)
        self.throttle = LoginThrottle()
        self._report_due: asyncio.TimerHandle | None = None

    # -- plumbing -------------------------------------------------------------------

    @property
    def read_only(self) -> bool:
        return self.sup.settings.dashboard.read_only

    def _refusal(self, request: web.Request) -> tuple[int, str] | None:
        return auth.refusal(request.remote, request.headers, request.cookies, self.sessions,
                            AdminPolicy.of(self.sup.settings))

    def _client(self, request: web.Request) -> str:
        server = self.sup.settings.server
        return client_ip(request.remote, request.headers, server.trusted_proxies, server.forwarded_header)

    def _set_cookie(self, request: web.Request, response: web.StreamResponse, name: str, value: str,
                    max_age: int | None = None) -> None:
        """HttpOnly, SameSite=Strict, under /dashboard/; Secure when the client talks HTTPS (or when forced)."""
        settings = self.sup.settings
        secure = settings.dashboard.cookie_secure or is_https(request.scheme, request.remote, request.headers,
                                                               settings.server.trusted_proxies)
        response.set_cookie(name, value, httponly=True, samesite="Strict", path=render.BASE, secure=secure,
                            max_age=max_age)

    def guarded(self, handler: Handler, html: bool = True) -> Handler:
        """The admin check before ``handler``: a refused browser gets the login form, anything else JSON."""
        async def check(request: web.Request) -> web.StreamResponse:
            refused = self._refusal(request)
            if refused is None:
                return await handler(request)
            status, reason = refused
            if html and request.method == "GET" and status != MISDIRECTED:
                body = render.layout("Log in", "", render.login_form(reason, bool(self.sup.settings.admin.token)),
                                     csrf="")
                return web.Response(text=body, status=status, content_type="text/html", headers=SECURITY_HEADERS)
            return _json_error(status, reason)
        return check

    def _page(self, request: web.Request, title: str, current: str, body: str, live_page: str | None = None,
              status: int = 200, admin: bool = True) -> web.Response:
        """A whole page; an admin's carries the CSRF token of its session (or of a new nonce, set as a cookie).

        The token is the server's HMAC, never a cookie's value: nothing from a cookie reaches the HTML.
        """
        binding, nonce = self.csrf.binding(request.cookies), None
        if admin and binding is None:
            nonce, binding = self.csrf.new_nonce()
        token = self.csrf.token(binding) if admin and binding else ""
        html = render.layout(title, current, body, token, request.query.get("msg"), live_page, self.read_only,
                             logged_in=self.sessions.valid(request.cookies.get(auth.SESSION_COOKIE)))
        html = html.replace('name="csrf" value=""', f'name="csrf" value="{render.e(token)}"')
        response = web.Response(text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS)
        if nonce:
            self._set_cookie(request, response, NONCE_COOKIE, nonce)
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

    def _foreign_host(self, request: web.Request) -> web.Response | None:
        """421 for a request whose Host is not one of ours (DNS rebinding), else None."""
        if AdminPolicy.of(self.sup.settings).hosts.allows(request.headers.get("Host")):
            return None
        return _json_error(MISDIRECTED, "the Host header does not name this instance: add the name to "
                                        "server.allowed_hosts")

    async def login_form(self, request: web.Request) -> web.Response:
        if (refused := self._foreign_host(request)) is not None:
            return refused
        return self._page(request, "Log in", "", render.login_form("Give the admin token (CLUSTER_ADMIN_TOKEN).",
                                                                   bool(self.sup.settings.admin.token)), admin=False)

    def _count_refusal(self) -> None:
        """Refused and throttled logins are logged as one line per throttle window, not one per try."""
        if self._report_due is None:
            self._report_due = asyncio.get_running_loop().call_later(self.throttle.window, self._report_refusals)

    def _report_refusals(self) -> None:
        self._report_due = None
        report = self.throttle.report()
        if report is not None:
            log.warning("dashboard login: %d wrong tokens and %d throttled tries from %d clients in %g s",
                        report.refused, report.throttled, report.clients, self.throttle.window,
                        extra={"refused": report.refused, "throttled": report.throttled, "clients": report.clients})

    async def login(self, request: web.Request) -> web.Response:
        if (refused := self._foreign_host(request)) is not None:
            return refused
        if not same_origin(request.headers):
            return _json_error(403, "the login form must be posted from a dashboard page (Origin/Referer)")
        client = self._client(request)
        wait = self.throttle.retry_after(client, time.monotonic())
        if wait > 0:
            self._count_refusal()
            response = _json_error(429, "too many wrong tokens: wait before trying again")
            response.headers["Retry-After"] = str(math.ceil(wait))
            return response
        form = await request.post()
        token = self.sup.settings.admin.token
        sid = self.sessions.login(str(form.get("token", "")), token)
        if sid is None:
            self.throttle.failed(client, time.monotonic())
            self._count_refusal()
            body = render.login_form("That is not the admin token.", bool(token))
            return self._page(request, "Log in", "", body, status=401, admin=False)
        self.throttle.succeeded(client)
        log.info("dashboard login", extra={"peer": client})
        response = _see_other(render.BASE)
        # A new session is a new CSRF binding: the token of any page seen before the login is void.
        self._set_cookie(request, response, auth.SESSION_COOKIE, sid, int(self.sup.settings.dashboard.session_ttl))
        self.csrf.nonces.drop(request.cookies.get(NONCE_COOKIE))
        response.del_cookie(NONCE_COOKIE, path=render.BASE)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        form = await request.post()
        why = self.csrf.refusal(request.headers, request.cookies, str(form.get(CSRF_FIELD, "")) or None)
        if why is not None:
            return _json_error(403, why)
        self.sessions.logout(request.cookies.get(auth.SESSION_COOKIE))
        response = _see_other(f"{render.BASE}login")
        response.del_cookie(auth.SESSION_COOKIE, path=render.BASE)
        return response

    async def action(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        params: dict[str, Any] = dict(await request.post())
        wants_json = "Authorization" in request.headers or "application/json" in request.headers.get("Accept", "")
        try:
            if name not in ACTIONS:
                raise ActionError(404, f"no action {name!r}")
            why = self.csrf.refusal(request.headers, request.cookies, params.pop(CSRF_FIELD, None) or None)
            if why is not None:
                raise ActionError(403, why)
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


def _see_other(location: str) -> web.Response:
    """A 303 to return (an HTTPException returned rather than raised is deprecated), with cookies set on it."""
    return web.Response(status=303, headers={"Location": location})


def _json_error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason, "status": status}, status=status)


async def _to_dashboard(request: web.Request) -> web.Response:
    raise web.HTTPFound(render.BASE)


def _back(referer: str | None, message: str) -> str:
    """Where an action sends the browser back to: the page it came from (ours only), with the outcome."""
    parts = urlsplit(referer or "")
    path = parts.path if parts.path.startswith(render.BASE) else render.BASE
    query = [kv for kv in parts.query.split("&") if kv and not kv.startswith("msg=")]
    return f"{path}?{'&'.join(query + [urlencode({'msg': message})])}"
