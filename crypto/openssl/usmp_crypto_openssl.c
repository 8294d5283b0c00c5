/*
 * usmp_crypto_openssl.c - the crypto seam on OpenSSL 3 (EVP API only).
 *
 * Arguments arrive checked and normalised by crypto/common (see
 * usmp_crypto_internal.h). OpenSSL's own error queue is left as OpenSSL
 * leaves it; the seam reports through its return codes only.
 *
 * What is kept between calls, and why that is thread-safe:
 *  - the algorithm objects (SHA-256, which HMAC and HKDF are built on, and
 *    AES-256-GCM) are fetched once per process (fetch_objects below),
 *    because OpenSSL 3 looks an algorithm up by name on every implicit
 *    fetch (EVP_sha256() and friends), which costs more than hashing a
 *    short input. CRYPTO_THREAD_run_once fetches them exactly once,
 *    whichever thread comes first, and publishes them to every thread that
 *    passes it; afterwards they are only read: passed to
 *    EVP_DigestInit_ex2 and EVP_CipherInit_ex2, which take their own
 *    reference atomically, and OpenSSL documents fetched algorithm objects
 *    as shareable between threads. They live until the process ends
 *    (valgrind: "still reachable", never "lost");
 *  - a usmp_aead_t holds one EVP_CIPHER_CTX with its key schedule, owned by
 *    whoever owns the usmp_aead_t (one engine: one thread at a time).
 * Every other EVP object is created and freed within one call.
 */
#include "../common/usmp_crypto_internal.h"

#include <limits.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/params.h>
#include <openssl/proverr.h>

#if OPENSSL_VERSION_MAJOR < 3
#error                                                                                             \
    "the OpenSSL backend needs OpenSSL 3 (EVP_*_fetch, EVP_PKEY_fromdata, EVP_PKEY_derive_set_peer_ex)"
#endif

/* usmp_aead.h sizes usmp_aead_t for this backend only when told so. */
#if !USMP_CRYPTO_OPENSSL
#error "the OpenSSL backend needs USMP_CRYPTO_OPENSSL=1 (usmp_aead.h; CMake's usmp_options sets it)"
#endif
typedef char
    usmp_aead_holds_a_pointer[sizeof(EVP_CIPHER_CTX *) <= USMP_AEAD_CONTEXT_BYTES ? 1 : -1];

/* ---- algorithm objects fetched once (see the top of this file) ---------- */

static CRYPTO_ONCE fetch_once = CRYPTO_ONCE_STATIC_INIT;
static EVP_MD *fetched_sha256;
static EVP_CIPHER *fetched_aes256gcm;
static int fetched_ok;

static void fetch_objects(void)
{
    fetched_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    fetched_aes256gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    fetched_ok = fetched_sha256 != NULL && fetched_aes256gcm != NULL;
}

/* 1 when the fetched objects are there to use. */
static int objects_ready(void)
{
    return CRYPTO_THREAD_run_once(&fetch_once, fetch_objects) == 1 && fetched_ok;
}

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

/* The X25519 key pair (scalar, public_key) as a key object, imported as is:
 * EVP_PKEY_new_raw_private_key would compute the public key from the
 * scalar, one more X25519 operation, which the caller already did. */
static EVP_PKEY *import_key_pair(const uint8_t scalar[USMP_X25519_KEY_BYTES],
                                 const uint8_t public_key[USMP_X25519_KEY_BYTES])
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "X25519", NULL);
    EVP_PKEY *pkey = NULL;
    uint8_t priv[USMP_X25519_KEY_BYTES];
    uint8_t pub[USMP_X25519_KEY_BYTES];
    OSSL_PARAM params[3];

    /* OSSL_PARAM takes non-const pointers: private copies, the secret one
     * wiped below. */
    memcpy(priv, scalar, sizeof priv);
    memcpy(pub, public_key, sizeof pub);
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PRIV_KEY, priv, sizeof priv);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof pub);
    params[2] = OSSL_PARAM_construct_end();
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params) != 1) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    usmp_crypto_wipe(priv, sizeof priv);
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

/* out = X25519(own's scalar, u). OpenSSL clamps the raw private key itself
 * when it uses it; the result depends on the scalar only, never on the
 * public key stored beside it. */
static int derive_shared(uint8_t out[USMP_X25519_KEY_BYTES], EVP_PKEY *own,
                         const uint8_t u[USMP_X25519_KEY_BYTES])
{
    EVP_PKEY *peer;
    EVP_PKEY_CTX *ctx = NULL;
    size_t len = USMP_X25519_KEY_BYTES;
    int rc = USMP_CRYPTO_ERR_INTERNAL;

    peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, u, USMP_X25519_KEY_BYTES);
    if (peer == NULL) {
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
    return rc;
}

