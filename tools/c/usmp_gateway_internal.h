/*
 * usmp_gateway_internal.h - what the parts of the C gateway share, private
 * to them; users include usmp_gateway.h only.
 *
 * The gateway is one engine loop over three transports, in three files:
 *   usmp_gateway.c          the shared core: configuration, session slots
 *                           and their engines, on_message and
 *                           usmp_gateway_reply, output, the event loop
 *                           (usmp_poller.h) and the timer heap, the rate
 *                           limiter (TCP connections and UDP HELLOs, spec
 *                           section 13), setup and shutdown;
 *   usmp_gateway_tcp.c      TCP: the pending queue, accepting, reading and
 *                           framing, the write deadline (spec section 13);
 *   usmp_gateway_datagram.c UDP and serial: the demultiplexer (spec 8.4),
 *                           cookies (8.3), rebinding (6.5), the serial
 *                           line and its COBS frames (section 10).
 *
 * Cost per event: nothing in the loop visits every session. A descriptor's
 * events come with its session or pending connection (usmp_poller.h); the
 * sessions' deadlines are a min-heap (the next one is its top); pending
 * connections wait in accept order, which is also their deadline order;
 * free slots are a stack; established sessions are found by device id in
 * a hash table (the replacement of spec section 13). Sessions that
 * something outside their own event changed (a reply from another
 * session's callback, a replacement) are put on a "dirty" list and served
 * once at the end of the pass.
 *
 * Memory per session: a slot (the engine and the fields below) and what
 * the session has in flight. The engines share one receive and one send
 * buffer (gw->rx, gw->tx): datagrams are fed whole, and TCP is framed by
 * the gateway (spec 5.1), which gives an engine whole frames, or a header
 * alone that it puts back into rx before that frame's body (see
 * usmp_gateway_tcp.c), so no engine relies on rx between its calls; and
 * the gateway takes all of an engine's output after each call, into the
 * session's own out buffer when the transport cannot take it at once, so
 * tx is empty between calls. A
 * session's held input, unsent output and pending reply are allocated at
 * their size when there are any and freed when they are gone: an idle
 * session owns none. Reassembly buffers (max_message each, needed only
 * for fragmented messages, spec 6.4) are slices of one anonymous mapping,
 * so a session that never receives a fragment never touches a page of
 * its slice.
 *
 * Conventions: the functions here are called with a valid gateway and,
 * where they take one, a session slot in use; they report failures as
 * -1 (or do nothing) and log through usmp_gw_say. Times are milliseconds
 * of usmp_port_millis() with wrap-safe 32-bit arithmetic.
 */
#ifndef USMP_GATEWAY_INTERNAL_H
#define USMP_GATEWAY_INTERNAL_H

#include <stdint.h>
#include <sys/socket.h>

#include "usmp_gateway.h"
#include "usmp_cobs.h"
#include "usmp_poller.h"

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

/* A growable byte buffer that is freed when emptied: a session's held
 * input and unsent output (NULL, 0, 0 when there is none). */
typedef struct {
    uint8_t *data;
    size_t len, off; /* bytes [off, len) are still to be used */
} usmp_gw_bytes_t;

struct usmp_gateway_session {
    usmp_gateway_t *gw;
    size_t slot;
    int in_use;
    int fd; /* TCP: the connection; else -1 */
    usmp_engine_t engine;
    /* TCP: input not fed yet: a partial frame, or frames waiting for a reply */
    usmp_gw_bytes_t held;
    int header_fed; /* TCP: the engine holds the header of the first held frame */
    /* engine output the transport has not taken yet (TCP) */
    usmp_gw_bytes_t out;
    /* the part of the reply not yet handed to the engine (a copy) */
    uint8_t *reply;
    size_t reply_len, reply_done;
    int reply_pending;
    int established;
    int write_blocked; /* output has been waiting since write_blocked_ms */
    uint32_t write_blocked_ms;
    unsigned interest; /* TCP: the USMP_POLLER_* events watched */
    size_t heap_pos;   /* index in gw->heap; SIZE_MAX: no deadline */
    uint32_t deadline; /* the next engine or write deadline, while in the heap */
    usmp_gateway_session_t *dirty_next;
    int dirty;
    usmp_gateway_session_t *device_next; /* the device id table's chain */
    int in_device_table;
    /* datagram transports */
    struct sockaddr_storage addr; /* UDP: the peer address (moves on rebinding, spec 6.5) */
    socklen_t addr_len;
    uint8_t hello[DATAGRAM_HELLO_BYTES]; /* the HELLO without its cookie (8.2, 8.4 rule 1) */
    uint64_t top;                        /* highest seq of a record that passed (6.5) */
    int have_top;
    char peer[64];
};

