"""Per-source handshake rate limit (spec section 13): one token bucket per source prefix."""

from __future__ import annotations

import ipaddress
from collections import OrderedDict


def source_prefix(address: str, v4_prefix: int = 32, v6_prefix: int = 64) -> str:
    """The prefix ``address`` is counted under: its IPv4 /v4_prefix or IPv6 /v6_prefix network.

    One host usually owns a whole IPv6 /64, so counting per exact IPv6 address
    would let it pick a fresh source for every connection. An IPv4-mapped IPv6
    address (a dual-stack socket's view of an IPv4 peer) counts as that IPv4
    address. A source that is not an IP address (a Unix socket) is its own key.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = v4_prefix if ip.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


class HandshakeRateLimiter:
    """``allow(source, now)`` is False when the prefix of ``source`` has used up its bucket.

    Buckets start full (``burst`` tokens) and refill at ``rate`` per second.
    Addresses are folded to their prefix first (:func:`source_prefix`:
    IPv4 /32 and IPv6 /64 by default). At most ``max_sources`` buckets are
    kept; the least recently seen is forgotten first, which only ever makes
    the limiter more lenient, never lets memory grow without bound.
    """

    def __init__(
        self, rate: float, burst: int, max_sources: int = 4096, v4_prefix: int = 32, v6_prefix: int = 64
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max_sources = max_sources
        self._v4_prefix = v4_prefix
        self._v6_prefix = v6_prefix
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # prefix -> (tokens, time)

    def allow(self, source: str, now: float) -> bool:
        key = source_prefix(source, self._v4_prefix, self._v6_prefix)
        tokens, last = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_sources:
            self._buckets.popitem(last=False)
        return allowed
