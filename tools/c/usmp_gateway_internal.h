/*
 * usmp_gateway_internal.h - what the parts of the C gateway share, private
 * to them; users include usmp_gateway.h only.
 *
 * The gateway is one engine loop over three transports, in three files:
 *   usmp_gateway.c          the shared core: configuration, session slots
 *                           and their engines, on_message and
 *                           usmp_gateway_reply, output, the poll() loop,
 *                           the rate limiter (TCP connections and UDP
 *                           HELLOs, spec section 13), setup and shutdown;
 *   usmp_gateway_tcp.c      TCP: the pending queue, accepting, reading,
 *                           the write deadline (spec section 13);
 *   usmp_gateway_datagram.c UDP and serial: the demultiplexer (spec 8.4),
 *                           cookies (8.3), rebinding (6.5), the serial
 *                           line and its COBS frames (section 10).
 *
 * Conventions: the functions here are called with a valid gateway and,
 * where they take one, a session slot in use; they report failures as
 * -1 (or do nothing) and log through usmp_gw_say. Times are milliseconds
 * of usmp_port_millis() with wrap-safe 32-bit arithmetic. A "timeout"
 * argument is the poll timeout so far (ms); functions that take one
 * return (or store) it lowered to their nearest deadline.
 */
#ifndef USMP_GATEWAY_INTERNAL_H
#define USMP_GATEWAY_INTERNAL_H

#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>

#include "usmp_gateway.h"
#include "usmp_cobs.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

/* The first frame: a HELLO, 44-byte body (spec 4.1) after a 3-byte stream
 * header (5.1) or a 1-byte datagram type (5.2); a datagram HELLO may carry
 * a 16-byte cookie after it (8.3). */
#define HELLO_BODY_BYTES            44u
#define COOKIE_BYTES                16u
#define PENDING_FRAME_MAX           (USMP_STREAM_HEADER_BYTES + HELLO_BODY_BYTES)
#define DATAGRAM_HELLO_BYTES        (1u + HELLO_BODY_BYTES)
#define DATAGRAM_HELLO_COOKIE_BYTES (DATAGRAM_HELLO_BYTES + COOKIE_BYTES)
/* Spec 5.6: the session index is the first 3 bytes of the session id. */
#define SESSION_INDEX_BYTES 3u
#define SESSION_INDEX_LIMIT (1u << (8u * SESSION_INDEX_BYTES))
/* The largest datagram a session can be sent or receive, and its COBS form. */
#define DATAGRAM_MAX   USMP_RECORD_BUFFER_BYTES(USMP_DATAGRAM_MAX_RECORD)
#define COBS_FRAME_MAX (USMP_COBS_MAX_ENCODED(DATAGRAM_MAX) + 1u)
/* How long a serial line that reported a hang-up is left alone. */
#define SERIAL_HANGUP_RETRY_MS 200

struct usmp_gateway_session {
    usmp_gateway_t *gw;
    size_t slot;
    int in_use;
    int fd; /* TCP: the connection; else -1 */
    usmp_engine_t engine;
    uint8_t *rx, *tx, *reassembly, *reply;
    uint8_t in[4096]; /* TCP: read from the socket, not yet fed */
    size_t in_len, in_off;
    size_t reply_len, reply_done;
    int reply_pending;
    int established;
    int write_blocked; /* output has been waiting since write_blocked_ms */
    uint32_t write_blocked_ms;
    /* datagram transports */
    struct sockaddr_storage addr; /* UDP: the peer address (moves on rebinding, spec 6.5) */
    socklen_t addr_len;
    uint8_t hello[DATAGRAM_HELLO_BYTES]; /* the HELLO without its cookie (8.2, 8.4 rule 1) */
    uint64_t top;                        /* highest seq of a record that passed (6.5) */
    int have_top;
    char peer[64];
};

typedef struct {
    int fd;
    uint32_t accepted_ms;
    uint64_t order; /* accept order: the smallest is the oldest */
    uint8_t frame[PENDING_FRAME_MAX];
    size_t len;
    char peer[64];
} pending_t;

struct usmp_gateway {
    usmp_gateway_config_t cfg;
    usmp_gateway_session_t *sessions;
    size_t slots, active;
    size_t rx_cap, tx_cap;
    int fd; /* TCP listener, UDP socket or serial line; -1 without one */
    uint16_t port;
    /* TCP */
    pending_t *pending;
    size_t max_pending, pending_count;
    uint64_t accepted;
    uint32_t hello_timeout_ms, write_timeout_ms;
    usmp_rate_limiter_t limiter;
    /* the poll() set */
    struct pollfd *fds;
    size_t nfds;
    /* UDP cookies (spec 8.3) */
    size_t cookie_threshold;
    uint8_t cookie_secret[32], cookie_secret_previous[32];
    uint32_t cookie_secret_ms;
    /* serial: the COBS frame being collected, and output */
    uint8_t line[COBS_FRAME_MAX];
    size_t line_len;
    int line_overflow; /* discarding up to the next delimiter */
    int line_hung_up;  /* the line reported a hang-up: not polled for a while */
    uint8_t line_out[COBS_FRAME_MAX];
    uint8_t datagram[DATAGRAM_MAX + 1]; /* one over: a longer datagram is seen as too long */
    usmp_gateway_stats_t stats;
};

