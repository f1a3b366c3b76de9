"""The lab tests share one lab, brought up once per session on the real servers.

Before bringing it up, the fixture plants what an interrupted lab leaves behind (a namespace with
a process still in it, a veth link, stale data), so that the first `up` also proves it clears them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from cluster.lab import netns, procs
from cluster.lab.lab import Lab
from cluster.lab.layout import Layout, lab_dir
from cluster.topology import load_topology
from tests.lab.support import INVENTORY, LabHandle, Leftovers


def _plant_leftovers(layout: Layout) -> Leftovers:
    ns = netns.namespace_name("paris-db")
    subprocess.run(["ip", "netns", "add", ns], check=True)
    link = f"{netns.VETH_PREFIX}99"
    subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name", "tnrpeer99"],
                   check=True)
    layout.root.mkdir(parents=True, exist_ok=True)
    junk = layout.root / "hosts" / "paris-db" / "pgdata" / "junk-from-last-run"
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_text("stale")
    log = layout.root / "stray.log"
    pid = procs.spawn(["ip", "netns", "exec", ns, "sleep", "600"], log)
    return Leftovers(pid, procs.start_time_of(pid), junk, link)


@pytest.fixture(scope="session")
def lab_env() -> Iterator[LabHandle]:
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root (network namespaces); run them with `make test`")
    topo = load_topology(INVENTORY)
    layout = Layout(lab_dir())
    lab = Lab(topo, layout, say=print)
    lab.down()
    leftovers = _plant_leftovers(layout)
    lab.up(timeout=180)
    yield LabHandle(topo, lab, layout, leftovers)
    lab.down()
