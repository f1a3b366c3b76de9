"""Open the coordinator of the configured backend (``tenir_coordination``), connected."""

from __future__ import annotations

from typing import Literal

from .base import CoordinationSettings, Coordinator

BACKENDS = ("etcd", "zookeeper")


async def open_coordinator(backend: Literal["etcd", "zookeeper"],
                           settings: CoordinationSettings) -> Coordinator:
    """A connected coordinator; raises CoordinationUnavailable within ``retry_timeout`` if the
    backend cannot be reached (nothing is left running then). Close it with ``close()``."""
    coordinator: Coordinator
    if backend == "etcd":
        from .etcd import EtcdCoordinator

        coordinator = EtcdCoordinator(settings)
    elif backend == "zookeeper":
        from .zookeeper import ZooKeeperCoordinator

        coordinator = ZooKeeperCoordinator(settings)
    else:
        raise ValueError(f"coordination backend must be one of {BACKENDS}, got {backend!r}")
    try:
        await coordinator.connect()
    except BaseException:
        await coordinator.close()
        raise
    return coordinator
