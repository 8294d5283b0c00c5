"""Suite 1 (spec section 3): X25519, SHA-256, HMAC-SHA256/16, HKDF-SHA256, the key schedule (5.3-5.5)
and the client's ephemeral key (5.8).

About wiping (spec 5.7): Python cannot overwrite immutable ``bytes`` and the
cryptography package keeps its own copies inside OpenSSL objects, so this
implementation cannot truly wipe secrets. What it does instead is keep each
secret in as few places as possible and drop every reference at the point
where the spec says to wipe, so the memory can be reclaimed. Treat the
gateway process itself as holding the PSKs.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from typing import Union

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from . import x25519
from .errors import Condition, RemoteProtocolError
from .wire import MAC_BYTES, Mode
from .x25519 import OpenSslX25519Key

TRANSCRIPT_LABEL = b"usmp-v1 transcript"
KEY_SCHEDULE_INFO = b"usmp-v1"
CLIENT_FINISHED = b"client finished"
SERVER_FINISHED = b"server finished"
COOKIE_LABEL = b"usmp-v1 cookie"
CLIENT_EPHEMERAL_LABEL = b"usmp-v1 client ephemeral"
CLIENT_RANDOM_BYTES = 32
MAX_COUNTER = (1 << 64) - 1  # the counters of section 5.8 are u64
OKM_BYTES = 128
SHA256_BYTES = 32


def client_ephemeral_private(psk: bytes, boot_counter: int, connection_counter: int, random_output: bytes) -> bytes:
    """Section 5.8: the client's X25519 private key, HMAC-SHA256(PSK, label || u64 || u64 || R).

    Keyed with the PSK and fed two counters, so that a random source that
    repeats its output does not repeat the HELLO (security.md section 6).
    """
    if not (0 <= boot_counter <= MAX_COUNTER and 0 <= connection_counter <= MAX_COUNTER):
        raise ValueError("the counters of section 5.8 are 64-bit unsigned integers")
    if len(random_output) != CLIENT_RANDOM_BYTES:
        raise ValueError(f"R is {CLIENT_RANDOM_BYTES} bytes, got {len(random_output)}")
    message = CLIENT_EPHEMERAL_LABEL + boot_counter.to_bytes(8, "big") + connection_counter.to_bytes(8, "big")
    return hmac.new(psk, message + random_output, hashlib.sha256).digest()


# The u-coordinate 9 of RFC 7748 section 4.1: X25519(k, 9) is the public key of k.
_BASE_POINT = X25519PublicKey.from_public_bytes(b"\x09" + bytes(31))

# Whether keys are made by x25519.py (OpenSSL through cffi) rather than by cryptography:
# where it is available. Module-level so that the tests can run both paths.
X25519_OPENSSL = x25519.available()

# A private key object (made once and kept, see x25519_key), or 32 bytes to make one from.
KeyObject = Union[OpenSslX25519Key, X25519PrivateKey]
PrivateKey = Union[bytes, OpenSslX25519Key, X25519PrivateKey]


def x25519_key(private: PrivateKey) -> KeyObject:
    """The key object of a private key given as 32 bytes (an object is returned as it is).

    ``cryptography`` 38 on OpenSSL 3 imports raw private bytes through
    OpenSSL's decoders, which costs about ten X25519 operations; x25519.py
    imports them with one. Callers import a key once and pass the object
    around, or (the server, spec 5.8) take :func:`x25519_generate`'s.
    """
    if isinstance(private, (OpenSslX25519Key, X25519PrivateKey)):
        return private
    if X25519_OPENSSL:
        return OpenSslX25519Key(private)
    return X25519PrivateKey.from_private_bytes(private)


def x25519_generate() -> KeyObject:
    """A fresh key from OpenSSL's CSPRNG: the "32 random bytes" of a server's ephemeral key (5.8)."""
    return OpenSslX25519Key() if X25519_OPENSSL else X25519PrivateKey.generate()


def x25519_public(private: PrivateKey) -> bytes:
    """The public key: read from OpenSSL's key (x25519.py), or ``X25519(private, 9)``.

    ``cryptography``'s ``public_key().public_bytes()`` would go through a DER
    encoding and OpenSSL's decoders, several times slower than either.
    """
    key = x25519_key(private)
    if isinstance(key, OpenSslX25519Key):
        return key.public
    return key.exchange(_BASE_POINT)


def x25519_shared(private: PrivateKey, peer_public: bytes) -> bytes:
    """``X25519(private, peer_public)``; an all-zero result (a low-order peer key) fails with BAD_KEY.

    OpenSSL itself refuses to return an all-zero secret (it raises), so both
    paths lead to the same condition.
    """
    key = x25519_key(private)
    try:
        if isinstance(key, OpenSslX25519Key):
            shared = key.exchange(peer_public)
        else:
            shared = key.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:
        shared = bytes(32)
    if not any(shared):
        raise RemoteProtocolError(Condition.BAD_KEY, "the X25519 result is all zero")
    return shared


def mac16(key: bytes, *parts: bytes) -> bytes:
    """HMAC-SHA256 over the concatenation of ``parts``, truncated to 16 bytes."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()[:MAC_BYTES]


def macs_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison: a timing difference must not tell how many MAC bytes were right."""
    return hmac.compare_digest(a, b)


def transcript_hash(mode: Mode, hello_frame: bytes, challenge_frame: bytes) -> bytes:
    """TH (section 5.3). ``hello_frame`` is the HELLO as sent, without a datagram cookie."""
    return hashlib.sha256(TRANSCRIPT_LABEL + bytes((mode,)) + hello_frame + challenge_frame).digest()


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand of RFC 5869 section 2.3 with HMAC-SHA256.

    Written out with :mod:`hmac` (C code in the standard library): the
    ``cryptography`` object costs several times more for the four blocks
    of section 5.4.
    """
    if not 0 <= length <= 255 * SHA256_BYTES:
        raise ValueError(f"HKDF-SHA256 expands to at most {255 * SHA256_BYTES} bytes, not {length}")
    okm = b""
    block = b""
    for counter in range(1, -(-length // SHA256_BYTES) + 1):
        block = hmac.new(prk, block + info + bytes((counter,)), hashlib.sha256).digest()
        okm += block
    return okm[:length]


@dataclass(frozen=True)
class SessionKeys:
    """The four keys of section 5.4."""

    c2s: bytes
    s2c: bytes
    confirm_client: bytes
    confirm_server: bytes


def derive_keys(shared: bytes, psk: bytes, nonce: bytes, th: bytes) -> SessionKeys:
    """Section 5.4: PRK = Extract(nonce, dh || PSK); OKM = Expand(PRK, "usmp-v1" || TH, 128)."""
    okm = hkdf_expand(hkdf_extract(nonce, shared + psk), KEY_SCHEDULE_INFO + th, OKM_BYTES)
    return SessionKeys(okm[0:32], okm[32:64], okm[64:96], okm[96:128])


def client_finished(confirm_client: bytes, th: bytes) -> bytes:
    """HELLO_ACK.mac (section 5.5)."""
    return mac16(confirm_client, CLIENT_FINISHED, th)


def server_finished(confirm_server: bytes, th: bytes, hello_ack_frame: bytes, session_id: bytes) -> bytes:
    """SESSION_OK.mac (section 5.5): also covers the client's proof and the session id."""
    return mac16(confirm_server, SERVER_FINISHED, th, hello_ack_frame, session_id)


def cookie_mac(secret: bytes, client_address: bytes, hello_without_cookie: bytes) -> bytes:
    """The stateless cookie of section 8.3."""
    return mac16(secret, COOKIE_LABEL, client_address, hello_without_cookie)
