"""A tiny typed metrics registry rendered in the Prometheus text exposition format (0.0.4).

Counters and gauges carry a fixed tuple of label names; every update names each label once::

    metrics = Metrics()
    metrics.messages_sent.inc(channel="sms", carrier="smpp-paris", result="accepted")
    metrics.registry.render()

:class:`Metrics` pre-declares the node's well-known series (HTTP requests, the dispatcher's sent
messages and fencing rejections, ...) so that every component shares one name and one label set
for each; components may declare more through ``metrics.registry.counter(...)``/``gauge(...)``,
which returns the existing metric when called again with the same declaration.

Updates take a lock: the API runs on the event loop, but a dispatcher or an import worker may
update from a thread.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator
from typing import Literal

MetricType = Literal["counter", "gauge"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as the exposition format spells it (integers without a fraction)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


class _Metric:
    type: MetricType

    def __init__(self, name: str, help: str, labelnames: tuple[str, ...]) -> None:
        if not _NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labelnames:
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"{name}: invalid label name {label!r}")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"{name}: duplicate label names {labelnames!r}")
        self.name = name
        self.help = help
        self.labelnames = labelnames
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        if not labelnames:
            self._values[()] = 0.0

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(
                f"{self.name}: labels {sorted(labels)} given, {list(self.labelnames)} expected"
            )
        return tuple(str(labels[name]) for name in self.labelnames)

    def value(self, **labels: str) -> float:
        """The current value of one series (0 if it was never updated)."""
        key = self._key(labels)
        with self._lock:
            return self._values.get(key, 0.0)

    def samples(self) -> list[tuple[dict[str, str], float]]:
        with self._lock:
            items = sorted(self._values.items())
        return [(dict(zip(self.labelnames, key, strict=True)), value) for key, value in items]

    def render(self) -> Iterator[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.type}"
        for labels, value in self.samples():
            if labels:
                text = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in labels.items())
                yield f"{self.name}{{{text}}} {format_value(value)}"
            else:
                yield f"{self.name} {format_value(value)}"


class Counter(_Metric):
    """A value that only goes up (reset only by a process restart)."""

    type: MetricType = "counter"

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        if amount < 0 or math.isnan(amount):
            raise ValueError(f"{self.name}: a counter cannot decrease (inc by {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_Metric):
    """A value that goes up and down."""

    type: MetricType = "gauge"

    def set(self, value: float, /, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, /, **labels: str) -> None:
        self.inc(-amount, **labels)


class Registry:
    """Named metrics, rendered in declaration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _declare(
        self, cls: type[_Metric], name: str, help: str, labelnames: tuple[str, ...],
    ) -> _Metric:
        with self._lock:
            existing = self._metrics.get(name)
            if existing is not None:
                if type(existing) is not cls or existing.labelnames != labelnames:
                    raise ValueError(
                        f"metric {name} is already declared as a {existing.type} "
                        f"with labels {list(existing.labelnames)}"
                    )
                return existing
            metric = cls(name, help, labelnames)
            self._metrics[name] = metric
            return metric

    def counter(self, name: str, help: str, labelnames: tuple[str, ...] = ()) -> Counter:
        metric = self._declare(Counter, name, help, labelnames)
        assert isinstance(metric, Counter)
        return metric

    def gauge(self, name: str, help: str, labelnames: tuple[str, ...] = ()) -> Gauge:
        metric = self._declare(Gauge, name, help, labelnames)
        assert isinstance(metric, Gauge)
        return metric

    def get(self, name: str) -> Counter | Gauge | None:
        metric = self._metrics.get(name)
        return metric if isinstance(metric, Counter | Gauge) else None

    def render(self) -> str:
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for metric in metrics:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


