"""The ``tenir`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cluster.render import ROLES_DIR
from cluster.textfit import echo
from cluster.topology import (
    COORDINATION_BACKENDS,
    Topology,
    TopologyError,
    load_topology,
    with_coordination,
)

DEFAULT_INVENTORY = ROLES_DIR.parents[1] / "inventories" / "lab"


def _inventory(args: argparse.Namespace) -> Topology:
    """The inventory's topology, with the coordination backend ``--coordination`` asks for or,
    when this inventory's lab is running, the one it was brought up with."""
    path = args.inventory or os.environ.get("TENIR_INVENTORY") or str(DEFAULT_INVENTORY)
    topo = load_topology(Path(path))
    from cluster import tls

    tls.configure(tls.resolve(topo.vars, Path(path) if Path(path).is_dir() else Path(path).parent))
    backend = getattr(args, "coordination", None)
    if backend is None:
        from cluster.lab.lab import lab_coordination

        backend = lab_coordination(topo)
    return with_coordination(topo, backend) if backend else topo


def _say(text: str) -> None:
    echo(text)


def host_lines(hosts: list[Any]) -> list[str]:
    """One line per machine (site, host, address, machine state), its services under it: fits
    80 columns whatever the names."""
    from cluster.textfit import fit

    lines = []
    for h in hosts:
        machine = "machine running" if h.machine_running else "machine DOWN"
        lines.append(f"{h.site:<10} {h.name:<19} {h.address:<13} {machine}")
        if h.machine_running:
            svc = ", ".join(f"{s.name} {'pid ' + str(s.pid) if s.running else 'DOWN'}"
                            for s in h.services)
            lines.append(f"    {svc}")
    return fit(lines)


def lab_status_code(hosts: list[Any]) -> tuple[int, str]:
    """0 when every machine and service runs; 1 when some do not; 3 when no machine runs (the
    lab is down), with the sentence that says so."""
    if not any(h.machine_running for h in hosts):
        return 3, "the lab is down: no machine runs ('tenir lab up' starts it)"
    down = [f"{s.name}@{h.name}" for h in hosts for s in h.services if not s.running]
    down += [f"machine {h.name}" for h in hosts if not h.machine_running]
    if down:
        return 1, f"not running: {', '.join(down)}"
    return 0, f"the lab runs: {len(hosts)} machines, every service up"


def _print_hosts(hosts: list[Any]) -> None:
    from cluster.textfit import echo

    echo(host_lines(hosts))


def cmd_lab(args: argparse.Namespace) -> int:
    from cluster.lab.lab import Lab

    lab = Lab(_inventory(args), say=_say if not getattr(args, "json", False) else _quiet)
    if args.lab_command == "up":
        hosts = lab.up(timeout=args.timeout, deploy_mode=args.deploy)
        if args.json:
            print(json.dumps({"hosts": [h.to_json() for h in hosts]}, indent=2))
        else:
            _print_hosts(hosts)
    elif args.lab_command == "down":
        lab.down(keep_data=args.keep_data)
    elif args.lab_command == "status":
        hosts = lab.status()
        code, sentence = lab_status_code(hosts)
        if args.json:
            print(json.dumps({"running": code == 0, "sentence": sentence,
                              "hosts": [h.to_json() for h in hosts]}, indent=2))
        else:
            if code != 3:
                _print_hosts(hosts)
            from cluster.textfit import echo

            echo(sentence)
        return code
    elif args.lab_command == "kill-site":
        cut = lab.kill_site(args.site)
        print(f"power cut of site {args.site}: {len(cut)} machine(s) killed ({', '.join(cut)})")
    return 0


