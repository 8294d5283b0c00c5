/*
 * usmp_crypto.h - the one seam between the USMP core and a crypto library.
 *
 * The core includes this header and nothing else for cryptography. Exactly
 * one backend (crypto/mbedtls or crypto/openssl) is linked in at build time;
 * there is no runtime dispatch, so the seam costs nothing but a call.
 *
 * Conventions (every function):
 *  - Returns USMP_CRYPTO_OK (0) or a negative USMP_CRYPTO_ERR_* code.
 *  - A NULL pointer with a nonzero length, an oversize length or a wrong key
 *    size gives USMP_CRYPTO_ERR_ARG, never a crash. A NULL pointer with a zero
 *    length is an empty input.
 *  - Outputs may not overlap inputs unless a function says so.
 *  - On any failure, secret-bearing outputs are wiped (zeroed); an output
 *    whose own length is the rejected argument is left untouched, since
 *    its extent is unknown.
 *  - No function draws randomness: key material comes in from the caller,
 *    who takes it from the port's random hook. (A backend that needs
 *    randomness for side-channel blinding takes it from usmp_port_random.)
 *  - Thread-safe: no function keeps state between calls, except the
 *    usmp_aead_t a caller passes in (one key: one owner at a time). A
 *    backend may fetch library objects once, for the life of the process
 *    (the OpenSSL backend's digest and MAC, behind a once-only
 *    initialisation: see crypto/openssl).
 */
#ifndef USMP_CRYPTO_H
#define USMP_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "usmp_aead.h"

#ifdef __cplusplus
extern "C" {
#endif

#define USMP_X25519_KEY_BYTES        32u
#define USMP_SHA256_BYTES            32u
#define USMP_HMAC_SHA256_BYTES       32u
#define USMP_AES256_KEY_BYTES        32u
#define USMP_GCM_NONCE_BYTES         12u
#define USMP_GCM_TAG_BYTES           16u
#define USMP_ED25519_PUBLIC_BYTES    32u
#define USMP_ED25519_SIGNATURE_BYTES 64u
/* HKDF-Expand can give at most 255 hash blocks (RFC 5869 section 2.3). */
#define USMP_HKDF_MAX_OUTPUT_BYTES (255u * USMP_SHA256_BYTES)
/* Largest AES-GCM plaintext or AAD the seam accepts: far above any record,
 * and below every backend's own int-sized limits. */
#define USMP_GCM_MAX_INPUT_BYTES 0x7FFFFF00u

enum {
    USMP_CRYPTO_OK = 0,
    USMP_CRYPTO_ERR_ARG = -1,         /* NULL with length, bad size, oversize */
    USMP_CRYPTO_ERR_AUTH = -2,        /* tag or signature does not verify */
    USMP_CRYPTO_ERR_BAD_KEY = -3,     /* all-zero X25519 result, bad point */
    USMP_CRYPTO_ERR_UNSUPPORTED = -4, /* this backend lacks the primitive */
    USMP_CRYPTO_ERR_INTERNAL = -5     /* the library itself failed */
};

/* A read-only slice. Hash, MAC and KDF inputs are given as lists of slices
 * so that the core never copies label || transcript || frame into a
 * scratch buffer just to hash it. */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} usmp_slice_t;

/* Name of the linked backend and its library version, e.g. "openssl 3.0.19". */
const char *usmp_crypto_backend_name(void);

/* X25519 (RFC 7748). The private key is 32 random bytes; clamping is done
 * inside. public_key = X25519(private_key, 9). */
int usmp_crypto_x25519_public(uint8_t public_key[USMP_X25519_KEY_BYTES],
                              const uint8_t private_key[USMP_X25519_KEY_BYTES]);

/* shared = X25519(private_key, peer_public). Returns USMP_CRYPTO_ERR_BAD_KEY
 * (and a zeroed output) when the result is all zero, i.e. the peer sent a
 * low-order point (RFC 7748 section 6.1). The top bit of peer_public is
 * ignored, as RFC 7748 requires. */
int usmp_crypto_x25519_shared(uint8_t shared[USMP_X25519_KEY_BYTES],
                              const uint8_t private_key[USMP_X25519_KEY_BYTES],
                              const uint8_t peer_public[USMP_X25519_KEY_BYTES]);

/* The same, for a private key whose public key the caller already has
 * (usmp_crypto_x25519_public of it): a backend that must rebuild a key
 * object from bytes imports both instead of computing the public key a
 * second time (OpenSSL). own_public never changes the result, which
 * depends on private_key and peer_public only. */
int usmp_crypto_x25519_shared_with_public(uint8_t shared[USMP_X25519_KEY_BYTES],
                                          const uint8_t private_key[USMP_X25519_KEY_BYTES],
                                          const uint8_t own_public[USMP_X25519_KEY_BYTES],
                                          const uint8_t peer_public[USMP_X25519_KEY_BYTES]);

/* Both of the above for a fresh private key whose public key is needed only
 * beside the shared secret (the server's ephemeral key): public_key =
 * X25519(private_key, 9), shared = X25519(private_key, peer_public), from
 * one key object where a backend builds one. Errors as
 * usmp_crypto_x25519_shared (USMP_CRYPTO_ERR_ARG also when the two outputs
 * are the same buffer); on any failure both outputs are zeroed. */
int usmp_crypto_x25519_keypair_shared(uint8_t public_key[USMP_X25519_KEY_BYTES],
                                      uint8_t shared[USMP_X25519_KEY_BYTES],
                                      const uint8_t private_key[USMP_X25519_KEY_BYTES],
                                      const uint8_t peer_public[USMP_X25519_KEY_BYTES]);

