"""A whole drill on a real PostgreSQL: the node app on the PostgreSQL store and ledger (served
on loopback over HTTPS, as a node serves it, with a certificate of the test CA), the drill's
campaign in the real store, delivered batch by batch by the live sites' "nodes" of the fake
cluster, the chaos store observer reading it into the history (and reconnecting when its
connection is cut), chaos's checkers judging recipients and RPO, and the record signed into the
database's ledger and read back verified."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web

from chaos.history import History
from chaos.pg_observer import PgObserver
from cluster import tls
from cluster.httpjson import request_json
from cluster.topology import load_topology
from failover.drills import runner
from failover.drills.book import DrillBook
from failover.drills.real_cluster import NodeDrillApi, Nodes
from failover.drills.runner import Context
from failover.drills.service import DrillService
from failover.drills.session import Roles, Session
from failover.evidence.pg_ledger import PgLedger
from failover.evidence.service import EvidenceService
from nodes.metrics import Metrics
from replication.store import PgCampaignStore
from replication.store_api import ChannelStep, Outcome, ScenarioIn
from tests.api.conftest import ONCALL, OPERATOR, make_app
from tests.cli.support import PKI, LoopThread, write_inventory
from tests.evidence_kit import ORIGIN, make_kit
from tests.fakes.drill_cluster import SITES, FakeCluster
from tests.unit.drills.support import settings, small

pytestmark = pytest.mark.integration


class PgNode(LoopThread):
    """The node app and the sites' dispatching on one loop thread, on the PostgreSQL store."""

    def __init__(self, dsn: str, tmp: Path, cluster: FakeCluster) -> None:
        super().__init__()
        self.dsn, self.tmp, self.cluster = dsn, tmp, cluster
        self.store: PgCampaignStore | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def __enter__(self) -> PgNode:
        self.port = self.call(self._start())
        return self

    def __exit__(self, *_: object) -> None:
        self.call(self._stop())
        self.close()

    async def _start(self) -> int:
        self.store = await PgCampaignStore.open(self.dsn, min_size=1, max_size=8)
        await self.store.create_scenario(ScenarioIn("demo", (ChannelStep("sms", {"fr": "x"}),),
                                                    priority=2))
        ledger = PgLedger(self.store.pool)
        kit = make_kit(ledger, self.tmp)
        evidence = EvidenceService(ledger, ORIGIN, "paris-node1", "paris", kit.paris, kit.vkeys)
        drills = DrillService(DrillBook(evidence, kinds=lambda: {"lose-primary-site"}), {})
        self.runner = web.AppRunner(make_app(self.store, Metrics(), evidence_service=evidence,
                                             drill_service=drills))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0,
                           ssl_context=PKI.files("paris-node1").server_context())
        await site.start()
        self.task = asyncio.create_task(self._dispatch())
        server = site._server
        assert isinstance(server, asyncio.Server)
        return int(server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task
        if self.runner is not None:
            await self.runner.cleanup()
        if self.store is not None:
            await self.store.close()

    async def _dispatch(self) -> None:
        """Each live datacenter site's node claims, delivers and finishes a batch in turn; a
        site that goes down has its claimed batches reassigned (the watchdog's move)."""
        assert self.store is not None
        moved: set[str] = set()
        while not self.stop.is_set():
            c = self.cluster
            for site in SITES.datacenters:
                node = f"{site}-node1"
                if not c.up[site]:
                    if site not in moved:
                        moved.add(site)
                        await self.store.reassign_batches(node)
                    continue
                moved.discard(site)
                if c.primary is None or site in c.carriers_down:
                    continue
                batch = await self.store.claim_batch(node, 30, site=site)
                if batch is None:
                    continue
                outcomes = [Outcome(r.id, "sms", f"sim-{site}",
                                    f"{batch.campaign_id}:{r.id}:sms:0", "delivered", 0, 0,
                                    True, site, carrier_message_id=f"m{r.id}")
                            for r in batch.recipients]
                await self.store.record_outcomes(batch.id, batch.epoch, node, outcomes)
                await self.store.finish_batch(batch.id, batch.epoch, node)
            c.facts()  # the fake's clock: promotion after the failover delay
            await asyncio.sleep(0.01)


@pytest.fixture
def node(db_dsn: str, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[PgNode, FakeCluster]]:
    # The drill's client (and this test's calls) verify the node by the test CA, as the CLI
    # verifies a real node by the cluster's.
    monkeypatch.setenv("TENIR_CA_FILE", str(PKI.pki.ca_cert_path))
    tls.configure(None)
    cluster = FakeCluster(failover_s=0.5)
    with PgNode(db_dsn, tmp_path, cluster) as n:
        yield n, cluster


def observed(dsn: str) -> Any:
    @contextlib.asynccontextmanager
    async def open_collectors(history: History) -> AsyncIterator[list[Any]]:
        async with PgObserver(f"{dsn} application_name=drill-observer",
                                        history) as obs:
            yield [obs]

    return open_collectors


def kill_observer(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE application_name = 'drill-observer'")


def test_a_drill_on_postgresql_is_judged_by_the_chaos_checkers_and_signed(
        node: tuple[PgNode, FakeCluster], db_dsn: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    pg, cluster = node
    monkeypatch.setenv("TENIR_DRILL_DIR", str(tmp_path / "runs"))
    topo = load_topology(write_inventory(tmp_path, pg.port))
    api = NodeDrillApi(Nodes(topo, ONCALL))
    drill = small("lose-primary-site", population=3000)
    s = settings(rto_s=10.0)

    def make_session(roles: Roles) -> Session:
        return Session(drill, sites=SITES, roles=roles, cluster=cluster, platform=cluster,
                       api=api, settings=s)

    ctx = Context(sites=SITES, make_session=make_session, control=api,
                  collectors=observed(db_dsn), say=lambda _: None, monitor_period_s=0.05,
                  collect_period_s=0.1)
    _, approval = request_json("POST", f"https://127.0.0.1:{pg.port}/api/v1/drills/approvals",
                               {"drill": "lose-primary-site"}, bearer=OPERATOR,
                               accept_status=(201,), timeout=10)

    killed: list[float] = []

    def cut_the_observer_when_the_fault_is_in() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("inject" in x for x in cluster.log):
            time.sleep(0.01)
        kill_observer(db_dsn)
        killed.append(time.time())

    import threading

    killer = threading.Thread(target=cut_the_observer_when_the_fault_is_in, daemon=True)
    killer.start()
    result = runner.run(ctx, drill, approval=str(approval["approval"]))
    killer.join(10)
    assert result.outcome == "passed", (result.reason, result.store_problem)
    record = result.record
    assert record is not None
    verdicts = {v["invariant"]: v["verdict"] for v in record["verdicts"]}
    assert verdicts == {"recipients": "pass", "rpo": "pass", "duplicates": "not_checked",
                        "progress": "pass"}
    details = {v["invariant"]: v["detail"] for v in record["verdicts"]}
    assert details["recipients"] == "3000 recipients of 1 campaign(s), one final outcome each"
    m = record["measured"]
    assert m["lost"] == 0 and m["rpo_s"] == 0
    assert m["rto_s"] is not None and m["rto_s"] < 10
    assert m["complete_s"] is not None and m["pg_failover_s"] is not None
    history = History.read(result.folder / "history.jsonl")  # type: ignore[operator]
    reads = history.of("read", "ok")
    assert len(history.of("fault", "invoke")) == 1
    cut = [r for r in caplog.records if r.name == "tenir.chaos.collect"]
    assert cut, "the observer's connection was not cut"
    final = history.of("final", "ok")
    assert len(final) == 1
    # it read again after its connection was cut, while the drill ran (not only at the end)
    assert killed and any(r.at > killed[0] and r.index < final[0].index for r in reads)
    assert result.stored_seq is not None
    _, view = request_json("GET", f"https://127.0.0.1:{pg.port}/api/v1/drills/records/"
                           f"{result.run_id}", bearer=ONCALL, timeout=10)
    assert view["seq"] == result.stored_seq
    assert view["record"]["verdicts"] == record["verdicts"]
    assert view["signed_by"].startswith("tenir/paris+")
