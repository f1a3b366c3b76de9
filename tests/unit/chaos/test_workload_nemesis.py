"""The workload and the nemesis record their operations as invoke then ok, fail or info."""

from __future__ import annotations

import pytest

from chaos.history import History
from chaos.nemesis import Nemesis
from chaos.workload import Refused, Workload

pytestmark = [pytest.mark.unit, pytest.mark.asyncio]


async def test_launches_are_ok_fail_or_unknown() -> None:
    h = History()
    answers: list[object] = [(7, 100), Refused("scenario: unknown"), TimeoutError()]

    async def launch(population: int, scenario: str) -> tuple[int, int]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, tuple)
        return answer

    w = Workload(h, launch, client=2)
    assert await w.launch(100, "demo") == 7
    assert await w.launch(100, "nope") is None
    assert await w.launch(100, "demo") is None
    assert [(op.process, op.type) for op in h.of("launch")] == [
        ("workload:2", "invoke"), ("workload:2", "ok"), ("workload:2", "invoke"),
        ("workload:2", "fail"), ("workload:2", "invoke"), ("workload:2", "info")]
    assert h.of("launch", "ok")[0].value == {"campaign": 7, "recipients": 100}


class Flaky:
    def __init__(self) -> None:
        self.injected = 0

    def describe(self) -> str:
        return "flaky"

    def inject(self) -> None:
        self.injected += 1

    def heal(self) -> None:
        raise RuntimeError("heal failed")


async def test_the_nemesis_reads_before_injecting_and_records_failures() -> None:
    h = History()
    reads: list[int] = []

    async def barrier() -> None:
        reads.append(len(h))
        h.add("observer", "ok", "read", {"db_time": 0.0})

    n = Nemesis(h, barrier=barrier)
    fault = Flaky()
    await n.inject("flaky", fault, {"nodes": ["paris-node1"]})
    with pytest.raises(RuntimeError):
        await n.heal("flaky", fault)
    assert fault.injected == 1 and reads == [0]
    assert [(op.f, op.type) for op in h] == [("read", "ok"), ("fault", "invoke"),
                                             ("fault", "ok"), ("heal", "invoke"),
                                             ("heal", "fail")]
    assert h.of("fault", "invoke")[0].value["nodes"] == ["paris-node1"]
    assert "heal failed" in h.of("heal", "fail")[0].value["error"]
