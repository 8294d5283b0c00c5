/*
 * usmp.h - the USMP device API: connect, send, recv.
 *
 *     usmp_transport_t transport;
 *     usmp_tcp_transport_init(&transport, "192.168.1.100", 9000);
 *     usmp_ctx_t ctx;
 *     usmp_config_t cfg = { .psk = PSK, .psk_len = sizeof PSK - 1, .keepalive_ms = 5000 };
 *     if (usmp_connect(&ctx, &transport, &cfg) != USMP_OK) { ... }
 *     usmp_send(&ctx, msg, len);
 *     int n = usmp_recv(&ctx, buf, sizeof buf, 3000);  // bytes, 0 on timeout, <0 error
 *     usmp_keepalive_tick(&ctx);  // PING when idle, dead-peer detection, reconnect
 *
 * Over UDP or a UART the same calls run datagram mode (spec section 8);
 * only the init call changes (usmp_transport.h), and the library must be
 * built with USMP_DATAGRAM (usmp_options.h; the ESP-IDF option
 * CONFIG_USMP_DATAGRAM):
 *     usmp_udp_transport_init(&transport, "192.168.1.100", 9000);
 *     usmp_uart_transport_init(&transport, "/dev/ttyUSB0", 115200);
 * Datagram mode delivers each message at most once, intact and whole, but
 * not every message: a lost record is not resent (spec 8.5). The counters
 * of usmp_stats_t say how many datagrams were dropped and why.
 *
 * Conventions
 *  - Results: USMP_OK (0) or a negative USMP_ERR_* from usmp_errors.h;
 *    usmp_recv returns a byte count. usmp_strerror(code) explains a code.
 *  - Memory: usmp_ctx_t holds everything, buffers included (sized by
 *    USMP_MAX_RECORD and USMP_MAX_MESSAGE in usmp_options.h); it may be
 *    static. No call allocates. The PSK bytes and the transport must stay
 *    valid as long as the context is used: the context keeps pointers to
 *    them for reconnecting. Besides the contexts the library keeps one
 *    8-byte static: the count of handshakes started since boot (spec 5.8).
 *  - Blocking: usmp_connect, usmp_send and usmp_recv block, usmp_recv at
 *    most timeout_ms. usmp_connect_start / usmp_connect_poll and
 *    usmp_keepalive_tick never wait longer than the timeout they are given
 *    (keepalive_tick: not at all, except while it runs a reconnect).
 *  - Threads: a context belongs to one task at a time. Handshakes of
 *    different contexts must not start at the same moment from different
 *    tasks (the connection counter is not atomic; two handshakes with the
 *    same counter would rely on the random source alone, spec 5.8).
 *  - The five port hooks of usmp_port.h must be provided by the platform.
 */
#ifndef USMP_H
#define USMP_H

#include <stddef.h>
#include <stdint.h>

#include "usmp_engine.h"
#include "usmp_errors.h"
#include "usmp_options.h"
#include "usmp_port.h"
#include "usmp_transport.h"

