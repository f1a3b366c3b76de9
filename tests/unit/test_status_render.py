"""``tenir status`` as text: HAProxy lines say where clients go and why a backend is held out
(never as if HAProxy were down), what is not running is listed and makes the command exit 1,
and every line fits 80 columns."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from cluster import cli
from cluster.status_render import haproxy_lines, problems, render_table
from cluster.textfit import fit

pytestmark = pytest.mark.unit


def member(name: str, site: str, role: str, state: str = "streaming") -> dict[str, Any]:
    return {"name": name, "site": site, "role": role, "state": state, "timeline": 3,
            "lag_bytes": 0}


def healthy() -> dict[str, Any]:
    """What gather() returns for the lab with marseille-db primary (after a failover)."""
    haproxy = []
    for site, host in (("paris", "paris-db"), ("marseille", "marseille-db")):
        haproxy += [{"site": site, "host": host, "server": "paris-db", "state": "DOWN",
                     "sessions": 0},
                    {"site": site, "host": host, "server": "marseille-db", "state": "UP",
                     "sessions": 4}]
    return {
        "cluster": "tenir-lab", "inventory": "/srv/tenir/inventories/lab/hosts.yml",
        "coordination": {"backend": "etcd", "quorum": True, "members": [
            {"name": n, "site": s, "address": a, "healthy": True, "leader": n == "paris-db"}
            for n, s, a in (("paris-db", "paris", "10.213.0.11"),
                            ("marseille-db", "marseille", "10.213.0.21"),
                            ("witness-quorum", "witness", "10.213.0.31"))]},
        "postgres": {"reachable": True, "primary": "marseille-db", "sync_standby": "paris-db",
                     "lag_bytes": 0,
                     "members": [member("marseille-db", "marseille", "leader", "running"),
                                 member("paris-db", "paris", "sync_standby")]},
        "haproxy": haproxy,
        "nodes": [{"name": n, "site": n.split("-")[0], "member": True}
                  for n in ("paris-node1", "paris-node2", "marseille-node1", "marseille-node2")],
        "watchdog_leader": "paris-node1", "drained_sites": [], "campaigns": [],
        "cluster_view": {"from": "paris-node1", "reachable": True, "errors": []},
    }


def test_a_healthy_cluster_says_where_each_haproxy_sends_clients() -> None:
    status = healthy()
    lines, found = haproxy_lines(status)
    assert found == []
    assert lines[1:] == [
        "  on paris-db (paris): to marseille-db, the primary (4 sessions)",
        "    held out: paris-db, a sync standby (only the primary passes the check)",
        "  on marseille-db (marseille): to marseille-db, the primary (4 sessions)",
        "    held out: paris-db, a sync standby (only the primary passes the check)"]
    assert not any("DOWN" in line for line in lines)  # a replica held out is not "down"
    text = render_table(status)
    assert text.endswith("\neverything is running")
    assert max(len(line) for line in fit(text.split("\n"))) <= 80


def test_each_thing_not_running_is_a_problem() -> None:
    status = healthy()
    status["coordination"]["quorum"] = False
    for m in status["coordination"]["members"][1:]:
        m["healthy"] = False
    status["postgres"].update(primary=None, sync_standby=None, members=[
        member("paris-db", "paris", "replica", "running"),
        member("marseille-db", "marseille", "replica", "stopped")])
    for h in status["haproxy"]:
        h["state"] = "DOWN"
    status["haproxy"][2:] = [{"site": "marseille", "host": "marseille-db", "server": None,
                              "state": "UNREACHABLE", "sessions": 0,
                              "error": "HAProxy admin socket 10.213.0.21:9999: [Errno 111] "
                                       "Connection refused"}]
    status["nodes"][2]["member"] = False
    status["watchdog_leader"] = None
    assert problems(status) == [
        "etcd has no quorum (1 of 3 members healthy): no failover, no membership, no drain",
        "etcd member marseille-db (marseille) is down",
        "etcd member witness-quorum (witness) is down",
        "PostgreSQL has no primary: no campaign write succeeds",
        "PostgreSQL has no streaming synchronous standby",
        "PostgreSQL marseille-db is stopped",
        "HAProxy on paris-db (paris) sends PostgreSQL clients nowhere",
        "HAProxy on marseille-db (marseille): statistics unreachable",
        "alert node marseille-node1 (marseille) is not a member of the coordination service",
        "no watchdog leader",
    ]
    lines = haproxy_lines(status)[0]
    assert lines[1] == "  on paris-db (paris): NOWHERE: no backend passes the check (there is no " \
        "primary)"
    assert lines[2:4] == ["    held out: paris-db, a replica (only the primary passes the check)",
                          "    held out: marseille-db, PostgreSQL stopped"]
    assert lines[4].startswith("  on marseille-db (marseille): statistics UNREACHABLE, routing "
                               "unknown: HAProxy admin socket 10.213.0.21:9999")
    text = fit(render_table(status).split("\n"))
    assert "10 problems:" in text
    assert max(len(line) for line in text) <= 80, text


def test_an_haproxy_routing_to_a_replica_or_failing_the_primary_is_a_problem() -> None:
    status = healthy()
    status["haproxy"][0]["state"] = "UP"  # paris's HAProxy: paris-db (a replica) UP too
    status["haproxy"][3]["state"] = "DOWN"  # marseille's: the primary fails its check
    found = problems(status)
    assert found == [
        "HAProxy on paris-db (paris) sends clients to paris-db and marseille-db, not only to "
        "the primary (marseille-db)",
        "HAProxy on marseille-db (marseille) sends PostgreSQL clients nowhere",
        "HAProxy on marseille-db (marseille) holds out marseille-db: the primary, but it fails "
        "HAProxy's check",
    ]


def test_unreachable_patroni_and_nodes_are_problems() -> None:
    status = healthy()
    status["postgres"] = {"reachable": False, "primary": None, "sync_standby": None,
                          "lag_bytes": None, "members": []}
    status["cluster_view"] = {"from": None, "reachable": False,
                              "errors": ["alert nodes unreachable: no alert node answered"]}
    found = problems(status)
    assert "no Patroni REST API answered: PostgreSQL's state is unknown" in found
    assert "no alert node answered" in found


@pytest.mark.parametrize(("broken", "code"), [(False, 0), (True, 1)])
def test_status_exits_1_when_something_is_not_running(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        broken: bool, code: int) -> None:
    status = healthy()
    if broken:
        status["coordination"]["quorum"] = False
    status["problems"] = problems(status)
    import cluster.status

    monkeypatch.setattr(cluster.status, "gather", lambda topo: copy.deepcopy(status))
    assert cli.main(["status"]) == code
    out = capsys.readouterr().out
    assert ("1 problem:\n  - etcd has no quorum" in out) is broken
    assert max(len(line) for line in out.splitlines()) <= 80
    assert cli.main(["status", "--json"]) == code
    assert json.loads(capsys.readouterr().out)["problems"] == status["problems"]
