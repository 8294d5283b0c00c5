/*
 * usmp_crypto_mbedtls.c - the crypto seam on mbedTLS.
 *
 * One source for mbedTLS 2.28 (Debian, host tests) and mbedTLS 3.x (ESP-IDF
 * 5). Only public functions are used, and no struct field is touched, so
 * 3.x's MBEDTLS_PRIVATE fields never matter. The API differences that do
 * matter are guarded by MBEDTLS_VERSION_MAJOR:
 *  - the streaming GCM calls (3.x split AAD into mbedtls_gcm_update_ad and
 *    gave update/finish output sizes);
 *  - mbedtls_ecp_mul needs an RNG in 3.x (it blinds the ladder); it gets one
 *    here in 2.28 too, from usmp_port_random.
 * HKDF is built on HMAC in crypto/common, so MBEDTLS_HKDF_C (off in ESP-IDF's
 * default sdkconfig) is not needed.
 *
 * mbedTLS has no Ed25519 in 2.28 or in any 3.x release:
 * usmp_crypto_ed25519_verify returns USMP_CRYPTO_ERR_UNSUPPORTED here,
 * unless the build defines USMP_ED25519_EXTERNAL=1 and links
 * crypto/ed25519/usmp_ed25519_libsodium.c (what USMP_OTA builds do).
 *
 * X25519 comes from mbedTLS's ECP module here unless the build defines
 * USMP_X25519_EXTERNAL=1 and links one of the providers of crypto/x25519/
 * (libsodium, or the HACL* code in mbedTLS's 3rdparty/everest) instead:
 * the device crypto profiles of docs/crypto.md. The core cannot tell.
 */
#include "../common/usmp_crypto_internal.h"
#include "usmp_port.h"

#include <stddef.h>
#include <string.h>

/* version.h pulls in the configuration in both lines: config.h in 2.x,
 * build_info.h in 3.x. */
#include "mbedtls/version.h"

#ifndef USMP_X25519_EXTERNAL
#define USMP_X25519_EXTERNAL 0
#endif
#ifndef USMP_ED25519_EXTERNAL
#define USMP_ED25519_EXTERNAL 0
#endif

#if !USMP_X25519_EXTERNAL
#include "mbedtls/bignum.h"
#include "mbedtls/ecp.h"
#endif
#include "mbedtls/gcm.h"
#include "mbedtls/md.h"

#if !defined(MBEDTLS_VERSION_MAJOR) || MBEDTLS_VERSION_MAJOR < 2 ||                                \
    (MBEDTLS_VERSION_MAJOR == 2 && MBEDTLS_VERSION_MINOR < 28)
#error "the mbedTLS backend needs mbedTLS 2.28 or 3.x"
#endif
#if MBEDTLS_VERSION_MAJOR > 3
#error "mbedTLS 4 moved these primitives behind PSA; this backend covers 2.28 and 3.x"
#endif

/* Fail at build time, with the option to turn on, rather than at run time. */
#if !USMP_X25519_EXTERNAL &&                                                                       \
    (!defined(MBEDTLS_ECP_C) || !defined(MBEDTLS_ECP_DP_CURVE25519_ENABLED))
#error "USMP needs MBEDTLS_ECP_C and MBEDTLS_ECP_DP_CURVE25519_ENABLED (X25519)"
#endif
#if !defined(MBEDTLS_GCM_C) || !defined(MBEDTLS_AES_C)
#error "USMP needs MBEDTLS_GCM_C and MBEDTLS_AES_C (AES-256-GCM)"
#endif
#if !defined(MBEDTLS_MD_C) || !defined(MBEDTLS_SHA256_C)
#error "USMP needs MBEDTLS_MD_C and MBEDTLS_SHA256_C (SHA-256, HMAC, HKDF)"
#endif

/* In-place GCM goes through a bounce buffer of this many bytes (a multiple
 * of 16, as 2.28's streaming update wants). Stack cost vs. calls per record;
 * a port may override it. */
