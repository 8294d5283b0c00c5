/*
 * usmp_wire.h - big-endian field access and frame layout constants
 * (spec/protocol.md sections 1, 4 and 6). Internal to the core.
 */
#ifndef USMP_WIRE_H
#define USMP_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* A datagram handshake frame's header: the type byte alone (spec 4.1; a
 * stream frame has the type and a u16 length, USMP_STREAM_HEADER_BYTES). */
#define USMP_DATAGRAM_HANDSHAKE_HEADER_BYTES 1u

/* Handshake bodies (spec section 4). */
#define USMP_HELLO_BODY_BYTES        44u
#define USMP_COOKIE_BYTES            16u
#define USMP_CHALLENGE_BODY_BYTES    54u
#define USMP_HELLO_ACK_BODY_BYTES    16u
#define USMP_SESSION_OK_BODY_BYTES   24u
#define USMP_ERROR_BODY_BYTES        1u
#define USMP_MAC_BYTES               16u
#define USMP_NONCE_BYTES             16u
#define USMP_SESSION_INDEX_BYTES     3u
#define USMP_COOKIE_SECRET_BYTES     32u

/* HELLO body offsets. */
#define USMP_HELLO_VERSIONS          0u
#define USMP_HELLO_SUITES            1u
#define USMP_HELLO_DEVICE_ID         2u
#define USMP_HELLO_EPHEMERAL         8u
#define USMP_HELLO_MAX_RECORD        40u
#define USMP_HELLO_MAX_MESSAGE       42u
#define USMP_HELLO_COOKIE            44u

/* CHALLENGE body offsets. */
#define USMP_CHALLENGE_VERSION       0u
#define USMP_CHALLENGE_SUITE         1u
#define USMP_CHALLENGE_NONCE         2u
#define USMP_CHALLENGE_EPHEMERAL     18u
#define USMP_CHALLENGE_MAX_RECORD    50u
#define USMP_CHALLENGE_MAX_MESSAGE   52u

#define USMP_VERSION_1               1u
#define USMP_SUITE_1                 1u

/* DATA_FRAGMENT payload header: total (u16) || offset (u16). */
#define USMP_FRAGMENT_HEADER_BYTES   4u

/* Key usage limits in AES blocks and records (spec section 7). */
#define USMP_USAGE_SOFT_LIMIT        ((uint64_t)1 << 34)
#define USMP_USAGE_HARD_LIMIT        ((uint64_t)1 << 36)
#define USMP_RECORD_COUNTER_LIMIT    ((uint64_t)1 << 36)

static inline void usmp_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline uint16_t usmp_get_u16(const uint8_t *p)
{
    return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);
}

/* Big-endian integer of n bytes (n <= 8). */
static inline void usmp_put_be(uint8_t *p, uint64_t v, size_t n)
{
    while (n > 0) {
        n--;
        p[n] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t usmp_get_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Wrap-safe "a is at or after b" for 32-bit millisecond clocks. */
static inline int usmp_time_reached(uint32_t now, uint32_t deadline)
{
    return (int32_t)(now - deadline) >= 0;
}

#endif /* USMP_WIRE_H */
