/*
 * usmp_crypto_common.c - the library-independent half of the crypto seam.
 *
 * Every public function except usmp_crypto_backend_name lives here: argument
 * checks, the seam's own rules and wipe-on-failure are written once, so the
 * two backends cannot drift apart on them (see usmp_crypto_internal.h).
 */
#include "usmp_crypto_internal.h"

#include <stdint.h>
#include <string.h>

/* Libraries differ on whether a NULL pointer with a zero length is allowed
 * (and memcpy(NULL, ..., 0) is undefined in C99), so zero-length inputs are
 * handed on as a pointer to this instead. */
static const uint8_t empty_input[1] = { 0 };

/* ---- constant time and wiping ---------------------------------------- */

int usmp_crypto_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    /* volatile keeps the compiler from turning the loop into an early exit
     * once diff becomes nonzero. */
    volatile uint8_t diff = 0;
    size_t i;

    if (len == 0) {
        return 1;
    }
    if (a == NULL || b == NULL) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        diff = (uint8_t)(diff | (a[i] ^ b[i]));
    }
    /* diff - 1 wraps to all ones only when diff is zero: no branch on it. */
    return (int)(((uint32_t)diff - 1u) >> 31);
}

void usmp_crypto_wipe(void *p, size_t len)
{
    /* Stores through a volatile lvalue are observable behaviour, so unlike
     * memset() before a free or a return they cannot be optimised away. */
    volatile uint8_t *v = (volatile uint8_t *)p;

    if (v == NULL) {
        return;
    }
    while (len > 0) {
        *v++ = 0;
        len--;
    }
}

/* ---- argument checks ---------------------------------------------------- */

static int bytes_ok(const void *p, size_t len)
{
    return p != NULL || len == 0;
}

static int slices_ok(const usmp_slice_t *parts, size_t count)
{
    size_t i;

    if (parts == NULL) {
        return count == 0;
    }
    for (i = 0; i < count; i++) {
        if (!bytes_ok(parts[i].ptr, parts[i].len)) {
            return 0;
        }
    }
    return 1;
}

static const uint8_t *or_empty(const uint8_t *p, size_t len)
{
    return len == 0 ? empty_input : p;
}

/* True when [out, out+out_len) and [in, in+in_len) share a byte but do not
 * start at the same address. In place (out == in) is allowed for GCM; any
 * other overlap would have the library read bytes it already overwrote. The
 * comparison goes through uintptr_t because relational operators on pointers
 * into different objects are undefined. */
static int partial_overlap(const uint8_t *out, size_t out_len, const uint8_t *in, size_t in_len)
{
    uintptr_t o = (uintptr_t)out;
    uintptr_t i = (uintptr_t)in;

    if (out == NULL || in == NULL || out_len == 0 || in_len == 0 || o == i) {
        return 0;
    }
    return o < i + in_len && i < o + out_len;
}

/* ---- X25519 ----------------------------------------------------------- */

int usmp_crypto_x25519_public(uint8_t public_key[USMP_X25519_KEY_BYTES],
                              const uint8_t private_key[USMP_X25519_KEY_BYTES])
{
    int rc;

    if (public_key == NULL) {
        return USMP_CRYPTO_ERR_ARG;
    }
    if (private_key == NULL) {
        usmp_crypto_wipe(public_key, USMP_X25519_KEY_BYTES);
        return USMP_CRYPTO_ERR_ARG;
    }
    rc = usmp_backend_x25519_base(public_key, private_key);
    if (rc != USMP_CRYPTO_OK) {
        usmp_crypto_wipe(public_key, USMP_X25519_KEY_BYTES);
    }
    return rc;
}