#ifndef USMP_MBEDTLS_GCM_CHUNK
#define USMP_MBEDTLS_GCM_CHUNK 256u
#endif
#if USMP_MBEDTLS_GCM_CHUNK == 0 || USMP_MBEDTLS_GCM_CHUNK % 16 != 0
#error "USMP_MBEDTLS_GCM_CHUNK must be a nonzero multiple of 16"
#endif

/* Taken from the headers: MBEDTLS_VERSION_C (the run-time query) is often
 * off on embedded builds. */
const char *usmp_crypto_backend_name(void)
{
    return "mbedtls " MBEDTLS_VERSION_STRING;
}

/* mbedTLS error codes to seam codes, for calls where a refusal can only be
 * the library's own failure. */
static int internal_unless_ok(int ret)
{
    return ret == 0 ? USMP_CRYPTO_OK : USMP_CRYPTO_ERR_INTERNAL;
}

/* ---- X25519 ----------------------------------------------------------- */

#if !USMP_X25519_EXTERNAL

/* The ladder's projective coordinates are randomised with this (blinding
 * against side channels); the result does not depend on it. */
static int port_rng(void *unused, unsigned char *buf, size_t len)
{
    (void)unused;
    usmp_port_random(buf, len);
    return 0;
}

int usmp_backend_x25519(uint8_t out[USMP_X25519_KEY_BYTES],
                        const uint8_t scalar[USMP_X25519_KEY_BYTES], const uint8_t *own_public,
                        const uint8_t u[USMP_X25519_KEY_BYTES])
{
    mbedtls_ecp_group grp;
    mbedtls_ecp_point peer;
    mbedtls_ecp_point result;
    mbedtls_mpi d;
    uint8_t k[USMP_X25519_KEY_BYTES];
    size_t olen = 0;
    int ret;
    int rc = USMP_CRYPTO_ERR_INTERNAL;

    (void)own_public; /* the ladder needs only the scalar */
    mbedtls_ecp_group_init(&grp);
    mbedtls_ecp_point_init(&peer);
    mbedtls_ecp_point_init(&result);
    mbedtls_mpi_init(&d);

    /* RFC 7748 clamping. mbedtls_ecp_mul insists on an already clamped
     * scalar (mbedtls_ecp_check_privkey) rather than clamping itself. */
    memcpy(k, scalar, sizeof k);
    k[0] &= 0xF8;
    k[31] &= 0x7F;
    k[31] |= 0x40;

    if (mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_CURVE25519) != 0 ||
        mbedtls_mpi_read_binary_le(&d, k, sizeof k) != 0 ||
        /* Montgomery points are the little-endian u-coordinate alone. */
        mbedtls_ecp_point_read_binary(&grp, &peer, u, USMP_X25519_KEY_BYTES) != 0) {
        goto done;
    }
    /* mbedtls_ecp_mul runs mbedtls_ecp_check_pubkey, which for Curve25519
     * accepts any u (reducing u >= p, RFC 7748 section 5) except the
     * low-order points: those come back as INVALID_KEY, which is exactly
     * the seam's BAD_KEY (their X25519 result would be all zero). The
     * scalar check cannot fail after clamping. */
    ret = mbedtls_ecp_mul(&grp, &result, &d, &peer, port_rng, NULL);
    if (ret == MBEDTLS_ERR_ECP_INVALID_KEY) {
        rc = USMP_CRYPTO_ERR_BAD_KEY;
        goto done;
    }
    if (ret != 0) {
        goto done;
    }
    ret = mbedtls_ecp_point_write_binary(&grp, &result, MBEDTLS_ECP_PF_UNCOMPRESSED, &olen, out,
                                         USMP_X25519_KEY_BYTES);
    if (ret == 0 && olen == USMP_X25519_KEY_BYTES) {
        rc = USMP_CRYPTO_OK;
    }
