"""``make demo``: the lab comes up, the site holding the PostgreSQL primary loses every process
mid-writes, the other site takes over, and the lost site is brought back as the standby."""

from __future__ import annotations

import time

from cluster.lab.access import app_dsn
from cluster.lab.health import patroni_view
from cluster.lab.lab import Lab
from cluster.status import gather, render_table
from cluster.topology import Topology
from failover.pg_takeover import measure_site_loss


def _step(text: str) -> None:
    print(f"\n=== {time.strftime('%H:%M:%S')}  {text}", flush=True)


def run_demo(topo: Topology) -> int:
    lab = Lab(topo, say=lambda s: print(f"    {s}", flush=True))
    _step("bringing the lab up: 3 etcd members, Patroni/PostgreSQL 15 in paris and marseille, "
          "one HAProxy per site")
    for h in lab.up():
        svc = ", ".join(f"{s.name}({s.pid})" for s in h.services)
        print(f"    {h.site:<10} {h.name:<14} {h.address:<13} {svc}")
    _step("cluster status")
    print(render_table(gather(topo)))

    view = patroni_view(topo)
    if view is None or view.primary is None:
        print("no PostgreSQL primary: cannot run the demo")
        return 1
    old_primary = view.primary
    lost = topo.hosts[old_primary].site
    survivor = next(s.name for s in topo.datacenter_sites if s.name != lost)
    _step(f"writing through the {survivor} HAProxy, then killing EVERY process of site {lost} "
          f"(SIGKILL: etcd, Patroni, PostgreSQL, HAProxy), which holds the primary {old_primary}")

    def current_primary() -> str | None:
        v = patroni_view(topo)
        return v.primary if v else None

    result = measure_site_loss(
        survivor_dsn=app_dsn(topo, survivor), kill_site=lambda: lab.kill_site(lost),
        killed_site=lost, old_primary=old_primary, current_primary=current_primary,
        timeout=120,
    )
    print(f"    {result.sentence()}")
    print(f"    ({result.failed_attempts} write attempts failed while no primary was reachable;"
          f" Patroni ttl {topo.timings.ttl} s, loop_wait {topo.timings.loop_wait} s,"
          f" retry_timeout {topo.timings.retry_timeout} s)")
    _step(f"cluster status with site {lost} down")
    print(render_table(gather(topo)))

    _step(f"bringing site {lost} back (`tenir lab up` restarts what died)")
    lab.up()
    _step("cluster status after the site came back")
    print(render_table(gather(topo)))
    ok = result.seconds_to_write is not None and result.lost == 0
    _step("demo " + ("done: " if ok else "FAILED: ") + result.sentence())
    print("    the lab keeps running: try `.venv/bin/tenir status`; stop it with "
          "`.venv/bin/tenir lab down`")
    return 0 if ok else 1
