"""What the lab tests do with campaigns: talk to the nodes' API, drive the carrier simulators,
launch a campaign and follow it."""

from __future__ import annotations

import time
from typing import Any

from cluster.httpjson import request_json
from cluster.lab.health import carriers_control_url
from cluster.node_api import ApiError, NodeApi
from tests.lab.support import LabHandle


def api(lab: LabHandle, role: str = "operator") -> NodeApi:
    secrets = lab.layout.load_secrets()
    assert secrets is not None
    return NodeApi(lab.topo, secrets[f"token_{role}"])


def control(lab: LabHandle, site: str, body: dict[str, Any]) -> None:
    host = next(h for h in lab.topo.hosts_running("carriers") if h.site == site)
    request_json("POST", f"{carriers_control_url(lab.topo, host)}/control", body)


def reset_carriers(lab: LabHandle) -> None:
    for host in lab.topo.hosts_running("carriers"):
        url = carriers_control_url(lab.topo, host)
        request_json("POST", f"{url}/control", {"channel": "all", "mode": "normal"})
        request_json("POST", f"{url}/reset", {})


def run_campaign(lab: LabHandle, body: dict[str, Any], timeout: float = 240) -> dict[str, Any]:
    client = api(lab)
    campaign = int(client.call("POST", "/campaigns", body)["id"])
    deadline = time.monotonic() + timeout
    while True:
        c = dict(client.call("GET", f"/campaigns/{campaign}"))
        if c["state"] == "completed" or time.monotonic() > deadline:
            return c
        time.sleep(0.5)


def launch_until_delivered(lab: LabHandle, population: int, delivered: int) -> int:
    """Launch a `demo` campaign and return once ``delivered`` recipients have been delivered."""
    reset_carriers(lab)
    client = api(lab)
    campaign = int(client.call("POST", "/campaigns", {"scenario": "demo",
                                                      "population": population})["id"])
    deadline = time.monotonic() + 60
    while int(client.call("GET", f"/campaigns/{campaign}")["delivered"]) < delivered:
        assert time.monotonic() < deadline, "the campaign did not start"
        time.sleep(0.05)
    return campaign


def wait_completed(lab: LabHandle, campaign: int, timeout: float = 300) -> dict[str, Any]:
    """Follow a campaign to completion, riding out a PostgreSQL failover (nodes answer 5xx)."""
    client = api(lab)
    deadline = time.monotonic() + timeout
    while True:
        try:
            c = dict(client.call("GET", f"/campaigns/{campaign}"))
            if c["state"] == "completed":
                return c
        except ApiError:
            pass
        assert time.monotonic() < deadline, f"campaign {campaign} did not complete"
        time.sleep(0.5)
