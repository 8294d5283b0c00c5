/*
 * usmp_x25519_libsodium.c - X25519 for the crypto seam from libsodium.
 *
 * The "fast" device crypto profile (docs/crypto.md): libsodium's X25519
 * (its portable ref10 field arithmetic, 25.5-bit limbs on 32-bit targets)
 * with mbedTLS for everything else. Link it beside crypto/common and the
 * mbedTLS backend built with USMP_X25519_EXTERNAL=1. On the host it links
 * Debian's libsodium-dev; the emulated targets (targets/) compile the few
 * files of Debian's libsodium source package it needs.
 *
 * libsodium clamps the scalar itself (RFC 7748 section 5) and ignores bit
 * 255 of u, as crypto/common already cleared it. The base-point product
 * goes through libsodium's fixed-base Edwards tables: about 30 KB of flash,
 * the price of its speed (docs/footprint.md).
 */
#include "../common/usmp_crypto_internal.h"

#include <sodium/crypto_scalarmult_curve25519.h>

int usmp_backend_x25519_base(uint8_t out[USMP_X25519_KEY_BYTES],
                             const uint8_t scalar[USMP_X25519_KEY_BYTES])
{
    /* Fails only for a scalar whose clamped value gives the identity, which
     * clamping rules out; a failure is the library's own. */
    return crypto_scalarmult_curve25519_base(out, scalar) == 0 ? USMP_CRYPTO_OK
                                                               : USMP_CRYPTO_ERR_INTERNAL;
}

int usmp_backend_x25519(uint8_t out[USMP_X25519_KEY_BYTES],
                        const uint8_t scalar[USMP_X25519_KEY_BYTES], const uint8_t *own_public,
                        const uint8_t u[USMP_X25519_KEY_BYTES])
{
    /* libsodium returns -1 exactly when the result is all zero, i.e. for
     * the low-order points (RFC 7748 section 6.1): the seam's BAD_KEY.
     * crypto/common checks the result for zero as well. The ladder needs
     * only the scalar, not own_public. */
    (void)own_public;
    return crypto_scalarmult_curve25519(out, scalar, u) == 0 ? USMP_CRYPTO_OK
                                                             : USMP_CRYPTO_ERR_BAD_KEY;
}

int usmp_backend_x25519_pair(uint8_t public_key[USMP_X25519_KEY_BYTES],
                             uint8_t out[USMP_X25519_KEY_BYTES],
                             const uint8_t scalar[USMP_X25519_KEY_BYTES],
                             const uint8_t u[USMP_X25519_KEY_BYTES])
{
    /* Two ladders, as apart: nothing is shared between them here. */
    int rc = usmp_backend_x25519_base(public_key, scalar);

    return rc == USMP_CRYPTO_OK ? usmp_backend_x25519(out, scalar, public_key, u) : rc;
}
