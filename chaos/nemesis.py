"""The nemesis: injects and heals faults, recording each as ``fault``/``heal`` invoke then ok
(or fail, with the error) in the history.

Before each injection it calls ``barrier`` (the store observer's ``read``), so that what was
committed up to the fault's instant is in the history: the rpo checker measures the window
left between that read and the fault. ``value`` names what fails: ``nodes`` (alert nodes that
die or freeze) and/or ``site``; the duplicates and watchdog checkers read them.

A fault is any object with ``describe()``, ``inject()`` and ``heal()`` (``chaos.faults``,
``chaos.power``, ``chaos.process_faults``, ``chaos.latency``); those are blocking and run in a
worker thread. The ``ok`` op carries the description again, as it reads after the action (a
fault that finds its victim when it injects, the coordination leader, names it then).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from chaos.history import History


class Fault(Protocol):
    def describe(self) -> str: ...
    def inject(self) -> None: ...
    def heal(self) -> None: ...


class Nemesis:
    def __init__(self, history: History,
                 barrier: Callable[[], Awaitable[Any]] | None = None) -> None:
        self.history = history
        self.barrier = barrier

    async def inject(self, name: str, fault: Fault,
                     value: Mapping[str, Any] | None = None) -> None:
        if self.barrier is not None:
            await self.barrier()
        await self._do("fault", name, fault, fault.inject, value)

    async def heal(self, name: str, fault: Fault,
                   value: Mapping[str, Any] | None = None) -> None:
        await self._do("heal", name, fault, fault.heal, value)

    async def _do(self, f: str, name: str, fault: Fault, action: Callable[[], None],
                  value: Mapping[str, Any] | None) -> None:
        body = {"name": name, "describe": fault.describe(), **(value or {})}
        self.history.add("nemesis", "invoke", f, body)
        try:
            await asyncio.to_thread(action)
        except Exception as exc:
            self.history.add("nemesis", "fail", f, {**body, "error": repr(exc)})
            raise
        # described again: a fault that finds its victim at injection names it now
        self.history.add("nemesis", "ok", f, {**body, "describe": fault.describe()})
