/*
 * usmp_record.c - AES-256-GCM record protection (spec section 6).
 */
#include "usmp_record.h"

#include <string.h>

#include "usmp_crypto.h"
#include "usmp_wire.h"

/* A mode this build can handle (usmp_options.h). */
#define MODE_VALID(mode)                                                                           \
    ((mode) == USMP_MODE_STREAM || (USMP_DATAGRAM && (mode) == USMP_MODE_DATAGRAM))

uint64_t usmp_record_blocks(size_t plaintext_len)
{
    return (uint64_t)((plaintext_len + 15u) / 16u) + 1u;
}

/* nonce = 0x00000000 || u64(counter) (spec 6.1) */
static void record_nonce(uint8_t nonce[USMP_GCM_NONCE_BYTES], uint64_t counter)
{
    usmp_put_be(nonce, 0, 4);
    usmp_put_be(nonce + 4, counter, 8);
}

int usmp_record_seal_aead(uint8_t *frame, usmp_mode_t mode, uint8_t type,
                          const uint8_t session_index[3], uint64_t counter, usmp_aead_t *aead,
                          size_t plaintext_len)
{
    uint8_t nonce[USMP_GCM_NONCE_BYTES];
    size_t header_len = usmp_record_header_len(mode);
    int rc;

    if (frame == NULL || aead == NULL || counter >= USMP_RECORD_COUNTER_LIMIT ||
        plaintext_len > USMP_STREAM_MAX_RECORD || !MODE_VALID(mode) ||
        (mode == USMP_MODE_DATAGRAM && session_index == NULL)) {
        return USMP_ERR_ARG;
    }
    frame[0] = type;
    if (!USMP_DATAGRAM || mode == USMP_MODE_STREAM) {
        usmp_put_u16(frame + 1, (uint16_t)(plaintext_len + USMP_TAG_BYTES));
    } else {
        frame[1] = session_index[0];
        frame[2] = session_index[1];
        frame[3] = session_index[2];
        usmp_put_be(frame + 4, counter, 5);
    }
    record_nonce(nonce, counter);
    rc = usmp_crypto_aead_seal(aead, frame + header_len, nonce, frame, header_len,
                               frame + header_len, plaintext_len);
    if (rc == USMP_CRYPTO_ERR_ARG) {
        return USMP_ERR_ARG; /* an aead without a key */
    }
    if (rc != USMP_CRYPTO_OK) {
        return USMP_ERR_CRYPTO;
    }
    return (int)(header_len + plaintext_len + USMP_TAG_BYTES);
}

int usmp_record_open_aead(uint8_t *out, usmp_mode_t mode, const uint8_t *frame, size_t frame_len,
                          uint64_t counter, usmp_aead_t *aead)
{
    uint8_t nonce[USMP_GCM_NONCE_BYTES];
    size_t header_len = usmp_record_header_len(mode);
    int rc;

    if (out == NULL || frame == NULL || aead == NULL || !MODE_VALID(mode) ||
        frame_len < header_len + USMP_TAG_BYTES) {
        return USMP_ERR_ARG;
    }
    record_nonce(nonce, counter);
    rc = usmp_crypto_aead_open(aead, out, nonce, frame, header_len, frame + header_len,
                               frame_len - header_len);
    if (rc == USMP_CRYPTO_ERR_AUTH) {
        return USMP_ERR_BAD_RECORD;
    }
    if (rc == USMP_CRYPTO_ERR_ARG) {
        return USMP_ERR_ARG;
    }
    return rc == USMP_CRYPTO_OK ? USMP_OK : USMP_ERR_CRYPTO;
}

/* A context for one record from key bytes: the one-record functions below. */
static int one_record_key(usmp_aead_t *aead, const uint8_t *key)
{
    memset(aead, 0, sizeof *aead);
    if (key == NULL) {
        return USMP_ERR_ARG;
    }
    return usmp_crypto_aead_init(aead, key) == USMP_CRYPTO_OK ? USMP_OK : USMP_ERR_CRYPTO;
}

int usmp_record_seal(uint8_t *frame, usmp_mode_t mode, uint8_t type, const uint8_t session_index[3],
                     uint64_t counter, const uint8_t key[32], size_t plaintext_len)
{
    usmp_aead_t aead;
    int rc = one_record_key(&aead, key);

    if (rc == USMP_OK) {
        rc = usmp_record_seal_aead(frame, mode, type, session_index, counter, &aead, plaintext_len);
    }
    usmp_crypto_aead_wipe(&aead);
    return rc;
}

int usmp_record_open(uint8_t *out, usmp_mode_t mode, const uint8_t *frame, size_t frame_len,
                     uint64_t counter, const uint8_t key[32])
{
    usmp_aead_t aead;
    int rc = one_record_key(&aead, key);

    if (rc == USMP_OK) {
        rc = usmp_record_open_aead(out, mode, frame, frame_len, counter, &aead);
    }
    usmp_crypto_aead_wipe(&aead);
    return rc;
}