int usmp_backend_x25519(uint8_t out[USMP_X25519_KEY_BYTES],
                        const uint8_t scalar[USMP_X25519_KEY_BYTES], const uint8_t *own_public,
                        const uint8_t u[USMP_X25519_KEY_BYTES])
{
    EVP_PKEY *own;
    int rc = USMP_CRYPTO_ERR_INTERNAL;

    if (own_public != NULL) {
        own = import_key_pair(scalar, own_public);
    } else {
        own = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, scalar, USMP_X25519_KEY_BYTES);
    }
    if (own != NULL) {
        rc = derive_shared(out, own, u);
    }
    EVP_PKEY_free(own); /* frees the private key with a cleanse */
    return rc;
}

int usmp_backend_x25519_pair(uint8_t public_key[USMP_X25519_KEY_BYTES],
                             uint8_t out[USMP_X25519_KEY_BYTES],
                             const uint8_t scalar[USMP_X25519_KEY_BYTES],
                             const uint8_t u[USMP_X25519_KEY_BYTES])
{
    size_t len = USMP_X25519_KEY_BYTES;
    int rc = USMP_CRYPTO_ERR_INTERNAL;
    /* One key object for both: importing the scalar computes the public
     * key, and the same object then derives the shared secret. */
    EVP_PKEY *own =
        EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, scalar, USMP_X25519_KEY_BYTES);

    if (own != NULL && EVP_PKEY_get_raw_public_key(own, public_key, &len) == 1 &&
        len == USMP_X25519_KEY_BYTES) {
        rc = derive_shared(out, own, u);
    }
    EVP_PKEY_free(own);
    return rc;
}

/* ---- SHA-256 and HMAC --------------------------------------------------- */

int usmp_backend_sha256(uint8_t digest[USMP_SHA256_BYTES], const usmp_slice_t *parts,
                        size_t part_count)
{
    EVP_MD_CTX *ctx = NULL;
    unsigned int len = 0;
    size_t i;
    int rc = USMP_CRYPTO_ERR_INTERNAL;

    if (!objects_ready() || (ctx = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestInit_ex2(ctx, fetched_sha256, NULL) != 1) {
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

/* HMAC-SHA256 (RFC 2104) on the fetched SHA-256, with one digest context:
 * H((K ^ opad) || H((K ^ ipad) || m)). EVP_MAC's HMAC does the same work
 * behind a provider context holding three digest contexts, set up on every
 * call (or copied from a template): measured on OpenSSL 3.0, about 0.8 us
 * per short HMAC that way against 0.35 us here, and a handshake runs some
 * fifteen of them (docs/performance.md). The Wycheproof HMAC-SHA256 vectors
 * (tests/unit/test_crypto.c) check this construction. */
#define SHA256_BLOCK_BYTES 64u

int usmp_backend_hmac_sha256(uint8_t tag[USMP_HMAC_SHA256_BYTES], const uint8_t *key,
                             size_t key_len, const usmp_slice_list_t *lists, size_t list_count)
{
    uint8_t block[SHA256_BLOCK_BYTES];
    uint8_t inner[USMP_SHA256_BYTES];
    EVP_MD_CTX *ctx = NULL;
    unsigned int len = 0;
    size_t l;
    size_t i;
    int rc = USMP_CRYPTO_ERR_INTERNAL;

    memset(block, 0, sizeof block);
    if (!objects_ready() || (ctx = EVP_MD_CTX_new()) == NULL) {
        goto done;
    }
    /* A key longer than the block is replaced by its digest; a shorter one
     * is padded with zeroes (RFC 2104 section 2). */
    if (key_len > sizeof block) {
        if (EVP_DigestInit_ex2(ctx, fetched_sha256, NULL) != 1 ||
            EVP_DigestUpdate(ctx, key, key_len) != 1 || EVP_DigestFinal_ex(ctx, block, &len) != 1) {
            goto done;
        }
    } else if (key_len != 0) {
        memcpy(block, key, key_len);
    }
    for (i = 0; i < sizeof block; i++) {
        block[i] ^= 0x36u; /* ipad */
    }
    if (EVP_DigestInit_ex2(ctx, fetched_sha256, NULL) != 1 ||
        EVP_DigestUpdate(ctx, block, sizeof block) != 1) {
        goto done;
    }
    for (l = 0; l < list_count; l++) {
        for (i = 0; i < lists[l].count; i++) {
            const usmp_slice_t *s = &lists[l].parts[i];

            if (s->len != 0 && EVP_DigestUpdate(ctx, s->ptr, s->len) != 1) {
                goto done;
            }
        }
    }
    if (EVP_DigestFinal_ex(ctx, inner, &len) != 1 || len != sizeof inner) {
        goto done;
    }
    for (i = 0; i < sizeof block; i++) {
        block[i] ^= 0x36u ^ 0x5cu; /* ipad off, opad on */
    }
    if (EVP_DigestInit_ex2(ctx, fetched_sha256, NULL) == 1 &&
        EVP_DigestUpdate(ctx, block, sizeof block) == 1 &&
        EVP_DigestUpdate(ctx, inner, sizeof inner) == 1 &&
        EVP_DigestFinal_ex(ctx, tag, &len) == 1 && len == USMP_HMAC_SHA256_BYTES) {
        rc = USMP_CRYPTO_OK;
    }
done:
    usmp_crypto_wipe(block, sizeof block);
    usmp_crypto_wipe(inner, sizeof inner);
    EVP_MD_CTX_free(ctx); /* cleanses the keyed digest state */
    return rc;
}

/* ---- AES-256-GCM ------------------------------------------------------ */

/* Lengths are at most USMP_GCM_MAX_INPUT_BYTES, which the seam chose below
 * INT_MAX for exactly this API. */
#if USMP_GCM_MAX_INPUT_BYTES > INT_MAX
#error "USMP_GCM_MAX_INPUT_BYTES must fit the int lengths of EVP_CipherUpdate"
#endif

/* The storage of a usmp_aead_t holds the pointer to the EVP_CIPHER_CTX.
 * memcpy, not a cast: the storage is bytes, and reading them as a pointer
 * through a cast would break the aliasing rules. */
static EVP_CIPHER_CTX *aead_ctx(const void *context)
{
    EVP_CIPHER_CTX *ctx;

    memcpy(&ctx, context, sizeof ctx);
    return ctx;
}

int usmp_backend_aead_init(void *context, const uint8_t key[USMP_AES256_KEY_BYTES])
{
    EVP_CIPHER_CTX *ctx;

    if (!objects_ready() || (ctx = EVP_CIPHER_CTX_new()) == NULL) {
        return USMP_CRYPTO_ERR_INTERNAL;
    }
    /* The key schedule (and GHASH key) is computed here, once; each record
     * then only sets its nonce. The direction chosen here is changed by
     * every seal or open. The GCM default IV length is 12 bytes, so no
     * SET_IVLEN is needed. */
    if (EVP_CipherInit_ex2(ctx, fetched_aes256gcm, key, NULL, 1, NULL) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return USMP_CRYPTO_ERR_INTERNAL;
    }
    memcpy(context, &ctx, sizeof ctx);
    return USMP_CRYPTO_OK;
}

int usmp_backend_aead_seal(void *context, uint8_t *out, const uint8_t nonce[USMP_GCM_NONCE_BYTES],
                           const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len)
{
    EVP_CIPHER_CTX *ctx = aead_ctx(context);
    int outl = 0;

    /* No cipher, no key: only the nonce (and direction) change, and the
     * provider restarts GCM with the key schedule it kept. */
    if (EVP_EncryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1) {
        return USMP_CRYPTO_ERR_INTERNAL;
    }
    if (aad_len != 0 && EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int)aad_len) != 1) {
        return USMP_CRYPTO_ERR_INTERNAL;
    }
    /* OpenSSL allows out == in for GCM (and rejects partial overlap). */
    if (pt_len != 0 &&
        (EVP_EncryptUpdate(ctx, out, &outl, pt, (int)pt_len) != 1 || (size_t)outl != pt_len)) {
        return USMP_CRYPTO_ERR_INTERNAL;
    }
    if (EVP_EncryptFinal_ex(ctx, out + pt_len, &outl) != 1 || outl != 0) {
        return USMP_CRYPTO_ERR_INTERNAL;
    }
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, USMP_GCM_TAG_BYTES, out + pt_len) != 1) {
        return USMP_CRYPTO_ERR_INTERNAL;
    }
    return USMP_CRYPTO_OK;
}

