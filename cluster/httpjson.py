"""Small blocking JSON-over-HTTP helpers with hard timeouts, for health probes and admin calls.
An https URL is verified against the cluster's CA (``cluster/tls.py``), never without."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any


class HttpError(RuntimeError):
    def __init__(self, url: str, status: int | None, reason: str) -> None:
        self.url = url
        self.status = status
        self.reason = reason
        super().__init__(f"{url}: {status or 'no answer'} {reason}")


def request_json(
    method: str,
    url: str,
    body: Any = None,
    *,
    timeout: float = 2.0,
    auth: tuple[str, str] | None = None,
    bearer: str | None = None,
    accept_status: tuple[int, ...] = (200,),
    tls: ssl.SSLContext | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """Send ``body`` as JSON and decode the JSON answer. Returns (status, data).

    A status outside ``accept_status`` raises :class:`HttpError` unless it carries JSON and is
    listed; a connection failure raises :class:`HttpError` with ``status=None``. An https URL
    uses ``tls`` when given, else the CLI's client context (``cluster.tls``).
    """
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http only, lab/admin
    req.add_header("Content-Type", "application/json")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    if bearer is not None:
        req.add_header("Authorization", f"Bearer {bearer}")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    context = tls
    if context is None and url.startswith("https://"):
        from cluster.tls import TlsConfigError, client_context

        try:
            context = client_context()
        except TlsConfigError as exc:
            raise HttpError(url, None, str(exc)) from exc
    try:
        with urllib.request.urlopen(req, timeout=timeout,  # noqa: S310
                                    context=context) as resp:
            status = int(resp.status)
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
        raw = exc.read()
        if status not in accept_status:
            raise HttpError(url, status, raw.decode(errors="replace")[:200]) from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise HttpError(url, None, str(getattr(exc, "reason", exc))) from exc
    if status not in accept_status:
        raise HttpError(url, status, raw.decode(errors="replace")[:200])
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")