class Metrics:
    """The node's registry with its well-known series declared once, for every component."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else Registry()
        r = self.registry
        # REST API
        self.http_requests = r.counter(
            "tenir_http_requests_total", "HTTP requests answered, by method, route and status.",
            ("method", "route", "status"),
        )
        self.http_request_seconds = r.counter(
            "tenir_http_request_seconds_total",
            "Time spent answering HTTP requests, by method and route.", ("method", "route"),
        )
        self.http_in_flight = r.gauge(
            "tenir_http_requests_in_flight", "HTTP requests being answered.",
        )
        self.auth_failures = r.counter(
            "tenir_auth_failures_total", "Requests refused by authentication or authorisation.",
            ("reason",),
        )
        self.rate_limited = r.counter(
            "tenir_rate_limited_total",
            "Requests refused with 429 by a per-address limit (public or failures).", ("limit",),
        )
        self.http_connections = r.gauge(
            "tenir_http_connections", "Open connections to the API.",
        )
        self.http_connections_refused = r.counter(
            "tenir_http_connections_refused_total",
            "Connections closed at once because a connection cap was reached (total, per "
            "address, or waiting for their TLS handshake).", ("cap",),
        )
        self.contacts_imported = r.counter(
            "tenir_contacts_imported_total", "Contacts stored through the API (one or CSV).",
        )
        self.campaigns_launched = r.counter(
            "tenir_campaigns_launched_total", "Campaigns launched through this node.",
        )
        self.callbacks = r.counter(
            "tenir_callbacks_total", "Carrier callbacks and acknowledgement links received.",
            ("kind", "result"),
        )
        self.callbacks_refused = r.counter(
            "tenir_callbacks_refused_total",
            "Carrier callbacks and acknowledgements refused, nothing stored, by reason "
            "(unsigned, bad_signature, unknown_key, stale, unknown, early, final).",
            ("kind", "reason"),
        )
        self.store_up = r.gauge(
            "tenir_store_up", "1 if the last probe (readyz or scrape) reached the campaign store.",
        )
        self.store_fencing_rejections = r.gauge(
            "tenir_store_fencing_rejections",
            "Stale-epoch writes refused by the campaign store, all nodes together.",
        )
        # dispatcher
        self.messages_sent = r.counter(
            "tenir_messages_sent_total", "Messages submitted to carriers, by outcome.",
            ("channel", "carrier", "result"),
        )
        self.fencing_rejections = r.counter(
            "tenir_fencing_rejections_total",
            "Writes of this node refused by the store because its batch epoch was stale.",
        )
        self.batches_claimed = r.counter(
            "tenir_batches_claimed_total", "Batches claimed by this node's dispatcher.",
        )
        self.batches_held = r.gauge(
            "tenir_batches_held", "Batches this node holds, sending or waiting to (the reserve "
            "claimed ahead).", ("state",),
        )
        self.journal_unsettled = r.gauge(
            "tenir_outcome_journal_unsettled",
            "Outcomes in this node's journal that the store has not taken yet.",
        )

        # failover drills (read back from the continuity ledger every minute)
        self.drill_last_run = r.gauge(
            "tenir_drill_last_run_timestamp_seconds",
            "When the latest record of each drill kind was written (absent: never run).",
            ("drill",),
        )
        self.drill_overdue = r.gauge(
            "tenir_drill_overdue",
            "1 when no drill of that kind passed or failed within its interval.", ("drill",),
        )
        self.drill_interval = r.gauge(
            "tenir_drill_interval_seconds", "How often each drill kind must run.", ("drill",),
        )

        # the event loop the API, the dispatcher and the membership heartbeat share
        self.loop_lag_max = r.gauge(
            "tenir_event_loop_lag_max_seconds",
            "The worst lag of the node's event loop over the last minute (a wake asked every "
            "50 ms, measured late by this much).",
        )
        self.loop_stalls = r.counter(
            "tenir_event_loop_stalls_total",
            "Wakes of the node's event loop later than 0.1 s and than 1 s.", ("over",),
        )

        # TLS
        self.certificate_expiry = r.gauge(
            "tenir_certificate_expiry_timestamp_seconds",
            "When each certificate the node uses expires (Unix time): host (its API and its "
            "coordination identity), ca (the cluster's CA), carriers_ca.", ("certificate",),
        )

    def set_drill(self, drill: str, last_run: float | None, overdue: bool,
                  interval_s: float) -> None:
        if last_run is not None:
            self.drill_last_run.set(last_run, drill=drill)
        self.drill_overdue.set(1.0 if overdue else 0.0, drill=drill)
        self.drill_interval.set(interval_s, drill=drill)

    def render(self) -> str:
        return self.registry.render()
