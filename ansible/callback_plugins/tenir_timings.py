"""Callback plugin: where a playbook run spends its time, task by task (wall time from the task's
start to the last host's result), written at the end of the run to ``$TENIR_TIMINGS`` as JSON
lines, slowest first. Nothing happens without the variable: enable it with
``ANSIBLE_CALLBACKS_ENABLED=tenir_events,tenir_timings TENIR_TIMINGS=/tmp/t.jsonl``
(``bench/lab_deploy.py`` does, to say where a cold ``lab up`` goes).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: tenir_timings
    type: aggregate
    short_description: per-task wall time of a run, written to $TENIR_TIMINGS
    description:
      - Records each task's wall time and the play it belongs to; writes them slowest first.
    requirements:
      - TENIR_TIMINGS names the file to write (nothing is recorded without it)
"""


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "tenir_timings"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._play = ""
        self._tasks: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None

    def _close(self) -> None:
        if self._current is not None:
            self._current["seconds"] = round(time.monotonic() - self._current.pop("t0"), 2)
            self._tasks.append(self._current)
            self._current = None

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._close()
        self._play = str(play.get_name())

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self._close()
        self._current = {"play": self._play, "task": str(task.get_name()),
                         "t0": time.monotonic()}

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._close()
        path = os.environ.get("TENIR_TIMINGS")
        if not path:
            return
        with open(path, "w", encoding="utf-8") as out:
            for t in sorted(self._tasks, key=lambda t: -float(t["seconds"])):
                out.write(json.dumps(t) + "\n")
