/*
 * usmp_crypto_internal.h - the contract between crypto/common and a backend.
 *
 * Never included by the core. crypto/common owns every public seam function:
 * it checks the arguments, applies the seam's rules that do not depend on the
 * library (top bit of an X25519 u-coordinate, all-zero shared secret, HKDF
 * on top of HMAC, wipe-on-failure), and only then calls the backend. That way
 * the argument policy and the answers are the same for every backend by
 * construction, and a backend is nothing but a mapping onto its library.
 *
 * What a backend may rely on when one of the functions below is called:
 *  - every pointer is non-NULL and valid for its length, including pointers
 *    whose length is zero (crypto/common substitutes a dummy);
 *  - slices may still hold NULL pointers with zero length: skip them;
 *  - lengths are in range (GCM lengths fit in an int);
 *  - an output either equals its input (GCM in place) or does not overlap it.
 * A backend returns USMP_CRYPTO_OK or a negative USMP_CRYPTO_ERR_* code and
 * need not wipe outputs on failure: crypto/common does.
 */
#ifndef USMP_CRYPTO_INTERNAL_H
#define USMP_CRYPTO_INTERNAL_H

#include "usmp_crypto.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A list of slice lists: HKDF-Expand MACs T(i-1) || info || i, and this lets
 * it do so without copying the caller's info slices into a scratch array. */
typedef struct {
    const usmp_slice_t *parts;
    size_t count;
} usmp_slice_list_t;

/* X25519(scalar, 9). The scalar is not clamped yet. */
int usmp_backend_x25519_base(uint8_t out[USMP_X25519_KEY_BYTES],
                             const uint8_t scalar[USMP_X25519_KEY_BYTES]);

/* X25519(scalar, u). The scalar is not clamped yet; bit 255 of u is already
 * clear. own_public is X25519(scalar, 9) when the caller has it, else NULL:
 * a backend that builds a key object from bytes may import it rather than
 * compute it again; the others ignore it. Returns USMP_CRYPTO_ERR_BAD_KEY
 * when the library itself refuses the point (both libraries refuse exactly
 * the low-order points, whose result would be all zero); crypto/common
 * checks the result for zero as well. */
int usmp_backend_x25519(uint8_t out[USMP_X25519_KEY_BYTES],
                        const uint8_t scalar[USMP_X25519_KEY_BYTES], const uint8_t *own_public,
                        const uint8_t u[USMP_X25519_KEY_BYTES]);

/* public_key = X25519(scalar, 9) and out = X25519(scalar, u) in one call,
 * so that a backend building a key object builds one. Same conventions as
 * usmp_backend_x25519. */
int usmp_backend_x25519_pair(uint8_t public_key[USMP_X25519_KEY_BYTES],
                             uint8_t out[USMP_X25519_KEY_BYTES],
                             const uint8_t scalar[USMP_X25519_KEY_BYTES],
                             const uint8_t u[USMP_X25519_KEY_BYTES]);

int usmp_backend_sha256(uint8_t digest[USMP_SHA256_BYTES], const usmp_slice_t *parts,
                        size_t part_count);

/* HMAC-SHA256 over the concatenation of all slices of all lists. key_len may
 * be zero (HKDF with an empty salt). */
int usmp_backend_hmac_sha256(uint8_t tag[USMP_HMAC_SHA256_BYTES], const uint8_t *key,
                             size_t key_len, const usmp_slice_list_t *lists, size_t list_count);

/*
 * AES-256-GCM under a key set up once. context is a usmp_aead_storage_t
 * (in a usmp_aead_t with USMP_AEAD_KEEP_CONTEXT 1, on crypto/common's stack
 * for one call with 0): USMP_AEAD_CONTEXT_BYTES bytes, aligned for any
 * field, all zero before usmp_backend_aead_init. crypto/common keeps track of whether
 * it holds a key, so the backend is only called in the right order:
 *  - init sets the key; on failure it releases whatever it allocated
 *    (crypto/common then zeroes the storage);
 *  - seal: out receives pt_len bytes of ciphertext, then the 16-byte tag;
 *  - open: tag is a private copy (never inside out); returns
 *    USMP_CRYPTO_ERR_AUTH on a tag mismatch; crypto/common zeroes out on any
 *    failure;
 *  - release frees what init allocated (crypto/common zeroes the storage
 *    afterwards). A context that failed a seal or open stays usable.
 */
int usmp_backend_aead_init(void *context, const uint8_t key[USMP_AES256_KEY_BYTES]);
int usmp_backend_aead_seal(void *context, uint8_t *out, const uint8_t nonce[USMP_GCM_NONCE_BYTES],
                           const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t pt_len);
int usmp_backend_aead_open(void *context, uint8_t *out, const uint8_t nonce[USMP_GCM_NONCE_BYTES],
                           const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t ct_len,
                           const uint8_t tag[USMP_GCM_TAG_BYTES]);
void usmp_backend_aead_release(void *context);

int usmp_backend_ed25519_verify(const uint8_t public_key[USMP_ED25519_PUBLIC_BYTES],
                                const uint8_t *message, size_t message_len,
                                const uint8_t signature[USMP_ED25519_SIGNATURE_BYTES]);

#ifdef __cplusplus
}
#endif

#endif /* USMP_CRYPTO_INTERNAL_H */
