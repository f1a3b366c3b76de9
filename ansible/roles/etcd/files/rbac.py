"""etcd's users, roles and authentication, made idempotently with etcdctl (run once by the etcd
role on one member, after the cluster is healthy).

    rbac.py SPEC.json

Connection: etcdctl's own environment (ETCDCTL_ENDPOINTS, ETCDCTL_CACERT, ETCDCTL_CERT,
ETCDCTL_KEY: the member's own certificate, whose name is no etcd user). Passwords:
TENIR_ETCD_ROOT_PASSWORD and, for each password user, TENIR_ETCD_PASSWORD_<USER> (upper case,
``-`` as ``_``). SPEC: ``{"roles": {role: [key prefix, ...]}, "cert_users": {role: [user, ...]},
"password_users": {role: [user, ...]}}``; a certificate user has no password (etcd takes the user
from the client certificate's common name), a password user authenticates with its password
(Patroni: the JSON gateway ignores certificate names).

Steps: while authentication is off, make root, the roles (read-write on their prefixes), the
users and their roles, then enable authentication; once on, the same as root, changing only
what differs. Prints one line per change, or ``unchanged``; exit 1 with etcdctl's words on an
error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ETCDCTL = os.environ.get("TENIR_ETCDCTL", "/usr/bin/etcdctl")
NOT_ENABLED = "authentication is not enabled"


class Failed(RuntimeError):
    pass


def etcdctl(*args: str, user: str | None = None, password: str | None = None,
            stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ETCDCTL_USER"}
    env["ETCDCTL_API"] = "3"
    if user is not None:
        env["ETCDCTL_USER"] = f"{user}:{password}"
    proc = subprocess.run([ETCDCTL, *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=30)
    if check and proc.returncode != 0:
        raise Failed(f"etcdctl {' '.join(args[:2])}: {proc.stderr.strip().splitlines()[-1:]}")
    return proc


def password_of(user: str) -> str:
    name = "TENIR_ETCD_ROOT_PASSWORD" if user == "root" else \
        "TENIR_ETCD_PASSWORD_" + user.upper().replace("-", "_")
    value = os.environ.get(name, "")
    if len(value) < 12:
        raise Failed(f"{name}: a password of 12+ characters is needed")
    return value


def main(spec_path: str) -> int:
    with open(spec_path, encoding="utf-8") as fh:
        spec = json.load(fh)
    root_pw = password_of("root")
    probe = etcdctl("user", "get", "root", user="root", password=root_pw, check=False)
    if probe.returncode == 0:
        enabled = True
    elif NOT_ENABLED in probe.stderr:
        enabled = False
    else:
        raise Failed(f"cannot tell whether authentication is on: {probe.stderr.strip()[-300:]}")
    auth = {"user": "root", "password": root_pw} if enabled else {}
    changes: list[str] = []

    def exists(kind: str, name: str) -> subprocess.CompletedProcess[str] | None:
        proc = etcdctl(kind, "get", name, check=False, **auth)
        return proc if proc.returncode == 0 else None

    if not enabled and exists("user", "root") is None:
        etcdctl("user", "add", "root", "--interactive=false", stdin=root_pw + "\n")
        changes.append("user root added")
    for role, prefixes in sorted(spec.get("roles", {}).items()):
        got = exists("role", role)
        if got is None:
            etcdctl("role", "add", role, **auth)
            changes.append(f"role {role} added")
        text = got.stdout if got is not None else ""
        for prefix in prefixes:
            if text.count(f"(prefix {prefix})") < 2:  # read and write
                etcdctl("role", "grant-permission", role, "--prefix=true", "readwrite", prefix,
                        **auth)
                changes.append(f"role {role} may read and write {prefix}*")
    users: dict[str, tuple[list[str], bool]] = {}
    for kind, with_password in (("cert_users", False), ("password_users", True)):
        for role, names in spec.get(kind, {}).items():
            for name in names:
                users.setdefault(name, ([], with_password))[0].append(role)
    for user, (roles, with_password) in sorted(users.items()):
        got = exists("user", user)
        if got is None:
            if with_password:
                etcdctl("user", "add", user, "--interactive=false",
                        stdin=password_of(user) + "\n", **auth)
            else:
                etcdctl("user", "add", user, "--no-password", **auth)
            changes.append(f"user {user} added")
        elif with_password:
            check = etcdctl("user", "get", user, user=user, password=password_of(user),
                            check=False)
            if check.returncode != 0 and "authentication failed" in check.stderr:
                etcdctl("user", "passwd", user, "--interactive=false",
                        stdin=password_of(user) + "\n", **auth)
                changes.append(f"user {user}: password changed")
        held = set()
        if got is not None:
            for line in got.stdout.splitlines():
                if line.startswith("Roles:"):
                    held = set(line.split(":", 1)[1].split())
        for role in roles:
            if role not in held:
                etcdctl("user", "grant-role", user, role, **auth)
                changes.append(f"user {user} granted role {role}")
    if not enabled:
        etcdctl("auth", "enable")
        changes.append("authentication enabled")
    print("\n".join(changes) if changes else "unchanged")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except Failed as exc:
        print(f"rbac.py: {exc}", file=sys.stderr)
        sys.exit(1)
