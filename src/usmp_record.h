/*
 * usmp_record.h - record protection (spec/protocol.md sections 6.1, 6.2
 * and 7; the replay window of 6.5 is usmp_replay.h). Pure functions over
 * caller buffers; internal to the core and used directly by the tests.
 */
#ifndef USMP_RECORD_H
#define USMP_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "usmp_aead.h"
#include "usmp_engine.h"

/* Header length of a record (and of the engine's records) in a mode: 3
 * (stream) or 9 (datagram). Folds to 3 when datagram mode is compiled out
 * (usmp_options.h); the record functions then refuse datagram mode. */
static inline size_t usmp_record_header_len(usmp_mode_t mode)
{
    return USMP_DATAGRAM && mode == USMP_MODE_DATAGRAM ? USMP_DATAGRAM_HEADER_BYTES
                                                       : USMP_STREAM_HEADER_BYTES;
}

/* AES blocks a record of plaintext_len costs its key: ceil(len/16) + 1. */
uint64_t usmp_record_blocks(size_t plaintext_len);

/* Seals a record in place, under the record key set up in aead
 * (usmp_crypto_aead_init; the engine keeps one per direction). The
 * plaintext is already at frame + usmp_record_header_len(mode); this writes
 * the header in front of it and the tag after it, and encrypts in place:
 * nothing is copied. session_index is ignored in stream mode. Returns the
 * frame length (plaintext_len + 19 or + 25), or a negative USMP_ERR_*
 * (USMP_ERR_ARG for datagram mode when USMP_DATAGRAM is 0, or for an aead
 * without a key; USMP_ERR_CRYPTO when the library fails). */
int usmp_record_seal_aead(uint8_t *frame, usmp_mode_t mode, uint8_t type,
                          const uint8_t session_index[3], uint64_t counter, usmp_aead_t *aead,
                          size_t plaintext_len);

/* usmp_record_seal_aead with a raw key, set up and wiped inside: for the
 * vectors' tests and the emulated targets, which start from key bytes. */
int usmp_record_seal(uint8_t *frame, usmp_mode_t mode, uint8_t type, const uint8_t session_index[3],
                     uint64_t counter, const uint8_t key[32], size_t plaintext_len);

/* Opens a record under the record key set up in aead: the header is taken
 * from frame as received (it is the AAD), counter is the implicit (stream)
 * or explicit (datagram) counter. The plaintext (frame_len - overhead
 * bytes) goes to out, which may be frame + header length (in place, as the
 * engine does). USMP_ERR_BAD_RECORD on a bad tag, and then out is zeroed;
 * USMP_ERR_ARG for datagram mode when USMP_DATAGRAM is 0, or for an aead
 * without a key. */
int usmp_record_open_aead(uint8_t *out, usmp_mode_t mode, const uint8_t *frame, size_t frame_len,
                          uint64_t counter, usmp_aead_t *aead);

/* usmp_record_open_aead with a raw key, set up and wiped inside. */
int usmp_record_open(uint8_t *out, usmp_mode_t mode, const uint8_t *frame, size_t frame_len,
                     uint64_t counter, const uint8_t key[32]);

#endif /* USMP_RECORD_H */
