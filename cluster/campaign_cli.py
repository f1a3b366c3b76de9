"""``tenir campaign ...`` and ``tenir carriers report``: the crisis operator's commands, through
the alert nodes' API (any live node) and the carrier simulators' report API."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from cluster.campaign_view import FINAL_STATES, campaign_json, list_lines, summary_lines
from cluster.carriers_report import carrier_sites, gather, render
from cluster.httpjson import request_json
from cluster.node_api import NodeApi, operator_token
from cluster.progress import CampaignClock, ProgressDisplay, open_display
from cluster.textfit import echo
from cluster.topology import Topology

PROGRESS_KEYS = ("id", "scenario", "state", "recipients", "delivered", "acknowledged", "failed",
                 "pending", "started_at", "completed_at", "by_site")
POLL_S = 0.5


def _api(topo: Topology, role: str = "operator") -> NodeApi:
    return NodeApi(topo, operator_token(role))


def wait_campaign(api: NodeApi, campaign: int, timeout: float, *, live: bool,
                  display: ProgressDisplay | None = None,
                  poll_s: float = POLL_S) -> dict[str, Any]:
    """Poll the campaign until it is completed or cancelled, or ``timeout`` passed; return its
    last state. ``live``: show its progress on stderr (a bar on a terminal, else plain lines)."""
    if display is None and live:
        display = open_display(sys.stderr)
    elapsed = CampaignClock()
    deadline = time.monotonic() + timeout
    try:
        while True:
            c = dict(api.call("GET", f"/campaigns/{campaign}"))
            if display is not None:
                display.update(c, elapsed.seconds(c))
            if c["state"] in FINAL_STATES or time.monotonic() >= deadline:
                return c
            time.sleep(poll_s)
    finally:
        if display is not None:
            display.close()


def _follow(api: NodeApi, campaign: int, args: argparse.Namespace) -> int:
    """``--wait``: follow, print the outcome; 1 if the campaign is still going at the timeout."""
    c = wait_campaign(api, campaign, args.timeout, live=not args.json)
    _print_campaign(c, args.json)
    if c["state"] in FINAL_STATES:
        return 0
    echo(f"tenir: campaign {campaign} is still {c['state']} after {args.timeout:.0f} s; it "
         f"goes on (tenir campaign wait {campaign})", sys.stderr)
    return 1


def _print_campaign(c: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(campaign_json(c, PROGRESS_KEYS), indent=2))
    else:
        echo(summary_lines(c))


def cmd_campaign(args: argparse.Namespace, topo: Topology) -> int:
    api = _api(topo, "operator" if args.campaign_command == "launch" else "auditor")
    if args.campaign_command == "launch":
        body: dict[str, Any] = {"scenario": args.scenario, "batch_size": args.batch_size}
        if args.group:
            body["group"] = args.group
        else:
            body["population"] = args.population
        created = api.call("POST", "/campaigns", body)
        campaign = int(created["id"])
        if args.wait:
            return _follow(api, campaign, args)
        _print_campaign(dict(api.call("GET", f"/campaigns/{campaign}")), args.json)
        return 0
    if args.campaign_command == "show":
        _print_campaign(dict(api.call("GET", f"/campaigns/{args.id}")), args.json)
        return 0
    if args.campaign_command == "wait":
        return _follow(api, args.id, args)
    items = api.call("GET", "/campaigns")["items"]
    if args.json:
        print(json.dumps([campaign_json(c, PROGRESS_KEYS) for c in items], indent=2))
    else:
        echo(list_lines(items) if items else ["no campaign yet"])
    return 0


def references_by_site(topo: Topology, channel: str) -> dict[str, set[str]]:
    """Every reference each site's simulator received on ``channel`` (raises HttpError when one
    does not answer: the lab tests want every site)."""
    out: dict[str, set[str]] = {}
    for s in carrier_sites(topo):
        _, refs = request_json("GET", f"{s.url}/references?channel={channel}", timeout=10.0)
        out[s.site] = set(refs or {})
    return out


def cross_site_duplicates(topo: Topology) -> dict[str, int]:
    """Per channel, references delivered by the carriers of more than one site: work moved to
    another site while in flight can reach a recipient twice. The invariant bounds it by what
    was in flight at the fault."""
    got = gather(carrier_sites(topo))
    if got["unreachable"]:  # a count over fewer sites would pass for a smaller one
        raise RuntimeError(f"carrier simulators unreachable: {', '.join(got['unreachable'])}")
    result: dict[str, int] = got["cross_site_duplicates"]
    return result


def carriers_report(topo: Topology) -> list[dict[str, Any]]:
    reports: list[dict[str, Any]] = gather(carrier_sites(topo))["carriers"]
    return reports


def cmd_carriers(args: argparse.Namespace, topo: Topology) -> int:
    text, code = render(gather(carrier_sites(topo)), as_json=args.json)
    print(text)
    return code


def add_parsers(sub: Any) -> None:
    camp = sub.add_parser("campaign", help="launch and follow alert campaigns")
    csub = camp.add_subparsers(dest="campaign_command", required=True)
    launch = csub.add_parser("launch", help="launch a campaign from a scenario")
    launch.add_argument("--scenario", required=True)
    target = launch.add_mutually_exclusive_group(required=True)
    target.add_argument("--group", help="a contact group")
    target.add_argument("--population", type=int, help="N generated test recipients")
    launch.add_argument("--batch-size", type=int, default=None,
                        help="recipients per batch (default: 100, larger past 200,000 "
                        "recipients: see docs/campaigns.md)")
    launch.add_argument("--wait", action="store_true", help="follow it until it completes "
                        "(exit 1 if it still runs at --timeout)")
    launch.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits")
    launch.add_argument("--json", action="store_true")
    show = csub.add_parser("show", help="progress of one campaign")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    wait = csub.add_parser("wait", help="follow a campaign until it completes (exit 1 if it "
                           "still runs at --timeout)")
    wait.add_argument("id", type=int)
    wait.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait")
    wait.add_argument("--json", action="store_true")
    lst = csub.add_parser("list", help="recent campaigns")
    lst.add_argument("--json", action="store_true")
    camp.set_defaults(func_topo=cmd_campaign)

    car = sub.add_parser("carriers", help="the carrier simulators")
    carsub = car.add_subparsers(dest="carriers_command", required=True)
    rep = carsub.add_parser("report", help="messages received, unique references, duplicates "
                            "(exit 1 if a simulator does not answer)")
    rep.add_argument("--json", action="store_true")
    car.set_defaults(func_topo=cmd_carriers)
