"""OpenSSL's libcrypto through Debian's python3-cffi in ABI mode (no compiler): the few calls
that ``cryptography`` 38 makes slowly or not at all.

Used by aead.py (an AES-256-GCM context kept per key) and x25519.py (raw
X25519 keys without OpenSSL's decoders). :data:`LIBCRYPTO` is ``(ffi, lib)``,
or ``None`` where cffi or libcrypto is missing; the callers then fall back to
``cryptography``, which gives the same bytes.
"""

from __future__ import annotations

import ctypes.util
from typing import Any

# The inputs are declared `const char *` (the same ABI as OpenSSL's `const unsigned
# char *`) so that cffi passes a bytes object's own buffer, without a conversion call.
# Every declaration is the same in OpenSSL 1.1.1 and 3.
_CDEF = """
typedef struct evp_cipher_st EVP_CIPHER;
typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;
typedef struct engine_st ENGINE;
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
const EVP_CIPHER *EVP_aes_256_gcm(void);
EVP_CIPHER_CTX *EVP_CIPHER_CTX_new(void);
void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx);
int EVP_CipherInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, ENGINE *impl,
                      const char *key, const char *iv, int enc);
int EVP_CipherUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const char *in, int inl);
int EVP_CipherFinal_ex(EVP_CIPHER_CTX *ctx, unsigned char *outm, int *outl);
int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX *ctx, int type, int arg, void *ptr);
EVP_PKEY *EVP_PKEY_new_raw_private_key(int type, ENGINE *e, const char *priv, size_t len);
EVP_PKEY *EVP_PKEY_new_raw_public_key(int type, ENGINE *e, const char *pub, size_t len);
int EVP_PKEY_get_raw_public_key(const EVP_PKEY *pkey, unsigned char *pub, size_t *len);
void EVP_PKEY_free(EVP_PKEY *key);
EVP_PKEY_CTX *EVP_PKEY_CTX_new(EVP_PKEY *pkey, ENGINE *e);
EVP_PKEY_CTX *EVP_PKEY_CTX_new_id(int id, ENGINE *e);
void EVP_PKEY_CTX_free(EVP_PKEY_CTX *ctx);
int EVP_PKEY_keygen_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_keygen(EVP_PKEY_CTX *ctx, EVP_PKEY **ppkey);
int EVP_PKEY_derive_init(EVP_PKEY_CTX *ctx);
int EVP_PKEY_derive_set_peer(EVP_PKEY_CTX *ctx, EVP_PKEY *peer);
int EVP_PKEY_derive(EVP_PKEY_CTX *ctx, unsigned char *key, size_t *keylen);
void ERR_clear_error(void);
"""


def _load() -> tuple[Any, Any] | None:
    try:
        import cffi  # type: ignore[import]  # Debian's python3-cffi; no type stubs
    except ImportError:
        return None
    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    for name in ("libcrypto.so.3", "libcrypto.so.1.1", ctypes.util.find_library("crypto")):
        if not name:
            continue
        try:
            return ffi, ffi.dlopen(name)
        except OSError:
            continue
    return None


LIBCRYPTO = _load()
