"""One generator process: its share of the users, each on its own keep-alive connection, in one event loop.

Closed loop (load, stress): each user sends its next request when the last
one has answered; latency counts from the send. Open loop (endurance): each
user is one connection paced by a ``Pacer``; latency counts from the due time.
Requests go through ``http1`` (see there why not aiohttp's client).
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import signal
import ssl
import time
from dataclasses import dataclass
from typing import Any

from cluster.loadgen.http1 import Client, Origin, ProtocolError, build_request, origin_of
from cluster.loadgen.mix import Endpoint, picker
from cluster.loadgen.recorder import Recorder
from cluster.loadgen.schedule import LATE_SEND_S, Pacer
from cluster.loadgen.stats import classify_status

PROGRESS_INTERVAL = 0.25
clock = time.monotonic  # CLOCK_MONOTONIC: one clock for every process of the run


@dataclass(frozen=True)
class WorkerPlan:
    """One process's share of a run.

    ``users[k]`` is its user count during phase ``k`` (a stress step; one phase
    otherwise), each phase lasting ``phase_duration`` seconds. Without a phase
    duration every user stops after ``requests_per_user`` requests. ``rate``
    (requests/s of this process) makes the users open-loop.
    """

    endpoints: list[Endpoint]
    users: list[int]
    phase_duration: float | None
    requests_per_user: int | None
    rate: float | None
    timeout: float
    seed: int
    verify_tls: bool = True


@dataclass(frozen=True)
class Prepared:
    """An endpoint as the hot loop sends it: the origin to connect to and the request's bytes."""

    origin: Origin
    payload: bytes
    no_body: bool


def prepare(endpoint: Endpoint) -> Prepared:
    return Prepared(origin_of(endpoint.url), build_request(endpoint.method, endpoint.url, endpoint.headers,
                                                           endpoint.body), endpoint.method == "HEAD")


def tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:  # --insecure: a staging server with a self-signed certificate
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Generator:
    def __init__(self, plan: WorkerPlan, recorder: Recorder) -> None:
        self.plan = plan
        self.recorder = recorder
        prepared = [prepare(e) for e in plan.endpoints]
        self.pick = picker(prepared, [e.weight for e in plan.endpoints], random.Random(plan.seed))
        self.tls = tls_context(plan.verify_tls) if any(p.origin.tls for p in prepared) else None
        self.stopping = False
        self._stop_requested = asyncio.Event()

    def request_stop(self) -> None:
        """Users finish the request in flight and send no more (Ctrl-C in the orchestrator)."""
        self.stopping = True
        self._stop_requested.set()

    async def _sleep_until(self, when: float) -> None:
        """Sleep until ``when`` unless a stop is requested first."""
        try:
            await asyncio.wait_for(self._stop_requested.wait(), max(0.0, when - clock()))
        except TimeoutError:
            pass

    async def send(self, client: Client, request: Prepared, origin: float) -> None:
        """One request; its latency counts from ``origin`` (the send, or the due time when open-loop)."""
        latency_known = True
        try:
            error = classify_status(await client.request(request.origin, request.payload, request.no_body))
        except TimeoutError:
            error = "timeout"  # the wait is real: it is recorded, as a lower bound of the latency
        except OSError:
            error, latency_known = "connect", False
        except ProtocolError:
            error, latency_known = "other", False
        done = clock()
        self.recorder.record(done - origin if latency_known else None, error, done)

    def client(self) -> Client:
        return Client(self.plan.timeout, self.tls)

    async def closed_user(self, stop_at: float | None) -> None:
        quota = self.plan.requests_per_user
        sent = 0
        client = self.client()
        try:
            while not self.stopping and (quota is None or sent < quota):
                now = clock()
                if stop_at is not None and now >= stop_at:
                    return
                await self.send(client, self.pick(), now)
                sent += 1
        finally:
            client.close()

    async def open_user(self, pacer: Pacer, stop_at: float) -> None:
        client = self.client()
        try:
            while not self.stopping:
                due = pacer.next_due()
                if due >= stop_at:
                    return
                delay = due - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                    if self.stopping:
                        return
                    if clock() - due > LATE_SEND_S:
                        self.recorder.late_sends += 1
                pacer.take()
                # A timer may fire a little early: never count from after the real send.
                await self.send(client, self.pick(), min(due, clock()))
        finally:
            client.close()

    async def run(self, start_at: float) -> None:
        plan = self.plan
        await asyncio.sleep(max(0.0, start_at - clock()))
        stop_at = start_at + plan.phase_duration * len(plan.users) if plan.phase_duration else None
        tasks: list[asyncio.Task[None]] = []
        if plan.rate:
            assert stop_at is not None
            per_user = plan.rate / plan.users[0]
            # Spread the users' first requests over one interval, as wrk2 does, not all at t=0.
            tasks = [asyncio.create_task(self.open_user(Pacer(start_at + i / plan.rate, per_user), stop_at))
                     for i in range(plan.users[0])]
        else:
            for phase, users in enumerate(plan.users):
                if self.stopping:
                    break
                self.recorder.phase = phase
                tasks += [asyncio.create_task(self.closed_user(stop_at)) for _ in range(users - len(tasks))]
                if plan.phase_duration and phase + 1 < len(plan.users):
                    await self._sleep_until(start_at + (phase + 1) * plan.phase_duration)
        await asyncio.gather(*tasks)


async def _report_progress(generator: Generator, index: int, events: Any, stop: Any) -> None:
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL)
        events.put(("progress", index, generator.recorder.requests, generator.recorder.errors))
        if stop.is_set():
            generator.request_stop()


async def run_plan(plan: WorkerPlan, index: int, start_at: float, events: Any, stop: Any) -> dict[str, Any]:
    """Run this process's share and return what the orchestrator merges."""
    recorder = Recorder(start_at, len(plan.users))
    cpu_before = time.process_time()
    generator = Generator(plan, recorder)
    reporter = asyncio.create_task(_report_progress(generator, index, events, stop))
    try:
        await generator.run(start_at)
    finally:
        reporter.cancel()
    ended = clock()
    cpu_s = time.process_time() - cpu_before
    return {"index": index, **recorder.result(), "ended": ended, "cpu_s": cpu_s,
            "wall_s": max(ended - start_at, 1e-9)}


def _event_loop_factory() -> Any:
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def process_main(plan: WorkerPlan, index: int, events: Any, go: Any, start_value: Any, stop: Any) -> None:
    """Entry point of a generator process: ready, wait for the common start, run, send the result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the orchestrator's: it asks us to stop
    try:
        events.put(("ready", index))
        go.wait()
        with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
            result = runner.run(run_plan(plan, index, start_value.value, events, stop))
        events.put(("result", index, result))
    except BaseException as exc:  # reported to the orchestrator, which fails the run with it
        events.put(("error", index, f"{type(exc).__name__}: {exc}"))
        raise
