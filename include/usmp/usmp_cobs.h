/*
 * usmp_cobs.h - Consistent Overhead Byte Stuffing (spec/protocol.md
 * section 10), for byte links without framing such as a UART. A frame goes
 * on the line as COBS(frame) || 0x00.
 */
#ifndef USMP_COBS_H
#define USMP_COBS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Worst-case encoded length of n bytes, without the 0x00 delimiter. */
#define USMP_COBS_MAX_ENCODED(n) ((n) + (n) / 254u + 1u)

/* Encodes in into out (no delimiter) and returns the encoded length, or
 * USMP_ERR_BUFFER when out_cap is too small, USMP_ERR_ARG for NULL with a
 * length. The output never contains 0x00. out must not overlap in. */
int usmp_cobs_encode(uint8_t *out, size_t out_cap, const uint8_t *in, size_t in_len);

/* Decodes one frame (the bytes between two delimiters, without them) and
 * returns the decoded length, or USMP_ERR_MALFORMED when a code byte points
 * past the end, the frame holds a 0x00 or is empty, USMP_ERR_BUFFER when
 * out_cap is too small. out may equal in (decoding in place). */
int usmp_cobs_decode(uint8_t *out, size_t out_cap, const uint8_t *in, size_t in_len);

#ifdef __cplusplus
}
#endif

#endif /* USMP_COBS_H */
