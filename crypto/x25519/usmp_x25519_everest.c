/*
 * usmp_x25519_everest.c - X25519 for the crypto seam from the HACL* code
 * that mbedTLS ships in 3rdparty/everest (formally verified, Project
 * Everest), called through its own Hacl_Curve25519_crypto_scalarmult.
 *
 * The "small" device crypto profile (docs/crypto.md): everything from
 * mbedTLS's source tree, and of X25519 only the Montgomery ladder, with no
 * bignum/ECP module and no heap. mbedTLS's own API for it
 * (mbedtls_ecdh_* with MBEDTLS_ECDH_VARIANT_EVEREST_ENABLED) would keep the
 * generic ECP code linked as well, hence the direct call. Built from
 * 3rdparty/everest's 32-bit ("legacy") variant: kremlib's uint128 emulation
 * and legacy/Hacl_Curve25519.c, on every target and on the host, so the
 * host tests run the code the devices run.
 *
 * Hacl clamps the scalar itself (RFC 7748 section 5) and masks bit 255 of u.
 * It reports nothing: a low-order point gives an all-zero result, which
 * crypto/common turns into USMP_CRYPTO_ERR_BAD_KEY.
 */
#include "../common/usmp_crypto_internal.h"

#include <string.h>

#include "everest/Hacl_Curve25519.h"

int usmp_backend_x25519(uint8_t out[USMP_X25519_KEY_BYTES],
                        const uint8_t scalar[USMP_X25519_KEY_BYTES], const uint8_t *own_public,
                        const uint8_t u[USMP_X25519_KEY_BYTES])
{
    /* Hacl's prototype takes non-const pointers but writes only `mypublic`:
     * private copies keep the seam's const promise without a cast. */
    uint8_t k[USMP_X25519_KEY_BYTES];
    uint8_t point[USMP_X25519_KEY_BYTES];

    (void)own_public; /* the ladder needs only the scalar */
    memcpy(k, scalar, sizeof k);
    memcpy(point, u, sizeof point);
    Hacl_Curve25519_crypto_scalarmult(out, k, point);
    usmp_crypto_wipe(k, sizeof k);
    return USMP_CRYPTO_OK;
}

int usmp_backend_x25519_base(uint8_t out[USMP_X25519_KEY_BYTES],
                             const uint8_t scalar[USMP_X25519_KEY_BYTES])
{
    static const uint8_t nine[USMP_X25519_KEY_BYTES] = { 9 };

    return usmp_backend_x25519(out, scalar, NULL, nine);
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
