/*
 * usmp_cobs_stream.c - the COBS deframer for a byte stream (spec section
 * 10). See usmp_cobs_stream.h.
 *
 * A frame is decoded byte by byte: a code byte c opens a block of c - 1
 * data bytes, and a zero is written before the next block unless the
 * block was a full one (c = 0xFF). The zero is written only when another
 * block follows, which is why a frame's decoded length is known only at
 * its delimiter, exactly as usmp_cobs_decode decodes a whole frame.
 */
#include "usmp_cobs_stream.h"

#include "usmp_cobs.h"
#include "usmp_errors.h"

#define F_STARTED      0x01u /* a code byte of this frame was read */
#define F_ZERO_PENDING 0x02u /* the last block implies a zero if another follows */

static void start_frame(usmp_cobs_stream_t *s)
{
    s->len = 0;
    s->encoded = 0;
    s->block_left = 0;
    s->flags = 0;
    s->drop = USMP_OK;
}

void usmp_cobs_stream_init(usmp_cobs_stream_t *s)
{
    if (s != NULL) {
        s->buf = NULL;
        s->cap = 0;
        start_frame(s);
    }
}

/* The frame ended at a delimiter: what it comes to. */
static int end_frame(usmp_cobs_stream_t *s)
{
    int rc;

    if (s->encoded > USMP_COBS_MAX_ENCODED(s->cap)) {
        rc = USMP_ERR_MALFORMED; /* oversize (spec 10), whatever else was wrong */
    } else if (s->drop != USMP_OK) {
        rc = s->drop;
    } else if (s->encoded == 0) {
        rc = 0; /* an empty frame: skipped (spec 10) */
    } else if (s->block_left != 0 || s->len == 0) {
        rc = USMP_ERR_MALFORMED; /* a code byte past the end, or nothing */
    } else {
        rc = (int)s->len;
    }
    start_frame(s);
    return rc;
}

/* One non-zero byte of a frame. */
static void take_byte(usmp_cobs_stream_t *s, uint8_t b)
{
    /* Oversize (spec 10) is judged on the encoded length, counted also
     * while a frame is discarded (saturating: a line may never deliver a
     * delimiter). */
    if (s->encoded <= USMP_COBS_MAX_ENCODED(s->cap)) {
        s->encoded++;
    }
    if (s->drop != USMP_OK) {
        return; /* discarding up to the delimiter */
    }
    if (s->encoded > USMP_COBS_MAX_ENCODED(s->cap)) {
        s->drop = USMP_ERR_MALFORMED;
        return;
    }
    if (s->block_left > 0) {
        if (s->len >= s->cap) {
            s->drop = USMP_ERR_TOO_LARGE;
            return;
        }
        s->buf[s->len++] = b;
        s->block_left--;
        return;
    }
    /* A code byte: the zero the previous block implied comes first. */
    if ((s->flags & (F_STARTED | F_ZERO_PENDING)) == (F_STARTED | F_ZERO_PENDING)) {
        if (s->len >= s->cap) {
            s->drop = USMP_ERR_TOO_LARGE;
            return;
        }
        s->buf[s->len++] = 0;
    }
    s->flags = (uint8_t)(F_STARTED | (b != 0xFFu ? F_ZERO_PENDING : 0u));
    s->block_left = (uint8_t)(b - 1u);
}

int usmp_cobs_stream_feed(usmp_cobs_stream_t *s, uint8_t *buf, size_t cap, const uint8_t *in,
                          size_t in_len, size_t *consumed)
{
    size_t i;

    if (consumed != NULL) {
        *consumed = 0;
    }
    if (s == NULL || buf == NULL || cap == 0 || consumed == NULL || (in == NULL && in_len > 0)) {
        return USMP_ERR_ARG;
    }
    if (cap > 0x7FFFFFF0u) {
        cap = 0x7FFFFFF0u; /* the decoded length is returned as an int */
    }
    if (buf != s->buf || (uint32_t)cap != s->cap) {
        /* Another buffer: what was decoded so far is not in it. The rest
         * of the frame is discarded, quietly if nothing was taken yet. */
        if (s->encoded > 0 && s->drop == USMP_OK) {
            s->drop = USMP_ERR_MALFORMED;
        }
        s->buf = buf;
        s->cap = (uint32_t)cap;
    }
    for (i = 0; i < in_len; i++) {
        if (in[i] == 0) {
            int rc = end_frame(s);
            if (rc != 0) {
                *consumed = i + 1u;
                return rc;
            }
            continue;
        }
        take_byte(s, in[i]);
    }
    *consumed = in_len;
    return 0;
}
