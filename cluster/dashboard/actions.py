"""Every operator action, once: the dashboard's forms, the control API and the CLI all end up here.

Each action takes the supervisor and a flat mapping of parameters (form
fields or a JSON body) and returns a JSON-able result, or raises
``ActionError`` with an HTTP status and a message meant for the operator.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import redis.asyncio

from cluster.dashboard import queue_ops
from cluster.dashboard.snapshot import component
from cluster.supervisor.commands import Recycle, RestartGroup

if TYPE_CHECKING:
    from cluster.supervisor.core import Supervisor

log = logging.getLogger("cluster.dashboard.actions")
Params = Mapping[str, Any]


class ActionError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _int(params: Params, key: str) -> int | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ActionError(400, f"{key} must be an integer, got {value!r}") from None


def _required(params: Params, key: str) -> str:
    value = params.get(key)
    if not value:
        raise ActionError(400, f"{key} is required")
    return str(value)


def redis_of(supervisor: "Supervisor") -> redis.asyncio.Redis:
    dashboard = component(supervisor, "dashboard")
    client = dashboard.source.redis if dashboard is not None else None
    if client is None:
        raise ActionError(503, "the queue tier is off: no Redis")
    return client


async def scale(sup: "Supervisor", params: Params) -> dict[str, Any]:
    workers = _int(params, "workers")
    auto = str(params.get("auto", "")).lower() in ("1", "true", "yes", "on")
    if workers is None and not auto:
        raise ActionError(400, "give a worker count, or auto")
    try:
        return await sup.scale(workers=None if auto else workers, auto=auto)
    except ValueError as exc:
        raise ActionError(400, str(exc)) from None


async def reload(sup: "Supervisor", params: Params) -> dict[str, Any]:
    result = await sup.reload()
    if not result["reloaded"]:
        raise ActionError(422, "reload refused: " + "; ".join(result["problems"]))
    return result


async def restart_group(sup: "Supervisor", params: Params) -> dict[str, Any]:
    """Restart every process of one queue pool group (e.g. ``queue-high``): they are replaced at once."""
    group = _required(params, "group")
    restarted: list[str] = await sup.submit(RestartGroup(group))
    if not restarted:
        raise ActionError(404, f"no running queue pool group {group!r}")
    return {"group": group, "restarted": restarted}


async def recycle_worker(sup: "Supervisor", params: Params) -> dict[str, Any]:
    """Gracefully replace one HTTP worker (SIGTERM: in-flight requests finish, the arbiter forks anew)."""
    pid = _int(params, "pid")
    if pid is None or not await sup.submit(Recycle(pid)):
        raise ActionError(404, f"no http worker with pid {pid}")
    return {"recycled": pid}


async def pause(sup: "Supervisor", params: Params) -> dict[str, Any]:
    return await queue_call(queue_ops.set_paused(redis_of(sup), _required(params, "queue"), True))


async def resume(sup: "Supervisor", params: Params) -> dict[str, Any]:
    return await queue_call(queue_ops.set_paused(redis_of(sup), _required(params, "queue"), False))


async def dead_retry(sup: "Supervisor", params: Params) -> dict[str, Any]:
    return await queue_call(queue_ops.retry_dead(redis_of(sup), _required(params, "queue"),
                                                  [_required(params, "entry")]))


async def dead_delete(sup: "Supervisor", params: Params) -> dict[str, Any]:
    return await queue_call(queue_ops.delete_dead(redis_of(sup), _required(params, "queue"),
                                                   [_required(params, "entry")]))


async def dead_retry_all(sup: "Supervisor", params: Params) -> dict[str, Any]:
    return await queue_call(queue_ops.retry_all_dead(redis_of(sup), params.get("name") or None,
                                                      params.get("queue") or None))


async def run_now(sup: "Supervisor", params: Params) -> dict[str, Any]:
    return await queue_call(queue_ops.run_now(redis_of(sup), _required(params, "queue"), _required(params, "job")))


async def show_job(sup: "Supervisor", params: Params) -> dict[str, Any]:
    job_id = _required(params, "job")
    job = await queue_call(queue_ops.job_detail(redis_of(sup), sup.settings, job_id))
    if job is None:
        raise ActionError(404, f"no job {job_id!r} (unknown, or its record expired)")
    return job


async def ack_alert(sup: "Supervisor", params: Params) -> dict[str, Any]:
    alert_id = _required(params, "alert")
    monitor = component(sup, "monitoring")
    alert = monitor.book.acknowledge(alert_id) if monitor is not None else None
    if alert is None:
        raise ActionError(404, f"no active alert {alert_id}")
    log.info("alert %s acknowledged", alert_id, extra={"alert": alert.to_dict()})
    return alert.to_dict()


async def queue_call(call: Awaitable[Any]) -> Any:
    from cluster.queues.connection import UNAVAILABLE_ERRORS

    try:
        return await call
    except queue_ops.QueueOpError as exc:
        raise ActionError(exc.status, str(exc)) from None
    except UNAVAILABLE_ERRORS as exc:
        raise ActionError(503, f"Redis is unreachable: {exc}") from None


ACTIONS: dict[str, Callable[["Supervisor", Params], Awaitable[dict[str, Any]]]] = {
    "scale": scale,
    "reload": reload,
    "restart": restart_group,
    "recycle": recycle_worker,
    "pause": pause,
    "resume": resume,
    "dead-retry": dead_retry,
    "dead-delete": dead_delete,
    "dead-retry-all": dead_retry_all,
    "run-now": run_now,
    "ack": ack_alert,
}
