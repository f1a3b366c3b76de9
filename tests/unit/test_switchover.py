"""The planned switchover on fakes: the order of its operations (drain, Patroni switchover, wait
until every HAProxy routes to the new primary, undrain), the sentences it prints, the refusals of
its preflight (nothing changed), and what a failure restores. HAProxy is only read (its
statistics page): nothing is set on it."""

from __future__ import annotations

import pytest

from failover.switchover import Switchover, SwitchoverFailed
from tests.fakes.operations import NODES, PG, Drains, FakeHAProxy, FakePatroni, World

pytestmark = pytest.mark.unit

def switchover(world: World, timeout: float = 2.0) -> Switchover:
    return Switchover(
        sites=list(PG), postgres_of_site=PG, nodes=NODES, drains=Drains(world), cluster=world,
        patroni=FakePatroni(world),
        haproxies={h: FakeHAProxy(world, h) for h in ("paris-db", "marseille-db")},
        events=world, say=world.said.append, timeout=timeout, poll_s=0.01, settle_s=0)


def test_switchover_to_marseille_runs_its_steps_in_order_and_says_each() -> None:
    w = World()
    report = switchover(w).run("marseille")
    assert w.log == [
        "drain paris",
        "patroni switchover paris-db -> marseille-db",
        "undrain paris",
        "event operator.switchover",
    ]
    assert report.ok and report.primary_before == "paris-db"
    assert report.primary_after == "marseille-db" and w.primary == "marseille-db"
    assert [s.name for s in report.steps] == [
        "preflight", "drain paris", "wait for paris to finish its batches",
        "patroni switchover", "wait for the new primary", "undrain paris"]
    lines = [line.rsplit(" (", 1)[0] for line in w.said]
    assert lines[:6] == [
        "1. preflight: primary paris-db, synchronous standby marseille-db streaming; "
        "2 HAProxies answer; site paris takes work",
        "2. site paris drained: its nodes take no new batch",
        "3. site paris finished the 2 batches it held (campaign 4) in 0.0 s and takes no new one;"
        " the other site holds 3 batches (campaign 4: marseille-node1 3)",
        '4. Patroni switchover paris-db -> marseille-db: Successfully switched over to '
        '"marseille-db"',
        "5. marseille-db is the PostgreSQL primary and every HAProxy routes only to it",
        "6. site paris undrained: its nodes take new batches again",
    ]
    assert all(line.endswith(" s)") for line in w.said[:6])
    assert w.said[6] == report.sentence
    assert report.sentence.startswith("switchover to marseille done in ")
    assert report.sentence.endswith(
        ": PostgreSQL primary marseille-db (was paris-db), every HAProxy routes only to it; "
        "the 2 batches paris held were finished there before the move; paris takes new "
        "batches again.")
    [(kind, sentence, details)] = w.events
    assert (kind, sentence, details["ok"]) == ("operator.switchover", report.sentence, True)
    assert [s["step"] for s in details["steps"]][-1] == "undrain paris"


def test_primary_already_in_the_target_site_moves_work_but_not_postgres() -> None:
    w = World(primary="marseille-db", sync="paris-db")
    report = switchover(w).run("marseille")
    assert w.log == ["drain paris", "undrain paris", "event operator.switchover"]
    assert "the PostgreSQL primary marseille-db was already in marseille" in report.sentence
    assert any("nothing to switch" in line for line in w.said)


def test_a_site_drained_before_the_switchover_stays_drained() -> None:
    w = World()
    w.drained.add("paris")
    report = switchover(w).run("marseille")
    assert "undrain paris" not in w.log
    assert w.drained == {"paris"}
    assert report.steps[-1].sentence == ("site paris was drained before the switchover: left "
                                         "drained")
    assert report.sentence.endswith("paris stays drained, as it was before.")


@pytest.mark.parametrize(("world", "to", "message"), [
    (World(sync=None), "marseille", "marseille-db is not the streaming synchronous standby "
                                    r"\(that is nobody\).*nothing was changed"),
    (World(primary="none", sync="marseille-db"), "marseille", "no PostgreSQL primary"),
    (World(), "witness", "'witness' is not a datacenter site"),
])
def test_preflight_refusals_change_nothing(world: World, to: str, message: str) -> None:
    with pytest.raises(SwitchoverFailed, match=message):
        switchover(world).run(to)
    assert world.log == [] and world.events == []


def test_switching_to_a_drained_site_is_refused() -> None:
    w = World()
    w.drained.add("marseille")
    with pytest.raises(SwitchoverFailed, match=r"site marseille is drained.*tenir site undrain "
                                               r"marseille"):
        switchover(w).run("marseille")
    assert w.log == []


def test_a_failed_patroni_switchover_undrains() -> None:
    w = World()
    w.switch_fails = RuntimeError("412 candidate not healthy")
    with pytest.raises(SwitchoverFailed) as failed:
        switchover(w).run("marseille")
    assert w.log[1:] == [
        "patroni switchover paris-db -> marseille-db",
        "undrain paris",
        "event operator.switchover",
    ]
    message = str(failed.value)
    assert message.startswith("switchover to marseille FAILED after ")
    assert message.endswith("412 candidate not healthy; restored: site paris undrained")
    assert any(line.startswith("4. patroni switchover: FAILED after ") for line in w.said)
    assert w.events[0][2]["ok"] is False and w.primary == "paris-db" and not w.drained


def test_waiting_for_the_new_primary_is_bounded_and_names_what_it_waited_for() -> None:
    w = World()
    w.switch_takes_effect = False  # Patroni said yes but nothing changes
    with pytest.raises(SwitchoverFailed, match=r"gave up after 0 s waiting for marseille-db to "
                                               r"be the PostgreSQL primary and every HAProxy to "
                                               r"route only to it; last seen: primary paris-db"):
        switchover(w, timeout=0.2).run("marseille")
    assert w.log[-3:] == ["patroni switchover paris-db -> marseille-db", "undrain paris",
                          "event operator.switchover"]


def test_a_site_that_never_finishes_its_batches_fails_before_touching_postgres() -> None:
    w = World()
    w.in_flight = [{4: {"paris-node2": 1}}]
    with pytest.raises(SwitchoverFailed, match="no node of site paris to hold a batch"):
        switchover(w, timeout=0.1).run("marseille")
    assert w.log == ["drain paris", "undrain paris", "event operator.switchover"]


def test_report_json_lists_every_step() -> None:
    w = World()
    data = switchover(w).run("marseille").to_json()
    assert set(data) == {"to", "drained", "ok", "primary_before", "primary_after", "seconds",
                         "sentence", "steps"}
    assert (data["to"], data["drained"], data["ok"]) == ("marseille", "paris", True)
    assert len(data["steps"]) == 6 and all({"step", "seconds", "sentence"} == set(s)
                                           for s in data["steps"])
