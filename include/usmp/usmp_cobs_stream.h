/*
 * usmp_cobs_stream.h - the COBS deframer for a byte stream (spec section
 * 10): bytes in as they come off a serial line, whole frames out.
 *
 * It decodes as it goes, straight into the caller's buffer, so it keeps
 * no frame buffer of its own (a UART transport's state stays small).
 *
 * Conventions
 *  - Results: > 0 a frame's length, 0 "feed more", or a negative
 *    USMP_ERR_* for one frame that was dropped; none is fatal: feed on.
 *  - The caller passes the same buf and cap until a frame is returned;
 *    the first call with another buffer starts the frame again.
 *  - No allocation, no platform headers; one deframer per line.
 */
#ifndef USMP_COBS_STREAM_H
#define USMP_COBS_STREAM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Private: use the functions below. */
typedef struct {
    uint8_t *buf; /* where the frame in progress is decoded */
    uint32_t cap;
    uint32_t len;       /* bytes decoded so far */
    uint32_t encoded;   /* encoded bytes of the frame so far */
    uint8_t block_left; /* data bytes left in the current COBS block */
    uint8_t flags;      /* USMP_COBS_STREAM_F_* in usmp_cobs_stream.c */
    int8_t drop;        /* the condition a frame being discarded ends with */
} usmp_cobs_stream_t;

/* Ready for the first frame. The start of the stream counts as a
 * delimiter (spec 10: a sender starts a frame without one). */
void usmp_cobs_stream_init(usmp_cobs_stream_t *s);

/*
 * Takes bytes of the stream, at most up to the delimiter that ends a
 * frame, and sets *consumed. Returns:
 *   > 0                  a whole frame of that length is in buf[0 ..);
 *   0                    every byte was taken, no frame ended yet
 *                        (empty frames, two delimiters in a row, are
 *                        skipped as spec 10 says);
 *   USMP_ERR_MALFORMED   a frame was dropped: its encoding was longer than
 *                        the longest encoding of cap bytes (oversize,
 *                        discarded up to the delimiter), a code byte ran
 *                        past the delimiter, or it decoded to nothing;
 *   USMP_ERR_TOO_LARGE   a frame was dropped: it decodes to more than cap;
 *   USMP_ERR_ARG         NULL pointers or cap 0 (nothing taken).
 * Call again with the rest of the input after any result.
 */
int usmp_cobs_stream_feed(usmp_cobs_stream_t *s, uint8_t *buf, size_t cap, const uint8_t *in,
                          size_t in_len, size_t *consumed);

#ifdef __cplusplus
}
#endif

#endif /* USMP_COBS_STREAM_H */
