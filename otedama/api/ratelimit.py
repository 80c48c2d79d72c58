"""Token-bucket rate limits, pure: the caller passes ``now``.

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens a second; a request takes
one. An empty bucket answers how many seconds until the next token (the ``Retry-After``).
:class:`RateLimiter` keeps one bucket per key (a client IP, a token name), at most
``max_keys`` of them: the least recently used is forgotten first, so a flood of new
addresses costs bounded memory.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

#: Documented defaults (docs/api.md): per client IP, and per bearer token.
IP_RATE = 20.0
IP_BURST = 60
TOKEN_RATE = 50.0
TOKEN_BURST = 120
MAX_KEYS = 100_000


@dataclass
class TokenBucket:
    """One key's bucket."""

    rate: float
    burst: int
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take a token: 0.0 when allowed, else the seconds to wait for one."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Buckets per key with one rate and burst."""

    def __init__(self, rate: float, burst: int, max_keys: int = MAX_KEYS) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError(f"rate limits must be positive, got {rate}/s burst {burst}")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """0.0 when ``key`` may go on, else the seconds until it may."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self.burst, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after(wait: float) -> int:
    """The ``Retry-After`` header value (whole seconds, at least 1) for a wait."""
    return max(1, math.ceil(wait))
