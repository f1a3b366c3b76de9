"""ansible/pki.yml run on the controller against the lab's inventory (no machine is contacted:
every task runs on the controller): the CA once, one certificate per host with its name and
address (PostgreSQL members also every HAProxy's), the operator's; nothing changes on a second
run; a certificate is made again when its SANs change or it is close to expiry; with a vault
password file, every private key made is encrypted with ansible-vault and the CA key is still
used to sign."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from cryptography import x509

from cluster.pki import VAULT_HEADER, cert_sans
from tests.ansible.render import ANSIBLE, REPO

LAB = REPO / "inventories" / "lab"
DB = ["paris-db", "marseille-db"]
HOSTS = ["paris-db", "paris-node1", "paris-node2", "paris-carriers", "marseille-db",
         "marseille-node1", "marseille-node2", "marseille-carriers", "witness-quorum"]


def play(pki: Path, *extra: str) -> dict[str, int]:
    """Run pki.yml; returns the recap's changed count per host."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(pki.parent / "tmp"), "TENIR_EVENTS": "off",
           "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(bin_dir / "ansible-playbook"), "-i", str(LAB), "pki.yml",
                           "-e", f"tenir_pki_dir={pki}", *extra], cwd=ANSIBLE, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)",
                                                 proc.stdout, re.M)}


def sans(pki: Path, name: str) -> list[str]:
    return cert_sans(x509.load_pem_x509_certificate((pki / f"{name}.crt").read_bytes()))


def test_the_play_makes_the_ca_and_every_certificate_once(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    first = play(pki)
    # each host's, the CA, the operator's two, and the PostgreSQL members' gateway certificates
    assert sum(first.values()) == len(HOSTS) + 3 + len(DB)
    assert sorted(p.stem for p in pki.glob("*.crt")) == sorted(
        ["ca", "tenir-operator", "tenir-operator-gateway", *HOSTS, *(f"{h}-gateway" for h in DB)])
    # etcd's JSON gateway refuses a client certificate carrying a common name (RBAC on)
    for name in ("paris-db-gateway", "tenir-operator-gateway"):
        cert = x509.load_pem_x509_certificate((pki / f"{name}.crt").read_bytes())
        assert list(cert.subject) == [], name
    assert x509.load_pem_x509_certificate((pki / "paris-db.crt").read_bytes()
                                          ).subject.rfc4514_string() == "CN=paris-db"
    assert sans(pki, "paris-node1") == ["dns:paris-node1", "ip:10.213.0.12"]
    # a PostgreSQL member's certificate also names every HAProxy: verify-full through HAProxy
    assert sans(pki, "paris-db") == ["dns:marseille-db", "dns:paris-db", "ip:10.213.0.11",
                                     "ip:10.213.0.21"]
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    x509.load_pem_x509_certificate((pki / "witness-quorum.crt").read_bytes()
                                   ).verify_directly_issued_by(ca)
    assert oct((pki / "paris-db.key").stat().st_mode & 0o777) == "0o600"
    assert sum(play(pki).values()) == 0  # a second run changes nothing


def test_renewed_when_the_sans_change_or_expiry_is_near(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    play(pki)
    before = (pki / "paris-node1.crt").read_bytes()
    changed = play(pki, "-e", '{"tenir_pki_extra_sans": ["alerte.example"]}')
    assert sum(changed.values()) == len(HOSTS)
    assert "dns:alerte.example" in sans(pki, "paris-node1")
    assert (pki / "paris-node1.crt").read_bytes() != before
    # every certificate is valid for 365 days: asked to renew 400 days ahead, all are renewed
    assert sum(play(pki, "-e", '{"tenir_pki_extra_sans": ["alerte.example"]}',
                    "-e", "tenir_pki_renew_days=400").values()) == len(HOSTS) + 2 + len(DB)


def test_keys_left_in_clear_by_an_earlier_run_are_encrypted_by_the_next(
        tmp_path: Path) -> None:
    """A run cut short between making a key and encrypting it (here: a first run before the
    vault was set) leaves keys in clear; the next run with the vault encrypts every one."""
    pki = tmp_path / "pki"
    play(pki)
    assert (pki / "paris-db.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    password = tmp_path / "vault-pass"
    password.write_text("a-vault-password-for-the-test\n")
    play(pki, "-e", f"tenir_pki_vault_password_file={password}")
    for name in ("ca", "paris-db", "paris-db-gateway", "witness-quorum"):
        assert (pki / f"{name}.key").read_bytes().startswith(VAULT_HEADER), name
    assert (pki / "tenir-operator.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    again = play(pki, "-e", f"tenir_pki_vault_password_file={password}")
    assert sum(again.values()) == 0  # nothing left to encrypt: a third run changes nothing


def test_with_the_vault_every_new_key_is_encrypted(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    password = tmp_path / "vault-pass"
    password.write_text("a-vault-password-for-the-test\n")
    play(pki, "-e", f"tenir_pki_vault_password_file={password}")
    for name in ("ca", "paris-db", "paris-db-gateway", "witness-quorum"):
        assert (pki / f"{name}.key").read_bytes().startswith(VAULT_HEADER), name
    # the operator's stays in clear for the CLI (mode 600, like an SSH key)
    assert (pki / "tenir-operator.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    # the encrypted CA key still signs: a new SAN renews every host's certificate
    changed = play(pki, "-e", f"tenir_pki_vault_password_file={password}",
                   "-e", '{"tenir_pki_extra_sans": ["x.example"]}')
    assert sum(changed.values()) == 2 * len(HOSTS)  # made, then encrypted
    assert (pki / "paris-db.key").read_bytes().startswith(VAULT_HEADER)
