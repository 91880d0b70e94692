"""The queue endpoints every HTTP worker serves, and the queue check in /health.

POST /api/enterprise/jobs           {name, args, kwargs, priority, delay, job_id} -> 202 {id, ...}
POST /api/enterprise/jobs           [{name, ...}, ...] (at most MAX_BATCH_JOBS) -> 200 {jobs: [one result a job]}
GET  /api/enterprise/jobs/{id}      state, attempts, result or error
GET  /api/enterprise/queues/status  per queue: depth, in flight, delayed, counters, oldest age, consumers
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from cluster.config import PRIORITIES, Settings
from cluster.config.masking import mask_url
from cluster.queues import api as queue_api
from cluster.queues import registry
from cluster.queues.client import BatchOutcome, Enqueued, EnqueueUnknown, JobRequest, QueueClient, QueueFull
from cluster.queues.connection import UNAVAILABLE_ERRORS, QueueUnavailable
from cluster.queues.envelope import new_job_id, new_job_ids
from cluster.queues.job_limits import RESERVED_KWARGS
from cluster.workers.endpoints import HEALTH_CHECKS
from cluster.workers.middleware import json_error

log = logging.getLogger("workers.queues")
CLIENT = web.AppKey("queue_client", QueueClient)
JOBS_ERROR = web.AppKey("queue_jobs_module_error", str)
_BODY_KEYS = {"name", "args", "kwargs", "priority", "delay", "job_id"}
MAX_BATCH_JOBS = 1000
"""The most jobs one POST may carry as a list (one ENQUEUE script call's worth)."""


def _client(request: web.Request) -> QueueClient:
    client = request.app.get(CLIENT)
    if client is None:
        raise web.HTTPServiceUnavailable(reason="the queue tier is off (no Redis)")
    return client


def _job_request(data: Any) -> dict[str, Any]:
    """The enqueue arguments of a POST body, or ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    unknown = set(data) - _BODY_KEYS
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise ValueError("'name' (a string) is required")
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    if not isinstance(args, list):
        raise ValueError("'args' must be a list")
    if not isinstance(kwargs, dict):
        raise ValueError("'kwargs' must be an object")
    reserved = set(kwargs) & RESERVED_KWARGS
    if reserved:
        raise ValueError(f"kwargs may not use the names {', '.join(sorted(reserved))}")
    delay = data.get("delay")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float)):
        raise ValueError("'delay' must be a number of seconds")
    for key in ("priority", "job_id"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ValueError(f"'{key}' must be a string")
    return {"name": data["name"], "args": args, "kwargs": kwargs, "priority": data.get("priority"),
            "delay": delay, "job_id": data.get("job_id")}


def _outcome(outcome: BatchOutcome) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of one job's enqueue outcome."""
    if isinstance(outcome, Enqueued):
        return (202 if outcome.created else 200), {"id": outcome.id, "queue": outcome.priority, "state": outcome.state,
                                                   "created": outcome.created}
    if isinstance(outcome, QueueFull):
        return 429, {"error": str(outcome), "queue": outcome.priority, "retry_after": outcome.retry_after}
    if isinstance(outcome, QueueUnavailable):  # Redis unreachable, silent or full: a 503 the client may retry
        extra = {"job_id": outcome.job_id, "enqueued": "unknown"} if isinstance(outcome, EnqueueUnknown) else {}
        return 503, {"error": str(outcome), "retry_after": outcome.retry_after, **extra}
    return 400, {"error": str(outcome)}  # ValueError, UnknownJob


def _answer(status: int, body: dict[str, Any]) -> web.Response:
    if status < 300:
        return web.json_response(body, status=status)
    retry_after = body.pop("retry_after", None)
    response = json_error(status, body.pop("error"), **body)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def post_job(request: web.Request) -> web.Response:
    """One job (a JSON object) or a batch (a JSON list of them, each with its own result)."""
    client = _client(request)
    try:
        data = await request.json()
        if isinstance(data, list):
            return await _post_jobs(client, data)
        spec = _job_request(data)
        # The id exists before the write, so an answer that cannot tell still names the job to retry with.
        job_id = new_job_id() if spec["job_id"] is None else spec["job_id"]
        outcome: BatchOutcome = await client.enqueue(spec["name"], *spec["args"], priority=spec["priority"],
                                                     delay=spec["delay"], job_id=job_id, **spec["kwargs"])
    except RecursionError:  # a body nested past what the JSON parser can follow
        return json_error(400, "body nests too deep")
    except (ValueError, registry.UnknownJob, QueueFull, QueueUnavailable) as exc:  # JSONDecodeError is a ValueError
        outcome = exc
    return _answer(*_outcome(outcome))


async def _post_jobs(client: QueueClient, data: list[Any]) -> web.Response:
    """A batch in one round trip; 400 for a malformed list (nothing enqueued), else 200 with each job's result."""
    if not 1 <= len(data) <= MAX_BATCH_JOBS:
        return json_error(400, f"a list of jobs holds 1 to {MAX_BATCH_JOBS} jobs, got {len(data)}")
    specs = []
    for index, item in enumerate(data):
        try:
            specs.append(_job_request(item))
        except ValueError as exc:
            return json_error(400, f"job {index}: {exc}", index=index)
    ids = new_job_ids(len(specs))  # known before the write, as for one job
    jobs = [JobRequest(spec["name"], tuple(spec["args"]), spec["kwargs"], spec["priority"], spec["delay"],
                       job_id=spec["job_id"] if spec["job_id"] is not None else job_id)
            for spec, job_id in zip(specs, ids)]
    try:
        outcomes = await client.enqueue_many(jobs)
    except QueueUnavailable as exc:
        return _answer(503, {"error": str(exc), "retry_after": exc.retry_after, "enqueued": "unknown",
                             "job_ids": [job.job_id for job in jobs]})
    results = [{"status": status, **body} for status, body in map(_outcome, outcomes)]
    counts = {"created": sum(r["status"] == 202 for r in results), "existing": sum(r["status"] == 200 for r in results),
              "rejected": sum(r["status"] >= 300 for r in results)}
    return web.json_response({"jobs": results, **counts})


async def get_job(request: web.Request) -> web.Response:
    try:
        job = await _client(request).get_job(request.match_info["job_id"])
    except UNAVAILABLE_ERRORS as exc:
        return json_error(503, f"Redis is unreachable: {exc}")
    if job is None:
        return json_error(404, "no such job (unknown, or its result expired)")
    return web.json_response(job)


async def queues_status(request: web.Request) -> web.Response:
    try:
        queues = await _client(request).status()
    except QueueUnavailable as exc:
        return json_error(503, str(exc))
    # A read: the queue gauges are the pools' to publish (queues.consumer), not a status getter's.
    return web.json_response({"queues": queues, "time": time.time()})


async def _stalled_queues(client: QueueClient, settings: Settings) -> list[str]:
    """The queues (of those this cluster runs consumers for) with work waiting and no live consumer."""
    stalled = []
    for priority in PRIORITIES:
        if settings.queues.pool(priority).workers == 0:
            continue
        figures = await client.queue_status(priority)
        if (figures["depth"] or figures["in_flight"]) and not figures["consumers"]:
            stalled.append(f"queue {priority!r} has {figures['depth']} ready and {figures['in_flight']} "
                           "in-flight jobs and no live consumer")
    return stalled


def _health_check(app: web.Application, settings: Settings) -> Any:
    async def queues_check() -> tuple[str, dict[str, Any]]:
        client = app.get(CLIENT)
        if client is None:
            return "queues", {"status": "warn", "output": "queue tier off: no redis.url (REDIS_URL) and no "
                                                          "embedded redis-server"}
        if app.get(JOBS_ERROR):
            return "queues", {"status": "warn", "output": app[JOBS_ERROR]}
        started = time.perf_counter()
        try:
            await client.redis.ping()
        except UNAVAILABLE_ERRORS as exc:
            # warn, not fail: the HTTP tier still serves, and a failing /health would recycle its workers
            return "queues", {"status": "warn", "output": f"Redis at {mask_url(settings.redis.url)} unreachable: {exc}"}
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        stalled = await _stalled_queues(client, settings)
        if stalled:
            return "queues", {"status": "fail", "output": "; ".join(stalled)}
        return "queues", {"status": "pass", "observedValue": elapsed_ms, "observedUnit": "ms"}

    queues_check.check_name = "queues"  # type: ignore[attr-defined]
    return queues_check


def install(app: web.Application, settings: Settings) -> None:
    """Add the queue routes and the /health check; the client connects when the worker starts."""

    async def on_startup(app: web.Application) -> None:
        try:
            registry.load_jobs_module(settings.queues.jobs_module)
        except Exception as exc:
            log.exception("cannot import the jobs module %r", settings.queues.jobs_module)
            app[JOBS_ERROR] = f"jobs module {settings.queues.jobs_module!r} failed to import: {exc}"
        if settings.redis.url:
            app[CLIENT] = QueueClient(settings)
            queue_api.configure(settings, app[CLIENT])

    async def on_cleanup(app: web.Application) -> None:
        client = app.get(CLIENT)
        if client is not None:
            await client.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app[HEALTH_CHECKS].append(_health_check(app, settings))
    app.router.add_post("/api/enterprise/jobs", post_job)
    app.router.add_get("/api/enterprise/jobs/{job_id}", get_job)
    app.router.add_get("/api/enterprise/queues/status", queues_status)
