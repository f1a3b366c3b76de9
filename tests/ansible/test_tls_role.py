"""Role tenir_tls run for real on this machine (connection local) into a temporary directory:
the files a service reads, and HAProxy's and ZooKeeper's one-file bundle loadable by OpenSSL (a
folded '\\n' once joined the key's last line and the certificate's first: HAProxy refused it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.ansible.render import ROLES
from tests.tls_kit import TestPki

pytestmark = pytest.mark.integration


def run_role(tmp: Path, pki_dir: Path, dest: Path) -> str:
    playbook = tmp / "play.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"tenir_pki_dir": str(pki_dir), "ansible_python_interpreter": sys.executable},
        "roles": [{"role": "tenir_tls", "tenir_tls_src": str(pki_dir), "tenir_tls_name": "h1",
                   "tenir_tls_dir": str(dest), "tenir_tls_group": "root",
                   "tenir_tls_bundle": True, "tenir_tls_gateway": True}]}]))
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ROLES), "ANSIBLE_LOCAL_TEMP": str(tmp / "t"),
           "ANSIBLE_NOCOLOR": "1", "TENIR_EVENTS": "off"}
    proc = subprocess.run([str(bin_dir / "ansible-playbook"), "-i", "localhost,",
                           str(playbook)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc.stdout


def test_the_bundle_holds_a_key_then_a_certificate_each_loadable(tmp_path: Path) -> None:
    pki = TestPki(tmp_path / "pki")
    pki.files("h1")
    pki.files("h1-gateway", common_name=False)
    dest = tmp_path / "tls"
    first = run_role(tmp_path, tmp_path / "pki", dest)
    assert sorted(p.name for p in dest.iterdir()) == ["ca.crt", "gateway.crt", "gateway.key",
                                                      "host.crt", "host.key", "host.pem"]
    bundle = dest / "host.pem"
    text = bundle.read_text()
    assert "\\n" not in text and text.endswith("-----END CERTIFICATE-----\n")
    # OpenSSL reads the certificate and the key out of the one file
    cert = subprocess.run(["openssl", "x509", "-in", str(bundle), "-noout", "-subject"],
                          capture_output=True, text=True, check=False)
    assert cert.returncode == 0 and "CN = h1" in cert.stdout, cert.stderr
    key = subprocess.run(["openssl", "pkey", "-in", str(bundle), "-noout"],
                         capture_output=True, text=True, check=False)
    assert key.returncode == 0, key.stderr
    assert oct(bundle.stat().st_mode & 0o777) == "0o640"
    assert "changed=0" not in first
    assert "changed=0" in run_role(tmp_path, tmp_path / "pki", dest)  # a second run: nothing
