"""The workload: campaigns launched and recorded as ``launch`` invoke, then ok (campaign id,
recipients), fail (a definite refusal: the request was answered with an error) or info (no
answer: the campaign may or may not exist, a checker must not count on either).

``launch`` is any coroutine function ``(population, scenario) -> (campaign, recipients)``
(the alert nodes' API through any live node, or the store directly in tests); it raises
:class:`Refused` for a definite refusal, anything else is an unknown outcome.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from chaos.history import History

Launch = Callable[[int, str], Awaitable[tuple[int, int]]]


class Refused(Exception):
    """The launch was answered with a refusal: nothing was created."""


class Workload:
    def __init__(self, history: History, launch: Launch, client: int = 0) -> None:
        self.history = history
        self._launch = launch
        self.process = f"workload:{client}"

    async def launch(self, population: int, scenario: str) -> int | None:
        """The campaign id, or None when it failed or its outcome is unknown."""
        value = {"population": population, "scenario": scenario}
        self.history.add(self.process, "invoke", "launch", value)
        try:
            campaign, recipients = await self._launch(population, scenario)
        except Refused as exc:
            self.history.add(self.process, "fail", "launch", {**value, "error": str(exc)})
            return None
        except Exception as exc:  # no answer: it may exist
            self.history.add(self.process, "info", "launch", {**value, "error": repr(exc)})
            return None
        self.history.add(self.process, "ok", "launch", {"campaign": campaign,
                                                        "recipients": recipients})
        return campaign
