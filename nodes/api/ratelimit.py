"""Rate limits per source address, in bounded memory.

* Public routes (callbacks, acknowledgement pages, probes, metrics, the document), except
  ``/healthz``: ``public_rate_per_s`` requests per second with a burst of ``public_burst``.
* Failures (a missing or unknown bearer token, an acknowledgement or callback whose signature
  is missing, wrong or stale): ``failures_per_s`` with a burst of ``failure_burst``. An address
  whose failure bucket is empty gets 429 on every route but ``/healthz`` until it refills, so
  that guessing tokens or signatures costs time and leaves few log lines.

Each limiter is a token bucket per address in an LRU table of ``tracked_addresses`` entries:
memory stays bounded however many addresses appear (a forgotten address starts afresh).
Refusals are counted in ``tenir_rate_limited_total{limit}``.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware

from nodes.api.errors import ApiError
from nodes.api.limits import HttpLimits
from nodes.api.spec import Access, Handler
from nodes.metrics import Metrics

UNLIMITED_PATHS = frozenset({"/healthz"})
FAILED = web.RequestKey("tenir.failed", str)  # set by whoever refuses a credential


class Buckets:
    """Token buckets keyed by address: ``rate`` tokens per second, at most ``burst``."""

    def __init__(self, rate: float, burst: int, max_keys: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        self._table: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def _level(self, key: str) -> float:
        now = self.clock()
        tokens, at = self._table.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        self._table[key] = (tokens, now)
        self._table.move_to_end(key)
        while len(self._table) > self.max_keys:
            self._table.popitem(last=False)
        return tokens

    def take(self, key: str) -> bool:
        """Spend one token if there is one."""
        tokens = self._level(key)
        if tokens < 1.0:
            return False
        self._table[key] = (tokens - 1.0, self._table[key][1])
        return True

    def charge(self, key: str) -> None:
        """Spend one token, down to zero."""
        tokens = self._level(key)
        self._table[key] = (max(0.0, tokens - 1.0), self._table[key][1])

    def empty(self, key: str) -> bool:
        return self._level(key) < 1.0

    def retry_after(self, key: str) -> int:
        """Whole seconds until ``key`` has a token again."""
        missing = 1.0 - self._level(key)
        return max(1, math.ceil(missing / self.rate))

    def __len__(self) -> int:
        return len(self._table)


def note_failure(request: web.Request, reason: str) -> None:
    """Charge the caller's failure bucket once this request is answered."""
    request[FAILED] = reason


def rate_limit_middleware(
    limits: HttpLimits, access_of: Mapping[tuple[str, str], Access], metrics: Metrics,
    clock: Callable[[], float] = time.monotonic,
) -> Middleware:
    public = Buckets(limits.public_rate_per_s, limits.public_burst, limits.tracked_addresses,
                     clock)
    failures = Buckets(limits.failures_per_s, limits.failure_burst, limits.tracked_addresses,
                       clock)

    def refuse(limit: str, buckets: Buckets, address: str, error: str) -> ApiError:
        metrics.rate_limited.inc(limit=limit)
        return ApiError(429, error, headers={"Retry-After": str(buckets.retry_after(address))})

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in UNLIMITED_PATHS:
            return await handler(request)
        address = request.remote or "unknown"
        if failures.empty(address):
            raise refuse("failures", failures, address,
                         "too many failed attempts from this address; retry later")
        match = request.match_info
        if match.http_exception is None:
            route = match.route
            canonical = route.resource.canonical if route.resource is not None else ""
            if access_of.get((route.method, canonical)) == "public" and not public.take(address):
                raise refuse("public", public, address,
                             "too many requests from this address; retry later")
        try:
            return await handler(request)
        finally:
            if FAILED in request:
                failures.charge(address)

    return limit
