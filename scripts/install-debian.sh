#!/usr/bin/env bash
# Installs what tenir needs on a Debian 12 machine, as root. Idempotent: a second run installs
# nothing and takes a second or two.
#  - Debian packages: PostgreSQL 15, etcd, ZooKeeper, HAProxy, iproute2, iptables, nftables...
#    Package scripts are kept from creating the Debian default PostgreSQL cluster and from
#    starting etcd/ZooKeeper/HAProxy as machine services: the lab runs its own, in namespaces.
#  - Patroni in its own venv under a world-readable prefix, since it runs as user postgres and the
#    checkout may live where postgres cannot read (CI clones into another folder).
#  - The project venv (.venv) with pinned dependencies, built from /usr/bin/python3.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
PATRONI_VENV=${PATRONI_VENV:-/opt/tenir/patroni-venv}
PY=/usr/bin/python3
APT_PACKAGES=(postgresql-15 postgresql-client-15 etcd-server etcd-client zookeeper haproxy
              iproute2 iptables nftables procps util-linux python3-venv python3-dev curl
              systemd-container debootstrap openssh-client iputils-ping
              libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils)

if [[ $(id -u) -ne 0 ]]; then
  echo "install-debian.sh: run as root (the lab creates network namespaces)" >&2
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/50-tenir.conf
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  # Had the machine's init started them anyway, stop the packaged services (not the lab's).
  for svc in etcd zookeeper haproxy; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl disable --now "$svc" || true
    fi
  done
fi

stamp_ok() { [[ -f $1/.tenir-lock && $(cat "$1/.tenir-lock") == $(sha256sum "$2" | cut -d' ' -f1) ]]; }
stamp() { sha256sum "$2" | cut -d' ' -f1 > "$1/.tenir-lock"; }

if ! stamp_ok "$PATRONI_VENV" "$here/requirements/patroni-lock.txt"; then
  echo "building the Patroni venv in $PATRONI_VENV"
  rm -rf "$PATRONI_VENV"
  mkdir -p "$(dirname "$PATRONI_VENV")"
  "$PY" -m venv "$PATRONI_VENV"
  "$PATRONI_VENV/bin/pip" install -q --disable-pip-version-check -r "$here/requirements/patroni-lock.txt"
  chmod -R a+rX "$(dirname "$PATRONI_VENV")"
  stamp "$PATRONI_VENV" "$here/requirements/patroni-lock.txt"
fi

if ! stamp_ok "$here/.venv" "$here/requirements/lock.txt" || [[ ! -x $here/.venv/bin/tenir ]]; then
  echo "building the project venv in $here/.venv"
  if [[ ! -x $here/.venv/bin/python ]] || ! "$here/.venv/bin/python" -c 'import sys; sys.exit(sys.base_prefix != "/usr")'; then
    rm -rf "$here/.venv"
    "$PY" -m venv "$here/.venv"
  fi
  "$here/.venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements/lock.txt"
  "$here/.venv/bin/pip" install -q --disable-pip-version-check --no-deps -e "$here"
  stamp "$here/.venv" "$here/requirements/lock.txt"
fi
echo "install: ok ($("$here/.venv/bin/tenir" --version 2>/dev/null || echo tenir))"