/* usmp_crypto_x25519_shared with or without the own public key (NULL). */
static int x25519_shared(uint8_t shared[USMP_X25519_KEY_BYTES],
                         const uint8_t private_key[USMP_X25519_KEY_BYTES],
                         const uint8_t *own_public,
                         const uint8_t peer_public[USMP_X25519_KEY_BYTES])
{
    static const uint8_t zero[USMP_X25519_KEY_BYTES] = { 0 };
    uint8_t u[USMP_X25519_KEY_BYTES];
    int rc;

    if (shared == NULL) {
        return USMP_CRYPTO_ERR_ARG;
    }
    if (private_key == NULL || peer_public == NULL) {
        usmp_crypto_wipe(shared, USMP_X25519_KEY_BYTES);
        return USMP_CRYPTO_ERR_ARG;
    }
    /* RFC 7748 section 5: the receiver masks bit 255. Done here so that no
     * backend's own habit decides it; the copy also lets shared alias
     * peer_public. */
    memcpy(u, peer_public, sizeof u);
    u[USMP_X25519_KEY_BYTES - 1] &= 0x7F;

    rc = usmp_backend_x25519(shared, private_key, own_public, u);
    /* RFC 7748 section 6.1: an all-zero result means the peer chose a
     * low-order point and the "secret" is known to everyone. Checked on
     * every path (in constant time) rather than trusting each library's own
     * check. */
    if (rc == USMP_CRYPTO_OK && usmp_crypto_equal(shared, zero, sizeof zero)) {
        rc = USMP_CRYPTO_ERR_BAD_KEY;
    }
    if (rc != USMP_CRYPTO_OK) {
        usmp_crypto_wipe(shared, USMP_X25519_KEY_BYTES);
    }
    return rc;
}

int usmp_crypto_x25519_shared(uint8_t shared[USMP_X25519_KEY_BYTES],
                              const uint8_t private_key[USMP_X25519_KEY_BYTES],
                              const uint8_t peer_public[USMP_X25519_KEY_BYTES])
{
    return x25519_shared(shared, private_key, NULL, peer_public);
}

int usmp_crypto_x25519_shared_with_public(uint8_t shared[USMP_X25519_KEY_BYTES],
                                          const uint8_t private_key[USMP_X25519_KEY_BYTES],
                                          const uint8_t own_public[USMP_X25519_KEY_BYTES],
                                          const uint8_t peer_public[USMP_X25519_KEY_BYTES])
{
    if (shared != NULL && own_public == NULL) {
        usmp_crypto_wipe(shared, USMP_X25519_KEY_BYTES);
        return USMP_CRYPTO_ERR_ARG;
    }
    return x25519_shared(shared, private_key, own_public, peer_public);
}

int usmp_crypto_x25519_keypair_shared(uint8_t public_key[USMP_X25519_KEY_BYTES],
                                      uint8_t shared[USMP_X25519_KEY_BYTES],
                                      const uint8_t private_key[USMP_X25519_KEY_BYTES],
                                      const uint8_t peer_public[USMP_X25519_KEY_BYTES])
{
    static const uint8_t zero[USMP_X25519_KEY_BYTES] = { 0 };
    uint8_t u[USMP_X25519_KEY_BYTES];
    int rc;

    if (public_key == NULL || shared == NULL || public_key == shared) {
        return USMP_CRYPTO_ERR_ARG;
    }
    if (private_key == NULL || peer_public == NULL) {
        usmp_crypto_wipe(public_key, USMP_X25519_KEY_BYTES);
        usmp_crypto_wipe(shared, USMP_X25519_KEY_BYTES);
        return USMP_CRYPTO_ERR_ARG;
    }
    /* The rules of usmp_crypto_x25519_shared: bit 255 masked here (the
     * copy also lets an output alias peer_public), the all-zero result
     * refused in constant time whatever the library says. */
    memcpy(u, peer_public, sizeof u);
    u[USMP_X25519_KEY_BYTES - 1] &= 0x7F;
    rc = usmp_backend_x25519_pair(public_key, shared, private_key, u);
    if (rc == USMP_CRYPTO_OK && usmp_crypto_equal(shared, zero, sizeof zero)) {
        rc = USMP_CRYPTO_ERR_BAD_KEY;
    }
    if (rc != USMP_CRYPTO_OK) {
        usmp_crypto_wipe(public_key, USMP_X25519_KEY_BYTES);
        usmp_crypto_wipe(shared, USMP_X25519_KEY_BYTES);
    }
    return rc;
}

/* ---- SHA-256, HMAC, HKDF ------------------------------------------------ */

