"""Without a CA, ``tenir status`` says so member by member and probes nothing in clear (the
probes once fell back to http:// and a plain ``srvr`` against TLS-only ports, and showed an
HTTP 400 or an empty answer instead of the reason)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster import etcd_probe, tls, zookeeper_probe
from cluster.lab.health import probe_coordination
from cluster.topology import load_topology, with_coordination

pytestmark = pytest.mark.unit
LAB = Path(__file__).resolve().parents[2] / "inventories" / "lab"


@pytest.mark.parametrize("backend", ["etcd", "zookeeper"])
def test_no_ca_is_said_and_nothing_is_probed(backend: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ca() -> None:
        raise tls.TlsConfigError("no CA to verify the cluster's TLS with: set TENIR_CA_FILE")

    def probed(*args: object, **kwargs: object) -> None:
        raise AssertionError("probed without TLS")

    monkeypatch.setattr(tls, "client_context", no_ca)
    monkeypatch.setattr(tls, "gateway_client_context", no_ca)
    monkeypatch.setattr(etcd_probe, "probe_members", probed)
    monkeypatch.setattr(zookeeper_probe, "probe_members", probed)
    health = probe_coordination(with_coordination(load_topology(LAB), backend))
    assert len(health) == 3
    assert all(not h.healthy and "no CA" in (h.error or "") for h in health)
