"""The dashboard's actions on the control socket, so that the CLI can do everything the page does.

``POST /actions/{name}`` runs any action with a JSON body of its parameters;
the reads the CLI needs (a job, a dead letter page, delayed jobs) are GETs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from cluster.dashboard import queue_ops
from cluster.dashboard.actions import ACTIONS, ActionError, queue_call, redis_of, show_job

if TYPE_CHECKING:
    from cluster.supervisor.core import Supervisor


def _error(exc: ActionError) -> web.Response:
    return web.json_response({"error": str(exc), "status": exc.status}, status=exc.status)


def add(app: web.Application, supervisor: "Supervisor") -> None:
    async def action(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.json() if request.can_read_body else {}
        if name not in ACTIONS:
            return _error(ActionError(404, f"no action {name!r}; one of {', '.join(ACTIONS)}"))
        if not isinstance(body, dict):
            return _error(ActionError(400, "the body must be a JSON object"))
        try:
            return web.json_response(await ACTIONS[name](supervisor, body))
        except ActionError as exc:
            return _error(exc)

    async def job(request: web.Request) -> web.Response:
        try:
            return web.json_response(await show_job(supervisor, {"job": request.match_info["job_id"]}))
        except ActionError as exc:
            return _error(exc)

    async def dead(request: web.Request) -> web.Response:
        q = request.query
        try:
            limit = int(q.get("limit", 50))
        except ValueError:
            return _error(ActionError(400, f"limit must be an integer, got {q['limit']!r}"))
        try:
            page = await queue_call(queue_ops.dead_page(redis_of(supervisor), q.get("queue", "high"),
                                                        q.get("cursor") or None, q.get("name") or None, limit))
        except ActionError as exc:
            return _error(exc)
        return web.json_response(page.to_dict())

    async def delayed(request: web.Request) -> web.Response:
        try:
            rows = await queue_call(queue_ops.delayed_jobs(redis_of(supervisor), request.match_info["queue"]))
        except ActionError as exc:
            return _error(exc)
        return web.json_response(rows)

    app.router.add_post("/actions/{name}", action)
    app.router.add_get("/jobs/{job_id}", job)
    app.router.add_get("/queues/dead", dead)
    app.router.add_get("/queues/{queue}/delayed", delayed)
