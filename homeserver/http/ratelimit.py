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

    def check(self, key: str, cost: float = 1.0) -> None:
        """Takes `cost` from `key`'s bucket or raises M_LIMIT_EXCEEDED."""
        if not self.enabled:
            return
        now = time.monotonic()
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            rate_limited.labels(self.name).inc()
            raise limit_exceeded(int((cost - tokens) / self.rate * 1000) + 1)
        self._buckets[key] = (tokens - cost, now)
        if len(self._buckets) > _MAX_KEYS:
            self._buckets.popitem(last=False)