int usmp_crypto_sha256(uint8_t digest[USMP_SHA256_BYTES], const usmp_slice_t *parts,
                       size_t part_count)
{
    int rc;

    if (digest == NULL) {
        return USMP_CRYPTO_ERR_ARG;
    }
    if (!slices_ok(parts, part_count)) {
        usmp_crypto_wipe(digest, USMP_SHA256_BYTES);
        return USMP_CRYPTO_ERR_ARG;
    }
    rc = usmp_backend_sha256(digest, parts, part_count);
    if (rc != USMP_CRYPTO_OK) {
        usmp_crypto_wipe(digest, USMP_SHA256_BYTES);
    }
    return rc;
}

int usmp_crypto_hmac_sha256(uint8_t tag[USMP_HMAC_SHA256_BYTES], const uint8_t *key, size_t key_len,
                            const usmp_slice_t *parts, size_t part_count)
{
    usmp_slice_list_t list;
    int rc;

    if (tag == NULL) {
        return USMP_CRYPTO_ERR_ARG;
    }
    if (!bytes_ok(key, key_len) || !slices_ok(parts, part_count)) {
        usmp_crypto_wipe(tag, USMP_HMAC_SHA256_BYTES);
        return USMP_CRYPTO_ERR_ARG;
    }
    list.parts = parts;
    list.count = part_count;
    rc = usmp_backend_hmac_sha256(tag, or_empty(key, key_len), key_len, &list, 1);
    if (rc != USMP_CRYPTO_OK) {
        usmp_crypto_wipe(tag, USMP_HMAC_SHA256_BYTES);
    }
    return rc;
}

int usmp_crypto_hkdf_extract(uint8_t prk[USMP_SHA256_BYTES], const uint8_t *salt, size_t salt_len,
                             const usmp_slice_t *ikm_parts, size_t part_count)
{
    /* RFC 5869: PRK = HMAC(salt, IKM), and "not provided" means HashLen zero
     * bytes. HMAC zero-pads its key to the block size, so an empty key and
     * 32 zero bytes are the same key: the empty salt needs no special case. */
    return usmp_crypto_hmac_sha256(prk, salt, salt_len, ikm_parts, part_count);
}

int usmp_crypto_hkdf_expand(uint8_t *okm, size_t okm_len, const uint8_t prk[USMP_SHA256_BYTES],
                            const usmp_slice_t *info_parts, size_t part_count)
{
    uint8_t key[USMP_SHA256_BYTES];
    uint8_t t[USMP_SHA256_BYTES];
    uint8_t counter = 1;
    usmp_slice_t prev;
    usmp_slice_t counter_slice;
    usmp_slice_list_t lists[3];
    size_t done = 0;
    int rc = USMP_CRYPTO_OK;

    /* The output's own size is what is wrong: its extent is unknown, so it
     * is left untouched. */
    if (okm == NULL || okm_len == 0 || okm_len > USMP_HKDF_MAX_OUTPUT_BYTES) {
        return USMP_CRYPTO_ERR_ARG;
    }
    if (prk == NULL || !slices_ok(info_parts, part_count)) {
        usmp_crypto_wipe(okm, okm_len);
        return USMP_CRYPTO_ERR_ARG;
    }
    /* A private copy of the PRK lets a caller expand a key onto itself
     * (okm == prk), which would otherwise change the key after block one. */
    memcpy(key, prk, sizeof key);

    prev.ptr = t;
    prev.len = 0; /* T(0) is empty */
    counter_slice.ptr = &counter;
    counter_slice.len = 1;
    lists[0].parts = &prev;
    lists[0].count = 1;
    lists[1].parts = info_parts;
    lists[1].count = part_count;
    lists[2].parts = &counter_slice;
    lists[2].count = 1;

    /* okm_len <= 255 * 32 keeps counter within 1..255. */
    while (done < okm_len) {
        size_t take = okm_len - done;

        rc = usmp_backend_hmac_sha256(t, key, sizeof key, lists, 3);
        if (rc != USMP_CRYPTO_OK) {
            break;
        }
        if (take > sizeof t) {
            take = sizeof t;
        }
        memcpy(okm + done, t, take);
        done += take;
        prev.len = sizeof t;
        counter++;
    }
    usmp_crypto_wipe(t, sizeof t);
    usmp_crypto_wipe(key, sizeof key);
    if (rc != USMP_CRYPTO_OK) {
        usmp_crypto_wipe(okm, okm_len);
    }
    return rc;
}

/* ---- AES-256-GCM ------------------------------------------------------ */

