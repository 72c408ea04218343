"""Callback plugin bench_timings: the wall time of every task, summed by task name, written as JSON.

Enabled by `make bench` for the converge-scaling runs (ANSIBLE_CALLBACKS_ENABLED=bench_timings); the file is
BENCH_TIMINGS_FILE. A task that loops counts once, with the time of all its items.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bench_timings
type: aggregate
short_description: task wall times for the selfhost.backup benchmarks
description: Sums the wall time of each task by name and writes it as JSON to BENCH_TIMINGS_FILE.
"""


class CallbackModule(CallbackBase):  # type: ignore[misc]  # ansible is not in bench/.venv
    """Record when each task starts; the next task's start (or the play's end) closes it."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timings"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.totals: dict[str, float] = {}
        self.current: tuple[str, float] | None = None

    def _close(self) -> None:
        if self.current is not None:
            name, start = self.current
            self.totals[name] = self.totals.get(name, 0.0) + time.monotonic() - start
            self.current = None

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._close()
        self.current = (task.get_name(), time.monotonic())  # "<role> : <task>" for a role's task

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._close()
        path = os.environ.get("BENCH_TIMINGS_FILE")
        if path:
            with open(path, "w", encoding="utf-8") as out:
                json.dump(self.totals, out, indent=1, sort_keys=True)
