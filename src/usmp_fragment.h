/*
 * usmp_fragment.h - fragmentation and reassembly of messages larger than
 * one record (spec/protocol.md section 6.4). Internal to the core and
 * used directly by the tests.
 *
 * Conventions
 *  - A DATA_FRAGMENT payload is total (u16) || offset (u16) || chunk, the
 *    chunk at least one byte.
 *  - The state types (usmp_fragmenter_t, usmp_reassembly_t) live in
 *    usmp_engine.h for their size; total 0 means "no message in progress"
 *    (a fragmented message has total > max_record >= 16).
 *  - Receiving is parse, check, apply: usmp_fragment_parse and
 *    usmp_reassembly_check change nothing, so a caller can drop a
 *    datagram without a trace (6.2); usmp_reassembly_apply takes only a
 *    fragment that passed both.
 *  - seq is the record's counter; only datagram mode (USMP_DATAGRAM) uses
 *    it, to require each fragment after the first to follow the previous
 *    one's record.
 *  - The functions are static inline, as in usmp_wire.h: the engine is
 *    their one caller, and compiled into it they cost the device profile
 *    no flash over the code they replaced (docs/footprint.md); as a
 *    separate object file they cost 280 bytes more on Cortex-M4.
 */
#ifndef USMP_FRAGMENT_H
#define USMP_FRAGMENT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "usmp_engine.h"
#include "usmp_wire.h" /* USMP_FRAGMENT_HEADER_BYTES, usmp_put_u16 */

/* ---------------------------------------------------------------- sending */

/* Starts sending a message of total bytes in fragments (0: idle). */
static inline void usmp_fragmenter_start(usmp_fragmenter_t *s, uint16_t total)
{
    s->total = total;
    s->sent = 0;
}

/* The bytes of the message in progress not yet sent (0: none in
 * progress). */
static inline size_t usmp_fragmenter_remaining(const usmp_fragmenter_t *s)
{
    return (size_t)(s->total - s->sent);
}

/* Writes the next DATA_FRAGMENT payload at out: the header, then up to
 * room - 4 bytes taken from rest (the part of the message not yet sent,
 * rest_len bytes). room is the largest payload one record may carry, more
 * than 4. Returns the chunk length; the fragmenter advances only at
 * usmp_fragmenter_sent. */
static inline size_t usmp_fragmenter_write(const usmp_fragmenter_t *s, uint8_t *out,
                                           size_t room, const uint8_t *rest, size_t rest_len)
{
    size_t chunk = room - USMP_FRAGMENT_HEADER_BYTES;

    if (chunk > rest_len) {
        chunk = rest_len;
    }
    usmp_put_u16(out, s->total);
    usmp_put_u16(out + 2, s->sent);
    memcpy(out + USMP_FRAGMENT_HEADER_BYTES, rest, chunk);
    return chunk;
}

/* chunk bytes went out sealed. Returns 1 when that was the last fragment
 * (the fragmenter is idle again), else 0. */
static inline int usmp_fragmenter_sent(usmp_fragmenter_t *s, size_t chunk)
{
    s->sent = (uint16_t)(s->sent + chunk);
    if (s->sent == s->total) {
        usmp_fragmenter_start(s, 0);
        return 1;
    }
    return 0;
}

/* -------------------------------------------------------------- receiving */

typedef struct {
    uint16_t total;       /* the whole message's length */
    uint16_t offset;      /* where this chunk goes */
    const uint8_t *chunk; /* into the payload parsed */
    size_t chunk_len;
} usmp_fragment_t;

/* Parses a DATA_FRAGMENT payload against this side's limits (spec 6.4).
 * Errors: USMP_ERR_MALFORMED (no chunk, or the chunk ends past total),
 * USMP_ERR_TOO_LARGE (total over max_message), USMP_ERR_UNEXPECTED (total
 * fits one record: it had to be a DATA). A payload without a chunk is
 * MALFORMED before total is looked at. */
static inline int usmp_fragment_parse(usmp_fragment_t *f, const uint8_t *payload, size_t len,
                                      uint16_t max_record, uint16_t max_message)
{
    if (len < USMP_FRAGMENT_HEADER_BYTES + 1u) {
        return USMP_ERR_MALFORMED;
    }
    f->total = usmp_get_u16(payload);
    f->offset = usmp_get_u16(payload + 2);
    f->chunk = payload + USMP_FRAGMENT_HEADER_BYTES;
    f->chunk_len = len - USMP_FRAGMENT_HEADER_BYTES;
    if (f->total > max_message) {
        return USMP_ERR_TOO_LARGE;
    }
    if (f->total <= max_record) {
        return USMP_ERR_UNEXPECTED;
    }
    if ((size_t)f->offset + f->chunk_len > f->total) {
        return USMP_ERR_MALFORMED;
    }
    return USMP_OK;
}

/* Empties the reassembly: no message in progress. */
static inline void usmp_reassembly_reset(usmp_reassembly_t *r)
{
    r->total = 0;
    r->len = 0;
}

/* Whether a message is partly received. */
static inline int usmp_reassembly_active(const usmp_reassembly_t *r)
{
    return r->total != 0;
}

/* Whether f may be applied (spec 6.4): a fragment at offset 0 starts a
 * message (datagram: replacing a partial one; stream: only when none is in
 * progress); any other continues the message in progress with the same
 * total at the offset reached (datagram: in the record after the previous
 * fragment's). USMP_ERR_UNEXPECTED otherwise. Changes nothing. */
static inline int usmp_reassembly_check(const usmp_reassembly_t *r, const usmp_fragment_t *f,
                                        int datagram, uint64_t seq)
{
    if (f->offset == 0) {
        return usmp_reassembly_active(r) && !datagram ? USMP_ERR_UNEXPECTED : USMP_OK;
    }
    if (!usmp_reassembly_active(r) || f->total != r->total || f->offset != r->len) {
        return USMP_ERR_UNEXPECTED;
    }
#if USMP_DATAGRAM
    if (datagram && seq != r->last_seq + 1u) {
        return USMP_ERR_UNEXPECTED;
    }
#else
    (void)seq;
#endif
    return USMP_OK;
}

/* Copies a checked fragment into buf (at least f->total bytes) and
 * advances. Returns 1 when the message is complete (buf holds all total
 * bytes; the reassembly is idle again), else 0. */
static inline int usmp_reassembly_apply(usmp_reassembly_t *r, uint8_t *buf,
                                        const usmp_fragment_t *f, uint64_t seq)
{
    memcpy(buf + f->offset, f->chunk, f->chunk_len);
    r->total = f->total;
    r->len = (uint16_t)(f->offset + f->chunk_len);
#if USMP_DATAGRAM
    r->last_seq = seq;
#else
    (void)seq;
#endif
    if (r->len == r->total) {
        usmp_reassembly_reset(r);
        return 1;
    }
    return 0;
}

#endif /* USMP_FRAGMENT_H */