/* The outcome of checking a seal's or an open's arguments. */
enum { ARGS_OK, ARGS_BAD_KEEP_OUT, ARGS_BAD_WIPE_OUT };

/* A seal writes plaintext_len + 16 bytes to out. When out itself is wrong
 * (NULL, oversize, partially overlapping the input) its extent is unknown
 * or covers the caller's input: writing zeroes there would be as wrong as
 * encrypting, so it is left. Any other bad argument wipes out: in place,
 * out holds the plaintext, and a caller that ignores the error must not
 * send it. */
static int seal_args(int have_key, const uint8_t *out, const uint8_t *nonce, const uint8_t *aad,
                     size_t aad_len, const uint8_t *plaintext, size_t plaintext_len)
{
    if (out == NULL || plaintext_len > USMP_GCM_MAX_INPUT_BYTES ||
        !bytes_ok(plaintext, plaintext_len) ||
        partial_overlap(out, plaintext_len + USMP_GCM_TAG_BYTES, plaintext, plaintext_len)) {
        return ARGS_BAD_KEEP_OUT;
    }
    if (!have_key || nonce == NULL || !bytes_ok(aad, aad_len) ||
        aad_len > USMP_GCM_MAX_INPUT_BYTES) {
        return ARGS_BAD_WIPE_OUT;
    }
    return ARGS_OK;
}

/* The same for an open of sealed_len bytes into sealed_len - 16. */
static int open_args(int have_key, const uint8_t *out, const uint8_t *nonce, const uint8_t *aad,
                     size_t aad_len, const uint8_t *sealed, size_t sealed_len)
{
    size_t ct_len;

    if (sealed_len < USMP_GCM_TAG_BYTES ||
        sealed_len - USMP_GCM_TAG_BYTES > USMP_GCM_MAX_INPUT_BYTES) {
        return ARGS_BAD_KEEP_OUT;
    }
    ct_len = sealed_len - USMP_GCM_TAG_BYTES;
    if (!bytes_ok(out, ct_len) || sealed == NULL ||
        partial_overlap(out, ct_len, sealed, sealed_len)) {
        return ARGS_BAD_KEEP_OUT;
    }
    if (!have_key || nonce == NULL || !bytes_ok(aad, aad_len) ||
        aad_len > USMP_GCM_MAX_INPUT_BYTES) {
        return ARGS_BAD_WIPE_OUT;
    }
    return ARGS_OK;
}

/* usmp_aead.h spells the key size out, not seeing src/usmp_crypto.h. */
typedef char usmp_aead_key_is_an_aes256_key[USMP_AEAD_KEY_BYTES == USMP_AES256_KEY_BYTES ? 1 : -1];

static int aead_has_key(const usmp_aead_t *aead)
{
    return aead != NULL && aead->ready == 1;
}

int usmp_crypto_aead_init(usmp_aead_t *aead, const uint8_t key[USMP_AES256_KEY_BYTES])
{
    int rc;

    /* A context that holds a key is refused, not reset: resetting would
     * leak what the backend allocated for it, or hide the caller's bug. */
    if (aead == NULL || key == NULL || aead->ready != 0) {
        return USMP_CRYPTO_ERR_ARG;
    }
#if USMP_AEAD_KEEP_CONTEXT
    rc = usmp_backend_aead_init(&aead->context, key);
    if (rc != USMP_CRYPTO_OK) {
        usmp_crypto_wipe(aead, sizeof *aead);
        return rc;
    }
#else
    /* The key alone; each seal and open sets its context up from it. */
    memcpy(aead->key, key, sizeof aead->key);
    rc = USMP_CRYPTO_OK;
#endif
    aead->ready = 1;
    return rc;
}

#if USMP_AEAD_KEEP_CONTEXT
/* The context kept in aead (USMP_AEAD_KEEP_CONTEXT 1). */
static int aead_backend_seal(usmp_aead_t *aead, uint8_t *out,
                             const uint8_t nonce[USMP_GCM_NONCE_BYTES], const uint8_t *aad,
                             size_t aad_len, const uint8_t *pt, size_t pt_len)
{
    return usmp_backend_aead_seal(&aead->context, out, nonce, aad, aad_len, pt, pt_len);
}

