"""The throwaway child of preflight: import the jobs module, build the APP, say what went wrong in one line.

``python -m cluster.supervisor.preflight_app`` reads the settings as JSON on
stdin and writes one JSON line ``{"problems": [...], "warnings": [...]}``;
exit 0 when the app builds. Run in its own process so the supervisor never
imports user code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from cluster.config import Settings
from cluster.supervisor.shadowing import shadowing_note


def check(settings: Settings) -> tuple[list[str], list[str]]:
    """(problems, warnings): what stops the workers from booting, and the built-ins the app shadows."""
    try:
        # Imported here: a module of the user's directory that shadows one of our dependencies
        # (a redis.py beside the app) breaks these imports, and that must be said, not crash the check.
        from cluster.queues import registry
        from cluster.workers.app import SHADOWED, build_app, failure_line
    except Exception as exc:
        return [f"the runtime's own modules failed to import: {type(exc).__name__}: {exc}{shadowing_note()}"], []
    problems, warnings = [], []
    if settings.queues.jobs_module:
        try:
            registry.load_jobs_module(settings.queues.jobs_module)
        except Exception as exc:
            problems.append(f"queues.jobs_module {settings.queues.jobs_module!r} failed to import: "
                            f"{failure_line(exc)}{shadowing_note()}")
    if settings.server.app:
        try:
            app = asyncio.run(build_app(settings))
        except Exception as exc:
            problems.append(f"server.app {settings.server.app!r}: {failure_line(exc)}{shadowing_note()}")
        else:
            warnings += [f"built-in route {route} is shadowed by the app's own route (the app's wins)"
                         for route in app[SHADOWED]]
    return problems, warnings


def main() -> int:
    # The user's module may log or print at import: only our verdict goes to stdout, last.
    logging.disable(logging.CRITICAL)
    settings = Settings.model_validate_json(sys.stdin.read())
    stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        problems, warnings = check(settings)
    finally:
        sys.stdout = stdout
    sys.stdout.write(json.dumps({"problems": problems, "warnings": warnings}) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
