"""A client of the alert nodes' REST API for the CLI: it talks to the first node that answers,
so an operator's command works whichever site is down. A node that answers 503 (cut from its
store: "retry later") passes the call to the next one."""

from __future__ import annotations

import json
from typing import Any

from cluster.credentials import secret
from cluster.httpjson import HttpError, request_json
from cluster.lab.health import node_url
from cluster.topology import Topology


class ApiError(RuntimeError):
    """A call the nodes refused (``status``: the HTTP status of the refusal, when one answered)
    or could not make."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def operator_token(role: str = "operator") -> str:
    """``$TENIR_TOKEN``, else the lab's token for ``role``."""
    token = secret("TENIR_TOKEN", f"token_{role}")
    if not token:
        raise ApiError("no API token: set TENIR_TOKEN (the lab's tokens exist once it is up)")
    return token


def refusal(method: str, path: str, base: str, exc: HttpError) -> str:
    """A node's refusal in one sentence: its ``error`` and ``field`` when it answered JSON."""
    error, where = exc.reason, f"node {base}"
    try:
        body = json.loads(exc.reason)
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        error = str(body["error"])
        if body.get("field"):
            where = f"field {body['field']}; {where}"
    return f"{method} {path}: {exc.status} {error} ({where})"


class NodeApi:
    def __init__(self, topo: Topology, token: str, timeout: float = 10.0) -> None:
        self.bases = [node_url(topo, h) for h in topo.hosts_running("alert_nodes")]
        if not self.bases:
            raise ApiError(f"{topo.source}: no alert node in the inventory")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None,
             accept: tuple[int, ...] = (200, 201)) -> Any:
        errors = []
        unavailable: ApiError | None = None
        for base in self.bases:
            try:
                _, data = request_json(method, f"{base}/api/v1{path}", body,
                                       timeout=self.timeout, bearer=self.token,
                                       accept_status=accept)
                return data
            except HttpError as exc:
                if exc.status == 503:  # that node cannot serve now (cut from its store): the next
                    unavailable = unavailable or ApiError(refusal(method, path, base, exc), 503)
                    continue
                if exc.status is not None:  # the node answered: its answer is the answer
                    raise ApiError(refusal(method, path, base, exc), exc.status) from exc
                errors.append(str(exc))
        if unavailable is not None:
            raise unavailable
        raise ApiError(f"no alert node answered: {'; '.join(errors)}")
