/*
 * fuzz_cobs_stream.c - libFuzzer target for the COBS stream deframer of
 * the UART transport (src/usmp_cobs_stream.c, spec section 10).
 *
 * Input: byte 0 picks the receive buffer's size (1 .. 256), byte 1 the
 * size of the pieces the stream is fed in (1 .. 32, as reads off a serial
 * line come); the rest is the line. Differential check against the
 * whole-frame decoder usmp_cobs_decode: every delimited frame the
 * deframer returns is exactly what usmp_cobs_decode makes of the same
 * bytes; a frame it rejects, the deframer drops with MALFORMED or
 * TOO_LARGE, and one whose encoding exceeds the longest encoding of the
 * buffer's size is MALFORMED whatever its content (oversize); empty frames
 * produce nothing; no frame is ever returned twice or skipped. Built like
 * fuzz_engine.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "usmp_cobs.h"
#include "usmp_cobs_stream.h"
#include "usmp_errors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What usmp_cobs_decode and spec 10 make of one delimited frame. */
static int expected(const uint8_t *frame, size_t len, size_t cap, uint8_t *out)
{
    int n;
    if (len == 0) {
        return 0; /* skipped */
    }
    if (len > USMP_COBS_MAX_ENCODED(cap)) {
        return USMP_ERR_MALFORMED; /* oversize */
    }
    n = usmp_cobs_decode(out, cap, frame, len);
    if (n == 0) {
        return USMP_ERR_MALFORMED; /* decodes to nothing: no datagram */
    }
    return n == USMP_ERR_BUFFER ? USMP_ERR_TOO_LARGE : n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[256], want[256], scratch[1024];
    usmp_cobs_stream_t s;
    size_t cap, piece, off = 2, frame_start = 2;

    if (size < 2 || size > 4096) {
        return 0;
    }
    cap = (size_t)data[0] + 1u;
    piece = (size_t)(data[1] % 32u) + 1u;
    usmp_cobs_stream_init(&s);
    while (off < size) {
        size_t len = size - off < piece ? size - off : piece;
        size_t used = 0;
        int rc = usmp_cobs_stream_feed(&s, buf, cap, data + off, len, &used);

        if (used > len || (rc == 0 && used != len)) {
            abort();
        }
        if (rc != 0) {
            /* A frame ended at data[off + used - 1], its delimiter. */
            size_t end = off + used - 1u;
            int want_rc;
            size_t i;
            if (data[end] != 0) {
                abort();
            }
            /* Empty frames before it in this piece were skipped. */
            for (i = off; i < end; i++) {
                if (data[i] == 0) {
                    if (i != frame_start) {
                        abort(); /* a non-empty frame ended without a result */
                    }
                    frame_start = i + 1u;
                }
            }
            if (end - frame_start <= sizeof scratch) {
                memcpy(scratch, data + frame_start, end - frame_start);
                want_rc = expected(scratch, end - frame_start, cap, want);
            } else {
                want_rc = USMP_ERR_MALFORMED; /* longer than any encoding of 256 bytes */
            }
            if (want_rc > 0) {
                if (rc != want_rc || memcmp(buf, want, (size_t)rc) != 0) {
                    abort();
                }
            } else if (want_rc == 0 || rc > 0 ||
                       (rc != USMP_ERR_MALFORMED && rc != USMP_ERR_TOO_LARGE) ||
                       (end - frame_start > USMP_COBS_MAX_ENCODED(cap) &&
                        rc != USMP_ERR_MALFORMED)) {
                abort();
            }
            frame_start = end + 1u;
        } else {
            /* Every delimiter in the piece ended an empty (skipped) frame. */
            size_t i;
            for (i = off; i < off + len; i++) {
                if (data[i] == 0) {
                    if (i != frame_start) {
                        abort(); /* a non-empty frame ended without a result */
                    }
                    frame_start = i + 1u;
                }
            }
        }
        off += used;
    }
    return 0;
}