/* SHA-256 over the concatenation of the slices. */
int usmp_crypto_sha256(uint8_t digest[USMP_SHA256_BYTES], const usmp_slice_t *parts,
                       size_t part_count);

/* HMAC-SHA256 over the concatenation of the slices. The full 32-byte tag is
 * written; callers that use a truncated tag compare a prefix of it. */
int usmp_crypto_hmac_sha256(uint8_t tag[USMP_HMAC_SHA256_BYTES], const uint8_t *key, size_t key_len,
                            const usmp_slice_t *parts, size_t part_count);

/* HKDF-SHA256 Extract (RFC 5869). An empty salt means 32 zero bytes. The
 * input keying material is the concatenation of the slices. */
int usmp_crypto_hkdf_extract(uint8_t prk[USMP_SHA256_BYTES], const uint8_t *salt, size_t salt_len,
                             const usmp_slice_t *ikm_parts, size_t part_count);

/* HKDF-SHA256 Expand. okm_len is 1 .. USMP_HKDF_MAX_OUTPUT_BYTES; the info
 * is the concatenation of the slices. */
int usmp_crypto_hkdf_expand(uint8_t *okm, size_t okm_len, const uint8_t prk[USMP_SHA256_BYTES],
                            const usmp_slice_t *info_parts, size_t part_count);

/*
 * AES-256-GCM under a key set up once (usmp_aead_t, usmp_aead.h): the
 * record layer's way, one context per record key for the session's life,
 * so that a record costs no key schedule and no allocation.
 *
 *  - usmp_crypto_aead_init: aead must be all zero (never used, or wiped);
 *    USMP_CRYPTO_ERR_ARG for NULL arguments or an aead that already holds
 *    a key (it is left as it was: nothing leaks, nothing is overwritten),
 *    USMP_CRYPTO_ERR_INTERNAL when the library fails (out of memory), and
 *    then aead is all zero again.
 *  - usmp_crypto_aead_seal and usmp_crypto_aead_open: the arguments and
 *    errors of usmp_crypto_aes256gcm_seal/_open below, and
 *    USMP_CRYPTO_ERR_ARG for an aead without a key (NULL, or not
 *    initialised, or wiped), with out wiped as for a NULL key. Any number
 *    of seals and opens may use one context, with a new nonce each (the
 *    caller's duty, as with any GCM key). A failure leaves the context
 *    usable.
 *  - usmp_crypto_aead_wipe: frees what the backend allocated, zeroes the
 *    storage, and may be called on a zeroed or already wiped aead (or
 *    NULL). A context that was initialised must be wiped, or the backend's
 *    memory leaks (OpenSSL).
 */
int usmp_crypto_aead_init(usmp_aead_t *aead, const uint8_t key[USMP_AES256_KEY_BYTES]);
int usmp_crypto_aead_seal(usmp_aead_t *aead, uint8_t *out,
                          const uint8_t nonce[USMP_GCM_NONCE_BYTES], const uint8_t *aad,
                          size_t aad_len, const uint8_t *plaintext, size_t plaintext_len);
int usmp_crypto_aead_open(usmp_aead_t *aead, uint8_t *out,
                          const uint8_t nonce[USMP_GCM_NONCE_BYTES], const uint8_t *aad,
                          size_t aad_len, const uint8_t *sealed, size_t sealed_len);
void usmp_crypto_aead_wipe(usmp_aead_t *aead);

/* AES-256-GCM in one call (a context set up and wiped inside), with a
 * 96-bit nonce and a 128-bit tag appended to the
 * ciphertext: out receives plaintext_len + 16 bytes. out may equal
 * plaintext (in place), but may not otherwise overlap it. */
int usmp_crypto_aes256gcm_seal(uint8_t *out, const uint8_t key[USMP_AES256_KEY_BYTES],
                               const uint8_t nonce[USMP_GCM_NONCE_BYTES], const uint8_t *aad,
                               size_t aad_len, const uint8_t *plaintext, size_t plaintext_len);

/* Opens ciphertext || tag (sealed_len >= 16); out receives sealed_len - 16
 * bytes. Returns USMP_CRYPTO_ERR_AUTH on a bad tag, and then out is zeroed:
 * unauthenticated plaintext never leaves this function. out may equal
 * sealed (in place). */
int usmp_crypto_aes256gcm_open(uint8_t *out, const uint8_t key[USMP_AES256_KEY_BYTES],
                               const uint8_t nonce[USMP_GCM_NONCE_BYTES], const uint8_t *aad,
                               size_t aad_len, const uint8_t *sealed, size_t sealed_len);

/* Ed25519 signature verification (RFC 8032, pure Ed25519), for signed
 * firmware images. Returns USMP_CRYPTO_OK for a valid signature,
 * USMP_CRYPTO_ERR_AUTH for an invalid one (including a non-canonical
 * encoding), USMP_CRYPTO_ERR_UNSUPPORTED where the backend has no Ed25519
 * (mbedTLS 2.28 and 3.x). */
int usmp_crypto_ed25519_verify(const uint8_t public_key[USMP_ED25519_PUBLIC_BYTES],
                               const uint8_t *message, size_t message_len,
                               const uint8_t signature[USMP_ED25519_SIGNATURE_BYTES]);

/* Constant-time comparison: 1 when the len bytes are equal, 0 otherwise.
 * Time depends on len only. */
int usmp_crypto_equal(const uint8_t *a, const uint8_t *b, size_t len);

/* Zeroes len bytes in a way the compiler may not remove. */
void usmp_crypto_wipe(void *p, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* USMP_CRYPTO_H */
