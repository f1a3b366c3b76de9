"""``tenir campaign ...`` and ``tenir carriers report``: the crisis operator's commands, through
the alert nodes' API (any live node) and the carrier simulators' report API."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from cluster.carriers_report import carrier_sites, gather, render
from cluster.httpjson import request_json
from cluster.node_api import NodeApi, operator_token
from cluster.topology import Topology

PROGRESS_KEYS = ("id", "state", "recipients", "delivered", "acknowledged", "failed", "pending",
                 "started_at", "completed_at", "by_site")


def _api(topo: Topology, role: str = "operator") -> NodeApi:
    return NodeApi(topo, operator_token(role))


def progress_line(c: dict[str, Any], rate: float | None = None) -> str:
    total = max(int(c["recipients"]), 1)
    done = total - int(c["pending"])
    width = 30
    filled = int(width * done / total)
    sites = " ".join(f"{k}:{v}" for k, v in sorted(c.get("by_site", {}).items()))
    speed = f"  {rate:,.0f}/s" if rate else ""
    return (f"campaign {c['id']} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
            f"{c['state']}: delivered {c['delivered']}, acknowledged {c['acknowledged']}, "
            f"failed {c['failed']}, pending {c['pending']}  ({sites}){speed}")


def wait_campaign(api: NodeApi, campaign: int, timeout: float, *, live: bool) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last_done, last_t = 0, time.monotonic()
    while True:
        c = dict(api.call("GET", f"/campaigns/{campaign}"))
        now = time.monotonic()
        done = int(c["recipients"]) - int(c["pending"])
        rate = (done - last_done) / (now - last_t) if now > last_t else None
        last_done, last_t = done, now
        if live:
            print("\r" + progress_line(c, rate), end="", file=sys.stderr, flush=True)
        if c["state"] in ("completed", "cancelled") or time.monotonic() >= deadline:
            if live:
                print(file=sys.stderr)
            return c
        time.sleep(0.5)


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
            c = wait_campaign(api, campaign, args.timeout, live=not args.json)
        else:
            c = dict(api.call("GET", f"/campaigns/{campaign}"))
        print(json.dumps({k: c.get(k) for k in PROGRESS_KEYS}, indent=2) if args.json
              else progress_line(c))
        return 0
    if args.campaign_command == "show":
        c = dict(api.call("GET", f"/campaigns/{args.id}"))
        print(json.dumps({k: c.get(k) for k in PROGRESS_KEYS}, indent=2) if args.json
              else progress_line(c))
        return 0
    if args.campaign_command == "wait":
        c = wait_campaign(api, args.id, args.timeout, live=not args.json)
        print(json.dumps({k: c.get(k) for k in PROGRESS_KEYS}, indent=2) if args.json
              else progress_line(c))
        return 0 if c["state"] in ("completed", "cancelled") else 1
    items = api.call("GET", "/campaigns")["items"]
    if args.json:
        print(json.dumps([{k: c.get(k) for k in PROGRESS_KEYS} for c in items], indent=2))
    else:
        for c in items:
            print(progress_line(c))
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
    launch.add_argument("--batch-size", type=int, default=100)
    launch.add_argument("--wait", action="store_true", help="follow it until it completes")
    launch.add_argument("--timeout", type=float, default=3600.0)
    launch.add_argument("--json", action="store_true")
    show = csub.add_parser("show", help="progress of one campaign")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    wait = csub.add_parser("wait", help="follow a campaign until it completes")
    wait.add_argument("id", type=int)
    wait.add_argument("--timeout", type=float, default=3600.0)
    wait.add_argument("--json", action="store_true")
    lst = csub.add_parser("list", help="recent campaigns")
    lst.add_argument("--json", action="store_true")
    camp.set_defaults(func_topo=cmd_campaign)

    car = sub.add_parser("carriers", help="the carrier simulators")
    carsub = car.add_subparsers(dest="carriers_command", required=True)
    rep = carsub.add_parser("report", help="messages received, unique references, duplicates")
    rep.add_argument("--json", action="store_true")
    car.set_defaults(func_topo=cmd_carriers)
