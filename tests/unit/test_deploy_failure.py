"""A failed deployment names the services it could not (re)start, so that the lab's error can
carry their journals: Ansible's own message only says "see journalctl", which a CI log cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.lab.deploy import HostRecap, PlaybookRun, failed_services

pytestmark = pytest.mark.unit

EXCERPT = """TASK [haproxy : Enable HAProxy and start it] *****
fatal: [paris-db]: FAILED! => {"changed": false, "msg": "Unable to restart service haproxy: \
Job for haproxy.service failed because the control process exited with error code."}
changed: [marseille-db]
fatal: [paris-node1]: FAILED! => {"changed": false, "msg": "Unable to start service \
tenir-node.service: Job failed"}
fatal: [paris-db]: FAILED! => {"changed": false, "msg": "Unable to restart service haproxy: again"}
fatal: [witness]: FAILED! => {"changed": false, "msg": "template error while templating"}
"""


def test_each_host_and_unit_that_failed_to_start_is_named_once_in_order() -> None:
    assert failed_services(EXCERPT) == [("paris-db", "haproxy"),
                                        ("paris-node1", "tenir-node.service")]


def test_a_failure_that_is_not_a_service_names_none() -> None:
    assert failed_services('fatal: [witness]: FAILED! => {"msg": "template error"}') == []


def test_a_run_that_matched_no_host_is_not_ok_and_says_so(tmp_path: Path) -> None:
    """Ansible exits 0 when the inventory cannot be parsed and no host matches: nothing was
    deployed, which a caller must not take for success."""
    nothing = PlaybookRun("site.yml", 0, (), tmp_path / "log", 1.0)
    assert not nothing.ok
    assert "NO HOST MATCHED" in nothing.summary()
    one = PlaybookRun("site.yml", 0, (HostRecap("paris-db", 3, 1, 0, 0, 2),), tmp_path / "l", 1.0)
    assert one.ok and "NO HOST" not in one.summary()
