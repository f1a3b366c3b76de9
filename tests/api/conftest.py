"""Fixtures of the API tests: the in-memory store, one user per role, the keys that sign
acknowledgement links and carrier callbacks, and a test client of the application served on
127.0.0.1 by aiohttp's TestServer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from failover.drills import catalog
from failover.drills.book import DrillBook
from failover.drills.lever import Lever
from failover.drills.service import DrillService
from failover.evidence import keys
from failover.evidence.service import EvidenceService
from nodes.api import Role, create_app
from nodes.api.identity import APPROVER_ROLES
from nodes.carriers.base import Ack, Receipt
from nodes.carriers.callback_auth import CallbackVerifier
from nodes.metrics import Metrics
from nodes.signing import AckKey, AckSigner
from nodes.users import ApiUser
from tests.fakes.coordinator import FakeCoordinationServer, FakeCoordinator
from tests.fakes.memory_store import MemoryStore

TOKENS: dict[str, Role] = {
    "op-token-5f2b9c1e7a4d": "operator",
    "oncall-token-8e3a1f6b0c2d": "oncall",
    "audit-token-1c7e4b9a3f5e": "auditor",
}
OPERATOR, ONCALL, AUDITOR = TOKENS
NAMES = {"operator": "alice", "oncall": "olivier", "auditor": "audrey"}
USERS = [ApiUser.with_token(NAMES[role], role, token) for token, role in TOKENS.items()]
ACK_KEYS = [AckKey("k2", "current-ack-key-for-tests-0123456789abcdef"),
            AckKey("k1", "previous-ack-key-for-tests-0123456789abcd")]
SIGNER = AckSigner(ACK_KEYS)
CARRIER_SECRET = "voice-carrier-secret-for-tests-0123456789"

Client = TestClient[web.Request, web.Application]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Sinks:
    """Records what the API hands to on_receipt / on_ack."""

    def __init__(self) -> None:
        self.receipts: list[Receipt] = []
        self.acks: list[Ack] = []

    async def on_receipt(self, receipt: Receipt) -> None:
        self.receipts.append(receipt)

    async def on_ack(self, ack: Ack) -> None:
        self.acks.append(ack)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def sinks() -> Sinks:
    return Sinks()


class Waiting:
    """The references a dispatcher would be waiting on (``InFlight``)."""

    def __init__(self) -> None:
        self.references: set[str] = set()

    def awaiting(self, reference: str) -> bool:
        return reference in self.references


# Every test app serves the evidence and drills routes too, as a node does (the fuzzers and
# schemathesis reach them): the drills of the catalog, the abort lever on a fake coordination
# service.
EVIDENCE_ORIGIN = "tenir.invalid/api-tests/ledger"
EVIDENCE_SITE_KEY = keys.generate("tenir/paris")
EVIDENCE_WITNESS_KEY = keys.generate("tenir/witness", keys.COSIGNATURE_V1)
DRILL_INTERVALS = {"lose-primary-site": 90 * 86400.0, "lose-witness": 182 * 86400.0}


def make_app(store: MemoryStore, metrics: Metrics, sinks: Sinks | None = None,
             **kwargs: Any) -> web.Application:
    """The node's app on ``store``; ``kwargs`` go to ``create_app``, and an evidence or drill
    service not given there is built on the in-memory store's ledger."""
    if "evidence_service" not in kwargs:  # not built otherwise: a PostgreSQL store has no
        kwargs["evidence_service"] = EvidenceService(  # .ledger (tests/integration)
            store.ledger, EVIDENCE_ORIGIN, "paris-node1", "paris", EVIDENCE_SITE_KEY,
            [EVIDENCE_SITE_KEY.verifier.vkey, EVIDENCE_WITNESS_KEY.verifier.vkey])
    if "drill_service" not in kwargs:
        kwargs["drill_service"] = DrillService(
            DrillBook(kwargs["evidence_service"], kinds=catalog.kinds,
                      approver_roles=APPROVER_ROLES), DRILL_INTERVALS,
            Lever(FakeCoordinator(FakeCoordinationServer(), "paris-node1")))
    return create_app(
        store, node="paris-node1", site="paris", users=USERS, metrics=metrics,
        signer=SIGNER, carrier_auth=CallbackVerifier([CARRIER_SECRET]),
        on_ack=sinks.on_ack if sinks else None,
        on_receipt=sinks.on_receipt if sinks else None, **kwargs,
    )


@pytest_asyncio.fixture
async def client(store: MemoryStore, metrics: Metrics, sinks: Sinks) -> AsyncIterator[Client]:
    async with TestClient(TestServer(make_app(store, metrics, sinks), host="127.0.0.1")) as c:
        yield c


SMS_STEP: dict[str, Any] = {"channel": "sms", "templates": {"fr": "Alerte {name}",
                                                             "en": "Alert {name}"}}
VOICE_STEP: dict[str, Any] = {"channel": "voice", "templates": {"fr": "Appuyez sur 1"},
                              "ack": "dtmf", "ack_timeout_s": 30}
EMAIL_STEP: dict[str, Any] = {"channel": "email", "templates": {"fr": "Cliquez le lien"},
                              "ack": "link"}


async def seed(client: Client, *, contacts: int = 3, group: str = "crise") -> None:
    """A scenario 'alerte' (voice then sms), and ``contacts`` contacts in ``group``."""
    r = await client.post("/api/v1/scenarios", headers=auth(OPERATOR), json={
        "name": "alerte", "priority": 2, "steps": [VOICE_STEP, SMS_STEP, EMAIL_STEP]})
    assert r.status == 201, await r.text()
    for i in range(contacts):
        r = await client.post("/api/v1/contacts", headers=auth(OPERATOR), json={
            "name": f"Agent {i}", "mobile": f"06 12 34 56 {i:02d}",
            "email": f"agent{i}@mairie.example.fr", "groups": [group]})
        assert r.status == 201, await r.text()
