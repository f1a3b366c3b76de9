"""``python -m nodes.main --config node.yml``: one alert node, API and dispatcher in one process.

Start: JSON logging, the outcome journal (``nodes/journal.py``: what a previous life journaled
and never recorded), the campaign store (the schema must be migrated: the node's role cannot,
the owner runs ``tenir db migrate``; retried while PostgreSQL is away or the schema is behind),
the journal's flush (``nodes/journal_flush.py``: fenced, before the node waits out of the
membership for its previous life's batches to be moved), membership of the coordination
service, the store's health (``nodes/store_health.py``: a node cut from the store while others
reach it stops sending and says so), the carrier adapters of the node's site, the dispatcher
(gated by self-fencing, by the store's health and by site drain: ``nodes/drain.py``), the API,
the drain-flag watch, the watchdog (which reads Patroni's ``/cluster`` at ``patroni_urls``) and,
with a site key, the checkpointer (``evidence``: signed checkpoints cosigned by the witness).
Stop: the first SIGTERM/SIGINT drains (no new claims, the reserve given back, running batches
finish until the drain deadline, then are released), a second one stops at once; buffered
outcomes are flushed before the store closes (bounded: what the store did not take stays in
the journal, flushed at the next start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys

from cluster.coordination.base import (
    CoordinationSettings,
    Coordinator,
    MemberInfo,
)
from cluster.coordination.factory import open_coordinator
from failover.drills.book import DrillBook
from failover.drills.service import DrillService
from failover.evidence.checkpointer import Checkpointer
from failover.evidence.pg_ledger import PgLedger
from failover.evidence.service import EvidenceService
from failover.evidence.witness_client import HttpWitness
from failover.pg_state import PatroniRestView
from failover.watchdog import Watchdog
from nodes.api.app import create_app
from nodes.api.identity import APPROVER_ROLES
from nodes.api.server import serve as serve_api
from nodes.carriers.base import CarrierAdapter
from nodes.carriers.callback_auth import CallbackVerifier
from nodes.carriers.smpp import SmppAdapter
from nodes.carriers.smtp import SmtpAdapter
from nodes.carriers.voice import VoiceAdapter
from nodes.channels import ChannelView
from nodes.config import UNSAFE_ENV, NodeConfig, NodeConfigError, load_node_config
from nodes.dispatcher import Dispatcher, DispatcherConfig, StopMode
from nodes.drain import CoordinationClusterView, SiteDrainGate
from nodes.journal import FileJournal, JournalError, JournalGroup
from nodes.journal_flush import flush_journal
from nodes.launches import LaunchWriter
from nodes.logs import configure_logging
from nodes.loop_lag import LoopLag
from nodes.member_publish import Publication
from nodes.membership import (
    FreshMembership,
    MembershipGate,
    open_and_join,
    wait_previous_life_moved,
)
from nodes.metrics import Metrics
from nodes.signing import AckSigner, CallbackUrls
from nodes.store_health import AllGates, PgProbe, StoreHealth
from nodes.tasks import TaskSet
from nodes.tls_config import certificate_expiries
from replication.store import PgCampaignStore
from replication.store_api import Channel

log = logging.getLogger("tenir.node")


def build_carriers(cfg: NodeConfig) -> dict[Channel, CarrierAdapter]:
    c = cfg.carriers
    tls = c.tls.context(cfg.tls)  # None: the carriers are reached in clear (tests only)
    scheme = "https" if tls is not None else "http"
    return {
        "sms": SmppAdapter(host=c.host, port=c.smpp_port, system_id=c.smpp_system_id,
                           password=c.smpp_password, name=f"smpp-{cfg.site}", window=c.window,
                           rate_per_s=c.rate_per_s, tls=tls),
        "email": SmtpAdapter(host=c.host, port=c.smtp_port, sender=f"alerte@{cfg.site}.invalid",
                             name=f"smtp-{cfg.site}", window=max(4, c.window // 8),
                             rate_per_s=c.rate_per_s, tls=tls),
        # Each call carries its own signed callback URL (the dispatcher's CallbackUrls).
        "voice": VoiceAdapter(base_url=f"{scheme}://{c.host}:{c.voice_port}",
                              name=f"voice-{cfg.site}", window=c.window, rate_per_s=c.rate_per_s,
                              tls=tls),
    }


def client_tls(cfg: NodeConfig) -> ssl.SSLContext | None:
    """How the node verifies Patroni and the witness (the cluster's CA), or None in clear."""
    return cfg.tls.client_context() if cfg.tls is not None else None


async def open_store(cfg: NodeConfig, deadline_s: float = 120.0) -> PgCampaignStore:
    """Open the store, retrying while PostgreSQL is unreachable (a failover under way)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline_s
    while True:
        try:
            return await PgCampaignStore.open(cfg.dsn, require_schema=True,
                                              max_size=cfg.max_batches + 6, connect_s=15.0)
        except Exception as exc:
            if loop.time() >= until:
                raise
            log.warning("campaign store not reachable yet: %s", exc)
            await asyncio.sleep(1.0)


def build_drills(cfg: NodeConfig, evidence: EvidenceService,
                 coordinator: Coordinator | None) -> DrillService:
    """The drills' book, lever and schedule, on the ledger (always there: migration 0005). A
    node without an evidence section keeps approvals and runs, but signs no record."""
    from failover.drills.catalog import kinds
    from failover.drills.lever import Lever

    return DrillService(DrillBook(evidence, kinds=kinds, approver_roles=APPROVER_ROLES),
                        cfg.drill_intervals,
                        Lever(coordinator) if coordinator is not None else None)


def build_evidence(cfg: NodeConfig,
                   store: PgCampaignStore) -> tuple[EvidenceService | None, Checkpointer | None]:
    """The evidence routes' service (reads need no key) and, with a site key, the periodic
    checkpointer (signs, has the witness cosign, stores)."""
    ev = cfg.evidence
    if ev is None:
        return None, None
    ledger = PgLedger(store.pool)
    service = EvidenceService(ledger, ev.origin, cfg.node, cfg.site, ev.signer,
                              [k.vkey for k in ev.keys])
    if ev.signer is None or ev.witness_url is None or ev.witness_key is None:
        return service, None
    return service, Checkpointer(ledger, ev.signer, origin=ev.origin, node=cfg.node,
                                 site=cfg.site,
                                 witness=HttpWitness(ev.witness_url, tls=client_tls(cfg)),
                                 witness_key=ev.witness_key,
                                 interval_s=ev.checkpoint_interval_s)


def member_info(cfg: NodeConfig) -> MemberInfo:
    return MemberInfo(name=cfg.node, site=cfg.site,
                      host=cfg.public_url.split("//")[-1].split(":")[0],
                      carriers=("sms", "email", "voice"), capacity=cfg.max_batches,
                      url=cfg.public_url)


async def open_membership(cfg: NodeConfig, deadline_s: float = 120.0) -> Coordinator | None:
    """Connect to the coordination service and join as a member (retried while it is away)."""
    k = cfg.coordination
    if k is None:
        return None
    settings = CoordinationSettings(endpoints=k.endpoints, namespace=k.namespace, ttl=k.ttl,
                                    retry_timeout=k.retry_timeout, tls=cfg.tls,
                                    zk_digest=k.zk_digest)
    return await open_and_join(
        lambda: open_coordinator(k.backend, settings),  # type: ignore[arg-type]
        member_info(cfg), deadline_s)


async def serve(cfg: NodeConfig) -> int:
    metrics = Metrics()
    for name, expiry in certificate_expiries(cfg.tls, cfg.carriers.tls).items():
        metrics.certificate_expiry.set(expiry, certificate=name)
    try:
        journal, replayed = FileJournal.open(cfg.journal_dir, cfg.node)
    except JournalError as exc:
        log.critical("outcome journal unusable (journal_dir): %s", exc)
        return 2
    try:
        return await serve_with(cfg, metrics, journal, replayed)
    finally:
        await journal.close()


async def serve_with(cfg: NodeConfig, metrics: Metrics, journal: FileJournal,
                     replayed: list[JournalGroup]) -> int:
    store = await open_store(cfg)
    if replayed:
        report = await flush_journal(store, journal, replayed, cfg.node, cfg.site)
        if report.refused_writes:
            metrics.fencing_rejections.inc(report.refused_writes)
    if cfg.coordination is not None:
        await wait_previous_life_moved(store, cfg.node, cfg.site, deadline_s=cfg.lease_s + 5)
    coordinator = await open_membership(cfg)
    publication = Publication(coordinator, member_info(cfg)) if coordinator is not None else None
    probe = PgProbe(cfg.dsn)
    store_health = (StoreHealth(probe, coordinator, publication, node=cfg.node, site=cfg.site,
                                grace_s=cfg.coordination.store_grace_s)
                    if coordinator is not None and publication is not None
                    and cfg.coordination is not None else None)
    gate = (AllGates(MembershipGate(coordinator, cfg.coordination.fencing_safety, cfg.node,
                                    cfg.site), store_health)
            if store_health is not None and coordinator is not None
            and cfg.coordination is not None else None)
    drains = (SiteDrainGate(coordinator, cfg.node, cfg.site)
              if coordinator is not None else None)
    carriers = build_carriers(cfg)
    signer = AckSigner(cfg.ack_keys)
    dispatcher = Dispatcher(
        store, carriers,
        DispatcherConfig(node=cfg.node, site=cfg.site, lease_s=cfg.lease_s,
                         max_batches=cfg.max_batches, drain_deadline_s=cfg.drain_deadline_s,
                         receipt_timeout_s=cfg.receipt_timeout_s,
                         claim_ahead_s=cfg.claim_ahead_s, claim_ahead_max=cfg.claim_ahead_max),
        gate=gate, metrics=metrics, claim_gate=drains,
        urls=CallbackUrls(cfg.public_url, signer), journal=journal,
        freshness=(FreshMembership(coordinator, cfg.node, cfg.site)
                   if coordinator is not None else None),
    )
    channels: ChannelView | None = None
    if coordinator is not None and cfg.coordination is not None:
        channels = ChannelView(coordinator, member_info(cfg), dispatcher.breakers,
                               cycle_s=cfg.coordination.watchdog_cycle_s,
                               publication=publication)
        dispatcher.elsewhere = channels
    for adapter in carriers.values():
        await adapter.start(dispatcher.on_receipt, dispatcher.on_ack)
    evidence, checkpointer = build_evidence(cfg, store)
    launches = LaunchWriter(store, cfg.node)
    drill_service = build_drills(cfg, evidence or EvidenceService(
        PgLedger(store.pool), "tenir.invalid/ledger", cfg.node, cfg.site), coordinator)
    app = create_app(store, node=cfg.node, site=cfg.site, users=cfg.users, metrics=metrics,
                     signer=signer,
                     carrier_auth=CallbackVerifier(cfg.carriers.voice_callback_secrets),
                     in_flight=dispatcher, on_ack=dispatcher.on_ack,
                     on_receipt=dispatcher.on_receipt, limits=cfg.http,
                     cluster_view=(CoordinationClusterView(coordinator, drains)
                                   if coordinator is not None and drains is not None else None),
                     evidence_service=evidence, launches=launches, drill_service=drill_service,
                     dispatch=gate)
    served = await serve_api(app, cfg.listen_host, cfg.listen_port,
                             tls=cfg.tls.server_context() if cfg.tls is not None else None)
    log.info("node %s of site %s serving on %s:%d", cfg.node, cfg.site, cfg.listen_host,
             cfg.listen_port)

    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        mode: StopMode = "drain" if signals == 1 else "now"
        log.info("stopping (%s)", mode)
        dispatcher.request_stop(mode)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    watchdog_stop = asyncio.Event()

    def loop_died(name: str, exc: BaseException) -> None:  # half alive is worse than restarted
        log.critical("background loop %s died (%s): the node stops, exits 1 and its service "
                     "manager starts it again", name, type(exc).__name__)
        dispatcher.request_stop("drain")

    loops = TaskSet("node-loops", log, on_failure=loop_died)  # nodes/tasks.py
    loops.spawn(LoopLag(metrics).run(watchdog_stop), name="loop-lag")
    try:
        if store_health is not None:
            loops.spawn(store_health.run(watchdog_stop), name="store-health")
        loops.spawn(drill_service.run(metrics, watchdog_stop), name="drill-schedule")
        if checkpointer is not None:
            loops.spawn(checkpointer.run(watchdog_stop), name="checkpointer")
        if drains is not None and cfg.coordination is not None:
            # Read the drain flags before the first claim (bounded: alerts are not held back).
            await drains.start(first_sync_s=cfg.coordination.retry_timeout * 2)
        if watchdog_wanted(cfg) and coordinator is not None and cfg.coordination is not None:
            watchdog = Watchdog(coordinator, store, node=cfg.node, site=cfg.site,
                                cycle_s=cfg.coordination.watchdog_cycle_s,
                                postgres=PatroniRestView(cfg.patroni_urls, tls=client_tls(cfg)),
                                store_state=store_health)
            if store_health is not None:
                store_health.on_cut = watchdog.step_down
            loops.spawn(watchdog.run(watchdog_stop), name="watchdog")
        if channels is not None:
            loops.spawn(channels.run(watchdog_stop), name="channels")
        await dispatcher.run()
    finally:
        await launches.close(cfg.drain_deadline_s)  # a launch cut short is failed, not lost
        watchdog_stop.set()
        await loops.wait()  # each ends once watchdog_stop is set; a failure was said already
        await probe.close()
        if drains is not None:
            await drains.close()
        if coordinator is not None:  # leave only once our batches are released
            with contextlib.suppress(Exception):
                await coordinator.close()
        await served.close()
        for adapter in carriers.values():
            with contextlib.suppress(Exception):
                await adapter.close()
        await store.close()
    if loops.failed:  # non-zero: the service manager starts the node again
        log.critical("node %s stopped: %s died", cfg.node, ", ".join(loops.failed))
        return 1
    log.info("node %s stopped", cfg.node)
    return 0


def watchdog_wanted(cfg: NodeConfig) -> bool:
    """False only under the test switch ``watchdog_off``, which is said loudly."""
    if "watchdog_off" not in cfg.unsafe:
        return True
    log.critical("UNSAFE TEST SWITCH: this node runs NO WATCHDOG (%s=1, unsafe_test_switches: "
                 "watchdog_off); a dead node's batches move only when their lease expires. "
                 "Never in production.", UNSAFE_ENV, extra={"event": "unsafe_watchdog_off"})
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tenir-node", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="node configuration (YAML)")
    parser.add_argument("--check", action="store_true",
                        help="only validate the configuration (Ansible's validate:) and exit")
    args = parser.parse_args(argv)
    try:
        cfg = load_node_config(args.config)
    except NodeConfigError as exc:
        print(f"tenir-node: invalid configuration: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"tenir-node: {args.config} is a valid configuration for node {cfg.node}")
        return 0
    configure_logging(cfg.node, cfg.site, cfg.log_level)
    return asyncio.run(serve(cfg))


if __name__ == "__main__":
    sys.exit(main())
