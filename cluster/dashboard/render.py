"""HTML of the dashboard: pure functions from a snapshot (or a page of data) to escaped markup.

The live part of each page (``live(page, snapshot)``) is rendered once per
tick by the producer and swapped in by the page's script; the rest (dead
letter pages, a job, the login form) is rendered per request. Charts are
inline SVG: no script library, nothing fetched from elsewhere.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

PAGES = {"overview": "Overview", "processes": "Processes", "queues": "Queues", "replicas": "Replicas",
         "alerts": "Alerts"}
BASE = "/dashboard/"


def e(value: Any) -> str:
    return "–" if value is None else escape(str(value))


def num(value: Any, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        value = round(value, digits)
    return escape(f"{value}{unit}")


def ago(at: float | None, now: float) -> str:
    if not at:
        return "–"
    seconds = max(0, int(now - at))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def mib(value: int | None) -> str:
    return "–" if value is None else f"{value / 1048576:.1f} MiB"


def table(head: Sequence[str], rows: Iterable[Sequence[str]], empty: str = "nothing here") -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(head)}" class="muted">{escape(empty)}</td></tr>'
    return ("<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + body + "</tbody></table>")


def form(action: str, fields: dict[str, Any], label: str, read_only: bool, confirm: str | None = None,
         extra: str = "", danger: bool = False) -> str:
    """A POST form for one action; none in read-only mode. The CSRF field is filled by the page."""
    if read_only:
        return ""
    hidden = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(str(v))}">' for k, v in fields.items())
    attrs = f' data-confirm="{escape(confirm)}"' if confirm else ""
    css = ' class="danger"' if danger else ""
    return (f'<form method="post" action="{BASE}action/{escape(action)}"{attrs}>'
            f'<input type="hidden" name="csrf" value="">{hidden}{extra}<button{css}>{escape(label)}</button></form>')


def sparkline(values: Sequence[float | None], width: int = 120, height: int = 28) -> str:
    points = [v for v in values if v is not None]
    if len(points) < 2:
        return f'<svg class="spark" width="{width}" height="{height}" role="img" aria-label="no history yet"></svg>'
    low, high = min(points), max(points)
    span = (high - low) or 1.0
    step = width / (len(points) - 1)
    coords = " ".join(f"{i * step:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}" for i, v in enumerate(points))
    return (f'<svg class="spark" width="{width}" height="{height}" role="img" aria-label="trend">'
            f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{coords}"/></svg>')


def worker_chart(history: Sequence[Sequence[float]], decisions: Sequence[dict[str, Any]], now: float,
                 width: int = 640, height: int = 140) -> str:
    """Workers over the last hour (or since history began) against min and max; each autoscale change
    a dot, its reason on hover. ``history`` rows are (at, workers, target, min, max)."""
    start = max(now - 3600, history[0][0] if history else now - 3600)
    span = max(now - start, 1.0)
    top = max([h[4] for h in history] + [1]) + 1

    def x(at: float) -> float:
        return max(0.0, (at - start) / span * (width - 60))

    def y(count: float) -> float:
        return height - 14 - count / top * (height - 24)

    def line(index: int, css: str) -> str:
        if not history:
            return ""
        pts = " ".join(f"{x(h[0]):.1f},{y(h[index]):.1f}" for h in history)
        label = f'<text x="{width - 56}" y="{y(history[-1][index]) + 4:.1f}">{css} {history[-1][index]:g}</text>'
        return f'<polyline class="{css}" fill="none" points="{pts}"/>' + (label if css in ("min", "max") else "")

    def dot(d: dict[str, Any]) -> str:
        title = escape(f"{d.get('from')} → {d.get('to')}: {d.get('reason')}")
        return (f'<circle class="decision {escape(str(d.get("direction")))}" cx="{x(d["at"]):.1f}" '
                f'cy="{y(d["to"]):.1f}" r="4"><title>{title}</title></circle>')

    dots = "".join(dot(d) for d in decisions if d.get("at", 0) >= start)
    since = f'<text x="0" y="{height - 2}">{escape(ago(start, now))}</text><text x="{width - 90}" y="{height - 2}">now</text>'
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" height="{height}" role="img" '
            f'aria-label="workers over the last hour">{line(4, "max")}{line(3, "min")}{line(2, "target")}'
            f'{line(1, "workers")}{dots}{since}</svg>')


# -- live parts ----------------------------------------------------------------


def _overview(s: dict[str, Any]) -> str:
    now, health, workers, http = s["at"], s["health"], s["workers"], s["http"]
    level = health.get("level") or "unknown"
    cards = "".join(
        f'<div class="metric {escape(m.get("state") or "")}"><div class="label">{escape(name.replace("_", " "))}</div>'
        f'<div class="value">{num(m.get("value"))} <small>{escape(m.get("unit", ""))}</small></div>'
        f'<div class="state">{e(m.get("state"))} · {e(m.get("trend"))}</div>{sparkline(s["sparks"].get(name, []))}</div>'
        for name, m in s["metrics"].items())
    auto = workers.get("autoscale") or {}
    last = auto.get("last_decision") or {}
    decisions = table(["when", "change", "reason"], (
        [ago(d["at"], now), f'{e(d.get("from"))} → {e(d.get("to"))}', e(d.get("reason"))]
        for d in reversed(s["decisions"][-10:])), "no autoscale change in the last hour")
    alerts = _alert_rows(s["alerts"]["active"], s["read_only"], now)
    return f"""
