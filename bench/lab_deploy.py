"""The lab as machines deployed by Ansible, measured beside the process lab it replaced.

    .venv/bin/python bench/lab_deploy.py [--keep-image] [--coordination etcd|zookeeper]

Figures (one run): the image build (skipped with --keep-image, which reports the cached image's
last build), a cold `lab up` (no machine, image cached), a warm `lab up` with nothing changed
(verify only), a warm run of site.yml (changed=0), a site's reboot-to-rejoined time (a power cut
of marseille, then `lab up` until healthy again), and the lab's memory idle (PSS and RSS summed
over every process in the lab's namespaces). Beside each: the process lab's figure, measured
before it was removed (bench/results/lab_process-*.json), and the ratio. Goals from the issue:
cold up <= 120 s, warm up <= 30 s, memory <= 2 GiB.

Takes the lab down first and leaves it up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.support import save_results  # noqa: E402
from cluster.lab import image, netns  # noqa: E402
from cluster.lab.lab import Lab  # noqa: E402
from cluster.topology import load_topology, with_coordination  # noqa: E402

GOALS = {"cold_up_s": 120.0, "warm_up_s": 30.0, "idle_pss_mib": 2048.0}


def reference() -> dict[str, Any]:
    found = sorted((REPO / "bench" / "results").glob("lab_process-*.json"))
    return dict(json.loads(found[-1].read_text())) if found else {}


def lab_memory() -> tuple[float, float, int]:
    """(PSS MiB, RSS MiB, processes) of everything in the lab's namespaces."""
    pss = rss = 0
    count = 0
    for ns in netns.list_namespaces():
        for pid in netns.namespace_pids(ns):
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
                count += 1
            except OSError:
                continue
    return pss / 1024, rss / 1024, count


def timed(what: str, fn: Any) -> float:
    print(f"... {what}", flush=True)
    started = time.monotonic()
    fn()
    took = time.monotonic() - started
    print(f"    {what}: {took:.1f} s", flush=True)
    return took


def _fig(value: float | None, missing: str = "-") -> str:
    return missing if value is None else f"{value:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-image", action="store_true",
                        help="do not rebuild the cached image (report its last build)")
    parser.add_argument("--coordination", choices=("etcd", "zookeeper"), default="etcd")
    args = parser.parse_args()
    topo = load_topology(REPO / "inventories" / "lab")
    topo = with_coordination(topo, args.coordination) if args.coordination != "etcd" else topo
    lab = Lab(topo, say=lambda t: print(f"    | {t}", flush=True))
    lab.down()
    figures: dict[str, Any] = {"coordination": args.coordination}

    target = image.image_dir() / image.Recipe().name
    if not args.keep_image:
        shutil.rmtree(target, ignore_errors=True)
        figures["image_build_s"] = timed("image build (debootstrap + packages)",
                                         lambda: image.ensure_image(print))
    else:
        image.ensure_image(print)
        figures["image_build_s"] = None
    figures["image_mib"] = int(subprocess.run(["du", "-sm", str(target)], capture_output=True,
                                              text=True, check=True).stdout.split()[0])

    figures["cold_up_s"] = timed("cold lab up (no machine, image cached)",
                                 lambda: lab.up(timeout=900))
    figures["warm_up_s"] = timed("warm lab up (nothing changed: verify only)",
                                 lambda: lab.up(timeout=300))
    figures["warm_site_yml_s"] = timed("warm lab up --deploy always (site.yml, changed=0)",
                                       lambda: lab.up(timeout=600, deploy_mode="always"))
    assert lab.last_run is not None
    figures["warm_site_yml_changed"] = lab.last_run.changed
    time.sleep(20)  # idle
    pss, rss, count = lab_memory()
    figures.update({"idle_pss_mib": round(pss, 1), "idle_rss_mib": round(rss, 1),
                    "processes": count})
    lab.kill_site("marseille")
    figures["site_reboot_to_rejoined_s"] = timed(
        "marseille power cut, then lab up until healthy", lambda: lab.up(timeout=600))

    ref = reference()
    rows = [("image build (s)", "image_build_s"), ("cold lab up (s)", "cold_up_s"),
            ("warm lab up, verify (s)", "warm_up_s"), ("warm site.yml run (s)", "warm_site_yml_s"),
            ("site reboot to rejoined (s)", "site_reboot_to_rejoined_s"),
            ("idle memory PSS (MiB)", "idle_pss_mib"), ("idle memory RSS (MiB)", "idle_rss_mib")]
    print()
    print(f"{'figure':<30} {'machines':>10} {'process lab':>12} {'ratio':>7} {'goal':>7}")
    for label, key in rows:
        mine, theirs = figures.get(key), ref.get(key)
        ratio = f"{mine / theirs:.2f}" if mine and theirs else "-"
        goal = GOALS.get(key)
        print(f"{label:<30} {_fig(mine):>10} {_fig(theirs):>12} {ratio:>7} {_fig(goal, ''):>7}")
    print(f"warm site.yml changes: {figures['warm_site_yml_changed']} (0 expected); "
          f"image {figures['image_mib']} MiB on disk; {count} processes idle")
    figures["reference"] = ref
    figures["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                       text=True, cwd=REPO).stdout.strip()
    print(f"saved {save_results('lab_machines', figures)}")
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench/lab_deploy.py: run as root (the lab)")
    sys.exit(main())