done:
    usmp_crypto_wipe(k, sizeof k);
    mbedtls_mpi_free(&d); /* the free functions zeroise limbs */
    mbedtls_ecp_point_free(&result);
    mbedtls_ecp_point_free(&peer);
    mbedtls_ecp_group_free(&grp);
    return rc;
}

int usmp_backend_x25519_base(uint8_t out[USMP_X25519_KEY_BYTES],
                             const uint8_t scalar[USMP_X25519_KEY_BYTES])
{
    /* The base point u = 9, little-endian. Going through the same ladder as
     * the shared secret keeps one code path. */
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

#endif /* !USMP_X25519_EXTERNAL */

/* ---- SHA-256 and HMAC --------------------------------------------------- */

int usmp_backend_sha256(uint8_t digest[USMP_SHA256_BYTES], const usmp_slice_t *parts,
                        size_t part_count)
{
    const mbedtls_md_info_t *info = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    mbedtls_md_context_t ctx;
    size_t i;
    int ret;

    if (info == NULL) {
        return USMP_CRYPTO_ERR_INTERNAL;
    }
    /* The md layer has the same calls in 2.28 and 3.x (the sha256 module
     * renamed its _ret functions). */
    mbedtls_md_init(&ctx);
    ret = mbedtls_md_setup(&ctx, info, 0);
    if (ret == 0) {
        ret = mbedtls_md_starts(&ctx);
    }
    for (i = 0; ret == 0 && i < part_count; i++) {
        if (parts[i].len != 0) {
            ret = mbedtls_md_update(&ctx, parts[i].ptr, parts[i].len);
        }
    }
    if (ret == 0) {
        ret = mbedtls_md_finish(&ctx, digest);
    }
    mbedtls_md_free(&ctx);
    return internal_unless_ok(ret);
}

int usmp_backend_hmac_sha256(uint8_t tag[USMP_HMAC_SHA256_BYTES], const uint8_t *key,
                             size_t key_len, const usmp_slice_list_t *lists, size_t list_count)
{
    const mbedtls_md_info_t *info = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    mbedtls_md_context_t ctx;
    size_t l;
    size_t i;
    int ret;

    if (info == NULL) {
        return USMP_CRYPTO_ERR_INTERNAL;
    }
    mbedtls_md_init(&ctx);
    ret = mbedtls_md_setup(&ctx, info, 1);
    if (ret == 0) {
        ret = mbedtls_md_hmac_starts(&ctx, key, key_len);
    }
    for (l = 0; ret == 0 && l < list_count; l++) {
        for (i = 0; ret == 0 && i < lists[l].count; i++) {
            const usmp_slice_t *s = &lists[l].parts[i];

            if (s->len != 0) {
                ret = mbedtls_md_hmac_update(&ctx, s->ptr, s->len);
            }
        }
    }
    if (ret == 0) {
        ret = mbedtls_md_hmac_finish(&ctx, tag);
    }
    mbedtls_md_free(&ctx); /* zeroises the ipad/opad state */
    return internal_unless_ok(ret);
}

/* ---- AES-256-GCM ------------------------------------------------------ */

/*
 * GCM runs on the streaming calls, not on mbedtls_gcm_crypt_and_tag /
 * mbedtls_gcm_auth_decrypt, because the seam promises in-place operation
 * and mbedTLS does not: 2.28 and 3.2 document that decryption output may not
 * be the input buffer, and 3.6 warns that MBEDTLS_GCM_ALT (ESP-IDF's hardware
 * GCM) may not support overlapping buffers at all. So the library is never
 * given overlapping buffers: in place, each chunk is first copied to a stack
 * buffer. The tag is then compared here, in constant time.
 */

/* Starts one message under the key the context already holds. */
static int gcm_begin(mbedtls_gcm_context *ctx, int mode, const uint8_t nonce[USMP_GCM_NONCE_BYTES],
                     const uint8_t *aad, size_t aad_len)
{
    int ret;

#if MBEDTLS_VERSION_MAJOR >= 3
    ret = mbedtls_gcm_starts(ctx, mode, nonce, USMP_GCM_NONCE_BYTES);
    if (ret == 0 && aad_len != 0) {
        ret = mbedtls_gcm_update_ad(ctx, aad, aad_len);
    }
#else
    ret = mbedtls_gcm_starts(ctx, mode, nonce, USMP_GCM_NONCE_BYTES, aad, aad_len);
#endif
    return ret;
}

/* Feeds len bytes; output goes to out + *produced. 3.x may hold back a
 * partial block until finish (the documented "buffered output" mode of
 * alternative implementations), so the write position is what the library
 * reports, not the input position. out_end bounds the writable space. */
static int gcm_step(mbedtls_gcm_context *ctx, const uint8_t *in, size_t len, uint8_t *out,
                    size_t out_end, size_t *produced)
{
#if MBEDTLS_VERSION_MAJOR >= 3
    size_t olen = 0;
    int ret = mbedtls_gcm_update(ctx, in, len, out + *produced, out_end - *produced, &olen);

    if (ret == 0) {
        *produced += olen;
    }
    return ret;
#else
    /* 2.28 writes exactly len bytes; every call but the last is a multiple
     * of 16 (the chunk size), as it requires. */
    int ret = mbedtls_gcm_update(ctx, len, in, out + *produced);

    (void)out_end;
    if (ret == 0) {
        *produced += len;
    }
    return ret;
#endif
}

static int gcm_end(mbedtls_gcm_context *ctx, uint8_t *out, size_t out_end, size_t *produced,
                   uint8_t tag[USMP_GCM_TAG_BYTES])
{
#if MBEDTLS_VERSION_MAJOR >= 3
    size_t olen = 0;
    int ret = mbedtls_gcm_finish(ctx, out + *produced, out_end - *produced, &olen, tag,
                                 USMP_GCM_TAG_BYTES);

    if (ret == 0) {
        *produced += olen;
    }
    return ret;
#else
    (void)out;
    (void)out_end;
    (void)produced;
    return mbedtls_gcm_finish(ctx, tag, USMP_GCM_TAG_BYTES);
#endif
}

/* Runs the whole of in through the cipher into out (same length). When
 * in == out, each chunk is copied to a stack buffer first, so the library
 * reads from there; bytes before the chunk are already final, so the
 * library may overwrite the chunk's own bytes in out. */
static int gcm_run(mbedtls_gcm_context *ctx, const uint8_t *in, size_t len, uint8_t *out,
                   uint8_t tag[USMP_GCM_TAG_BYTES])
{
    uint8_t bounce[USMP_MBEDTLS_GCM_CHUNK];
    size_t pos = 0;
    size_t produced = 0;
    int ret = 0;

    if (in != out) {
        if (len != 0) {
            ret = gcm_step(ctx, in, len, out, len, &produced);
        }
    } else {
        while (ret == 0 && pos < len) {
            size_t n = len - pos;

            if (n > sizeof bounce) {
                n = sizeof bounce;
            }
            memcpy(bounce, in + pos, n);
            ret = gcm_step(ctx, bounce, n, out, len, &produced);
            pos += n;
        }
        /* On seal the bounce buffer held plaintext. */
        usmp_crypto_wipe(bounce, sizeof bounce);
    }
    if (ret == 0) {
        ret = gcm_end(ctx, out, len, &produced, tag);
    }
    if (ret == 0 && produced != len) {
        ret = MBEDTLS_ERR_GCM_BAD_INPUT;
    }
    return ret;
}

/* usmp_aead_t's storage holds the mbedtls_gcm_context itself (usmp_aead.h):
 * the engine keeps one per direction for the session, and the key schedule
 * and GHASH table are computed once per key instead of once per record. */
typedef char usmp_aead_fits_an_mbedtls_gcm_context
    [sizeof(mbedtls_gcm_context) <= USMP_AEAD_CONTEXT_BYTES ? 1 : -1];
/* The storage is aligned for uint64_t, pointers and double (usmp_aead.h);
 * the context must not need more. */
typedef struct {
    char c;
    mbedtls_gcm_context ctx;
} usmp_gcm_alignment_probe;
typedef char
    usmp_aead_aligns_an_mbedtls_gcm_context[offsetof(usmp_gcm_alignment_probe, ctx) <= 8 ? 1 : -1];
#if USMP_CRYPTO_OPENSSL
#error "the mbedTLS backend needs USMP_CRYPTO_OPENSSL=0 (usmp_aead.h)"
#endif

int usmp_backend_aead_init(void *context, const uint8_t key[USMP_AES256_KEY_BYTES])
{
    mbedtls_gcm_context *ctx = (mbedtls_gcm_context *)context;
    int ret;

    mbedtls_gcm_init(ctx);
    ret = mbedtls_gcm_setkey(ctx, MBEDTLS_CIPHER_ID_AES, key, USMP_AES256_KEY_BYTES * 8u);
    if (ret != 0) {
        mbedtls_gcm_free(ctx); /* frees the AES context setkey may have allocated */
    }
    return internal_unless_ok(ret);
}

int usmp_backend_aead_seal(void *context, uint8_t *out, const uint8_t nonce[USMP_GCM_NONCE_BYTES],
                           const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len)
{
    mbedtls_gcm_context *ctx = (mbedtls_gcm_context *)context;
    uint8_t tag[USMP_GCM_TAG_BYTES];
    int ret;

    ret = gcm_begin(ctx, MBEDTLS_GCM_ENCRYPT, nonce, aad, aad_len);
    if (ret == 0) {
        ret = gcm_run(ctx, pt, pt_len, out, tag);
    }
    if (ret == 0) {
        memcpy(out + pt_len, tag, sizeof tag);
    }
    return internal_unless_ok(ret);
}

int usmp_backend_aead_open(void *context, uint8_t *out, const uint8_t nonce[USMP_GCM_NONCE_BYTES],
                           const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len,
                           const uint8_t tag[USMP_GCM_TAG_BYTES])
{
    mbedtls_gcm_context *ctx = (mbedtls_gcm_context *)context;
    uint8_t computed[USMP_GCM_TAG_BYTES];
    int ret;
    int rc;

    ret = gcm_begin(ctx, MBEDTLS_GCM_DECRYPT, nonce, aad, aad_len);
    if (ret == 0) {
        ret = gcm_run(ctx, ct, ct_len, out, computed);
    }
    if (ret != 0) {
        return USMP_CRYPTO_ERR_INTERNAL;
    }
    rc = usmp_crypto_equal(computed, tag, sizeof computed) ? USMP_CRYPTO_OK : USMP_CRYPTO_ERR_AUTH;
    usmp_crypto_wipe(computed, sizeof computed);
    return rc;
}

void usmp_backend_aead_release(void *context)
{
    mbedtls_gcm_free((mbedtls_gcm_context *)context); /* zeroises the key schedule and H table */
}

/* ---- Ed25519 ------------------------------------------------------------ */

#if !USMP_ED25519_EXTERNAL
int usmp_backend_ed25519_verify(const uint8_t public_key[USMP_ED25519_PUBLIC_BYTES],
                                const uint8_t *message, size_t message_len,
                                const uint8_t signature[USMP_ED25519_SIGNATURE_BYTES])
{
    /* Neither mbedTLS 2.28 nor 3.x implements Ed25519 (no EdDSA in the
     * legacy API, and its PSA layer does not implement PSA_ALG_PURE_EDDSA).
     * Arguments were still checked by crypto/common, so misuse is ERR_ARG
     * here as on OpenSSL. */
    (void)public_key;
    (void)message;
    (void)message_len;
    (void)signature;
    return USMP_CRYPTO_ERR_UNSUPPORTED;
}
#endif /* !USMP_ED25519_EXTERNAL */