def _quiet(_: str) -> None:
    return None


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 1 when something is not running (the status's ``problems``)."""
    from cluster.status import gather
    from cluster.status_render import render_table

    status = gather(_inventory(args))
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        echo(render_table(status))
    return 1 if status["problems"] else 0


def _err(text: str) -> None:
    echo(text, sys.stderr)


def cmd_site(args: argparse.Namespace, topo: Topology) -> int:
    from failover.drain import site_operation

    result = site_operation(topo, args.site_command, args.site,
                            wait=getattr(args, "wait", False),
                            timeout=getattr(args, "timeout", 0.0),
                            say=_say if not args.json else _err, warn=_err)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def cmd_switchover(args: argparse.Namespace, topo: Topology) -> int:
    from failover.switchover import build_switchover

    switchover = build_switchover(topo, say=_err if args.json else _say, timeout=args.timeout)
    report = switchover.run(args.to)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cluster.demo import run_demo

    return run_demo(_inventory(args))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tenir")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tenir", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tenir {_version()}")
    parser.add_argument("-i", "--inventory", help="inventory file or directory "
                        "(default: $TENIR_INVENTORY or inventories/lab)")
    sub = parser.add_subparsers(dest="command", required=True)

    lab = sub.add_parser("lab", help="the embedded two-site lab (network namespaces, root)")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    up = lab_sub.add_parser("up", help="start the lab (idempotent; restarts what died)")
    up.add_argument("--json", action="store_true")
    up.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for health")
    up.add_argument("--deploy", choices=("auto", "always", "never"), default="auto",
                    help="run ansible/site.yml: when what it deploys changed (auto, the default), "
                         "always, or never (boot and verify only)")
    up.add_argument("--coordination", choices=COORDINATION_BACKENDS,
                    help="coordination service of the nodes and Patroni (default: the "
                    "inventory's tenir_coordination); to change it, 'lab down' first")
    down = lab_sub.add_parser("down", help="stop every lab process, remove namespaces and data")
    down.add_argument("--keep-data", action="store_true", help="keep data for the next 'up'")
    st = lab_sub.add_parser("status", help="machines and services of the lab; exit 1 if some "
                            "are down, 3 if the lab is down")
    st.add_argument("--json", action="store_true")
    kill = lab_sub.add_parser("kill-site", help="SIGKILL every process of a site")
    kill.add_argument("site")
    lab.set_defaults(func=cmd_lab)

    status = sub.add_parser("status", help="etcd or ZooKeeper, PostgreSQL, HAProxy, alert "
                            "nodes, drained sites and batches in flight; exit 1 if something "
                            "is not running")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    site = sub.add_parser("site", help="planned maintenance of a datacenter site")
    site_sub = site.add_subparsers(dest="site_command", required=True)
    drain = site_sub.add_parser("drain", help="its alert nodes take no new batch (the other "
                                "site takes the work); refused if the other site is drained")
    drain.add_argument("site")
    drain.add_argument("--wait", action="store_true",
                       help="wait until no node of the site holds a batch; say what moved")
    drain.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits")
    drain.add_argument("--json", action="store_true")
    undrain = site_sub.add_parser("undrain", help="its alert nodes take new batches again")
    undrain.add_argument("site")
    undrain.add_argument("--json", action="store_true")
    site.set_defaults(func_topo=cmd_site)

    sw = sub.add_parser("switchover", help="planned: move the work and the PostgreSQL primary "
                        "to a site (drain the other, switch over, undrain)")
    sw.add_argument("--to", required=True, metavar="SITE", help="the site to move to")
    sw.add_argument("--timeout", type=float, default=120.0,
                    help="seconds each wait may last (batches finished, new primary routed)")
    sw.add_argument("--json", action="store_true")
    sw.set_defaults(func_topo=cmd_switchover)

    from cluster.campaign_cli import add_parsers
    from cluster.chaos_cli import add_parsers as add_chaos_parsers
    from cluster.db_cli import add_parsers as add_db_parsers
    from cluster.drill_cli import add_parsers as add_drill_parsers
    from cluster.evidence_cli import add_parsers as add_evidence_parsers
    from cluster.pki_cli import add_parsers as add_pki_parsers

    add_parsers(sub)
    add_pki_parsers(sub)
    add_db_parsers(sub)
    add_evidence_parsers(sub)
    add_chaos_parsers(sub)
    add_drill_parsers(sub)

    demo = sub.add_parser("demo", help="lab up, lose the primary's site, watch the takeover")
    demo.add_argument("--coordination", choices=COORDINATION_BACKENDS,
                      help="coordination service (default: the inventory's)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "func_topo"):
            return int(args.func_topo(args, _inventory(args)))
        return int(args.func(args))
    except TopologyError as exc:
        _err(f"tenir: invalid inventory: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from cluster.coordination.base import CoordinationError
        from cluster.httpjson import HttpError
        from cluster.lab.lab import LabError
        from cluster.node_api import ApiError
        from cluster.wait import WaitTimeout
        from failover.drain import OperationError
        from failover.drills.catalog import DrillError
        from failover.drills.lever import DrillBusy
        from failover.drills.real_cluster import NodeError
        from failover.drills.runner import DrillRefused
        from failover.drills.schedule import IntervalError
        from replication.haproxy import HAProxyError

        if isinstance(exc, LabError | WaitTimeout | ApiError | OperationError
                      | CoordinationError | HttpError | DrillError | DrillBusy | NodeError
                      | DrillRefused | IntervalError | HAProxyError):
            _err(f"tenir: {exc}")
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
