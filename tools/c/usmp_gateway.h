/*
 * usmp_gateway.h - the C gateway: the engine's server role on POSIX
 * sockets, one thread, a fixed number of session slots. It is what
 * tools/c/usmp_server.c runs, and what the interop tests use as the C
 * counterpart of the Python gateway (USMPServer).
 *
 * Three transports share the slots and the engine handling:
 *   TCP    stream mode, one connection per session;
 *   UDP    datagram mode, one socket for every device: handshake frames
 *          are routed by source address, records by session index
 *          (spec 5.6, 8.4), with stateless cookies under load (8.3);
 *   SERIAL datagram mode in COBS frames (spec section 10) on one serial
 *          line, one session per line, no cookie (8.4 rule 4).
 *
 * The application sees whole messages through on_message and answers with
 * usmp_gateway_reply; the echo of usmp_server is one such callback.
 */
#ifndef USMP_GATEWAY_H
#define USMP_GATEWAY_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "usmp_engine.h"

/*
 * Conventions: times are milliseconds of usmp_port_millis() (wrap-safe
 * 32-bit arithmetic); a 0 in a config field means its default. A TCP
 * connection is "pending" until it has sent a complete first frame (its
 * HELLO); pending connections hold no session slot and no engine (spec
 * section 13). Functions that can fail return USMP_OK or a negative
 * USMP_ERR_* code (usmp_errors.h).
 */

typedef enum {
    USMP_GATEWAY_TCP = 0,
    USMP_GATEWAY_UDP,
    USMP_GATEWAY_SERIAL
} usmp_gateway_transport_t;

typedef struct usmp_gateway usmp_gateway_t;
typedef struct usmp_gateway_session usmp_gateway_session_t;

typedef void (*usmp_gateway_log_fn)(void *user, const char *line);

/* One whole message from a device. msg is valid only during the call. The
 * gateway reads no more input from this session until a reply given with
 * usmp_gateway_reply has been handed to the engine, so a device that does
 * not take its replies is slowed down, not buffered for. */
typedef void (*usmp_gateway_message_fn)(void *user, usmp_gateway_session_t *session,
                                        const uint8_t *msg, size_t len);

/* Datagram output without a socket (the UDP demultiplexer driven by a
 * fuzzer or an embedding that owns the socket): one datagram to address. */
typedef void (*usmp_gateway_datagram_send_fn)(void *user, const uint8_t *datagram, size_t len,
                                              const struct sockaddr *to, socklen_t to_len);

typedef struct {
    usmp_gateway_transport_t transport;
    const char *host;        /* TCP, UDP: address to bind, e.g. "127.0.0.1" */
    uint16_t port;           /* TCP, UDP: 0: any free port (reported in the log) */
    const char *serial_path; /* SERIAL: the line, e.g. "/dev/ttyUSB0" */
    uint32_t baud;           /* SERIAL: 0: 115200 */
    /* sessions and handshakes past their HELLO together; more get ERROR(BUSY) */
    size_t max_sessions;
    /* TCP: connections without a complete HELLO; 0: 256. One more evicts the oldest */
    size_t max_pending;
    /* UDP: handshakes in progress above which a HELLO needs a cookie
     * (spec 8.3); 0: half of max_sessions */
    size_t cookie_threshold;
    /* TCP: 0: 2000; a pending connection is closed without a word after it */
    uint32_t hello_timeout_ms;
    uint32_t handshake_timeout_ms; /* 0: 10000 */
    uint32_t idle_timeout_ms;      /* 0: 90000 */
    /* TCP, SERIAL: 0: 10000; output without progress this long drops the session */
    uint32_t write_timeout_ms;
    uint32_t handshake_rate;  /* new handshakes per second per source prefix; 0: 10 */
    uint32_t handshake_burst; /* ... with bursts up to this; 0: 20 */
    uint8_t rate_prefix_v4;   /* the prefix a source counts under: 0: /32 */
    uint8_t rate_prefix_v6;   /* 0: /64 (one host usually owns a /64) */
    uint16_t max_record;      /* 16 .. 65519 (UDP, SERIAL: .. 1207) */
    uint16_t max_message;     /* max_record .. 65535 */
    /* 1: one key serves every device, so device ids are only claims */
    int shared_psk;
    usmp_psk_lookup_fn psk_lookup;
    void *psk_lookup_user;
    usmp_gateway_message_fn on_message; /* NULL: messages are received and dropped */
    void *on_message_user;
    usmp_gateway_datagram_send_fn datagram_send; /* UDP: set to open no socket (see above) */
    void *datagram_send_user;
    usmp_gateway_log_fn log; /* status lines; never keys or payloads */
    void *log_user;
    /* usmp_gateway_run: set to nonzero to stop: BYE(SHUTDOWN) to all */
    volatile sig_atomic_t *stop;
} usmp_gateway_config_t;

/* What a gateway has dropped, for the application to see the loss (spec
 * 8.5). Datagram transports only; TCP ends the session instead. */
