"""The CLI's API client: a node that answers 503 (cut from its store) passes the call to the next
node; any other answer is the answer; when every node says 503, the first refusal is raised."""

from __future__ import annotations

from typing import Any

import pytest

from cluster import node_api
from cluster.httpjson import HttpError
from cluster.node_api import ApiError, NodeApi
from cluster.topology import Topology

pytestmark = pytest.mark.unit


def client(lab_topology: Topology, monkeypatch: pytest.MonkeyPatch,
           answers: list[int]) -> tuple[NodeApi, list[str]]:
    """The nodes answer ``answers`` in turn (200: a campaign id)."""
    asked: list[str] = []

    def fake(method: str, url: str, body: Any = None, **_: Any) -> tuple[int, Any]:
        asked.append(url)
        status = answers[len(asked) - 1]
        if status != 200:
            raise HttpError(url, status, '{"error":"campaign store unavailable"}')
        return 200, {"id": 7}

    monkeypatch.setattr(node_api, "request_json", fake)
    return NodeApi(lab_topology, "token"), asked


def test_a_503_passes_the_call_to_the_next_node(lab_topology: Topology,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    api, asked = client(lab_topology, monkeypatch, [503, 200])
    assert api.call("POST", "/campaigns", {}) == {"id": 7} and len(asked) == 2


def test_another_refusal_is_the_answer_and_all_503_raise_the_first(
        lab_topology: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    api, asked = client(lab_topology, monkeypatch, [403, 200])
    with pytest.raises(ApiError, match="403") as forbidden:
        api.call("POST", "/campaigns", {})
    assert len(asked) == 1 and forbidden.value.status == 403
    n = len(api.bases)
    api, asked = client(lab_topology, monkeypatch, [503] * n)
    with pytest.raises(ApiError, match="503") as refused:
        api.call("POST", "/campaigns", {})
    assert len(asked) == n and asked[0].split("/api")[0] in str(refused.value)
    assert refused.value.status == 503
