/*
 * usmp_hello.h - the HELLO and CHALLENGE bodies as typed values, with
 * their encoders and parsers (spec/protocol.md sections 4.1, 4.2 and the
 * checks of 4.5 that need nothing but the body). Internal to the core and
 * used directly by the tests.
 *
 * Conventions
 *  - The values point into the buffers they were parsed from (device id,
 *    ephemeral key, nonce): nothing secret is copied, and the pointers
 *    live as long as those buffers.
 *  - An encoder whose ephemeral pointer is NULL leaves that field alone:
 *    the caller computes the public key in place, at body +
 *    USMP_HELLO_EPHEMERAL or USMP_CHALLENGE_EPHEMERAL.
 *  - The parsers check in the order of spec 4.5 (length, version, suite,
 *    limits) and return the first condition; a failed parse leaves the
 *    value unspecified. Limits are judged by usmp_limits_valid.
 *  - The functions are static inline, as in usmp_wire.h: the engine is
 *    their caller, and compiled into it they cost the device profile no
 *    flash and no stack over the code they replaced.
 */
#ifndef USMP_HELLO_H
#define USMP_HELLO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "usmp_engine.h"
#include "usmp_wire.h"

/* The largest max_record a mode allows (spec 6.6). */
static inline uint16_t usmp_record_limit_for_mode(uint8_t mode)
{
    return mode == USMP_MODE_STREAM ? USMP_STREAM_MAX_RECORD : USMP_DATAGRAM_MAX_RECORD;
}

/* Whether announced limits are in range for a mode: max_record 16 .. the
 * mode's limit, max_message at least max_record (spec 4.1, 6.6). */
static inline int usmp_limits_valid(uint8_t mode, uint16_t max_record, uint16_t max_message)
{
    return max_record >= USMP_MIN_RECORD && max_record <= usmp_record_limit_for_mode(mode) &&
           max_message >= max_record;
}

/* ------------------------------------------------------------------ HELLO */

typedef struct {
    uint8_t versions;          /* bitmap: bit v - 1 offers version v */
    uint8_t suites;            /* bitmap: bit s - 1 offers suite s */
    const uint8_t *device_id;  /* USMP_DEVICE_ID_BYTES */
    const uint8_t *ephemeral;  /* e_C, USMP_KEY_BYTES; NULL: already in place */
    uint16_t max_record, max_message;
} usmp_hello_t;

/* Writes the USMP_HELLO_BODY_BYTES of a HELLO body. */
static inline void usmp_hello_encode(uint8_t *body, const usmp_hello_t *hello)
{
    body[USMP_HELLO_VERSIONS] = hello->versions;
    body[USMP_HELLO_SUITES] = hello->suites;
    memcpy(body + USMP_HELLO_DEVICE_ID, hello->device_id, USMP_DEVICE_ID_BYTES);
    if (hello->ephemeral != NULL) {
        memcpy(body + USMP_HELLO_EPHEMERAL, hello->ephemeral, USMP_KEY_BYTES);
    }
    usmp_put_u16(body + USMP_HELLO_MAX_RECORD, hello->max_record);
    usmp_put_u16(body + USMP_HELLO_MAX_MESSAGE, hello->max_message);
}

/* Parses a HELLO body of body_len bytes (a datagram HELLO may carry a
 * cookie after it, which the parse leaves out). Errors, in this order:
 * USMP_ERR_MALFORMED (length), USMP_ERR_UNSUPPORTED_VERSION (version 1 not
 * offered), USMP_ERR_UNSUPPORTED_SUITE (suite 1 not offered),
 * USMP_ERR_MALFORMED (limits out of range for mode). */