int usmp_backend_aead_open(void *context, uint8_t *out, const uint8_t nonce[USMP_GCM_NONCE_BYTES],
                           const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len,
                           const uint8_t tag[USMP_GCM_TAG_BYTES])
{
    EVP_CIPHER_CTX *ctx = aead_ctx(context);
    uint8_t tag_copy[USMP_GCM_TAG_BYTES];
    uint8_t final_block[16];
    int outl = 0;

    /* The ctrl takes a non-const pointer. */
    memcpy(tag_copy, tag, sizeof tag_copy);
    if (EVP_DecryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, USMP_GCM_TAG_BYTES, tag_copy) != 1) {
        return USMP_CRYPTO_ERR_INTERNAL;
    }
    if (aad_len != 0 && EVP_DecryptUpdate(ctx, NULL, &outl, aad, (int)aad_len) != 1) {
        return USMP_CRYPTO_ERR_INTERNAL;
    }
    if (ct_len != 0 &&
        (EVP_DecryptUpdate(ctx, out, &outl, ct, (int)ct_len) != 1 || (size_t)outl != ct_len)) {
        return USMP_CRYPTO_ERR_INTERNAL;
    }
    /* For GCM the final call only compares the tag (in constant time):
     * its failure is the authentication failure. */
    return EVP_DecryptFinal_ex(ctx, final_block, &outl) == 1 ? USMP_CRYPTO_OK
                                                             : USMP_CRYPTO_ERR_AUTH;
}

void usmp_backend_aead_release(void *context)
{
    EVP_CIPHER_CTX_free(aead_ctx(context)); /* cleanses the key schedule */
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
