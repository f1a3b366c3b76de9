"""The runner's environment on the lab, without one: the roles come from Patroni's view, a
launch refused (4xx) is a refusal, a 5xx or no answer an unknown outcome, and preparing the lab
clears chaos rules an interrupted run left, brings the lab up, resets the carriers and cancels
the campaigns left running (HTTP and Patroni replaced by recording fakes)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from chaos.lab_env import LabEnv
from chaos.matrix import Tools
from chaos.workload import Refused
from cluster.httpjson import HttpError
from cluster.lab.lab import Lab
from cluster.topology import load_topology
from replication.patroni import PatroniCluster, PatroniMember
from tests.fakes.lab import FakeFirewall

pytestmark = pytest.mark.unit


class Http:
    def __init__(self, answers: dict[tuple[str, str], Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, Any]] = []

    def __call__(self, method: str, url: str, body: Any = None, **_kw: Any) -> tuple[int, Any]:
        self.calls.append((method, url, body))
        for (m, suffix), answer in self.answers.items():
            if m == method and url.endswith(suffix):
                if isinstance(answer, Exception):
                    raise answer
                return 200, answer
        raise HttpError(url, None, "no answer")


@pytest.fixture
def env(lab_inventory_path: Path, monkeypatch: pytest.MonkeyPatch) -> LabEnv:
    monkeypatch.setenv("TENIR_TOKEN", "t" * 20)
    lab = Lab(load_topology(lab_inventory_path))
    return LabEnv(lab, Tools(firewall=FakeFirewall()))


def test_roles_come_from_patroni(env: LabEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    view = PatroniCluster((PatroniMember("marseille-db", "leader", "running", "h", 2, None),
                           PatroniMember("paris-db", "sync_standby", "streaming", "h", 2, 0)))
    monkeypatch.setattr("chaos.lab_env.patroni_view", lambda _t: view)
    roles = env.roles()
    assert (roles.primary, roles.standby) == ("marseille", "paris")
    monkeypatch.setattr("chaos.lab_env.patroni_view", lambda _t: None)
    with pytest.raises(RuntimeError, match="no PostgreSQL primary"):
        env.roles()


def test_a_launch_refused_is_a_refusal_a_5xx_or_silence_is_unknown(
        env: LabEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    http = Http({("POST", "/api/v1/campaigns"): {"id": 12},
                 ("GET", "/api/v1/campaigns/12"): {"id": 12, "recipients": 500}})
    monkeypatch.setattr("chaos.lab_env.request_json", http)
    assert asyncio.run(env.launch(500, "demo", 100)) == (12, 500)
    assert http.calls[0][2] == {"scenario": "demo", "population": 500, "batch_size": 100}
    # a streaming launch answers with what it was asked for before it has written it all
    http.answers[("POST", "/api/v1/campaigns")] = {"id": 13, "recipients": 100,
                                                    "requested": 500, "launch_state": "writing"}
    assert asyncio.run(env.launch(500, "demo", 100)) == (13, 500)
    http.answers = {("POST", "/api/v1/campaigns"): HttpError("u", 400, "scenario: unknown")}
    with pytest.raises(Refused, match="400 scenario: unknown"):
        asyncio.run(env.launch(500, "nope", 100))
    http.answers = {("POST", "/api/v1/campaigns"): HttpError("u", 503, "store away")}
    with pytest.raises(HttpError):
        asyncio.run(env.launch(500, "demo", 100))
    http.answers = {}
    with pytest.raises(HttpError, match="no answer"):  # every node tried, none answered
        asyncio.run(env.launch(500, "demo", 100))
    assert len([c for c in http.calls if c[0] == "POST"]) == 4 + 4


def test_preparing_clears_left_rules_resets_carriers_and_cancels_leftovers(
        env: LabEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    fw = env.tools.firewall
    assert isinstance(fw, FakeFirewall)
    fw.rules["tenir-paris-db"] = ["drop 10.213.0.21"]
    ups: list[str] = []
    monkeypatch.setattr(env.lab, "up", lambda timeout, **_kw: ups.append("up"))
    http = Http({("POST", "/control"): {},
                 # what the nodes answer to that filter: the running and paused ones only
                 ("GET", "/api/v1/campaigns?state=running,paused&limit=500"): {"items": [
                     {"id": 3, "state": "running"}, {"id": 1, "state": "paused"}]},
                 ("POST", "/cancel"): {}})
    monkeypatch.setattr("chaos.lab_env.request_json", http)
    env.prepare()
    assert fw.log == ["clear tenir-paris-db"] and ups == ["up"]
    controls = [c for c in http.calls if c[1].endswith("/control")]
    assert len(controls) == 2 and all(c[2] == {"channel": "all", "mode": "normal",
                                               "drop_receipts": False} for c in controls)
    cancelled = [c[1].rsplit("/", 2)[-2] for c in http.calls if c[1].endswith("/cancel")]
    assert cancelled == ["3", "1"]
