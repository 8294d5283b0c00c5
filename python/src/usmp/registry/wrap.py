"""PSK wrapping at rest: AES-256-GCM under a key from the environment (docs/registry.md).

A wrapped PSK is ``nonce (12 bytes) || AES-256-GCM(wrap key, nonce, psk,
associated data = device id)``: a ciphertext moved to another device's row
does not decrypt. A registry records whether it wraps in its ``settings``
table, together with a check value (the wrap key's encryption of a fixed
text) so that a wrong key is refused when the registry is opened, not at
the first handshake.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

WRAP_KEY_ENV = "USMP_REGISTRY_WRAP_KEY"
WRAP_KEY_BYTES = 32
NONCE_BYTES = 12
_CHECK_TEXT = b"usmp registry wrap key check"
_CHECK_AD = b"usmp-registry"


class WrapError(Exception):
    """A wrapped value that does not decrypt: wrong key or altered data."""


def parse_wrap_key(text: str) -> bytes:
    """The wrap key from 64 hex digits; ValueError names what is wrong, never the value."""
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ValueError(f"{WRAP_KEY_ENV} is not valid hex") from None
    if len(key) != WRAP_KEY_BYTES:
        raise ValueError(f"{WRAP_KEY_ENV} is {len(key)} bytes; it must be {WRAP_KEY_BYTES} (64 hex digits)")
    return key


def wrap_key_from_environment(environ: Mapping[str, str] = os.environ) -> bytes | None:
    """The wrap key from ``USMP_REGISTRY_WRAP_KEY``, None when unset or empty; ValueError when malformed."""
    text = environ.get(WRAP_KEY_ENV)
    return parse_wrap_key(text) if text else None


class PskWrapper:
    def __init__(self, key: bytes) -> None:
        if len(key) != WRAP_KEY_BYTES:
            raise ValueError(f"the wrap key is {len(key)} bytes; it must be {WRAP_KEY_BYTES}")
        self._aead = AESGCM(key)

    def wrap(self, device_id: bytes, psk: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, psk, device_id)

    def unwrap(self, device_id: bytes, stored: bytes) -> bytes:
        try:
            return self._aead.decrypt(stored[:NONCE_BYTES], stored[NONCE_BYTES:], device_id)
        except (InvalidTag, ValueError):
            raise WrapError(f"the stored PSK of device {device_id.hex()} does not decrypt") from None

    def check_value(self) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, _CHECK_TEXT, _CHECK_AD)

    def matches(self, check_value: bytes) -> bool:
        try:
            return self._aead.decrypt(check_value[:NONCE_BYTES], check_value[NONCE_BYTES:], _CHECK_AD) == _CHECK_TEXT
        except (InvalidTag, ValueError):
            return False