/* ------------------------------------------------------------------------
 * usmp_gateway.c: the shared core.
 * ------------------------------------------------------------------------ */

/* One line to cfg.log, if the gateway has one. */
void usmp_gw_say(const usmp_gateway_t *gw, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* b[0..n) as 2n lowercase hex digits and a NUL into out (2n + 1 bytes). */
void usmp_gw_hex(char *out, const uint8_t *b, size_t n);
/* 1 for UDP and serial (datagram mode, spec 5.2), 0 for TCP. */
int usmp_gw_is_datagram(const usmp_gateway_t *gw);
/* O_NONBLOCK on fd; 0, or -1 with errno. */
int usmp_gw_set_nonblocking(int fd);
/* "address:port" of an IPv4 or IPv6 peer into out ("?:0" for another family). */
void usmp_gw_describe_peer(const struct sockaddr_storage *ss, char *out, size_t cap);
/* 1 while the engine has output the transport has not taken. */
int usmp_gw_output_pending(usmp_gateway_session_t *c);
/* Sends what the engine has queued; 0, or -1 when the transport failed. */
int usmp_gw_flush(usmp_gateway_session_t *c);
/* Frees the slot: closes its connection, wipes its engine, logs why. */
void usmp_gw_end_session(usmp_gateway_session_t *c, const char *why);
/* ERROR(BUSY) from a throwaway engine to fd (TCP, then closed) or to 'to'
 * (datagram transports), spec section 13. */
void usmp_gw_refuse_busy(usmp_gateway_t *gw, int fd, const char *peer, const struct sockaddr *to,
                         socklen_t to_len);
/* A slot not in use, or NULL when all are. */
usmp_gateway_session_t *usmp_gw_free_slot(usmp_gateway_t *gw);
/* Starts an engine in slot c, its handshake timer from started_ms; 0 or -1. */
int usmp_gw_session_start(usmp_gateway_t *gw, usmp_gateway_session_t *c, const char *peer,
                          uint32_t started_ms);
/* An engine event: the session established (logged, spec 13 replacement)
 * or a message for cfg.on_message. */
void usmp_gw_handle_event(usmp_gateway_session_t *c, const usmp_event_t *ev);
/* Timers, output, the pending reply, and the end of the session if due. */
void usmp_gw_service_session(usmp_gateway_session_t *c);

/* ------------------------------------------------------------------------
 * usmp_gateway_tcp.c: TCP connections.
 * ------------------------------------------------------------------------ */

/* Spec section 13: 1 when a TCP session's output has made no progress for
 * write_timeout; else 0, with *timeout lowered to that deadline. Always 0
 * for datagram transports. */
int usmp_gw_write_stalled(usmp_gateway_t *gw, usmp_gateway_session_t *c, uint32_t now,
                          int *timeout);
/* Feeds a TCP session's buffered input while no reply is waiting. */
void usmp_gw_tcp_feed_input(usmp_gateway_session_t *c);
/* Expires pending connections and puts the others in the poll set. */
int usmp_gw_pending_poll_set(usmp_gateway_t *gw, uint32_t now, int timeout);
/* Reads the pending connections and the sessions poll() reported. */
void usmp_gw_tcp_read_ready(usmp_gateway_t *gw);
/* Accepts the connections waiting on the listener into the pending queue. */
void usmp_gw_tcp_accept_ready(usmp_gateway_t *gw);

/* ------------------------------------------------------------------------
 * usmp_gateway_datagram.c: UDP and the serial line.
 * ------------------------------------------------------------------------ */

/* The engine's random source for a datagram session (user: the session):
 * the session id starts with the slot number, its session index (5.6). */
void usmp_gw_datagram_session_random(void *user, uint8_t *buf, size_t len);
/* Opens cfg.serial_path raw at cfg.baud; the descriptor or -1. */
int usmp_gw_open_serial(usmp_gateway_t *gw);
/* One datagram to its peer: sendto, cfg.datagram_send, or one COBS frame
 * on the serial line (section 10); 0, or -1 when that frame could not
 * be encoded or written within write_timeout. */
int usmp_gw_send_datagram(usmp_gateway_t *gw, const uint8_t *data, size_t len,
                          const struct sockaddr *to, socklen_t to_len);
/* Spec 8.3: a new cookie secret when the current one is 120 s old. */
void usmp_gw_rotate_cookie_secret(usmp_gateway_t *gw);
/* The timeout lowered to the next cookie secret rotation. */
int usmp_gw_cookie_secret_timeout(const usmp_gateway_t *gw, uint32_t now, int timeout);
/* Reads the UDP socket or the serial line when poll() reported it. */
void usmp_gw_datagram_read_ready(usmp_gateway_t *gw);

#endif
