/*
 * usmp_ed25519_libsodium.c - Ed25519 verification for the crypto seam from
 * libsodium, for the mbedTLS backend, which has none (firmware updates,
 * spec/ota.md: the manifest signature).
 *
 * Linked beside crypto/common and the mbedTLS backend built with
 * USMP_ED25519_EXTERNAL=1, as crypto/x25519 provides X25519. On the host it
 * links Debian's libsodium-dev; ESP-IDF has an official libsodium
 * component. crypto/common has checked the arguments already.
 *
 * crypto_sign_verify_detached is pure Ed25519 (RFC 8032): it rejects a
 * non-canonical S (S >= L), a small-order R or public key and a public key
 * that does not decode, all as a failed verification: the seam's AUTH,
 * which is what Wycheproof's ed25519_test.json expects for its invalid
 * cases (tests/unit/test_crypto.c).
 */
#include "../common/usmp_crypto_internal.h"

#include <sodium/crypto_sign_ed25519.h>

int usmp_backend_ed25519_verify(const uint8_t public_key[USMP_ED25519_PUBLIC_BYTES],
                                const uint8_t *message, size_t message_len,
                                const uint8_t signature[USMP_ED25519_SIGNATURE_BYTES])
{
    /* 0: valid; -1: any failure, which for a verification is the
     * signature's (the function allocates nothing and cannot fail
     * otherwise). */
    return crypto_sign_ed25519_verify_detached(signature, message, (unsigned long long)message_len,
                                               public_key) == 0
               ? USMP_CRYPTO_OK
               : USMP_CRYPTO_ERR_AUTH;
}