#ifdef __cplusplus
extern "C" {
#endif

#define USMP_VERSION_STRING "0.1.0"

/* The record limit the device announces in datagram mode: USMP_MAX_RECORD,
 * at most the datagram maximum (spec 4.1). */
#define USMP_DATAGRAM_LIMIT(max_record)                                                            \
    ((max_record) < USMP_DATAGRAM_MAX_RECORD ? (max_record) : USMP_DATAGRAM_MAX_RECORD)

typedef struct {
    const uint8_t *psk; /* 16 .. 64 high-entropy bytes; no default exists */
    size_t psk_len;
    uint32_t keepalive_ms; /* PING after this long without a record; 0: off */
    /* dead peer after this long without an answer; 0: keepalive_ms */
    uint32_t pong_timeout_ms;
    uint32_t handshake_timeout_ms; /* 0: USMP_HANDSHAKE_TIMEOUT_MS */
    uint8_t no_reconnect;          /* 1: usmp_keepalive_tick does not reconnect a lost session */
    /* A value that never repeats across boots of this device, e.g. a
     * counter kept in NVS, advanced and stored before the first connect of
     * each boot; 0 when the device has none. With the connection counter
     * the library keeps in RAM it goes into every ephemeral key (spec 5.8),
     * so a random source that repeats its output after a reset cannot make
     * the device accept a replayed session (spec/security.md section 6). */
    uint64_t boot_counter;
} usmp_config_t;

/* Counters for diagnostics and the demo's report. */
typedef struct {
    uint32_t messages_sent, messages_received;
    uint32_t bytes_sent, bytes_received; /* on the wire, headers and tags included */
    uint32_t last_send_wire_bytes;       /* what the last usmp_send put on the wire */
    uint32_t last_rtt_ms;                /* last PING/PONG round trip; 0 if none yet */
    uint32_t reconnects;                 /* sessions re-established by keepalive_tick */
    /* CONTROL records on a channel nothing handles (spec 6.7) */
    uint32_t control_discarded;
#if USMP_DATAGRAM
    /* Datagram transports only (stream errors end the session instead). */
    /* received, then dropped by the engine: a
     * duplicate (REPLAY), a bad tag, a stray
     * frame, an unauthenticated ERROR, ... */
    uint32_t datagrams_dropped;
    /* dropped by the transport before the
     * engine: a corrupt or oversize COBS frame,
     * a UDP datagram longer than the buffer */
    uint32_t framing_errors;
    int last_drop; /* the condition of the last drop of either kind */
#endif
} usmp_stats_t;

#if USMP_OTA
struct usmp_ota; /* usmp_ota.h */
#endif

typedef struct usmp_ctx {
    usmp_engine_t engine;
    usmp_transport_t *transport;
    usmp_config_t config;
    usmp_stats_t stats;
    int last_error;
    uint32_t reconnect_attempt;
    uint32_t reconnect_at;
    uint8_t reconnect_due; /* reconnect_at is set */
    uint8_t message_ready; /* a received message waits for usmp_recv */
    const uint8_t *message;
    size_t message_len;
    uint8_t rx_buf[USMP_RECORD_BUFFER_BYTES(USMP_MAX_RECORD)];
    uint8_t tx_buf[USMP_RECORD_BUFFER_BYTES(USMP_MAX_RECORD)];
    /* What the transport delivered but the engine has not taken yet; the
     * engine copies it into rx_buf, so a small chunk is enough. */
    uint8_t in_buf[USMP_INPUT_CHUNK_BYTES];
    uint16_t in_len, in_off;
#if USMP_MAX_MESSAGE > USMP_MAX_RECORD
    uint8_t reassembly_buf[USMP_MAX_MESSAGE];
#endif
#if USMP_DATAGRAM
    /* Datagram transports deliver whole datagrams: one is received here
     * (a UART transport decodes its COBS frame into it as it arrives). */
    uint8_t datagram_buf[USMP_RECORD_BUFFER_BYTES(USMP_DATAGRAM_LIMIT(USMP_MAX_RECORD))];
#endif
#if USMP_OTA
    /* CONTROL channel 0x01 goes here once usmp_ota_attach set it. */
    struct usmp_ota *ota;
#endif
} usmp_ctx_t;

/* Opens the transport and runs the handshake, blocking until the session is
 * established or fails (at most the handshake timeout after the transport
 * connects). Over a datagram transport the handshake flight is resent with
 * backoff (spec 8.2) and a gateway's cookie is answered (spec 8.3).
 * Errors: USMP_ERR_ARG (also: a datagram transport in a build without
 * USMP_DATAGRAM), USMP_ERR_PSK (not 16 .. 64 bytes), the
 * transport's errors, USMP_ERR_TIMEOUT, USMP_ERR_PEER_ERROR when the
 * gateway's ERROR ended the handshake (its code: usmp_peer_code, e.g.
 * USMP_CODE_AUTH_FAILED for a wrong PSK or an unknown device, or
 * USMP_CODE_BUSY), or what this side detected itself (USMP_ERR_AUTH_FAILED:
 * the gateway's SESSION_OK MAC was wrong, USMP_ERR_MALFORMED, ...).
 * ERROR is unauthenticated: anyone on the path can send one, so treat
 * USMP_ERR_PEER_ERROR as a claim, never as proof that the key is wrong. */
int usmp_connect(usmp_ctx_t *ctx, usmp_transport_t *transport, const usmp_config_t *cfg);

/* Non-blocking connect for event loops: usmp_connect_start opens the
 * transport and sends HELLO; then call usmp_connect_poll until it returns
 * USMP_OK (established) or an error. It returns USMP_ERR_WOULD_BLOCK while
 * the handshake runs, waiting at most wait_ms for data (0: not at all). */
int usmp_connect_start(usmp_ctx_t *ctx, usmp_transport_t *transport, const usmp_config_t *cfg);
int usmp_connect_poll(usmp_ctx_t *ctx, uint32_t wait_ms);

/* Sends one message of 0 .. peer's max_message bytes (fragmented when it
 * is larger than one record), blocking until the transport took it all.
 * USMP_ERR_MESSAGE_TOO_LARGE sends nothing. */
int usmp_send(usmp_ctx_t *ctx, const uint8_t *msg, size_t len);

/* Waits at most timeout_ms for one message and copies it into buf. Returns
 * its length, 0 on timeout, or a negative error (USMP_ERR_PEER_CLOSED when
 * the gateway said BYE). A message longer than cap gives USMP_ERR_BUFFER
 * and stays queued for a call with a larger buffer. Note that a 0-byte
 * message also returns 0: use usmp_recv_message to tell it from a timeout. */
int usmp_recv(usmp_ctx_t *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms);

/* As usmp_recv, but returns USMP_OK with *len set (0 for an empty message)
 * and USMP_ERR_WOULD_BLOCK on timeout. */
int usmp_recv_message(usmp_ctx_t *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms, size_t *len);

/* Call often (every 100 ms is plenty). Answers PINGs, sends a PING when the
 * link has been idle for keepalive_ms, detects a dead gateway, and, unless
 * no_reconnect is set, reconnects a lost session with exponential backoff
 * and jitter (spec section 11). Messages that arrive meanwhile wait for
 * usmp_recv. Returns USMP_OK while the session is up, USMP_ERR_WOULD_BLOCK
 * while waiting to reconnect, or the error that ended the session. */
int usmp_keepalive_tick(usmp_ctx_t *ctx);

/* Sends BYE, closes the transport and wipes the keys. */
int usmp_close(usmp_ctx_t *ctx);

/* The wire code the gateway sent (spec 9.1): of its ERROR after
 * USMP_ERR_PEER_ERROR, of its BYE after USMP_ERR_PEER_CLOSED (the reason:
 * USMP_CODE_NONE, USMP_CODE_SHUTDOWN, ...); 0 otherwise. */
uint8_t usmp_peer_code(const usmp_ctx_t *ctx);

usmp_state_t usmp_state(const usmp_ctx_t *ctx);
/* The session id (8 bytes) once established. */
const uint8_t *usmp_session_id(const usmp_ctx_t *ctx);
const usmp_stats_t *usmp_stats(const usmp_ctx_t *ctx);

#ifdef __cplusplus
}
#endif

#endif /* USMP_H */
