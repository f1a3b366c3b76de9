"""One gRPC client per etcd endpoint, plain or over TLS, with the channel options that make a
lost server noticed and a restarted one reached again within seconds (``etcd.py`` uses it)."""

from __future__ import annotations

from typing import Any

import aetcd  # type: ignore[import-untyped]
import aetcd.watcher  # type: ignore[import-untyped]
import grpc  # type: ignore[import-untyped]
from aetcd import rpc

from cluster.tls import TlsFiles

CHANNEL_OPTIONS: dict[str, int] = {
    # reconnect quickly after a server restart (gRPC's default backoff grows to 120 s)
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 1000,  # also the connect timeout of one attempt
    "grpc.max_reconnect_backoff_ms": 1000,
    # detect a dead peer under a long-lived watch stream; etcd refuses pings < 5 s apart
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.http2.max_pings_without_data": 0,
    "grpc.keepalive_permit_without_calls": 0,
}


class TlsClient(aetcd.Client):  # type: ignore[misc]
    """aetcd's client over TLS: aetcd 1.0 opens only plain channels. The server is verified
    against the CA (its address must be in its certificate); our certificate's common name is
    our etcd user (no password, no token)."""

    def __init__(self, files: TlsFiles, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=files.ca.read_bytes(),
            private_key=files.key.read_bytes() if files.key else None,
            certificate_chain=files.cert.read_bytes() if files.cert else None)

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        self.channel = grpc.aio.secure_channel(f"{self._host}:{self._port}", self._credentials,
                                               options=list(self._options.items()))
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = aetcd.watcher.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout,
                                              metadata=self.metadata)
        self._connected.set()


def endpoint_client(host: str, port: int, tls: TlsFiles | None) -> Any:
    """aetcd's client to ``host:port`` (not connected yet: it connects on its first call)."""
    if tls is not None:
        return TlsClient(tls, host=host, port=port, options=dict(CHANNEL_OPTIONS))
    return aetcd.Client(host=host, port=port, options=dict(CHANNEL_OPTIONS))
