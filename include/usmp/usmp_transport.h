/*
 * usmp_transport.h - how the blocking API moves bytes.
 *
 * A transport is five function pointers, a context and a small state area.
 * USMP provides three, each with its own header and init call:
 *
 *     usmp_tcp.h   usmp_tcp_transport_init(&t, "192.168.1.100", 9000)   stream
 *     usmp_udp.h   usmp_udp_transport_init(&t, "192.168.1.100", 9000)   datagram
 *     usmp_uart.h  usmp_uart_transport_init(&t, "/dev/ttyUSB0", 115200) datagram (COBS)
 *
 * (docs/transports.md says which to choose when.) A new link (a radio) is
 * five functions; its state goes in `state` when it fits, else behind ctx.
 *
 * Conventions
 *  - Stream transports (TCP) may return any number of bytes from recv;
 *    datagram transports set `datagram` and return exactly one whole
 *    datagram (UART: one decoded COBS frame) per recv. The device API runs
 *    the engine in datagram mode over them, which needs USMP_DATAGRAM
 *    (usmp_options.h); without it usmp_connect refuses them (USMP_ERR_ARG).
 *  - Results: a count, or USMP_OK / a negative USMP_ERR_* (usmp_errors.h).
 *  - The state area is opaque storage for the built-in transports: each
 *    one's state struct is in its own header and checked at compile time
 *    to fit USMP_TRANSPORT_STATE_BYTES, so one transport's needs never grow
 *    another's struct beyond that size.
 *  - UDP and UART exist only with USMP_DATAGRAM (usmp_udp.h, usmp_uart.h
 *    refuse to compile without it).
 */
#ifndef USMP_TRANSPORT_H
#define USMP_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "usmp_options.h"

/* Bytes of the state area in usmp_transport_t. With USMP_DATAGRAM, 64: the
 * state of every built-in transport fits on 32- and 64-bit targets (UART
 * 52 / 64 bytes, TCP 16 / 24, UDP 12 / 16). Without it only TCP can be
 * used (usmp_connect refuses datagram transports, and the UDP and UART
 * transports are not compiled), so the area is TCP's size and
 * usmp_transport_t stays as small as before. A custom transport's larger
 * state can live behind ctx instead. */
#ifndef USMP_TRANSPORT_STATE_BYTES
#if USMP_DATAGRAM
#define USMP_TRANSPORT_STATE_BYTES 64
#else
#define USMP_TRANSPORT_STATE_BYTES (2 * sizeof(void *) + 8)
#endif
#endif

typedef struct usmp_transport {
    /* Sends up to len bytes. Returns the number sent (a stream may send
     * fewer; 0 means "try again"), or USMP_ERR_TRANSPORT. A datagram
     * transport sends the whole datagram or nothing; a datagram lost on
     * the way is not an error (the engine retransmits what must arrive). */
    int (*send)(void *ctx, const uint8_t *data, size_t len);

    /* Waits at most timeout_ms (0: do not wait) for data and returns the
     * number of bytes read (> 0), 0 on timeout, USMP_ERR_TRANSPORT_CLOSED
     * when the peer closed the connection, or USMP_ERR_TRANSPORT.
     * Datagram transports also return, for one datagram that was dropped
     * (the session goes on, the caller counts it): USMP_ERR_MALFORMED for a
     * corrupt frame (a COBS code that runs past the delimiter) and
     * USMP_ERR_TOO_LARGE for one longer than cap. A datagram transport may
     * keep the part of a frame received so far in buf between calls: the
     * caller passes the same buf and cap, untouched, until recv returns a
     * datagram (another buffer discards the partial frame). */
    int (*recv)(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms);

    /* Closes the connection. Safe to call when it is already closed. */
    void (*close)(void *ctx);

    /* Closes any connection and opens a new one to the same peer. The
     * blocking API calls it for the first connect too. USMP_OK or
     * USMP_ERR_TRANSPORT / USMP_ERR_TIMEOUT. */
    int (*reconnect)(void *ctx);

    /* Optional (NULL: the API asks recv with timeout 0 instead). > 0 when
     * recv would return without waiting (data, a datagram, or an error),
     * 0 when it would wait, negative on error. The device API asks it
     * before each zero-wait read (usmp_keepalive_tick, usmp_connect_poll
     * and usmp_recv with a 0 timeout), so an idle tick costs one cheap
     * check rather than a read. */
    int (*available)(void *ctx);

    void *ctx;        /* handed to the five functions */
    uint8_t datagram; /* 1: each recv returns one whole datagram */
    /* State of the built-in transports (usmp_tcp.h, usmp_udp.h,
     * usmp_uart.h); the union aligns it for any of their fields. */
    union {
        uint8_t bytes[USMP_TRANSPORT_STATE_BYTES];
        void *align_pointer;
        uint32_t align_u32;
    } state;
} usmp_transport_t;

/* For a transport's own header: fails the build when its state struct
 * does not fit the state area (raise USMP_TRANSPORT_STATE_BYTES). */
#define USMP_TRANSPORT_STATE_FITS(type)                                                            \
    typedef char                                                                                   \
        usmp_transport_state_fits_##type[sizeof(type) <= USMP_TRANSPORT_STATE_BYTES ? 1 : -1]

#ifdef __cplusplus
}
#endif

/* The built-in transports, so that usmp.h alone gives every init call. */
#include "usmp_tcp.h"
#if USMP_DATAGRAM
#include "usmp_uart.h"
#include "usmp_udp.h"
#endif

#endif /* USMP_TRANSPORT_H */