static inline int usmp_hello_parse(usmp_hello_t *hello, const uint8_t *body, size_t body_len,
                                   uint8_t mode)
{
    if (body_len != USMP_HELLO_BODY_BYTES &&
        !(USMP_DATAGRAM && mode == USMP_MODE_DATAGRAM &&
          body_len == USMP_HELLO_BODY_BYTES + USMP_COOKIE_BYTES)) {
        return USMP_ERR_MALFORMED;
    }
    hello->versions = body[USMP_HELLO_VERSIONS];
    hello->suites = body[USMP_HELLO_SUITES];
    hello->device_id = body + USMP_HELLO_DEVICE_ID;
    hello->ephemeral = body + USMP_HELLO_EPHEMERAL;
    hello->max_record = usmp_get_u16(body + USMP_HELLO_MAX_RECORD);
    hello->max_message = usmp_get_u16(body + USMP_HELLO_MAX_MESSAGE);
    if (!(hello->versions & (1u << (USMP_VERSION_1 - 1u)))) {
        return USMP_ERR_UNSUPPORTED_VERSION;
    }
    if (!(hello->suites & (1u << (USMP_SUITE_1 - 1u)))) {
        return USMP_ERR_UNSUPPORTED_SUITE;
    }
    if (!usmp_limits_valid(mode, hello->max_record, hello->max_message)) {
        return USMP_ERR_MALFORMED;
    }
    return USMP_OK;
}

/* -------------------------------------------------------------- CHALLENGE */

typedef struct {
    uint8_t version;           /* the version chosen */
    uint8_t suite;             /* the suite chosen */
    const uint8_t *nonce;      /* USMP_NONCE_BYTES */
    const uint8_t *ephemeral;  /* e_S, USMP_KEY_BYTES; NULL: already in place */
    uint16_t max_record, max_message;
} usmp_challenge_t;

/* Writes the USMP_CHALLENGE_BODY_BYTES of a CHALLENGE body. */
static inline void usmp_challenge_encode(uint8_t *body, const usmp_challenge_t *challenge)
{
    body[USMP_CHALLENGE_VERSION] = challenge->version;
    body[USMP_CHALLENGE_SUITE] = challenge->suite;
    memcpy(body + USMP_CHALLENGE_NONCE, challenge->nonce, USMP_NONCE_BYTES);
    if (challenge->ephemeral != NULL) {
        memcpy(body + USMP_CHALLENGE_EPHEMERAL, challenge->ephemeral, USMP_KEY_BYTES);
    }
    usmp_put_u16(body + USMP_CHALLENGE_MAX_RECORD, challenge->max_record);
    usmp_put_u16(body + USMP_CHALLENGE_MAX_MESSAGE, challenge->max_message);
}

/* Parses a CHALLENGE body of body_len bytes. Errors, in this order:
 * USMP_ERR_MALFORMED (length), USMP_ERR_UNSUPPORTED_VERSION (not version
 * 1), USMP_ERR_UNSUPPORTED_SUITE (not suite 1), USMP_ERR_MALFORMED (limits
 * out of range for mode). */
static inline int usmp_challenge_parse(usmp_challenge_t *challenge, const uint8_t *body,
                                       size_t body_len, uint8_t mode)
{
    if (body_len != USMP_CHALLENGE_BODY_BYTES) {
        return USMP_ERR_MALFORMED;
    }
    challenge->version = body[USMP_CHALLENGE_VERSION];
    challenge->suite = body[USMP_CHALLENGE_SUITE];
    challenge->nonce = body + USMP_CHALLENGE_NONCE;
    challenge->ephemeral = body + USMP_CHALLENGE_EPHEMERAL;
    challenge->max_record = usmp_get_u16(body + USMP_CHALLENGE_MAX_RECORD);
    challenge->max_message = usmp_get_u16(body + USMP_CHALLENGE_MAX_MESSAGE);
    if (challenge->version != USMP_VERSION_1) {
        return USMP_ERR_UNSUPPORTED_VERSION;
    }
    if (challenge->suite != USMP_SUITE_1) {
        return USMP_ERR_UNSUPPORTED_SUITE;
    }
    if (!usmp_limits_valid(mode, challenge->max_record, challenge->max_message)) {
        return USMP_ERR_MALFORMED;
    }
    return USMP_OK;
}

#endif /* USMP_HELLO_H */
