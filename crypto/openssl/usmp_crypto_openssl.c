/*
 * usmp_crypto_openssl.c - the crypto seam on OpenSSL 3 (EVP API only).
 *
 * Arguments arrive checked and normalised by crypto/common (see
 * usmp_crypto_internal.h). Every EVP object is created and freed within one
 * call: nothing is cached, so the seam stays stateless and thread-safe, and
 * valgrind sees no leak on any path. OpenSSL's own error queue is left as
 * OpenSSL leaves it; the seam reports through its return codes only.
 */
#include "../common/usmp_crypto_internal.h"

#include <limits.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/params.h>
#include <openssl/proverr.h>

#if OPENSSL_VERSION_MAJOR < 3
#error "the OpenSSL backend needs OpenSSL 3 (EVP_MAC, EVP_PKEY_derive_set_peer_ex)"
#endif

/* The version of the headers the backend was built against; OpenSSL keeps
 * the ABI within a major version, and a compile-time string needs no buffer
 * (so no shared state). */
const char *usmp_crypto_backend_name(void)
{
    return "openssl " OPENSSL_VERSION_STR;
}

/* ---- X25519 ----------------------------------------------------------- */

int usmp_backend_x25519_base(uint8_t out[USMP_X25519_KEY_BYTES],
                             const uint8_t scalar[USMP_X25519_KEY_BYTES])
{
    EVP_PKEY *pkey;
    size_t len = USMP_X25519_KEY_BYTES;
    int rc = USMP_CRYPTO_ERR_INTERNAL;

    /* OpenSSL clamps the raw private key itself when it uses it. */
    pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, scalar, USMP_X25519_KEY_BYTES);
    if (pkey == NULL) {
        return USMP_CRYPTO_ERR_INTERNAL;
    }
    if (EVP_PKEY_get_raw_public_key(pkey, out, &len) == 1 && len == USMP_X25519_KEY_BYTES) {
        rc = USMP_CRYPTO_OK;
    }
    EVP_PKEY_free(pkey); /* frees the private key with a cleanse */
    return rc;
}

int usmp_backend_x25519(uint8_t out[USMP_X25519_KEY_BYTES],
                        const uint8_t scalar[USMP_X25519_KEY_BYTES],
                        const uint8_t u[USMP_X25519_KEY_BYTES])
{
    EVP_PKEY *own = NULL;
    EVP_PKEY *peer = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    size_t len = USMP_X25519_KEY_BYTES;
    int rc = USMP_CRYPTO_ERR_INTERNAL;

    own = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, scalar, USMP_X25519_KEY_BYTES);
    peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, u, USMP_X25519_KEY_BYTES);
    if (own == NULL || peer == NULL) {
        goto done;
    }
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, own, NULL);
    if (ctx == NULL || EVP_PKEY_derive_init(ctx) != 1) {
        goto done;
    }
    /* No peer validation: RFC 7748 defines X25519 for every 32-byte string
     * (twist points and non-canonical encodings included). The one unsafe
     * class, low-order points, shows up as the all-zero result below. */
    if (EVP_PKEY_derive_set_peer_ex(ctx, peer, 0) != 1) {
        goto done;
    }
    if (EVP_PKEY_derive(ctx, out, &len) == 1) {
        rc = len == USMP_X25519_KEY_BYTES ? USMP_CRYPTO_OK : USMP_CRYPTO_ERR_INTERNAL;
    } else {
        /* OpenSSL refuses an all-zero X25519 result itself, and raises
         * PROV_R_FAILED_DURING_DERIVATION for it and for nothing else in
         * this exchange; any other failure stays INTERNAL. */
        unsigned long e = ERR_peek_last_error();

        if (ERR_GET_LIB(e) == ERR_LIB_PROV &&
            ERR_GET_REASON(e) == PROV_R_FAILED_DURING_DERIVATION) {
            rc = USMP_CRYPTO_ERR_BAD_KEY;
        }
    }
done:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(peer);
    EVP_PKEY_free(own);
    return rc;
}

/* ---- SHA-256 and HMAC --------------------------------------------------- */

int usmp_backend_sha256(uint8_t digest[USMP_SHA256_BYTES], const usmp_slice_t *parts,
                        size_t part_count)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    size_t i;
    int rc = USMP_CRYPTO_ERR_INTERNAL;

    if (ctx == NULL || EVP_DigestInit_ex2(ctx, EVP_sha256(), NULL) != 1) {
        goto done;
    }
    for (i = 0; i < part_count; i++) {
        if (parts[i].len != 0 && EVP_DigestUpdate(ctx, parts[i].ptr, parts[i].len) != 1) {
            goto done;
        }
    }
    if (EVP_DigestFinal_ex(ctx, digest, &len) == 1 && len == USMP_SHA256_BYTES) {
        rc = USMP_CRYPTO_OK;
    }
done:
    EVP_MD_CTX_free(ctx);
    return rc;
}

int usmp_backend_hmac_sha256(uint8_t tag[USMP_HMAC_SHA256_BYTES], const uint8_t *key,
                             size_t key_len, const usmp_slice_list_t *lists, size_t list_count)
{
    /* OSSL_PARAM takes a non-const char *: a writable copy of the name
     * avoids casting away const. */
    char digest_name[] = "SHA256";
    OSSL_PARAM params[2];
    EVP_MAC *mac;
    EVP_MAC_CTX *ctx = NULL;
    size_t len = 0;
    size_t l;
    size_t i;
    int rc = USMP_CRYPTO_ERR_INTERNAL;

    mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    if (mac == NULL || (ctx = EVP_MAC_CTX_new(mac)) == NULL) {
        goto done;
    }
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0);
    params[1] = OSSL_PARAM_construct_end();
    /* key is never NULL here: for OpenSSL a NULL key means "keep the old
     * key", not "empty key". */
    if (EVP_MAC_init(ctx, key, key_len, params) != 1) {
        goto done;
    }
    for (l = 0; l < list_count; l++) {
        for (i = 0; i < lists[l].count; i++) {
            const usmp_slice_t *s = &lists[l].parts[i];

            if (s->len != 0 && EVP_MAC_update(ctx, s->ptr, s->len) != 1) {
                goto done;
            }
        }
    }
    if (EVP_MAC_final(ctx, tag, &len, USMP_HMAC_SHA256_BYTES) == 1 &&
        len == USMP_HMAC_SHA256_BYTES) {
        rc = USMP_CRYPTO_OK;
    }
