"""What a new lab holds for the demo and the tests: the ``demo`` scenario (SMS, e-mail fallback),
the ``astreinte`` scenario (voice with DTMF acknowledgement, SMS fallback) and the on-call group
``astreinte`` with its contacts. Created through the alert nodes' API, idempotently."""

from __future__ import annotations

from typing import Any

from cluster.topology import Topology

ONCALL_GROUP = "astreinte"
ONCALL_SIZE = 20

SCENARIOS: list[dict[str, Any]] = [
    {
        "name": "demo",
        "priority": 2,
        "steps": [
            {"channel": "sms", "retries": 1, "retry_interval_s": 1.0,
             "templates": {"fr": "ALERTE {name} : confinez-vous, consignes sur alerte.invalid",
                           "en": "ALERT {name}: shelter in place, instructions at alerte.invalid"}},
            {"channel": "email", "retries": 1, "retry_interval_s": 1.0,
             "templates": {"fr": "Alerte : confinez-vous. Consignes sur alerte.invalid"}},
        ],
    },
    {
        "name": "astreinte",
        "priority": 1,
        "steps": [
            {"channel": "voice", "retries": 1, "retry_interval_s": 2.0, "ack": "dtmf",
             "ack_timeout_s": 20,
             "templates": {"fr": "Cellule de crise activée. Appuyez sur 1 pour confirmer."}},
            {"channel": "sms", "retries": 1, "retry_interval_s": 1.0,
             "templates": {"fr": "Cellule de crise activée : rejoignez la salle de crise."}},
        ],
    },
]


def oncall_contacts() -> list[dict[str, Any]]:
    return [{"name": f"Astreinte {i:02d}", "phone": f"+336123456{i:02d}",
             "mobile": f"+336123456{i:02d}", "email": f"astreinte-{i:02d}@example.invalid",
             "language": "fr", "groups": [ONCALL_GROUP]} for i in range(1, ONCALL_SIZE + 1)]


def seed_lab(topo: Topology, secrets: dict[str, str]) -> list[str]:
    """Create what is missing; return what was created."""
    from cluster.node_api import NodeApi

    api = NodeApi(topo, secrets["token_operator"])
    created = []
    existing = {s["name"] for s in api.call("GET", "/scenarios")["items"]}
    for scenario in SCENARIOS:
        if scenario["name"] not in existing:
            api.call("POST", "/scenarios", scenario)
            created.append(f"scenario {scenario['name']}")
    groups = {g["name"]: g for g in api.call("GET", "/groups")["items"]}
    if ONCALL_GROUP not in groups:
        api.call("POST", "/groups", {"name": ONCALL_GROUP})
        created.append(f"group {ONCALL_GROUP}")
    if not groups.get(ONCALL_GROUP, {}).get("members"):
        for contact in oncall_contacts():
            api.call("POST", "/contacts", contact)
        created.append(f"{ONCALL_SIZE} on-call contacts")
    return created
