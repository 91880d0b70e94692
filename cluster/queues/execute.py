"""Running one handler under its deadline, async or sync, without a fork per job.

An async handler is cancelled at its deadline. A sync handler runs in a
thread; at its deadline it gets a soft signal (``JobTimeout`` raised inside
its thread, which pure Python code sees at once and C calls see when they
return). If it is still running ``kill_grace`` later, ``HungHandler`` tells
the consumer to record the failure and kill its own process: cooperative
cancellation cannot stop CPU-bound or blocked code, and the supervisor
starts a fresh consumer.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cluster.queues.registry import JobSpec


class JobTimeout(Exception):
    """The handler ran past its timeout."""


class HungHandler(JobTimeout):
    """A sync handler ignored its soft timeout for the whole kill grace."""


class _ThreadCall:
    """Remembers which thread runs a call, so the soft signal goes to it and only while it runs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ident: int | None = None

    def run(self, ctx: contextvars.Context, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with self.lock:
            self.ident = threading.get_ident()
        try:
            return ctx.run(func, *args, **kwargs)
        finally:
            with self.lock:
                self.ident = None

    def interrupt(self) -> bool:
        with self.lock:
            if self.ident is None:
                return False
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.ident), ctypes.py_object(JobTimeout))
            return True


class HandlerRunner:
    def __init__(self, threads: int, kill_grace: float) -> None:
        self.kill_grace = kill_grace
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="job")

    async def run(self, spec: JobSpec, args: list[Any], kwargs: dict[str, Any], timeout: float) -> Any:
        """The handler's return value; JobTimeout / HungHandler past the deadline; its own exception else."""
        if spec.is_async:
            try:
                async with asyncio.timeout(timeout) as deadline:
                    return await spec.func(*args, **kwargs)
            except TimeoutError:
                if deadline.expired():
                    raise JobTimeout(f"timed out after {timeout:g}s") from None
                raise
        call = _ThreadCall()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.pool, call.run, contextvars.copy_context(), spec.func, tuple(args), kwargs)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            if future.done() and future.exception() is not None and not isinstance(future.exception(), JobTimeout):
                raise future.exception() from None  # type: ignore[misc]
        call.interrupt()
        try:
            await asyncio.wait_for(asyncio.shield(future), self.kill_grace)
        except TimeoutError:
            raise HungHandler(f"timed out after {timeout:g}s and ignored the soft signal for "
                              f"{self.kill_grace:g}s") from None
        except BaseException:
            pass
        raise JobTimeout(f"timed out after {timeout:g}s")

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
