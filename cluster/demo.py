"""``make demo``: the lab comes up; a 20,000-recipient campaign (SMS, e-mail fallback) and an
on-call campaign (voice with DTMF acknowledgement) run from both sites with a live progress bar
and the carriers' tally; then the site holding the PostgreSQL primary loses every process
mid-writes, the other site takes over, and the lost site is brought back as the standby."""

from __future__ import annotations

import time

from cluster.campaign_cli import carriers_report, wait_campaign
from cluster.campaign_view import summary_lines
from cluster.lab.access import owner_dsn
from cluster.lab.health import patroni_view
from cluster.lab.lab import Lab
from cluster.node_api import NodeApi, operator_token
from cluster.status import gather
from cluster.status_render import render_table
from cluster.textfit import echo
from cluster.topology import Topology
from failover.pg_takeover import measure_site_loss


def _step(text: str) -> None:
    print(f"\n=== {time.strftime('%H:%M:%S')}  {text}", flush=True)


def run_demo(topo: Topology) -> int:
    lab = Lab(topo, say=lambda s: print(f"    {s}", flush=True))
    _step(f"bringing the lab up: 3 {topo.coordination} members, Patroni/PostgreSQL 15 in paris "
          "and marseille, one HAProxy per site")
    for h in lab.up():
        svc = ", ".join(f"{s.name}({s.pid})" for s in h.services)
        print(f"    {h.site:<10} {h.name:<19} {h.address:<12} {svc}")
    _step("cluster status")
    echo(render_table(gather(topo)))

    api = NodeApi(topo, operator_token())
    _step("launching campaign 'demo' to 20,000 recipients (SMS, e-mail fallback) from any node")
    created = api.call("POST", "/campaigns", {"scenario": "demo", "population": 20_000})
    c = wait_campaign(api, int(created["id"]), 600, live=True)
    echo(f"    {line}" for line in summary_lines(c))
    _step("launching campaign 'astreinte' to the on-call group (voice, press 1 to acknowledge)")
    created = api.call("POST", "/campaigns", {"scenario": "astreinte", "group": "astreinte"})
    oncall = wait_campaign(api, int(created["id"]), 120, live=True)
    echo(f"    {line}" for line in summary_lines(oncall))
    _step("what the carriers of each site received (every submission counted, as delivered)")
    for r in carriers_report(topo):
        for channel in ("sms", "email", "voice"):
            got = r.get("report", {}).get(channel, {})
            print(f"    {r['site']:<10} {channel:<6} received {got.get('received', 0):>6}  "
                  f"unique {got.get('unique_references', 0):>6}  "
                  f"duplicates {got.get('duplicates', 0)}")

    view = patroni_view(topo)
    if view is None or view.primary is None:
        print("no PostgreSQL primary: cannot run the demo")
        return 1
    old_primary = view.primary
    lost = topo.hosts[old_primary].site
    survivor = next(s.name for s in topo.datacenter_sites if s.name != lost)
    _step(f"writing through the {survivor} HAProxy, then killing EVERY process of site {lost} "
          f"(SIGKILL: {topo.coordination}, Patroni, PostgreSQL, HAProxy, alert nodes, carriers), "
          f"which holds the primary {old_primary}")

    def current_primary() -> str | None:
        v = patroni_view(topo)
        return v.primary if v else None

    result = measure_site_loss(
        survivor_dsn=owner_dsn(topo, survivor), kill_site=lambda: lab.kill_site(lost),
        killed_site=lost, old_primary=old_primary, current_primary=current_primary,
        timeout=120,
    )
    print(f"    {result.sentence()}")
    print(f"    ({result.failed_attempts} write attempts failed while no primary was reachable;"
          f" Patroni ttl {topo.timings.ttl} s, loop_wait {topo.timings.loop_wait} s,"
          f" retry_timeout {topo.timings.retry_timeout} s)")
    _step(f"cluster status with site {lost} down")
    echo(render_table(gather(topo)))

    _step(f"bringing site {lost} back (`tenir lab up` restarts what died)")
    lab.up()
    _step("cluster status after the site came back")
    echo(render_table(gather(topo)))
    ok = (result.seconds_to_write is not None and result.lost == 0
          and c["state"] == "completed" and oncall["state"] == "completed")
    _step("demo " + ("done: " if ok else "FAILED: ") + result.sentence())
    print("    the lab keeps running: try `.venv/bin/tenir status`; stop it with "
          "`.venv/bin/tenir lab down`")
    return 0 if ok else 1
