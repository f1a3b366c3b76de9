"""The history: typed operations, JSON lines round trip, errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.history import History, HistoryError, Op

pytestmark = pytest.mark.unit


def test_round_trip_through_json_lines(tmp_path: Path) -> None:
    h = History()
    h.add("workload:0", "invoke", "launch", {"population": 10, "scenario": "s"}, at=100.0)
    h.add("workload:0", "ok", "launch", {"campaign": 3, "recipients": 10})
    h.add("nemesis", "info", "fault", {"name": "kill", "nodes": ["paris-node1"]})
    path = tmp_path / "history.jsonl"
    h.write(path)
    back = History.read(path)
    assert [(o.index, o.process, o.type, o.f, dict(o.value), o.at, o.mono) for o in back] == \
        [(o.index, o.process, o.type, o.f, dict(o.value), o.at, o.mono) for o in h]
    assert [o.index for o in back.of("launch")] == [0, 1]
    assert back.of("launch", "ok")[0].name() == "#1 workload:0 ok launch"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"type": "maybe"}, "type"), ({"f": "explode"}, "f"), ({"process": ""}, "process"),
    ({"at": float("nan")}, "at"), ({"value": [1]}, "value"),
])
def test_bad_operations_are_refused_naming_the_field(kwargs: dict[str, object],
                                                     field: str) -> None:
    base: dict[str, object] = {"process": "nemesis", "type": "ok", "f": "heal", "value": {},
                               "at": 1.0, "mono": 1.0}
    with pytest.raises(HistoryError, match=rf"^{field}:"):
        Op(**{**base, **kwargs})  # type: ignore[arg-type]


def test_a_bad_line_in_a_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text('{"process": "n", "type": "ok", "f": "heal", "value": {}, "at": 1, '
                    '"mono": 1}\n{"process": "n", "type": "ok", "f": "heal", "value": {}}\n')
    with pytest.raises(HistoryError, match=r"h\.jsonl: line 2: at: missing"):
        History.read(path)