static int aead_backend_open(usmp_aead_t *aead, uint8_t *out,
                             const uint8_t nonce[USMP_GCM_NONCE_BYTES], const uint8_t *aad,
                             size_t aad_len, const uint8_t *ct, size_t ct_len,
                             const uint8_t tag[USMP_GCM_TAG_BYTES])
{
    return usmp_backend_aead_open(&aead->context, out, nonce, aad, aad_len, ct, ct_len, tag);
}
#else
/* USMP_AEAD_KEEP_CONTEXT 0: a context on this stack frame for one call, set
 * up from the key, released (mbedTLS frees its AES context from the heap)
 * and wiped before returning, so that no key schedule outlives the call. */
static int aead_backend_seal(usmp_aead_t *aead, uint8_t *out,
                             const uint8_t nonce[USMP_GCM_NONCE_BYTES], const uint8_t *aad,
                             size_t aad_len, const uint8_t *pt, size_t pt_len)
{
    usmp_aead_storage_t context;
    int rc;

    memset(&context, 0, sizeof context);
    rc = usmp_backend_aead_init(&context, aead->key);
    if (rc == USMP_CRYPTO_OK) {
        rc = usmp_backend_aead_seal(&context, out, nonce, aad, aad_len, pt, pt_len);
        usmp_backend_aead_release(&context);
    }
    usmp_crypto_wipe(&context, sizeof context);
    return rc;
}

static int aead_backend_open(usmp_aead_t *aead, uint8_t *out,
                             const uint8_t nonce[USMP_GCM_NONCE_BYTES], const uint8_t *aad,
                             size_t aad_len, const uint8_t *ct, size_t ct_len,
                             const uint8_t tag[USMP_GCM_TAG_BYTES])
{
    usmp_aead_storage_t context;
    int rc;

    memset(&context, 0, sizeof context);
    rc = usmp_backend_aead_init(&context, aead->key);
    if (rc == USMP_CRYPTO_OK) {
        rc = usmp_backend_aead_open(&context, out, nonce, aad, aad_len, ct, ct_len, tag);
        usmp_backend_aead_release(&context);
    }
    usmp_crypto_wipe(&context, sizeof context);
    return rc;
}
#endif

int usmp_crypto_aead_seal(usmp_aead_t *aead, uint8_t *out,
                          const uint8_t nonce[USMP_GCM_NONCE_BYTES], const uint8_t *aad,
                          size_t aad_len, const uint8_t *plaintext, size_t plaintext_len)
{
    int rc;

    switch (seal_args(aead_has_key(aead), out, nonce, aad, aad_len, plaintext, plaintext_len)) {
    case ARGS_OK: break;
    case ARGS_BAD_WIPE_OUT:
        usmp_crypto_wipe(out, plaintext_len + USMP_GCM_TAG_BYTES);
        return USMP_CRYPTO_ERR_ARG;
    default: return USMP_CRYPTO_ERR_ARG;
    }
    rc = aead_backend_seal(aead, out, nonce, or_empty(aad, aad_len), aad_len,
                           or_empty(plaintext, plaintext_len), plaintext_len);
    if (rc != USMP_CRYPTO_OK) {
        usmp_crypto_wipe(out, plaintext_len + USMP_GCM_TAG_BYTES);
    }
    return rc;
}

int usmp_crypto_aead_open(usmp_aead_t *aead, uint8_t *out,
                          const uint8_t nonce[USMP_GCM_NONCE_BYTES], const uint8_t *aad,
                          size_t aad_len, const uint8_t *sealed, size_t sealed_len)
{
    uint8_t tag[USMP_GCM_TAG_BYTES];
    uint8_t no_output[1];
    size_t ct_len;
    int rc;

    switch (open_args(aead_has_key(aead), out, nonce, aad, aad_len, sealed, sealed_len)) {
    case ARGS_OK: break;
    case ARGS_BAD_WIPE_OUT:
        usmp_crypto_wipe(out, sealed_len - USMP_GCM_TAG_BYTES);
        return USMP_CRYPTO_ERR_ARG;
    default: return USMP_CRYPTO_ERR_ARG;
    }
    ct_len = sealed_len - USMP_GCM_TAG_BYTES;
    /* The tag is copied before decryption starts so that no library ever
     * reads it from a buffer that is being written. */
    memcpy(tag, sealed + ct_len, sizeof tag);
    rc = aead_backend_open(aead, ct_len == 0 ? no_output : out, nonce, or_empty(aad, aad_len),
                           aad_len, or_empty(sealed, ct_len), ct_len, tag);
    if (rc != USMP_CRYPTO_OK) {
        /* Unauthenticated plaintext never leaves this function. */
        usmp_crypto_wipe(out, ct_len);
    }
    return rc;
}

