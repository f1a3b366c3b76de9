#!/usr/bin/env bash
# Installs what tenir needs on a Debian 12 machine, as root. Idempotent: a second run installs
# nothing, takes a second or two and prints a short summary (what is installed, versions, where).
#  - Debian packages: PostgreSQL 15, etcd, ZooKeeper, HAProxy, tmux, iproute2, iptables...
#    Package scripts are kept from creating the Debian default PostgreSQL cluster and from
#    starting etcd/ZooKeeper/HAProxy as machine services, and those services are disabled at
#    boot: the lab runs its own, in namespaces, on the same ports.
#  - Patroni in its own venv under a world-readable prefix, since it runs as user postgres and the
#    checkout may live where postgres cannot read (CI clones into another folder).
#  - The project venv (.venv) with pinned dependencies, built from /usr/bin/python3.
# Each step is one line; what apt and pip print goes to the log ($TENIR_INSTALL_LOG) and is
# shown in full only if the step fails.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
PATRONI_VENV=${PATRONI_VENV:-/opt/tenir/patroni-venv}
VENV=${TENIR_VENV:-$here/.venv}
LOG=${TENIR_INSTALL_LOG:-/var/log/tenir-install.log}
PY=/usr/bin/python3
APT_PACKAGES=(postgresql-15 postgresql-client-15 etcd-server etcd-client zookeeper haproxy tmux
              iproute2 iptables nftables procps util-linux python3-venv python3-dev curl
              systemd-container debootstrap openssh-client iputils-ping
              libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils
              chromium tcpdump tshark)  # tshark: the TLS tests read their captures
# Machine services the packages may enable at boot; the lab runs its own copies.
BOOT_SERVICES=(etcd haproxy postgresql zookeeper)
WIDTH=80
STEPS_RAN=0  # 1 once a step ran

if [[ $(id -u) -ne 0 ]]; then
  echo "install-debian.sh: run as root (the lab creates network namespaces)" >&2
  exit 1
fi

