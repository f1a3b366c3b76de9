"""The lab tests share one lab, brought up once per session: machines deployed by
``ansible/site.yml``, running the real servers.

Before bringing it up, the fixture plants what an interrupted lab leaves behind (a namespace with
a process still in it, a veth link, stale data), so that the first `up` also proves it clears them.

A test that fails mid-fault would leave a site dead for every test after it: every machine's
journal is kept under ``$TENIR_LAB_FAILURE_LOGS`` (default ``/tmp/tenir-lab-failures``), since
``lab down`` removes them, and the lab is healed before the next test: chaos rules left in a
namespace cleared, ``lab up``, carriers normal, campaigns left running cancelled (what a chaos
run does before it starts); a lab that this cannot heal within ``HEAL_S`` is replaced
by a fresh one (``down``, ``up``), so that one failure does not fail every test after it, each
waiting out its own heal. The failure's reason is printed as it happens, not only in pytest's
summary at the end: a run cut short by its time limit still says why its first test failed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from chaos.lab_env import LabEnv
from cluster.lab import netns, procs
from cluster.lab.health import node_state
from cluster.lab.lab import Lab, lab_coordination
from cluster.lab.layout import Layout, lab_dir
from cluster.lab.machines import MachinePaths, journal
from cluster.topology import load_topology, with_coordination
from tests.lab.support import INVENTORY, REPO, LabHandle, Leftovers


def _plant_leftovers(layout: Layout) -> Leftovers:
    ns = netns.namespace_name("paris-db")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    link = f"{netns.VETH_PREFIX}99"
    subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name", "tnrpeer99"],
                   check=True)
    layout.root.mkdir(parents=True, exist_ok=True)
    junk = layout.machine("paris-db").upper / "junk-from-last-run"
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_text("stale")
    log = layout.root / "stray.log"
    pid = procs.spawn(["ip", "netns", "exec", ns, "sleep", "600"], log)
    return Leftovers(pid, procs.start_time_of(pid), junk, link)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The lab changes state as few times as it can: the etcd lab's tests first, those that
    leave it on another version last among them (marker ``upgrades_lab``), then the test that
    takes it down for good (``ends_lab``), then those that check what it left with no lab
    running (``after_lab``), then the ZooKeeper lab's (``zk_lab``, brought up once for both of
    its modules). Items outside ``tests/lab`` keep their places."""
    def rank(item: pytest.Item) -> int:
        if "zk_lab" in getattr(item, "fixturenames", ()):
            return 4
        if item.get_closest_marker("after_lab"):
            return 3
        if item.get_closest_marker("ends_lab"):
            return 2
        return 1 if item.get_closest_marker("upgrades_lab") else 0

    slots = [i for i, item in enumerate(items) if "tests/lab/" in item.nodeid]
    ordered = sorted((items[i] for i in slots), key=rank)
    for i, item in zip(slots, ordered, strict=True):
        items[i] = item


