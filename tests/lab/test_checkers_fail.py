"""Proof that the checkers can fail, on the lab: each run below breaks one guarantee on purpose,
through a switch only a test can set, and the checker that guards it must say invalid.

- Fencing disabled: the superuser-only table ``public.tenir_unsafe_switches`` with
  ``fencing_disabled`` (migration 0006; the application role can neither create nor write it).
  A frozen node woken after its batches moved writes with its old epoch: accepted, and the
  ``fencing`` checker names the write.
- The watchdog off: ``tenir_node_unsafe_test_switches: [watchdog_off]`` with
  ``tenir_node_unsafe_test_environment: true`` (the unit's ``TENIR_UNSAFE_TEST_SWITCHES=1``, without
  which the node refuses the switch), deployed on the alert nodes for this test only. A killed
  node's batches then move only when their lease expires: the ``watchdog`` checker says so.
- An outcome deleted behind the store's back (as the superuser, after the campaign completed, as
  a failover that lost a committed transaction would leave it): ``rpo`` names it.

Expected duration: about 1 min for the fencing run, 4 min for the watchdog run (two deploys of
the alert nodes, and the lease's 45 s), 1 min for the deleted outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import psycopg
import pytest

from chaos.history import History
from chaos.lab_env import LabEnv
from chaos.matrix import Tools
from chaos.runner import Collectors
from tests.lab.chaos_kit import SEED, ci_variant, deployed_with, run, superuser_dsn, verdict
from tests.lab.support import LabHandle

pytestmark = [pytest.mark.lab, pytest.mark.chaos]
SWITCHES = ("CREATE TABLE IF NOT EXISTS public.tenir_unsafe_switches"
            " (name text PRIMARY KEY, enabled boolean)")


def test_with_fencing_disabled_a_zombies_write_is_accepted_and_fencing_says_invalid(
        lab_env: LabHandle) -> None:
    su = superuser_dsn(lab_env.lab)
    with psycopg.connect(su, autocommit=True) as conn:
        conn.execute(SWITCHES)
        conn.execute("GRANT SELECT ON public.tenir_unsafe_switches TO tenir")
        conn.execute("INSERT INTO public.tenir_unsafe_switches VALUES ('fencing_disabled', true)"
                     " ON CONFLICT (name) DO UPDATE SET enabled = true")
    try:
        # At the start, not the middle: every node then sends from the batches it just
        # claimed. At the middle of a campaign this short, the zombie-to-be may already have
        # sent its share, with the rest in the others' reserves: frozen, it wrote nothing late
        # (CI saw it once: fencing unknown, "paris-node1 held no batch at the fault").
        record, history = run(lab_env.lab, ci_variant("node-freeze"))
    finally:
        with psycopg.connect(superuser_dsn(lab_env.lab), autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS public.tenir_unsafe_switches")
    assert record.error is None, record.error
    v = verdict(record, "fencing")
    assert v.validity == "invalid", v
    assert v.figures["accepted_stale"] > 0
    assert "accepted while the batch was at epoch" in v.offences[0].reason
    stale = history.ops[v.offences[0].ops[0]]
    assert stale.f == "claim" and stale.value["node"] == "paris-node1"  # the zombie


def test_with_the_watchdog_off_work_moves_at_lease_expiry_and_watchdog_says_invalid(
        lab_env: LabHandle) -> None:
    lab = lab_env.lab
    switches = {"tenir_node_unsafe_test_switches": ["watchdog_off"],
                "tenir_node_unsafe_test_environment": True}
    with deployed_with(lab, "alert_nodes", switches, playbook="nodes.yml"):
        assert "NO WATCHDOG" in lab.service_log("paris-node2", "node")
        record, history = run(lab, ci_variant("node-kill"))
    assert record.error is None, record.error
    assert history.of("move") == []  # nobody moved anything
    v = verdict(record, "watchdog")
    assert v.validity == "invalid", v
    assert "lease expiry, not the watchdog" in v.offences[0].reason \
        or "never taken over" in v.offences[0].reason


@dataclass
class Deleting:
    """Collectors that, before the campaign's end state is read, delete as the superuser one
    outcome the observer saw committed before the fault."""

    inner: Collectors
    history: History
    su: str
    deleted: list[str] = field(default_factory=list)

    async def read_all(self) -> None:
        await self.inner.read_all()

    async def final(self, campaign: int) -> None:
        fault = self.history.of("fault", "invoke")[0]
        victim = next(op for op in self.history.of("outcome", "ok")
                      if op.at <= fault.at and op.value["campaign"] == campaign
                      and op.value["final"])
        await asyncio.to_thread(self._delete, str(victim.value["reference"]),
                                int(victim.value["recipient"]))
        await self.inner.final(campaign)

    def _delete(self, reference: str, recipient: int) -> None:
        with psycopg.connect(self.su, autocommit=True) as conn:
            conn.execute("DELETE FROM attempts WHERE reference = %s", (reference,))
            conn.execute("UPDATE recipients SET state = 'pending', attempt = 0,"
                         " final_channel = NULL, final_site = NULL, final_reference = NULL,"
                         " final_at = NULL WHERE id = %s", (recipient,))
        self.deleted.append(reference)


@dataclass
class DeletingEnv(LabEnv):
    su: str = ""
    deleting: Deleting | None = None

    @asynccontextmanager
    async def collect(self, history: History) -> AsyncIterator[Deleting]:  # type: ignore[override]
        async with super().collect(history) as collectors:
            self.deleting = Deleting(collectors, history, self.su)
            yield self.deleting


def test_an_outcome_deleted_behind_the_stores_back_makes_rpo_say_invalid(
        lab_env: LabHandle) -> None:
    env = DeletingEnv(lab_env.lab, Tools(seed=SEED), su=superuser_dsn(lab_env.lab))
    record, _ = run(lab_env.lab, ci_variant("node-kill", "middle"), env)
    assert env.deleting is not None and len(env.deleting.deleted) == 1
    reference = env.deleting.deleted[0]
    v = verdict(record, "rpo")
    assert v.validity == "invalid", v
    assert any(reference in o.reason and "is gone" in o.reason for o in v.offences)