<div class="row">
  <div class="card health {escape(level)}"><div class="label">health</div>
    <div class="big" data-test="health-score">{num(health.get("score"), 0)}</div><div>{escape(level)}</div></div>
  <div class="card"><div class="label">workers</div>
    <div class="big" data-test="worker-count">{e(workers["current"])}</div>
    <div>target {e(workers["target"])} · min {e(workers["min"])} · max {e(workers["max"])} · {e(workers["mode"])}</div></div>
  <div class="card"><div class="label">requests/s</div><div class="big">{num(http["rps"])}</div></div>
  <div class="card"><div class="label">p95</div><div class="big">{num(http["p95"], 3, " s")}</div></div>
  <div class="card"><div class="label">error rate</div><div class="big">{num(http["error_rate"], 2, " %")}</div></div>
</div>
<h2>The six metrics</h2><div class="metrics">{cards or '<p class="muted">no sample yet</p>'}</div>
<h2>Workers, last hour</h2>{worker_chart(s["worker_history"], s["decisions"], now)}
<p class="muted">{f"last decision: {e(last.get('direction'))} to {e(last.get('target'))}: {e(last.get('reason'))}"
                    if last else f"autoscaler: {e(auto.get('mode') or 'no decision yet')}"}</p>
{decisions}
<h2>Active alerts</h2>{alerts}"""


def _processes(s: dict[str, Any]) -> str:
    ro, workers = s["read_only"], s["workers"]

    def actions(row: dict[str, Any]) -> str:
        if row["group"] == "http-worker":
            return form("recycle", {"pid": row["pid"]}, "recycle", ro, f"Recycle worker {row['pid']}?")
        if row["group"].startswith("queue-"):
            return form("restart", {"group": row["group"]}, f"restart {row['group']}", ro,
                        f"Restart every process of {row['group']}?")
        return ""

    rows = ([e(r["group"]), e(r["name"]), e(r["pid"]), f'<span class="st {escape(str(r["state"]))}">{e(r["state"])}</span>',
             num(r.get("uptime"), 0, " s"), num(r.get("cpu_percent"), 1, " %"), mib(r.get("rss_bytes")),
             e(r.get("restarts")), actions(r)] for r in s["processes"])
    scale = form("scale", {}, "scale", ro, extra=(
        f'<input type="number" name="workers" min="{workers["min"]}" max="{workers["max"]}" '
        f'value="{workers["target"]}" aria-label="workers">'))
    auto = form("scale", {"auto": "1"}, "back to auto", ro)
    reload = form("reload", {}, "reload", ro, "Reload the configuration and replace the workers?")
    return f"""
<p>workers <b data-test="worker-count">{e(workers["current"])}</b> of target {e(workers["target"])}
 (min {e(workers["min"])}, max {e(workers["max"])}, {e(workers["mode"])}) · supervisor pid {e(s["supervisor"]["pid"])}
 up {num(s["supervisor"]["uptime"], 0, " s")}</p>
