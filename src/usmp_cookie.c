/*
 * usmp_cookie.c - the stateless UDP cookie (spec 8.3), declared in
 * usmp_engine.h. Only a datagram server computes cookies: with USMP_SERVER
 * or USMP_DATAGRAM off this file compiles to nothing.
 */
#include "usmp_engine.h"

#include <string.h>

#include "usmp_crypto.h"
#include "usmp_wire.h"

#if USMP_SERVER && USMP_DATAGRAM
int usmp_cookie_compute(uint8_t cookie[16], const uint8_t secret[32],
                        const uint8_t *client_address, size_t address_len,
                        const uint8_t *hello, size_t hello_len)
{
    static const uint8_t label[] = "usmp-v1 cookie";
    uint8_t full[USMP_HMAC_SHA256_BYTES];
    const usmp_slice_t parts[] = {
        { label, sizeof label - 1u },
        { client_address, address_len },
        { hello, hello_len },
    };
    int rc;

    if (cookie == NULL || secret == NULL || (client_address == NULL && address_len > 0) ||
        hello == NULL || hello_len != USMP_DATAGRAM_HANDSHAKE_HEADER_BYTES + USMP_HELLO_BODY_BYTES) {
        return USMP_ERR_ARG;
    }
    rc = usmp_crypto_hmac_sha256(full, secret, USMP_COOKIE_SECRET_BYTES, parts,
                                 sizeof parts / sizeof parts[0]);
    memcpy(cookie, full, USMP_COOKIE_BYTES);
    usmp_crypto_wipe(full, sizeof full);
    return rc == USMP_CRYPTO_OK ? USMP_OK : USMP_ERR_CRYPTO;
}
#endif
