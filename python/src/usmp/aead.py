"""AES-256-GCM for the record layer (spec section 6) with the key schedule kept per key.

``cryptography``'s ``AESGCM`` (38, Debian 12) makes a new OpenSSL cipher
context and runs the AES key schedule on every ``encrypt`` and ``decrypt``:
about 10 us per call, more than the cipher itself for a small record. Where
Debian's ``python3-cffi`` and OpenSSL's libcrypto are present,
:func:`new_aes_gcm` returns a :class:`KeptAesGcm` instead: one OpenSSL
context per key, keyed once, which each record only gives a new nonce.
Elsewhere it returns :class:`PlainAesGcm` (``AESGCM``), which gives the same bytes (both are tested
against spec/vectors/records.json and against each other).

Both answer ``encrypt(nonce, data, aad)`` and ``decrypt(nonce, data, aad)``
(``InvalidTag`` on a bad tag) and ``release()``. About wiping (spec 5.7, see
crypto.py): ``release()`` frees the OpenSSL context, which clears the key
schedule it holds; the engine calls it where the session's record keys die.
"""

from __future__ import annotations

import logging
from typing import Protocol, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .libcrypto import LIBCRYPTO

log = logging.getLogger("usmp.aead")

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
# From OpenSSL's <openssl/evp.h>; the same values in 1.1 and 3.
_EVP_CTRL_GCM_GET_TAG = 0x10
_EVP_CTRL_GCM_SET_TAG = 0x11
_ENCRYPT = 1
_DECRYPT = 0

_LIBCRYPTO = LIBCRYPTO


