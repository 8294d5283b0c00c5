"""Per-source-address handshake rate limit (spec section 13): one token bucket per address."""

from __future__ import annotations

from collections import OrderedDict


class HandshakeRateLimiter:
    """``allow(source, now)`` is False when ``source`` has used up its bucket.

    Buckets start full (``burst`` tokens) and refill at ``rate`` per second.
    At most ``max_sources`` buckets are kept; the least recently seen is
    forgotten first, which only ever makes the limiter more lenient, never
    lets memory grow without bound.
    """

    def __init__(self, rate: float, burst: int, max_sources: int = 4096) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # source -> (tokens, time)

    def allow(self, source: str, now: float) -> bool:
        tokens, last = self._buckets.pop(source, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[source] = (tokens, now)
        while len(self._buckets) > self._max_sources:
            self._buckets.popitem(last=False)
        return allowed
