/*
 * usmp_aead.h - storage for one AES-256-GCM key set up once (the record
 * keys of spec section 6.1: one per direction and session).
 *
 * Public only because usmp_engine_t embeds two of these and must have a
 * size known at compile time; the functions that use it are the crypto
 * seam's (src/usmp_crypto.h, usmp_crypto_aead_*). Its contents are, with
 * USMP_AEAD_KEEP_CONTEXT 1 (usmp_options.h), the linked backend's context,
 * which holds the key schedule; with 0, the 32-byte key alone, each seal
 * and open setting a usmp_aead_storage_t up on the stack. A secret either
 * way.
 *
 * Conventions
 *  - All zero means "no key": a zeroed or wiped usmp_aead_t is ready for
 *    usmp_crypto_aead_init, and usmp_crypto_aead_wipe returns it to zero.
 *  - The size depends on the crypto backend, so the library and everything
 *    that includes its headers must agree on USMP_CRYPTO_OPENSSL and
 *    USMP_AEAD_CONTEXT_BYTES (the CMake target usmp_options carries both).
 */
#ifndef USMP_AEAD_H
#define USMP_AEAD_H

#include <stddef.h>
#include <stdint.h>

#include "usmp_options.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the library is linked with the OpenSSL backend (host builds), 0
 * for mbedTLS (devices, emulated targets, ESP-IDF). */
#ifndef USMP_CRYPTO_OPENSSL
#define USMP_CRYPTO_OPENSSL 0
#endif

/*
 * Bytes of backend context per key:
 *  - OpenSSL keeps its EVP_CIPHER_CTX on its own heap (the type is
 *    opaque), so the storage is the pointer to it;
 *  - mbedTLS keeps a whole mbedtls_gcm_context here (no heap of USMP's
 *    own; mbedTLS allocates the AES context inside it). Its size depends on
 *    the mbedTLS version, its configuration and the ABI (384 bytes for
 *    2.28 on the 32-bit emulated targets, 424 on x86-64): the CMake build
 *    (CMakeLists.txt) and targets/run.py measure it and pass it in; the
 *    default, for builds that do not (ESP-IDF, PlatformIO), is a ceiling
 *    not measured against ESP-IDF's own mbedTLS 3.x. The backend refuses
 *    to compile when the storage is
 *    too small (crypto/mbedtls, usmp_aead_fits_an_mbedtls_gcm_context):
 *    then set this to sizeof(mbedtls_gcm_context) of that build.
 */
#ifndef USMP_AEAD_CONTEXT_BYTES
#if USMP_CRYPTO_OPENSSL
#define USMP_AEAD_CONTEXT_BYTES 8u
#else
#define USMP_AEAD_CONTEXT_BYTES 512u
#endif
#endif

/* Storage for one backend context, aligned for any of its fields: inside
 * usmp_aead_t with USMP_AEAD_KEEP_CONTEXT 1, on the stack of each seal and
 * open with 0. */
typedef union {
    uint64_t align_u64;
    void *align_ptr;
    double align_double;
    uint8_t bytes[USMP_AEAD_CONTEXT_BYTES];
} usmp_aead_storage_t;

/* Bytes of an AES-256 key (spec section 6.1). */
#define USMP_AEAD_KEY_BYTES 32u

typedef struct {
#if USMP_AEAD_KEEP_CONTEXT
    /* The backend's context, key schedule included. */
    usmp_aead_storage_t context;
#else
    /* The key only: each call sets its context up from it and wipes it. */
    uint8_t key[USMP_AEAD_KEY_BYTES];
#endif
    /* 1 between usmp_crypto_aead_init and usmp_crypto_aead_wipe: seal and
     * open refuse storage without a key instead of using it. */
    uint8_t ready;
} usmp_aead_t;

#ifdef __cplusplus
}
#endif

#endif /* USMP_AEAD_H */