# step TEXT COMMAND...: print TEXT on one line, run COMMAND with its output kept in the log, then
# "done (N s)"; on failure print the command's whole output to stderr and stop.
step() {
  local what=$1 out rc=0 began=$SECONDS; shift
  # room for " ... done (NNN s)" on the line, else (a long path) on the next one
  if ((${#what} > WIDTH - 17)); then printf '%s\n  ... ' "$what"; else printf '%s ... ' "$what"; fi
  out=$(mktemp)
  # run in the background and wait: errexit then holds inside a function step runs (it would
  # be ignored in an `||` list)
  "$@" >"$out" 2>&1 &
  wait $! || rc=$?
  mkdir -p "$(dirname "$LOG")"
  { printf '=== %s  %s\n+ %s\n' "$(date '+%F %T')" "$what" "$*"; cat "$out"; } >> "$LOG"
  if ((rc)); then
    echo "FAILED"
    { echo "install-debian.sh: FAILED (exit $rc): $what"
      echo "+ $*"
      cat "$out"
      echo "(this output is also in $LOG)"; } >&2
    rm -f "$out"
    exit "$rc"
  fi
  rm -f "$out"
  echo "done ($((SECONDS - began)) s)"
  STEPS_RAN=1
}

# fit COLUMNS TEXT: TEXT cut to COLUMNS characters, with an ellipsis if cut
fit() {
  local text=$2
  if ((${#text} > $1)); then text="${text:0:$1-3}..."; fi
  printf '%s' "$text"
}

install_packages() {
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/50-tenir.conf
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "$@"
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  # Had the machine's init started them anyway, stop the packaged services (not the lab's).
  local svc
  for svc in "${BOOT_SERVICES[@]}"; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      systemctl stop "$svc" || true
    fi
  done
}

# boot_links SERVICE: the links that start SERVICE at boot (systemd .wants/, SysV rc?.d/S*)
boot_links() {
  compgen -G "/etc/systemd/system/*.wants/$1.service" || true
  compgen -G "/etc/rc[2345S].d/S[0-9][0-9]$1" || true
}

enabled_at_boot() {
  local svc
  for svc in "${BOOT_SERVICES[@]}"; do
    [[ -n $(boot_links "$svc") ]] && echo "$svc"
  done
  return 0
}

# disable_at_boot SERVICE...: works without a running systemd (systemctl edits the links and runs
# update-rc.d for the SysV scripts)
disable_at_boot() {
  local svc
  for svc in "$@"; do
    if command -v systemctl >/dev/null && systemctl cat "$svc.service" >/dev/null 2>&1; then
      SYSTEMD_OFFLINE=1 systemctl disable "$svc.service"
    fi
    if [[ -x /etc/init.d/$svc ]]; then
      update-rc.d "$svc" disable
    fi
    if [[ -n $(boot_links "$svc") ]]; then
      echo "still enabled at boot: $(boot_links "$svc" | tr '\n' ' ')"
      return 1
    fi
  done
}

stamp_ok() { [[ -f $1/.tenir-lock && $(cat "$1/.tenir-lock") == $(sha256sum "$2" | cut -d' ' -f1) ]]; }
stamp() { sha256sum "$2" | cut -d' ' -f1 > "$1/.tenir-lock"; }

build_patroni_venv() {
  rm -rf "$PATRONI_VENV"
  mkdir -p "$(dirname "$PATRONI_VENV")"
  "$PY" -m venv "$PATRONI_VENV"
  "$PATRONI_VENV/bin/pip" install --disable-pip-version-check --use-pep517 -r "$here/requirements/patroni-lock.txt"
  chmod -R a+rX "$(dirname "$PATRONI_VENV")"
  stamp "$PATRONI_VENV" "$here/requirements/patroni-lock.txt"
}

build_project_venv() {
  if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.base_prefix != "/usr")'; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
  fi
  "$VENV/bin/pip" install --disable-pip-version-check -r "$here/requirements/lock.txt"
  "$VENV/bin/pip" install --disable-pip-version-check --no-deps -e "$here"
  stamp "$VENV" "$here/requirements/lock.txt"
}

# --- the steps ------------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  # room left for " ... done (NNN s)"
  step "$(fit $((WIDTH - 17)) "Debian packages: installing ${#missing[@]} (${missing[*]})")" \
    install_packages "${missing[@]}"
fi

mapfile -t enabled < <(enabled_at_boot)
if ((${#enabled[@]})); then
  step "boot services: disabling ${enabled[*]}" \
    disable_at_boot "${enabled[@]}"
fi

if ! stamp_ok "$PATRONI_VENV" "$here/requirements/patroni-lock.txt"; then
  step "Patroni venv: building $PATRONI_VENV" build_patroni_venv
fi

if ! stamp_ok "$VENV" "$here/requirements/lock.txt" || [[ ! -x $VENV/bin/tenir ]]; then
  step "project venv: building $VENV" build_project_venv
fi

# --- the summary ----------------------------------------------------------------------------
upstream() {  # the upstream version of an installed Debian package (no epoch, no revision)
  dpkg-query -W -f='${Version}' "$1" 2>/dev/null | sed 's/^[0-9]*://; s/-[^-]*$//'
}
row() {  # row WHAT WHERE: one line, or two if it would not fit
  local line
  line=$(printf '  %-28s %s' "$1" "$2")
  if ((${#line} > WIDTH)); then printf '  %s\n    %s\n' "$1" "$2"; else echo "$line"; fi
}

if ((STEPS_RAN)); then echo "installed (what apt and pip printed: $LOG):"; else echo "installed:"; fi
row "PostgreSQL $(upstream postgresql-15)" /usr/lib/postgresql/15/bin
row "etcd $(upstream etcd-server)" "$(command -v etcd || echo /usr/bin/etcd)"
row "ZooKeeper $(upstream zookeeper)" /usr/share/zookeeper
row "HAProxy $(upstream haproxy)" "$(command -v haproxy || echo /usr/sbin/haproxy)"
row "tmux $(upstream tmux)" "$(command -v tmux || echo /usr/bin/tmux)"
row "Patroni $("$PATRONI_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("patroni"))')" \
  "$PATRONI_VENV"
row "$("$VENV/bin/python" -c 'import importlib.metadata as m, platform
print("tenir", m.version("tenir"), f"(Python {platform.python_version()})")')" "$VENV"
# The other packages, counted (their names: APT_PACKAGES above).
others=0
for p in "${APT_PACKAGES[@]}"; do
  case $p in postgresql-*|etcd-*|zookeeper|haproxy|tmux) ;; *) others=$((others + 1)) ;; esac
done
echo "  tools: $others more Debian packages (APT_PACKAGES in scripts/install-debian.sh)"
left=$(enabled_at_boot | tr '\n' ' ')
if [[ -n $left ]]; then
  echo "  at boot: ${left% } STILL ENABLED (systemctl disable ${left% })"
  exit 1
fi
echo "  at boot: ${BOOT_SERVICES[*]} disabled (the lab runs its own)"