typedef struct {
    uint64_t messages_in;       /* whole messages given to on_message */
    uint64_t messages_out;      /* replies handed to the engine */
    uint64_t datagrams_in;      /* datagrams or COBS frames received */
    uint64_t cobs_errors;       /* SERIAL: corrupt or oversized COBS frames dropped */
    uint64_t records_dropped;   /* records the engines dropped (REPLAY, BAD_RECORD, ...) */
    uint64_t unknown_session;   /* records for no live session index */
    uint64_t handshake_dropped; /* handshake frames dropped (late HELLO, malformed, ...) */
    uint64_t cookies_sent;      /* UDP: COOKIE answers (spec 8.3) */
    uint64_t busy_sent;         /* ERROR(BUSY) answers */
    uint64_t rebinds;           /* UDP: sessions moved to a new source address (spec 6.5) */
    uint64_t control_discarded; /* CONTROL records on a channel the gateway does not handle (6.7) */
} usmp_gateway_stats_t;

/* Checks cfg, allocates the slots and opens the transport (listens, binds
 * or opens the line). NULL when it cannot (with a log line saying why). */
usmp_gateway_t *usmp_gateway_setup(const usmp_gateway_config_t *cfg);

/* Waits for input or the next timer, at most max_wait_ms (-1: until the
 * next timer), and serves what arrived. Returns USMP_OK, or
 * USMP_ERR_TRANSPORT when the event loop itself failed (logged). */
int usmp_gateway_poll_once(usmp_gateway_t *gw, int max_wait_ms);

/* BYE(SHUTDOWN) to every session, best effort; closes everything, wipes
 * every engine and frees gw. */
void usmp_gateway_shutdown(usmp_gateway_t *gw);

/* setup, poll_once until *cfg->stop is set, shutdown. Returns 0 on a clean
 * stop, -1 when setup failed. */
int usmp_gateway_run(const usmp_gateway_config_t *cfg);

/* The bound port (TCP, UDP), 0 otherwise. */
uint16_t usmp_gateway_port(const usmp_gateway_t *gw);

void usmp_gateway_stats(const usmp_gateway_t *gw, usmp_gateway_stats_t *out);

/* UDP with cfg.datagram_send: one datagram received from address from. */
void usmp_gateway_datagram_input(usmp_gateway_t *gw, const uint8_t *datagram, size_t len,
                                 const struct sockaddr *from, socklen_t from_len);

/* Runs the timers due now (with cfg.datagram_send, where no poll_once runs). */
void usmp_gateway_tick(usmp_gateway_t *gw);

/* From on_message: queues one message to that session's device (at most
 * max_message bytes, copied). USMP_ERR_WOULD_BLOCK while an earlier reply
 * is still being handed to the engine (never from inside on_message, since
 * no input is read while a reply is pending), USMP_ERR_MESSAGE_TOO_LARGE,
 * USMP_ERR_STATE when the session is no longer established. */
int usmp_gateway_reply(usmp_gateway_session_t *session, const uint8_t *msg, size_t len);

/* The session's authenticated device id (USMP_DEVICE_ID_BYTES) and id
 * (USMP_SESSION_ID_BYTES). */
const uint8_t *usmp_gateway_session_device_id(const usmp_gateway_session_t *session);
const uint8_t *usmp_gateway_session_id(const usmp_gateway_session_t *session);

/* ------------------------------------------------------------------------
 * Per-source handshake rate limit (spec section 13): a token bucket per
 * source prefix. IPv4 addresses count per /prefix_v4, IPv6 per /prefix_v6
 * (an IPv4-mapped IPv6 address counts as its IPv4 address). At most
 * USMP_RATE_LIMIT_SOURCES buckets are kept; the least recently used one is
 * reused first, which only ever makes the limiter more lenient.
 * ------------------------------------------------------------------------ */

#define USMP_RATE_LIMIT_SOURCES 1024u

typedef struct {
    uint8_t prefix[16]; /* the source address with the bits past the prefix cleared */
    uint8_t family;     /* 4 or 6; 0: unused */
    uint32_t last_ms;
    uint32_t millitokens; /* 1000 per connection allowed */
} usmp_rate_bucket_t;

typedef struct {
    uint32_t rate_per_s;
    uint32_t burst;
    unsigned prefix_v4, prefix_v6;
    usmp_rate_bucket_t buckets[USMP_RATE_LIMIT_SOURCES];
} usmp_rate_limiter_t;

/* Buckets start full (burst) and refill at rate_per_s. Prefix lengths are
 * clamped to 1..32 and 1..128. */
void usmp_rate_limiter_init(usmp_rate_limiter_t *rl, uint32_t rate_per_s, uint32_t burst,
                            unsigned prefix_v4, unsigned prefix_v6);

/* 1: a connection from source may go on (a token is taken); 0: refuse it.
 * A source that is neither AF_INET nor AF_INET6 is always allowed. */
int usmp_rate_limiter_allow(usmp_rate_limiter_t *rl, const struct sockaddr *source,
                            uint32_t now_ms);

#endif /* USMP_GATEWAY_H */
