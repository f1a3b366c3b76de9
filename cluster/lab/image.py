"""The lab machines' base image: one Debian 12 root filesystem, built once, shared read-only.

Every lab host is a systemd-nspawn machine whose root is an overlay with this image as its lower
layer, so nine machines cost one image on disk. The image is what a freshly installed Debian
server with tenir's Debian packages would be: systemd, sshd, Python for Ansible, PostgreSQL 15,
etcd, ZooKeeper, HAProxy. It holds no tenir configuration and no secret: no SSH host key, no
machine id, no service enabled beyond sshd. The roles install and configure everything else, as
they would on a production machine (where the packages come from the Debian mirror instead).

The image lives in ``/var/lib/tenir/images/<name>-<recipe hash>`` (``$TENIR_IMAGE_DIR``); a change
to the recipe below changes the hash, so the next ``lab up`` builds a new one and removes images
no machine uses any more.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_IMAGE_DIR = Path("/var/lib/tenir/images")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What debootstrap installs: an init, sshd, Python for Ansible (python3-apt for its apt module).
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-apt",
                 "python3-venv", "python3-packaging", "sudo", "iproute2", "procps",
                 "ca-certificates", "less")
# The components' packages, as the roles name them (an apt task finds them installed).
COMPONENT_PACKAGES = ("postgresql-15", "postgresql-client-15", "etcd-server", "etcd-client",
                      "zookeeper", "default-jre-headless", "haproxy", "openssl")
# Services that Debian's packages enable: a role enables what the host is for.
PACKAGE_SERVICES = ("etcd", "haproxy", "postgresql")
RECIPE_VERSION = 1  # bump when the steps of build() change

Say = Callable[[str], None]


class ImageError(RuntimeError):
    pass


def image_dir() -> Path:
    return Path(os.environ.get("TENIR_IMAGE_DIR", str(DEFAULT_IMAGE_DIR)))


@dataclass(frozen=True)
class Recipe:
    suite: str = SUITE
    mirror: str = MIRROR
    base: tuple[str, ...] = BASE_PACKAGES
    components: tuple[str, ...] = COMPONENT_PACKAGES
    version: int = RECIPE_VERSION

    def to_json(self) -> dict[str, object]:
        return {"suite": self.suite, "mirror": self.mirror, "base": list(self.base),
                "components": list(self.components), "version": self.version}

    @property
    def digest(self) -> str:
        text = json.dumps(self.to_json(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        return f"debian12-{self.digest}"


def _run(argv: list[str], timeout: float, log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                              check=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise ImageError(f"building the lab image: {' '.join(argv[:3])}... exited with "
                         f"{proc.returncode}; log {log}:\n{tail}")


def _in_root(root: Path, script: str, timeout: float, log: Path) -> None:
    """Run a shell script inside the image being built (its own /proc and /dev, the host's
    network for the Debian mirror), without booting it."""
    _run(["systemd-nspawn", "--register=no", "--keep-unit", "--quiet", "-D", str(root),
          "--resolv-conf=copy-host", "--timezone=off", "/bin/sh", "-euc", script], timeout, log)


def build(recipe: Recipe, target: Path, say: Say) -> float:
    """Build the image into ``target`` (atomically: a half-built image is never used).
    Returns the seconds it took."""
    started = time.monotonic()
    work = target.with_name(target.name + ".building")
    if work.exists():
        shutil.rmtree(work)
    work.parent.mkdir(parents=True, exist_ok=True)
    log = target.with_name(target.name + ".log")
    log.write_text("")
    say(f"building the lab image {recipe.name} (debootstrap {recipe.suite}; a few minutes, "
        f"once; log {log})")
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(recipe.base)}",
          recipe.suite, str(work), recipe.mirror], 900, log)
    say("  base system ready; installing the components' Debian packages")
    components = " ".join(recipe.components)
    disable = " ".join(PACKAGE_SERVICES)
    _in_root(work, f"""
        printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
        mkdir -p /etc/postgresql-common/createcluster.d
        echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/50-tenir.conf
        export DEBIAN_FRONTEND=noninteractive
        apt-get -q update
        apt-get -q install -y --no-install-recommends {components}
        for unit in {disable}; do
          if [ -e /lib/systemd/system/$unit.service ]; then systemctl disable $unit.service; fi
        done
        apt-get clean
        rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d
        rm -f /etc/ssh/ssh_host_*
        : > /etc/machine-id
        rm -f /var/lib/dbus/machine-id /etc/hostname
        mkdir -p /var/log/journal
    """, 900, log)
    (work / "etc" / "tenir-image.json").write_text(json.dumps(recipe.to_json(), indent=2))
    if target.exists():
        shutil.rmtree(target)
    work.rename(target)
    took = time.monotonic() - started
    say(f"  lab image built in {took:.0f} s")
    return took


def ensure_image(say: Say, recipe: Recipe | None = None) -> tuple[Path, float | None]:
    """The image's root directory, built if missing; and the build time if it was built now."""
    recipe = recipe or Recipe()
    target = image_dir() / recipe.name
    marker = target / "etc" / "tenir-image.json"
    if marker.is_file():
        return target, None
    return target, build(recipe, target, say)


def remove_unused(keep: Path, in_use: set[Path], say: Say) -> None:
    """Delete other images that no machine is built on (an old recipe's)."""
    root = image_dir()
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry == keep or entry in in_use or not entry.is_dir():
            continue
        if not entry.name.startswith("debian12-"):
            continue
        say(f"removing the unused lab image {entry.name}")
        shutil.rmtree(entry, ignore_errors=True)
        entry.with_name(entry.name + ".log").unlink(missing_ok=True)
