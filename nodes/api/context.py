"""What every handler reaches through ``request.app[CONTEXT]`` and ``request[PRINCIPAL]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from nodes.api.spec import Role
from nodes.carriers.base import AckSink, ReceiptSink
from nodes.metrics import Metrics
from replication.store_api import CampaignStore


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role and a short fingerprint of the token (never the token)."""

    role: Role
    fingerprint: str

    @property
    def id(self) -> str:
        return f"{self.role}:{self.fingerprint}"


@dataclass(frozen=True)
class ApiContext:
    store: CampaignStore
    node: str
    site: str
    metrics: Metrics
    on_ack: AckSink | None
    on_receipt: ReceiptSink | None
    max_body_bytes: int
    openapi: dict[str, Any]


CONTEXT = web.AppKey("tenir.api", ApiContext)
PRINCIPAL = web.RequestKey("tenir.principal", Principal)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
