"""Callback plugin: every playbook run leaves an event in tenir's continuity ledger.

At the end of a run it records ``operator.deploy`` through an alert node's API
(``POST /api/v1/events``, with the deployment's own operator token, ``tenir_deploy_token``):
who ran it, which playbook, which hosts changed, failed or were unreachable, and the version
deployed. The ledger chains and signs it like every other continuity event (docs/evidence.md).

Who: ``$TENIR_OPERATOR`` if set, else the controller's user and host name. A run whose event
cannot be recorded (no node answers, e.g. the very first deployment failed before the nodes)
says so in its output and in ``$TENIR_EVENTS_SPOOL`` (default ``~/.cache/tenir/events.jsonl``),
from where the next successful run sends it first. ``TENIR_EVENTS=off`` records nothing (for
runs that only render templates on the controller).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ansible.plugins.callback import CallbackBase
from ansible.template import Templar

DOCUMENTATION = """
    name: tenir_events
    type: notification
    short_description: record each playbook run as an operator.deploy event in tenir's ledger
    description:
      - Posts who ran which playbook, the hosts changed and the versions to an alert node's API.
    requirements:
      - an inventory with an alert_nodes group and tenir_deploy_token (an operator user's token)
"""

SPOOL = Path(os.environ.get("TENIR_EVENTS_SPOOL",
                            str(Path.home() / ".cache" / "tenir" / "events.jsonl")))


def _who() -> str:
    return os.environ.get("TENIR_OPERATOR") or f"{getpass.getuser()}@{socket.gethostname()}"


def _post(url: str, token: str, body: dict[str, Any], ca: str | None = None) -> int:
    """POST one event to a node's API over HTTPS, verified by the cluster's CA when known."""
    request = urllib.request.Request(  # noqa: S310 - the inventory's own node URL
        f"{url}/api/v1/events", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    with urllib.request.urlopen(request, timeout=5, context=context) as answer:  # noqa: S310
        return int(json.loads(answer.read())["id"])


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "tenir_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._playbook = ""
        self._started = time.time()
        self._nodes: list[tuple[str, str]] = []  # (url, token) of each alert node
        self._ca: str | None = None  # the cluster's CA on the controller (tenir_pki_dir)
        self._versions: dict[str, str] = {}

    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._playbook = Path(playbook._file_name).name
        self._started = time.time()

    def v2_playbook_on_play_start(self, play: Any) -> None:
        if self._nodes:
            return
        vm = play.get_variable_manager()
        inventory = vm._inventory
        loader = play._loader
        for host in inventory.get_groups_dict().get("alert_nodes", []):
            hv = vm.get_vars(play=play, host=inventory.get_host(host))
            templar = Templar(loader=loader, variables=hv)
            try:
                address = templar.template(hv.get("ansible_host", host))
                port = templar.template(hv.get("tenir_node_port", 8080))
                token = templar.template(hv.get("tenir_deploy_token", ""))
                pki = templar.template(hv.get("tenir_pki_dir", ""))
                if pki and os.path.exists(os.path.join(str(pki), "ca.crt")):
                    self._ca = os.path.join(str(pki), "ca.crt")
                self._versions = {
                    "tenir": str(templar.template(hv.get("tenir_version", ""))),
                }
            except Exception:  # noqa: S112 - an undefined variable: try the next node
                continue
            if token:
                self._nodes.append((f"https://{address}:{port}", str(token)))

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if os.environ.get("TENIR_EVENTS") == "off":  # tests that only render templates
            return
        hosts = sorted(stats.processed)
        summary = {h: stats.summarize(h) for h in hosts}
        changed = [h for h in hosts if summary[h]["changed"]]
        failed = [h for h in hosts if summary[h]["failures"]]
        unreachable = [h for h in hosts if summary[h]["unreachable"]]
        outcome = "failed" if failed or unreachable else "ok"
        who = _who()
        sentence = (f"{who} ran {self._playbook}: {outcome}, {len(changed)} of {len(hosts)} "
                    f"hosts changed" + (f", failed on {', '.join(failed + unreachable)}"
                                        if failed or unreachable else ""))
        event = {"kind": "operator.deploy", "sentence": sentence, "details": {
            "who": who, "playbook": self._playbook, "outcome": outcome,
            "hosts": hosts, "changed": changed, "failed": failed, "unreachable": unreachable,
            "versions": self._versions, "started": self._started,
            "seconds": round(time.time() - self._started, 1)}}
        pending = [*self._spooled(), event]
        sent = 0
        for url, token in self._nodes:
            try:
                for item in pending:
                    _post(url, token, item, self._ca)
                    sent += 1
            except (urllib.error.URLError, OSError, ValueError, KeyError):
                pending = pending[sent:]
                sent = 0
                continue
            pending = []
            break
        self._spool(pending)
        if pending:
            self._display.warning(f"tenir_events: {len(pending)} event(s) could not be recorded "
                                  f"(no alert node answered); kept in {SPOOL}")
        else:
            self._display.display(f"tenir_events: recorded in the ledger: {sentence}")

    def _spooled(self) -> list[dict[str, Any]]:
        try:
            return [json.loads(line) for line in SPOOL.read_text().splitlines() if line]
        except (OSError, ValueError):
            return []

    def _spool(self, events: list[dict[str, Any]]) -> None:
        if not events:
            SPOOL.unlink(missing_ok=True)
            return
        SPOOL.parent.mkdir(parents=True, exist_ok=True)
        SPOOL.write_text("".join(json.dumps(e) + "\n" for e in events))