class Aead(Protocol):
    """What the record layer needs of an AES-256-GCM key (``AESGCM`` or :class:`KeptAesGcm`)."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


class KeptAesGcm:
    """One AES-256-GCM key in one OpenSSL context for its whole life (see the module docstring).

    One direction per object: the engine gives each of a session's two keys
    its own (records.RecordSender, records.RecordReceiver).
    """

    __slots__ = ("_ffi", "_lib", "_ctx", "_outlen", "_bytes_type")

    def __init__(self, key: bytes) -> None:
        if _LIBCRYPTO is None:
            raise RuntimeError("libcrypto through cffi is not available here")
        if len(key) != KEY_BYTES:
            raise ValueError(f"an AES-256-GCM key is {KEY_BYTES} bytes, got {len(key)}")
        ffi, lib = _LIBCRYPTO
        self._ffi, self._lib = ffi, lib
        ctx = lib.EVP_CIPHER_CTX_new()
        if ctx == ffi.NULL:
            raise MemoryError("EVP_CIPHER_CTX_new failed")
        # Freed (and its key schedule cleared) at release(), or when the object goes.
        self._ctx = ffi.gc(ctx, lib.EVP_CIPHER_CTX_free)
        # The key schedule is made here, once; the direction is set again per record.
        if lib.EVP_CipherInit_ex(self._ctx, lib.EVP_aes_256_gcm(), ffi.NULL, bytes(key), ffi.NULL, _ENCRYPT) != 1:
            lib.ERR_clear_error()
            raise ValueError("OpenSSL refused the AES-256-GCM key")
        self._outlen = ffi.new("int *")
        self._bytes_type = ffi.typeof("unsigned char[]")

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        """``ciphertext || tag``, as ``AESGCM.encrypt``."""
        ffi, lib, ctx, outlen = self._ffi, self._lib, self._ctx, self._outlen
        if type(data) is not bytes:
            data = bytes(data)
        self._start(nonce, _ENCRYPT, associated_data)
        out = ffi.new(self._bytes_type, len(data) + TAG_BYTES)
        if data and lib.EVP_CipherUpdate(ctx, out, outlen, data, len(data)) != 1:
            self._fail("EVP_CipherUpdate")
        if lib.EVP_CipherFinal_ex(ctx, out + len(data), outlen) != 1:
            self._fail("EVP_CipherFinal_ex")
        if lib.EVP_CIPHER_CTX_ctrl(ctx, _EVP_CTRL_GCM_GET_TAG, TAG_BYTES, out + len(data)) != 1:
            self._fail("EVP_CTRL_GCM_GET_TAG")
        return bytes(ffi.buffer(out, len(data) + TAG_BYTES))

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        """The plaintext, or ``InvalidTag`` (and no plaintext) if the tag does not verify."""
        if len(data) < TAG_BYTES:
            raise InvalidTag
        ffi, lib, ctx, outlen = self._ffi, self._lib, self._ctx, self._outlen
        if type(data) is not bytes:
            data = bytes(data)
        body_len = len(data) - TAG_BYTES
        self._start(nonce, _DECRYPT, associated_data)
        tag = ffi.new(self._bytes_type, data[body_len:])  # a copy: OpenSSL's ctrl takes a writable pointer
        if lib.EVP_CIPHER_CTX_ctrl(ctx, _EVP_CTRL_GCM_SET_TAG, TAG_BYTES, tag) != 1:
            self._fail("EVP_CTRL_GCM_SET_TAG")
        out = ffi.new(self._bytes_type, max(body_len, 1))
        if body_len and lib.EVP_CipherUpdate(ctx, out, outlen, data, body_len) != 1:
            self._fail("EVP_CipherUpdate")
        if lib.EVP_CipherFinal_ex(ctx, out + body_len, outlen) != 1:
            # A bad tag. OpenSSL may leave an error on this thread's queue, where
            # cryptography's next call would find it: clear it.
            lib.ERR_clear_error()
            raise InvalidTag
        return bytes(ffi.buffer(out, body_len))

    def release(self) -> None:
        """Free the context now (clearing the key schedule); the object cannot be used after."""
        if self._ctx is not None:
            self._ffi.release(self._ctx)
            self._ctx = None

    def _start(self, nonce: bytes, direction: int, associated_data: bytes | None) -> None:
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"the record nonce is {NONCE_BYTES} bytes")
        if self._ctx is None:
            raise ValueError("the key was released")
        ffi, lib, ctx = self._ffi, self._lib, self._ctx
        # A new nonce on the kept key: no key schedule, no allocation (spec 6.1 gives the nonce).
        if lib.EVP_CipherInit_ex(ctx, ffi.NULL, ffi.NULL, ffi.NULL, bytes(nonce), direction) != 1:
            self._fail("EVP_CipherInit_ex")
        if associated_data:
            if lib.EVP_CipherUpdate(ctx, ffi.NULL, self._outlen, bytes(associated_data), len(associated_data)) != 1:
                self._fail("EVP_CipherUpdate (associated data)")

    def _fail(self, call: str) -> None:
        self._lib.ERR_clear_error()
        raise RuntimeError(f"OpenSSL {call} failed")


class PlainAesGcm:
    """``cryptography``'s ``AESGCM`` behind the calls of :class:`KeptAesGcm` (it keeps no OpenSSL state)."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead: AESGCM | None = AESGCM(key)

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        return self._live().encrypt(nonce, data, associated_data)

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        return self._live().decrypt(nonce, data, associated_data)

    def release(self) -> None:
        self._aead = None

    def _live(self) -> AESGCM:
        if self._aead is None:
            raise ValueError("the key was released")
        return self._aead


RecordAead = Union[KeptAesGcm, PlainAesGcm]


def kept_context_available() -> bool:
    """Whether :func:`new_aes_gcm` gives :class:`KeptAesGcm` here (python3-cffi and libcrypto found)."""
    return _LIBCRYPTO is not None


def new_aes_gcm(key: bytes, *, kept: bool | None = None) -> RecordAead:
    """An AES-256-GCM key for one direction of a session: :class:`KeptAesGcm` where available.

    ``kept``: force one or the other (the tests compare them); ``None``: the
    fast one when it is available.
    """
    if kept is None:
        kept = _LIBCRYPTO is not None
    return KeptAesGcm(key) if kept else PlainAesGcm(key)