done:
    EVP_MAC_CTX_free(ctx); /* cleanses the keyed HMAC state */
    EVP_MAC_free(mac);
    return rc;
}

/* ---- AES-256-GCM ------------------------------------------------------ */

/* Lengths are at most USMP_GCM_MAX_INPUT_BYTES, which the seam chose below
 * INT_MAX for exactly this API. */
#if USMP_GCM_MAX_INPUT_BYTES > INT_MAX
#error "USMP_GCM_MAX_INPUT_BYTES must fit the int lengths of EVP_CipherUpdate"
#endif

int usmp_backend_gcm_seal(uint8_t *out, const uint8_t key[USMP_AES256_KEY_BYTES],
                          const uint8_t nonce[USMP_GCM_NONCE_BYTES], const uint8_t *aad,
                          size_t aad_len, const uint8_t *pt, size_t pt_len)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int outl = 0;
    int rc = USMP_CRYPTO_ERR_INTERNAL;

    /* The GCM default IV length is 12 bytes, so no SET_IVLEN is needed. */
    if (ctx == NULL || EVP_EncryptInit_ex2(ctx, EVP_aes_256_gcm(), key, nonce, NULL) != 1) {
        goto done;
    }
    if (aad_len != 0 && EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int)aad_len) != 1) {
        goto done;
    }
    /* OpenSSL allows out == in for GCM (and rejects partial overlap). */
    if (pt_len != 0 &&
        (EVP_EncryptUpdate(ctx, out, &outl, pt, (int)pt_len) != 1 || (size_t)outl != pt_len)) {
        goto done;
    }
    if (EVP_EncryptFinal_ex(ctx, out + pt_len, &outl) != 1 || outl != 0) {
        goto done;
    }
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, USMP_GCM_TAG_BYTES, out + pt_len) == 1) {
        rc = USMP_CRYPTO_OK;
    }
done:
    EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
    return rc;
}

int usmp_backend_gcm_open(uint8_t *out, const uint8_t key[USMP_AES256_KEY_BYTES],
                          const uint8_t nonce[USMP_GCM_NONCE_BYTES], const uint8_t *aad,
                          size_t aad_len, const uint8_t *ct, size_t ct_len,
                          const uint8_t tag[USMP_GCM_TAG_BYTES])
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint8_t tag_copy[USMP_GCM_TAG_BYTES];
    uint8_t final_block[16];
    int outl = 0;
    int rc = USMP_CRYPTO_ERR_INTERNAL;

    /* The ctrl takes a non-const pointer. */
    memcpy(tag_copy, tag, sizeof tag_copy);
    if (ctx == NULL || EVP_DecryptInit_ex2(ctx, EVP_aes_256_gcm(), key, nonce, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, USMP_GCM_TAG_BYTES, tag_copy) != 1) {
        goto done;
    }
    if (aad_len != 0 && EVP_DecryptUpdate(ctx, NULL, &outl, aad, (int)aad_len) != 1) {
        goto done;
    }
    if (ct_len != 0 &&
        (EVP_DecryptUpdate(ctx, out, &outl, ct, (int)ct_len) != 1 || (size_t)outl != ct_len)) {
        goto done;
    }
    /* For GCM the final call only compares the tag (in constant time):
     * its failure is the authentication failure. */
    rc = EVP_DecryptFinal_ex(ctx, final_block, &outl) == 1 ? USMP_CRYPTO_OK : USMP_CRYPTO_ERR_AUTH;
done:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

/* ---- Ed25519 ------------------------------------------------------------ */

int usmp_backend_ed25519_verify(const uint8_t public_key[USMP_ED25519_PUBLIC_BYTES],
                                const uint8_t *message, size_t message_len,
                                const uint8_t signature[USMP_ED25519_SIGNATURE_BYTES])
{
    EVP_PKEY *pkey;
    EVP_MD_CTX *ctx = NULL;
    int ok;
    int rc = USMP_CRYPTO_ERR_INTERNAL;

    /* Import only stores the 32 bytes; a point that does not decode is
     * found by the verification and reported as a bad signature. */
    pkey =
        EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, public_key, USMP_ED25519_PUBLIC_BYTES);
    if (pkey == NULL || (ctx = EVP_MD_CTX_new()) == NULL) {
        goto done;
    }
    /* Pure Ed25519 takes no digest name and hashes the message itself. */
    if (EVP_DigestVerifyInit_ex(ctx, NULL, NULL, NULL, NULL, pkey, NULL) != 1) {
        goto done;
    }
    /* 1 is a valid signature, 0 an invalid one (bad encoding, S >= L or a
     * failed equation alike); anything else is an error of the library. */
    ok = EVP_DigestVerify(ctx, signature, USMP_ED25519_SIGNATURE_BYTES, message, message_len);
    if (ok == 1) {
        rc = USMP_CRYPTO_OK;
    } else if (ok == 0) {
        rc = USMP_CRYPTO_ERR_AUTH;
    }
done:
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    return rc;
}
