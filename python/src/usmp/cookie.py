"""The stateless cookie of spec section 8.3, for a UDP server under load."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable

from .crypto import cookie_mac, macs_equal

COOKIE_SECRET_BYTES = 32
COOKIE_ROTATION_SECONDS = 120.0


def address_bytes(host: str, port: int) -> bytes:
    """``client_address`` of section 8.3: IPv4 (4 bytes) or IPv6 (16 bytes), then the port (u16)."""
    return ipaddress.ip_address(host).packed + port.to_bytes(2, "big")


class CookieJar:
    """Makes and checks cookies; the secret is replaced every 120 s and the previous one still accepted.

    Keeps no per-client state: one HMAC per cookie, no X25519.
    """

    def __init__(
        self, now: float, *, random: Callable[[int], bytes] = os.urandom, secret: bytes | None = None
    ) -> None:
        self._random = random
        self._current = secret if secret is not None else random(COOKIE_SECRET_BYTES)
        self._previous: bytes | None = None
        self._rotated_at = now

    def _rotate(self, now: float) -> None:
        elapsed = now - self._rotated_at
        if elapsed < COOKIE_ROTATION_SECONDS:
            return
        # After two periods the old current secret is too old to accept either.
        self._previous = self._current if elapsed < 2 * COOKIE_ROTATION_SECONDS else None
        self._current = self._random(COOKIE_SECRET_BYTES)
        self._rotated_at = now

    def make(self, client_address: bytes, hello_without_cookie: bytes, now: float) -> bytes:
        self._rotate(now)
        return cookie_mac(self._current, client_address, hello_without_cookie)

    def verify(self, client_address: bytes, hello_without_cookie: bytes, cookie: bytes, now: float) -> bool:
        self._rotate(now)
        valid = False
        for secret in (self._current, self._previous):
            if secret is not None:
                # Both compares run so the timing does not say which secret matched.
                valid |= macs_equal(cookie_mac(secret, client_address, hello_without_cookie), cookie)
        return valid
