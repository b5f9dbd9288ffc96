"""Token buckets per key (user, IP, action), answered with M_LIMIT_EXCEEDED and retry_after_ms.

Buckets live in process memory: with several workers behind a load balancer each enforces
its own share, which bounds abuse without a database round trip on every request.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from homeserver.config import RateLimit
from homeserver.http.errors import limit_exceeded
from homeserver.metrics import rate_limited

_MAX_KEYS = 100_000


class RateLimiter:
    def __init__(self, name: str, limit: RateLimit, enabled: bool = True):
        self.name = name
        self.rate = limit.per_second
        self.burst = float(limit.burst)
        self.enabled = enabled
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(
        self, key: str, cost: float = 1.0, *, override: tuple[int, int] | None = None
    ) -> None:
        """Takes `cost` from `key`'s bucket or raises M_LIMIT_EXCEEDED. `override` is an
        admin's (per second, burst) for this key; (0, 0) exempts it, as in Synapse."""
        if not self.enabled:
            return
        rate, burst = self.rate, self.burst
        if override is not None:
            if override == (0, 0):
                return
            rate, burst = float(override[0]), float(override[1])
        now = time.monotonic()
        tokens, stamp = self._buckets.pop(key, (burst, now))
        tokens = min(burst, tokens + (now - stamp) * rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            rate_limited.labels(self.name).inc()
            retry_ms = int((cost - tokens) / rate * 1000) + 1 if rate > 0 else 60_000
            raise limit_exceeded(retry_ms)
        self._buckets[key] = (tokens - cost, now)
        if len(self._buckets) > _MAX_KEYS:
            self._buckets.popitem(last=False)