void usmp_crypto_aead_wipe(usmp_aead_t *aead)
{
    if (aead == NULL) {
        return;
    }
#if USMP_AEAD_KEEP_CONTEXT
    if (aead->ready == 1) {
        usmp_backend_aead_release(&aead->context);
    }
#endif
    /* Zeroes the key (USMP_AEAD_KEEP_CONTEXT 0) or what is left of the
     * context (1). */
    usmp_crypto_wipe(aead, sizeof *aead);
}

int usmp_crypto_aes256gcm_seal(uint8_t *out, const uint8_t key[USMP_AES256_KEY_BYTES],
                               const uint8_t nonce[USMP_GCM_NONCE_BYTES], const uint8_t *aad,
                               size_t aad_len, const uint8_t *plaintext, size_t plaintext_len)
{
    usmp_aead_t aead;
    int rc;

    /* The arguments are judged as the context's seal judges them, before a
     * key schedule is spent on them. */
    switch (seal_args(key != NULL, out, nonce, aad, aad_len, plaintext, plaintext_len)) {
    case ARGS_OK: break;
    case ARGS_BAD_WIPE_OUT:
        usmp_crypto_wipe(out, plaintext_len + USMP_GCM_TAG_BYTES);
        return USMP_CRYPTO_ERR_ARG;
    default: return USMP_CRYPTO_ERR_ARG;
    }
    memset(&aead, 0, sizeof aead);
    rc = usmp_crypto_aead_init(&aead, key);
    if (rc == USMP_CRYPTO_OK) {
        rc = usmp_crypto_aead_seal(&aead, out, nonce, aad, aad_len, plaintext, plaintext_len);
    } else {
        usmp_crypto_wipe(out, plaintext_len + USMP_GCM_TAG_BYTES);
    }
    usmp_crypto_aead_wipe(&aead);
    return rc;
}

int usmp_crypto_aes256gcm_open(uint8_t *out, const uint8_t key[USMP_AES256_KEY_BYTES],
                               const uint8_t nonce[USMP_GCM_NONCE_BYTES], const uint8_t *aad,
                               size_t aad_len, const uint8_t *sealed, size_t sealed_len)
{
    usmp_aead_t aead;
    int rc;

    switch (open_args(key != NULL, out, nonce, aad, aad_len, sealed, sealed_len)) {
    case ARGS_OK: break;
    case ARGS_BAD_WIPE_OUT:
        usmp_crypto_wipe(out, sealed_len - USMP_GCM_TAG_BYTES);
        return USMP_CRYPTO_ERR_ARG;
    default: return USMP_CRYPTO_ERR_ARG;
    }
    memset(&aead, 0, sizeof aead);
    rc = usmp_crypto_aead_init(&aead, key);
    if (rc == USMP_CRYPTO_OK) {
        rc = usmp_crypto_aead_open(&aead, out, nonce, aad, aad_len, sealed, sealed_len);
    } else {
        usmp_crypto_wipe(out, sealed_len - USMP_GCM_TAG_BYTES);
    }
    usmp_crypto_aead_wipe(&aead);
    return rc;
}

/* ---- Ed25519 ------------------------------------------------------------ */

int usmp_crypto_ed25519_verify(const uint8_t public_key[USMP_ED25519_PUBLIC_BYTES],
                               const uint8_t *message, size_t message_len,
                               const uint8_t signature[USMP_ED25519_SIGNATURE_BYTES])
{
    /* Checked before the backend so that bad arguments are ERR_ARG even on a
     * backend without Ed25519: callers learn of their bug on every build. */
    if (public_key == NULL || signature == NULL || !bytes_ok(message, message_len)) {
        return USMP_CRYPTO_ERR_ARG;
    }
    return usmp_backend_ed25519_verify(public_key, or_empty(message, message_len), message_len,
                                       signature);
}