<div class="actions">{scale}{auto}{reload}</div>
{table(["group", "name", "pid", "state", "uptime", "CPU", "RSS", "restarts", ""], rows)}"""


def _queues(s: dict[str, Any]) -> str:
    ro, q = s["read_only"], s["queues"]
    if q["error"]:
        return f'<p class="warn">queues unavailable: {e(q["error"])}</p>'
    rows = []
    for name, r in q["queues"].items():
        toggle = (form("resume", {"queue": name}, "resume", ro) if r["paused"]
                  else form("pause", {"queue": name}, "pause", ro))
        state = '<span class="st paused">paused</span>' if r["paused"] else '<span class="st running">running</span>'
        rows.append([f'<a href="{BASE}queues?queue={escape(name)}">{escape(name)}</a>', state, e(r["depth"]),
                     e(r["in_flight"]), e(r["delayed"]), num(r.get("enqueued_per_s")), num(r.get("processed_per_s")),
                     e(r["processed"]), e(r["failed"]), f'<a href="{BASE}queues?queue={escape(name)}#dead">'
                     f'{e(r["dead_letter_size"])}</a>', num(r["oldest_age_seconds"], 1, " s"), e(r["consumers"]),
                     toggle])
    return table(["queue", "state", "depth", "in flight", "delayed", "in/s", "done/s", "processed", "failed",
                  "dead", "oldest", "consumers", ""], rows)


def _replicas(s: dict[str, Any]) -> str:
    r, now = s["replicas"], s["at"]
    head = (f'<p class="warn">{e(r["error"])}</p>' if r.get("error") else "")
    if not r.get("enabled"):
        body = f'<p class="muted">replica router off: {e(r.get("reason"))}</p>'
    else:
        rows = ([e(h["host"]), e(h["role"]), f'<span class="st {escape(str(h["state"]))}" data-test="replica-state">'
                 f'{e(h["state"])}</span>', e(h.get("weight")), num(h.get("lag_seconds"), 3, " s"),
                 e(h.get("lag_bytes")), e((h.get("connections") or {}).get("in_use")),
                 e((h.get("connections") or {}).get("idle")), e(h.get("errors"))] for h in r["hosts"])
        body = (f'<p>strategy {e(r.get("strategy"))} · fallback {e(r.get("fallback"))}</p>'
                + table(["host", "role", "state", "weight", "lag", "lag bytes", "in use", "idle", "errors"], rows))
    events = table(["when", "host", "change"], (
        [ago(ev["at"], now), e(ev["host"]), f'{e(ev["from"])} → {e(ev["to"])}'] for ev in reversed(s["replica_events"][-50:])),
        "no state change recorded")
    return f"{head}{body}<h2>State changes</h2>{events}"


def _alert_rows(alerts: Sequence[dict[str, Any]], read_only: bool, now: float, actions: bool = True) -> str:
    rows = ([e(a.get("severity")), e(a.get("metric")), e(a.get("state")), num(a.get("value")), num(a.get("threshold")),
             ago(a.get("fired_at") or a.get("since"), now), "yes" if a.get("acknowledged") else "no",
             form("ack", {"alert": a["id"]}, "acknowledge", read_only) if actions and not a.get("acknowledged") else ""]
            for a in alerts)
    return table(["severity", "metric", "state", "value", "threshold", "since", "acknowledged", ""], rows,
                 "no alert")


def _alerts(s: dict[str, Any]) -> str:
    return (f'<h2>Active</h2>{_alert_rows(s["alerts"]["active"], s["read_only"], s["at"])}'
            f'<h2>Recent</h2>{_alert_rows(s["alerts"]["recent"], True, s["at"], actions=False)}')


LIVE = {"overview": _overview, "processes": _processes, "queues": _queues, "replicas": _replicas, "alerts": _alerts}


def live(page: str, snapshot: dict[str, Any]) -> str:
    return LIVE[page](snapshot)


# -- per-request parts -------------------------------------------------------------


def dead_section(page: dict[str, Any], name: str | None, read_only: bool, now: float) -> str:
    queue = page["queue"]
    rows = ([f'<a href="{BASE}jobs/{escape(x["job_id"])}">{escape(x["job_id"])}</a>' if x["job_id"] else "–",
             e(x["name"]), e(x["reason"]), e(x["attempts"]), ago(x["failed_at"], now),
             f'<span class="err">{e((x["error"] or "")[:160])}</span>',
             form("dead-retry", {"queue": queue, "entry": x["entry"]}, "retry", read_only)
             + form("dead-delete", {"queue": queue, "entry": x["entry"]}, "delete", read_only, danger=True)]
            for x in page["entries"])
    search = (f'<form method="get" action="{BASE}queues" class="search"><input type="hidden" name="queue" '
              f'value="{escape(queue)}"><input name="name" placeholder="job name" value="{escape(name or "")}">'
              f'<button>search</button></form>')
    retry_all = form("dead-retry-all", {"queue": queue, "name": name or ""},
                     f"retry all {name or ''} in {queue}".replace("  ", " "), read_only,
                     f"Retry every dead {name or ''} job of {queue}?")
    more = ""
    if page["next_cursor"]:
        query = urlencode({k: v for k, v in (("queue", queue), ("name", name), ("cursor", page["next_cursor"])) if v})
        more = f'<a class="more" href="{BASE}queues?{escape(query)}#dead">older →</a>'
    return (f'<h2 id="dead">Dead letter: {escape(queue)} <small class="muted">{page["total"]} entries, '
            f'{page["scanned"]} read for this page</small></h2>{search}<div class="actions">{retry_all}</div>'
            + table(["job", "name", "reason", "attempts", "failed", "error", ""], rows, "no dead job") + more)


def delayed_section(queue: str, jobs: Sequence[dict[str, Any]], read_only: bool, now: float) -> str:
    rows = ([f'<a href="{BASE}jobs/{escape(j["id"])}">{escape(j["id"])}</a>', e(j["name"]), e(j["state"]),
             e(j["attempts"]), f'in {max(0, int(j["due_at"] - now))}s', e((j["error"] or "")[:120]),
             form("run-now", {"queue": queue, "job": j["id"]}, "run now", read_only)] for j in jobs)
    return (f'<h2>Delayed and retrying: {escape(queue)}</h2>'
            + table(["job", "name", "state", "attempts", "due", "last error", ""], rows, "no delayed job"))


def job_section(job: dict[str, Any] | None, job_id: str) -> str:
    if job is None:
        return f'<p class="warn">no job {escape(job_id)} (unknown, or its record expired)</p>'
    fields = ["id", "queue", "name", "state", "attempts", "max_retries", "request_id"]
    rows = [[escape(f), e(job.get(f))] for f in fields]
    for when in ("enqueued_at", "not_before", "finished_at"):
        if job.get(when):
            rows.append([when, escape(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(job[when]))) + " UTC"])
    extra = ""
    if "result" in job:
        extra += f'<h2>Result</h2><pre>{escape(json.dumps(job["result"], indent=2))}</pre>'
    if job.get("error"):
        extra += f'<h2>Error</h2><pre class="err">{escape(job["error"])}</pre>'
    if job.get("args") is not None:
        extra += f'<h2>Arguments</h2><pre>{escape(json.dumps({"args": job["args"], "kwargs": job.get("kwargs")}, indent=2))}</pre>'
    return table(["field", "value"], rows) + extra


def login_form(message: str, can_login: bool) -> str:
    if not can_login:
        return f'<p class="warn">{escape(message)}</p>'
    return (f'<p class="warn">{escape(message)}</p><form method="post" action="{BASE}login" class="login">'
            '<label>Admin token <input type="password" name="token" autocomplete="current-password" autofocus></label>'
            '<button>Log in</button></form>')


def layout(title: str, current: str, body: str, csrf: str, flash: str | None = None, live_page: str | None = None,
           read_only: bool = False, logged_in: bool = False) -> str:
    nav = "".join(f'<a href="{BASE}{"" if key == "overview" else key}"{" class=current" if key == current else ""}>'
                  f'{label}</a>' for key, label in PAGES.items())
    live_attr = f' data-live-page="{escape(live_page)}"' if live_page else ""
    banner = f'<div class="flash">{escape(flash)}</div>' if flash else ""
    mode = '<span class="badge">read-only</span>' if read_only else ""
    logout = (f'<form method="post" action="{BASE}logout" class="logout"><input type="hidden" name="csrf" value="">'
              '<button>log out</button></form>') if logged_in else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{escape(csrf)}"><link rel="icon" href="data:,"><title>{escape(title)} · cluster</title>
<link rel="stylesheet" href="{BASE}static/dashboard.css"><script defer src="{BASE}static/dashboard.js"></script></head>
<body{live_attr}><header><b>cluster</b><nav>{nav}</nav>{mode}
<span id="conn" class="conn" data-test="connection">{"connecting" if live_page else "static"}</span>{logout}</header>
<main>{banner}<h1>{escape(title)}</h1>{body}</main></body></html>"""
