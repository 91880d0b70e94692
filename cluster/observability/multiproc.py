"""The one place that points prometheus_client's multiprocess mode at a directory.

prometheus_client picks its value class from ``PROMETHEUS_MULTIPROC_DIR`` when
it is first imported. Children inherit the variable (``Supervisor.child_env``);
`cluster start` calls ``use_multiprocess_dir`` before it imports any module
that imports prometheus_client, and should one have been imported already,
the value class is chosen again here (metrics with labels create their values
on first use, from ``values.ValueClass``). Nothing else works around the
import order.
"""

from __future__ import annotations

import os
import sys

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_multiprocess_dir(path: str) -> None:
    """Make this process write its metrics into ``path``."""
    os.environ[MULTIPROC_ENV] = path
    if "prometheus_client" in sys.modules:
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