/* A TCP connection without its first frame yet: no slot, no engine. In
 * accept order in a list (the oldest first), which is also the order of
 * their hello deadlines, since every one has the same timeout. */
typedef struct pending pending_t;
struct pending {
    int fd; /* -1: free */
    uint32_t accepted_ms;
    pending_t *older, *newer;
    uint8_t frame[PENDING_FRAME_MAX];
    size_t len;
    char peer[64];
};

/* What the poller reports the listener or the one datagram descriptor as. */
typedef struct {
    int kind;
} usmp_gw_tag_t;

struct usmp_gateway {
    usmp_gateway_config_t cfg;
    usmp_gateway_session_t *sessions;
    size_t slots, active;
    size_t *free_slots; /* a stack of the slots that ended, taken first */
    size_t free_count;
    size_t used_slots; /* slots [used_slots, slots) have never been used */
    int fd;            /* TCP listener, UDP socket or serial line; -1 without one */
    uint16_t port;
    usmp_gw_tag_t fd_tag;
    /* every engine's receive and send buffer (see the top of this file) */
    uint8_t *rx, *tx;
    size_t rx_cap, tx_cap;
    /* TCP reads land here first (see usmp_gateway_tcp.c) */
    uint8_t *read_buf;
    size_t read_cap;
    /* the reassembly slices: slot i's is reassembly + i * max_message */
    uint8_t *reassembly;
    size_t reassembly_bytes;
    /* TCP */
    pending_t *pending;
    pending_t **free_pending; /* a stack of free entries */
    size_t max_pending, pending_count;
    pending_t *oldest, *newest;
    uint32_t hello_timeout_ms, write_timeout_ms;
    usmp_rate_limiter_t limiter;
    /* the event loop */
    usmp_poller_t *poller;
    usmp_gateway_session_t **heap; /* by deadline, the nearest at 0 */
    size_t heap_len;
    usmp_gateway_session_t *dirty; /* sessions to serve at the end of the pass */
    /* established sessions by device id (spec section 13 replacement) */
    usmp_gateway_session_t **device_table;
    size_t device_mask;
    uint8_t device_key[16];
    /* UDP cookies (spec 8.3) */
    size_t cookie_threshold;
    uint8_t cookie_secret[32], cookie_secret_previous[32];
    uint32_t cookie_secret_ms;
    /* serial: the COBS frame being collected, and output */
    uint8_t line[COBS_FRAME_MAX];
    size_t line_len;
    int line_overflow; /* discarding up to the next delimiter */
    int line_hung_up;  /* the line reported a hang-up: not watched for a while */
    uint32_t line_hung_up_ms;
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
/* Appends n bytes to b (grown to fit); 0, or -1 when out of memory. */
int usmp_gw_bytes_append(usmp_gw_bytes_t *b, const uint8_t *data, size_t n);
/* n bytes of b were used; b is freed when none are left. */
void usmp_gw_bytes_consume(usmp_gw_bytes_t *b, size_t n);
/* Frees b's bytes, used or not. */
void usmp_gw_bytes_free(usmp_gw_bytes_t *b);
/* 1 while the session has output the transport has not taken. */
int usmp_gw_output_pending(usmp_gateway_session_t *c);
/* Sends what the engine has queued, and keeps in c->out what the
 * transport does not take now, so that the shared tx is empty again; 0,
 * or -1 when the transport failed. */
int usmp_gw_flush(usmp_gateway_session_t *c);
/* The transport can carry nothing more: the engine is told (its output is
 * dropped, TRANSPORT_CLOSED unless it had closed cleanly), and so is
 * everything the session held. */
void usmp_gw_transport_lost(usmp_gateway_session_t *c);
/* Frees the slot: closes its connection, wipes its engine, logs why. */
void usmp_gw_end_session(usmp_gateway_session_t *c, const char *why);
/* ERROR(BUSY) from a throwaway engine to fd (TCP, then closed) or to 'to'
 * (datagram transports), spec section 13. */
void usmp_gw_refuse_busy(usmp_gateway_t *gw, int fd, const char *peer, const struct sockaddr *to,
                         socklen_t to_len);
/* A slot not in use (the one usmp_gw_session_start takes next), or NULL
 * when all are. */
usmp_gateway_session_t *usmp_gw_free_slot(usmp_gateway_t *gw);
/* Starts an engine in slot c (from usmp_gw_free_slot), its handshake timer
 * from started_ms; 0 or -1. */
int usmp_gw_session_start(usmp_gateway_t *gw, usmp_gateway_session_t *c, const char *peer,
                          uint32_t started_ms);
/* An engine event: the session established (logged, spec 13 replacement)
 * or a message for cfg.on_message. */
void usmp_gw_handle_event(usmp_gateway_session_t *c, const usmp_event_t *ev);
/* Timers, output, the pending reply, held input (TCP), and the end of the
 * session if due; then its deadline in the heap and (TCP) the events its
 * descriptor is watched for. */
void usmp_gw_service_session(usmp_gateway_session_t *c);
/* Serves c at the end of this pass (something other than its own event
 * changed it). */
void usmp_gw_mark_dirty(usmp_gateway_session_t *c);

/* ------------------------------------------------------------------------
 * usmp_gateway_tcp.c: TCP connections.
 * ------------------------------------------------------------------------ */

/* Spec section 13: 1 when a TCP session's output has made no progress for
 * write_timeout; else 0, with *deadline set to when it will have made none
 * for that long (if output is waiting). Always 0 for datagram transports. */
int usmp_gw_write_stalled(usmp_gateway_t *gw, usmp_gateway_session_t *c, uint32_t now,
                          int *has_deadline, uint32_t *deadline);
/* Feeds a TCP session's held input, whole frames only, while no reply or
 * output is waiting. */
void usmp_gw_tcp_feed_input(usmp_gateway_session_t *c);
/* Watches the session's descriptor for what it can take now: input while
 * nothing waits, output while some does. */
void usmp_gw_tcp_update_interest(usmp_gateway_session_t *c);
/* The poller reported events (USMP_POLLER_*) on a session's connection. */
void usmp_gw_tcp_session_ready(usmp_gateway_session_t *c, unsigned events);
/* The poller reported a pending connection readable. */
void usmp_gw_tcp_pending_ready(usmp_gateway_t *gw, pending_t *p);
/* Accepts the connections waiting on the listener into the pending queue. */
void usmp_gw_tcp_accept_ready(usmp_gateway_t *gw);
/* Spec section 13: closes the pending connections past hello_timeout;
 * returns timeout lowered to the next one's deadline. */
int usmp_gw_pending_expire(usmp_gateway_t *gw, uint32_t now, int timeout);
/* Closes every pending connection (shutdown). */
void usmp_gw_pending_close_all(usmp_gateway_t *gw);

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
/* Reads the UDP socket or the serial line after the poller reported
 * events on it (0: none, the serial line's retry after a hang-up); returns
 * timeout lowered to that retry while the line is hung up. */
int usmp_gw_datagram_read_ready(usmp_gateway_t *gw, unsigned events, uint32_t now, int timeout);

#endif