@pytest.fixture(scope="session")
def live(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Say what the lab does as it does it, past pytest's capture, when run with -v: a lab test
    can take minutes, and `make test -v` should not sit silent meanwhile."""
    verbose = pytestconfig.get_verbosity() > 0

    def say(text: str) -> None:
        if not (verbose and _write_past_capture(pytestconfig, text)):
            print(text)

    return say


def _write_past_capture(config: pytest.Config, text: str) -> bool:
    """Write a line to the terminal now, past pytest's capture (which would hold it until the
    test's end, and show it only if the test fails)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return False
    line = f"    [lab {time.strftime('%H:%M:%S')}] {text}"
    if capture is None:
        reporter.write_line(line)
    else:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
    return True


@pytest.fixture(scope="session")
def lab_env(live: Callable[[str], None]) -> Iterator[LabHandle]:
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root (network namespaces); run them with `make test`")
    topo = load_topology(INVENTORY)
    layout = Layout(lab_dir())
    lab = Lab(topo, layout, say=live)
    lab.down()
    leftovers = _plant_leftovers(layout)
    lab.up(timeout=900)
    yield LabHandle(topo, lab, layout, leftovers)
    lab.down()


@pytest.fixture(scope="session")
def zk_lab(live: Callable[[str], None]) -> Iterator[LabHandle]:
    """The lab with ZooKeeper as its coordination service, shared by ``test_zookeeper_lab.py``
    and ``test_zookeeper_matrix.py``. Its tests run after every etcd lab test (see
    ``pytest_collection_modifyitems``); it takes down whatever other lab still runs."""
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root (network namespaces); run them with `make test`")
    topo = with_coordination(load_topology(INVENTORY), "zookeeper")
    layout = Layout(lab_dir())
    lab = Lab(topo, layout, say=live)
    if lab_coordination(topo, layout) != "zookeeper":
        lab.down()
    lab.up(timeout=900)
    yield LabHandle(topo, lab, layout)
    lab.down()


@pytest.fixture(scope="session")
def evidence_bundle(lab_env: LabHandle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The continuity evidence of the etcd lab's session, exported once with ``tenir evidence
    export`` while the lab runs, first asked for by ``test_lab.py`` after the demo (the drills
    ran before it); ``test_evidence_offline.py`` verifies a copy once the lab is down."""
    out = tmp_path_factory.mktemp("evidence") / "bundle"
    lab_env.lab.up(timeout=600)
    done = subprocess.run([str(REPO / ".venv" / "bin" / "tenir"), "-i", str(INVENTORY),
                           "evidence", "export", str(out)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


FAILURE_LOGS = Path(os.environ.get("TENIR_LAB_FAILURE_LOGS", "/tmp/tenir-lab-failures"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    report = yield
    if call.when == "call":
        item.stash[_FAILED] = bool(getattr(report, "failed", False))
    if getattr(report, "failed", False) and "tests/lab/" in item.nodeid:
        _write_past_capture(item.config, f"{call.when} of {item.nodeid} failed: {_reason(report)}")
    return report


def _reason(report: object) -> str:
    """The failure's own message (pytest's crash line), or the last lines of its report."""
    longrepr = getattr(report, "longrepr", None)
    crash = getattr(longrepr, "reprcrash", None)
    text = getattr(crash, "message", None) or "\n".join(str(longrepr).splitlines()[-12:])
    return text if len(text) <= 2000 else text[:2000] + " [...]"


_FAILED = pytest.StashKey[bool]()


def _keep_logs(layout: Layout, test: str) -> Path:
    target = FAILURE_LOGS / test.replace("/", "_").replace("::", "__")
    target.mkdir(parents=True, exist_ok=True)
    machines_dir = layout.root / "machines"
    for machine in sorted(machines_dir.iterdir()) if machines_dir.is_dir() else []:
        (target / f"{machine.name}.journal.txt").write_text(
            journal(MachinePaths(machine)))
    for log in layout.ansible_dir.glob("*.log"):
        shutil.copyfile(log, target / log.name)
    return target


@pytest.fixture(autouse=True)
def heal_after_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not request.node.stash.get(_FAILED, False):
        return
    name = next((f for f in ("zk_lab", "lab_env") if f in request.fixturenames), None)
    if name is None:
        return
    handle: LabHandle = request.getfixturevalue(name)
    say: Callable[[str], None] = request.getfixturevalue("live")
    say(f"logs of the failed test kept in {_keep_logs(handle.layout, request.node.nodeid)}")
    heal(handle, say)


HEAL_S = 300.0  # a lab after a power cut is healthy again within about 100 s


def heal(handle: LabHandle, say: Callable[[str], None]) -> None:
    """Give the next test a whole lab as a chaos run starts from one (``LabEnv.prepare``:
    chaos rules cleared, ``lab up``, carriers normal, leftover campaigns cancelled); if that
    fails, a fresh lab (what the broken one held is in the failure logs)."""
    try:
        LabEnv(handle.lab, up_timeout_s=HEAL_S).prepare()
    except Exception as exc:  # whatever stops the heal, a fresh lab follows
        said = [f"lab up did not heal the lab ({type(exc).__name__}: {exc})",
                *_nodes_not_dispatching(handle)]
        for line in said:
            say(line)
        HEALS.extend(said)
        say("bringing up a fresh lab")
        handle.lab.down()
        handle.lab.up(timeout=900)


HEALS: list[str] = []  # what failed heals found, repeated at the session's end


def _nodes_not_dispatching(handle: LabHandle, lines: int = 15) -> list[str]:
    """Each alert node that does not dispatch: its state and its journal's last lines."""
    out = []
    for host in handle.topo.hosts_running("alert_nodes"):
        state = node_state(handle.topo, host)
        if state == "dispatching":
            continue
        try:
            tail = handle.lab.service_log(host.name, "node").splitlines()[-lines:]
        except Exception as exc:  # a dead machine's journal may be gone too
            tail = [f"(journal not read: {exc})"]
        out.append(f"{host.name} is {state}; its journal ends with:")
        out += [f"  {line[:300]}" for line in tail]
    return out


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if HEALS:
        terminalreporter.section("lab heals that needed a fresh lab")
        for line in HEALS:
            terminalreporter.write_line(line)
