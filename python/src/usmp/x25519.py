"""X25519 (RFC 7748) keys held by OpenSSL directly, for the handshake of spec section 5.

``cryptography`` 38 imports a raw private key through OpenSSL 3's decoders
(about 13 X25519 operations' worth) and has no call that returns a key's raw
public key without a DER round trip. Through libcrypto.py, a key made here
costs one scalar multiplication to generate or import (OpenSSL computes the
public key then) and none to read its public key, and one to agree. Where
libcrypto.py is unavailable, crypto.py uses ``cryptography`` instead; both
are tested against spec/vectors/handshake.json and against each other.
"""

from __future__ import annotations

from .libcrypto import LIBCRYPTO

KEY_BYTES = 32
_NID_X25519 = 1034  # <openssl/obj_mac.h>, the same in OpenSSL 1.1.1 and 3


def available() -> bool:
    return LIBCRYPTO is not None


class OpenSslX25519Key:
    """One X25519 private key in an OpenSSL ``EVP_PKEY``, freed when the object goes (or at :meth:`release`)."""

    __slots__ = ("_pkey", "public")

    def __init__(self, private: bytes | None = None) -> None:
        """Import ``private`` (32 bytes), or generate a key from OpenSSL's CSPRNG when it is ``None``."""
        if LIBCRYPTO is None:
            raise RuntimeError("libcrypto through cffi is not available here")
        ffi, lib = LIBCRYPTO
        if private is None:
            pkey = _generate()
        else:
            if len(private) != KEY_BYTES:
                raise ValueError(f"an X25519 private key is {KEY_BYTES} bytes, got {len(private)}")
            pkey = lib.EVP_PKEY_new_raw_private_key(_NID_X25519, ffi.NULL, bytes(private), KEY_BYTES)
            if pkey == ffi.NULL:
                lib.ERR_clear_error()
                raise ValueError("OpenSSL refused the X25519 private key")
        self._pkey = ffi.gc(pkey, lib.EVP_PKEY_free)
        out, length = ffi.new("unsigned char[]", KEY_BYTES), ffi.new("size_t *", KEY_BYTES)
        if lib.EVP_PKEY_get_raw_public_key(self._pkey, out, length) != 1 or length[0] != KEY_BYTES:
            lib.ERR_clear_error()
            raise RuntimeError("EVP_PKEY_get_raw_public_key failed")
        self.public: bytes = bytes(ffi.buffer(out, KEY_BYTES))

    def exchange(self, peer_public: bytes) -> bytes:
        """``X25519(self, peer_public)``; ``ValueError`` where OpenSSL refuses (an all-zero result)."""
        if len(peer_public) != KEY_BYTES:
            raise ValueError(f"an X25519 public key is {KEY_BYTES} bytes")
        assert LIBCRYPTO is not None
        ffi, lib = LIBCRYPTO
        if self._pkey is None:
            raise ValueError("the key was released")
        peer = lib.EVP_PKEY_new_raw_public_key(_NID_X25519, ffi.NULL, bytes(peer_public), KEY_BYTES)
        if peer == ffi.NULL:
            lib.ERR_clear_error()
            raise ValueError("OpenSSL refused the X25519 public key")
        peer = ffi.gc(peer, lib.EVP_PKEY_free)
        ctx = lib.EVP_PKEY_CTX_new(self._pkey, ffi.NULL)
        if ctx == ffi.NULL:
            raise MemoryError("EVP_PKEY_CTX_new failed")
        ctx = ffi.gc(ctx, lib.EVP_PKEY_CTX_free)
        out, length = ffi.new("unsigned char[]", KEY_BYTES), ffi.new("size_t *", KEY_BYTES)
        ok = (
            lib.EVP_PKEY_derive_init(ctx) == 1
            and lib.EVP_PKEY_derive_set_peer(ctx, peer) == 1
            and lib.EVP_PKEY_derive(ctx, out, length) == 1
            and length[0] == KEY_BYTES
        )
        ffi.release(ctx)
        ffi.release(peer)
        if not ok:
            # OpenSSL refuses an all-zero shared secret (a low-order peer key), and may
            # leave an error on this thread's queue, where cryptography would find it.
            lib.ERR_clear_error()
            raise ValueError("X25519 derivation failed")
        return bytes(ffi.buffer(out, KEY_BYTES))

    def release(self) -> None:
        """Free the key now; the object cannot agree on a secret after."""
        if self._pkey is not None and LIBCRYPTO is not None:
            LIBCRYPTO[0].release(self._pkey)
            self._pkey = None


def _generate() -> object:
    assert LIBCRYPTO is not None
    ffi, lib = LIBCRYPTO
    ctx = lib.EVP_PKEY_CTX_new_id(_NID_X25519, ffi.NULL)
    if ctx == ffi.NULL:
        raise MemoryError("EVP_PKEY_CTX_new_id failed")
    ctx = ffi.gc(ctx, lib.EVP_PKEY_CTX_free)
    pkey_out = ffi.new("EVP_PKEY **")
    ok = lib.EVP_PKEY_keygen_init(ctx) == 1 and lib.EVP_PKEY_keygen(ctx, pkey_out) == 1
    ffi.release(ctx)
    if not ok or pkey_out[0] == ffi.NULL:
        lib.ERR_clear_error()
        raise RuntimeError("X25519 key generation failed")
    return pkey_out[0]
