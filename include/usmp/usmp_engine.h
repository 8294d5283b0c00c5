/*
 * usmp_engine.h - the sans-I/O USMP protocol engine, both roles, both modes.
 *
 * The engine turns bytes in into events and bytes out. It never touches a
 * socket, a clock or a sleep, and never allocates: the caller owns the
 * engine struct and its buffers, passes the time in, feeds what the
 * transport received, and sends what the engine produced. The blocking
 * device API (usmp.h) and the POSIX server tool are small loops around it.
 * (The crypto library it is linked with may allocate for a session's
 * record keys: OpenSSL keeps their contexts on its heap, mbedTLS its AES
 * contexts; usmp_engine_wipe and every session end release them.)
 *
 * Conventions
 *  - Every function returns USMP_OK or a negative USMP_ERR_* (usmp_errors.h).
 *  - Time is a 32-bit millisecond clock that may wrap; deadlines are
 *    compared with wrap-safe arithmetic.
 *  - Fatal errors are sticky: once usmp_engine_state() is USMP_STATE_FAILED,
 *    every call returns the same error. Datagram-mode drops (REPLAY, a bad
 *    tag, ...) return their error for that input only and change nothing.
 *  - Pointers handed out (event data, output) stay valid until the next
 *    call that takes the engine, except usmp_engine_state and friends.
 *  - Not thread-safe: one engine belongs to one task at a time.
 *
 * Typical client loop (stream mode):
 *     usmp_engine_init(&e, &cfg);  usmp_engine_start(&e, now);
 *     loop: send everything usmp_engine_output() gives, then
 *           usmp_engine_output_done(); read from the transport and
 *           usmp_engine_feed() it until it is consumed, handling each event;
 *           call usmp_engine_tick() at usmp_engine_next_deadline().
 */
#ifndef USMP_ENGINE_H
#define USMP_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "usmp_aead.h"
#include "usmp_errors.h"
#include "usmp_options.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- protocol constants (spec/protocol.md) ------------------------------ */
#define USMP_DEVICE_ID_BYTES       6u
#define USMP_SESSION_ID_BYTES      8u
#define USMP_PSK_MIN_BYTES         16u
#define USMP_PSK_MAX_BYTES         64u
#define USMP_TAG_BYTES             16u
#define USMP_STREAM_HEADER_BYTES   3u
#define USMP_DATAGRAM_HEADER_BYTES 9u
#define USMP_STREAM_OVERHEAD       (USMP_STREAM_HEADER_BYTES + USMP_TAG_BYTES)   /* 19 */
#define USMP_DATAGRAM_OVERHEAD     (USMP_DATAGRAM_HEADER_BYTES + USMP_TAG_BYTES) /* 25 */
#define USMP_MIN_RECORD            16u
#define USMP_STREAM_MAX_RECORD     65519u
#define USMP_DATAGRAM_MAX_RECORD   1207u
#define USMP_MAX_PING_PAYLOAD      8u
/* CONTROL channels (spec 6.7); the OTA channel's messages: spec/ota.md. */
#define USMP_CONTROL_CHANNEL_OTA 0x01u
/* The largest handshake frame: a datagram HELLO with its cookie. */
#define USMP_HANDSHAKE_MAX_FRAME 61u

/* Buffer sizes for a side that accepts records of max_record bytes. One
 * size serves both modes and covers every handshake frame. */
#define USMP_RECORD_BUFFER_BYTES(max_record)                                                       \
    ((max_record) + USMP_DATAGRAM_OVERHEAD > USMP_HANDSHAKE_MAX_FRAME                              \
         ? (max_record) + USMP_DATAGRAM_OVERHEAD                                                   \
         : USMP_HANDSHAKE_MAX_FRAME)

/* Frame types (spec section 2). Public: a datagram gateway routes each
 * datagram by its first byte (spec 8.4), and the C gateway and the
 * emulated-target firmware do. */
enum {
    USMP_TYPE_HELLO = 0x01,
    USMP_TYPE_CHALLENGE = 0x02,
    USMP_TYPE_HELLO_ACK = 0x03,
    USMP_TYPE_SESSION_OK = 0x04,
    USMP_TYPE_DATA = 0x05,
    USMP_TYPE_PING = 0x06,
    USMP_TYPE_PONG = 0x07,
    USMP_TYPE_BYE = 0x08,
    USMP_TYPE_DATA_FRAGMENT = 0x09,
    USMP_TYPE_COOKIE = 0x0A,
    USMP_TYPE_CONTROL = 0x0B, /* spec 6.7: channel || body, never a message */
    USMP_TYPE_ERROR = 0xFF
};

/* Wire codes of ERROR and BYE (spec section 9.1). */
enum {
    USMP_CODE_NONE = 0x00,
    USMP_CODE_MALFORMED = 0x01,
    USMP_CODE_UNEXPECTED = 0x02,
    USMP_CODE_UNSUPPORTED_VERSION = 0x03,
    USMP_CODE_UNSUPPORTED_SUITE = 0x04,
    USMP_CODE_AUTH_FAILED = 0x05,
    USMP_CODE_BAD_KEY = 0x06,
    USMP_CODE_BUSY = 0x07,
    USMP_CODE_TOO_LARGE = 0x08,
    USMP_CODE_BAD_RECORD = 0x09,
    USMP_CODE_KEY_LIMIT = 0x0A,
    USMP_CODE_IDLE_TIMEOUT = 0x0B,
    USMP_CODE_REKEY = 0x0C,
    USMP_CODE_SHUTDOWN = 0x0D,
    USMP_CODE_REPLACED = 0x0E /* BYE only: a newer session of this device id (spec 9.1) */
};

typedef enum { USMP_ROLE_CLIENT = 0, USMP_ROLE_SERVER = 1 } usmp_role_t;
typedef enum { USMP_MODE_STREAM = 0, USMP_MODE_DATAGRAM = 1 } usmp_mode_t;

/* The states of spec/state-machine.md. */
typedef enum {
    USMP_STATE_START = 0,
    USMP_STATE_WAIT_CHALLENGE,
    USMP_STATE_WAIT_SESSION_OK,
    USMP_STATE_WAIT_HELLO,
    USMP_STATE_WAIT_HELLO_ACK,
    USMP_STATE_ESTABLISHED,
    USMP_STATE_CLOSED,
    USMP_STATE_FAILED
} usmp_state_t;

/* Fills buf with len cryptographically secure random bytes. The blocking
 * API passes usmp_port_random; tests pass a scripted source. */
typedef void (*usmp_random_fn)(void *user, uint8_t *buf, size_t len);

/* Server: writes the PSK of device_id into psk and returns its length
 * (16 .. 64), or returns 0 for an unknown device. Called once per HELLO,
 * before any X25519 work; it must not block for long. */
typedef size_t (*usmp_psk_lookup_fn)(void *user, const uint8_t device_id[USMP_DEVICE_ID_BYTES],
                                     uint8_t psk[USMP_PSK_MAX_BYTES]);

typedef struct {
    usmp_role_t role; /* the server role needs USMP_SERVER */
    usmp_mode_t mode; /* datagram mode needs USMP_DATAGRAM */

    /* Client: the PSK (16 .. 64 bytes, must stay valid while the engine is
     * used) and this device's id. */
    const uint8_t *psk;
    size_t psk_len;
    uint8_t device_id[USMP_DEVICE_ID_BYTES];

    /* Server: per-device PSK lookup (needs USMP_SERVER). */
    usmp_psk_lookup_fn psk_lookup;
    void *psk_lookup_user;

    /* Randomness for ephemeral keys, nonce and session id. Required. */
    usmp_random_fn random;
    void *random_user;

    /* What this side accepts: max_record 16 .. 65519 (datagram: .. 1207),
     * max_message max_record .. 65535. */
    uint16_t max_record;
    uint16_t max_message;

    /* Caller-owned buffers. rx: at least USMP_RECORD_BUFFER_BYTES(max_record).
     * tx: at least USMP_HANDSHAKE_MAX_FRAME; it bounds the records this side
     * sends (a message must fit one record of tx_cap - overhead unless it is
     * longer than the peer's max_record). reassembly: max_message bytes,
     * required only when max_message > max_record, else NULL. */
    uint8_t *rx_buf;
    size_t rx_cap;
    uint8_t *tx_buf;
    size_t tx_cap;
    uint8_t *reassembly_buf;
    size_t reassembly_cap;

    /* Timers in ms (spec section 11); 0 picks the default where there is
     * one (handshake 10000, server idle 90000), or turns it off
     * (keepalive). pong_timeout_ms 0 means "equal to keepalive_ms". */
    uint32_t handshake_timeout_ms;
    uint32_t keepalive_ms;
    uint32_t pong_timeout_ms;
    uint32_t idle_timeout_ms;
    /* Client: the counters the ephemeral key is derived with (spec 5.8),
     * so that a random source that repeats its output does not repeat the
     * key. boot_counter: a value that never repeats across boots of this
     * device (kept in non-volatile memory), 0 when there is none.
     * connection_counter: handshakes started since boot, 0 for the first.
     * The engine keeps no counter itself; the device API (usmp.h) fills
     * both. */
    uint64_t boot_counter;
    uint64_t connection_counter;
} usmp_engine_config_t;

typedef enum {
    USMP_EVENT_NONE = 0,
    USMP_EVENT_ESTABLISHED, /* handshake complete: records may flow */
    USMP_EVENT_MESSAGE,     /* data/len: one whole message */
    USMP_EVENT_PONG,        /* data/len: the PONG payload (the driver's RTT probe) */
    USMP_EVENT_CLOSED,      /* the session ended cleanly (BYE sent or received) */
    USMP_EVENT_CONTROL      /* channel, data/len: a CONTROL record's channel and body (spec 6.7) */
} usmp_event_type_t;

typedef struct {
    usmp_event_type_t type;
    const uint8_t *data;
    size_t len;
    uint8_t channel; /* USMP_EVENT_CONTROL only */
} usmp_event_t;

/*
 * The engine. Its size is fixed at compile time so it can live in static
 * memory; its fields are private (the end of this header shows them for
 * that size only): use the functions below.
 */
typedef struct usmp_engine usmp_engine_t;

/* Checks cfg and prepares e. Errors: USMP_ERR_ARG (missing callback or
 * buffer, buffer too small, limits out of range), USMP_ERR_PSK (client PSK
 * not 16 .. 64 bytes). Nothing is sent until usmp_engine_start. */
int usmp_engine_init(usmp_engine_t *e, const usmp_engine_config_t *cfg);

/* Client: draws the ephemeral key and queues HELLO. Server: starts the
 * handshake timer. Either: USMP_ERR_STATE if already started. */
int usmp_engine_start(usmp_engine_t *e, uint32_t now_ms);

/* Feeds received bytes. Stream mode: any number of bytes of the stream;
 * the engine stops after the first event and sets *consumed; call again
 * with the rest. It also stops, with *consumed short of it, at a PING
 * while the PONG for an earlier PING is still unsent (spec 6.3, row 31):
 * send the output, then feed the rest. Datagram mode: exactly one datagram
 * (one COBS frame). *event is set (USMP_EVENT_NONE when nothing happened).
 * Returns USMP_OK or the condition the input produced. A datagram ERROR
 * during the handshake returns USMP_ERR_PEER_ERROR for that datagram only:
 * it is recorded, and ends the handshake only at its timeout (spec 9.2). */
int usmp_engine_feed(usmp_engine_t *e, const uint8_t *data, size_t len, uint32_t now_ms,
                     size_t *consumed, usmp_event_t *event);

/* The stream ended. Reports TRANSPORT_CLOSED (or nothing, if the session
 * already closed cleanly). Whatever the state, nothing can be sent any
 * more: pending output is dropped and the record keys are wiped. */
int usmp_engine_transport_closed(usmp_engine_t *e);

/* Seals the next record of a message into the output. now_ms is not used
 * today (sending starts no timer); it is part of the signature so that
 * one can be added without changing every caller. Returns the number
 * of message bytes taken (the whole message when it fits one record; one
 * fragment's worth otherwise: call again with the rest until all is taken;
 * a 0-byte message returns 0 once), or USMP_ERR_WOULD_BLOCK when output
 * is still pending (send it first), USMP_ERR_MESSAGE_TOO_LARGE (over the
 * peer's max_message, or it fits one peer record but not tx_buf; nothing
 * sent), USMP_ERR_STATE (not ESTABLISHED, or the rest passed does not
 * continue the message in progress), USMP_ERR_KEY_LIMIT. */
int usmp_engine_send(usmp_engine_t *e, const uint8_t *msg, size_t len, uint32_t now_ms);

/* Seals one CONTROL record (spec 6.7, rows 62-63): channel || body, never
 * fragmented, never delivered to the peer's messages. body may be empty
 * (len 0). Returns USMP_OK, or USMP_ERR_WOULD_BLOCK when output is still
 * pending or a fragmented message is being sent (finish it first),
 * USMP_ERR_MESSAGE_TOO_LARGE (1 + len over the peer's max_record or
 * tx_buf; nothing sent), USMP_ERR_STATE (not ESTABLISHED), USMP_ERR_ARG,
 * USMP_ERR_KEY_LIMIT. */
int usmp_engine_send_control(usmp_engine_t *e, uint8_t channel, const uint8_t *body, size_t len,
                             uint32_t now_ms);

/* The bytes waiting to be sent (*len 0: none). Datagram mode: one whole
 * datagram. Stays the same until usmp_engine_output_done. */
void usmp_engine_output(usmp_engine_t *e, const uint8_t **data, size_t *len);

/* n bytes of the output were sent (stream: may be partial; datagram: the
 * whole datagram). */
void usmp_engine_output_done(usmp_engine_t *e, size_t n);

/* The next time usmp_engine_tick must be called. Returns 0 when no timer
 * runs. */
int usmp_engine_next_deadline(const usmp_engine_t *e, uint32_t *deadline_ms);

/* Runs the timers due at now_ms: handshake timeout, datagram
 * retransmission, keepalive PING, PONG deadline, server idle timeout.
 * Returns USMP_OK or the failure (TIMEOUT, PEER_TIMEOUT, or PEER_ERROR at
 * the handshake timeout when a datagram ERROR was recorded). */
int usmp_engine_tick(usmp_engine_t *e, uint32_t now_ms);

/* Ends the session from this side: in ESTABLISHED queues BYE(code) (code
 * USMP_CODE_NONE for a normal close, SHUTDOWN when a server stops) and
 * moves to CLOSED; during a handshake queues ERROR(code) when code is not
 * NONE (a server refusing with BUSY) and moves to FAILED. */
int usmp_engine_close(usmp_engine_t *e, uint8_t code);

/* Zeroes every key and secret, releases what the crypto backend holds for
 * the record keys, and returns the engine to its state before
 * usmp_engine_init (it must be initialised again). An engine whose session
 * did not end (ESTABLISHED, or a handshake past the CHALLENGE) must be
 * wiped before it is dropped or initialised again, or the backend's
 * context of its record keys leaks (OpenSSL keeps it on its heap). */
void usmp_engine_wipe(usmp_engine_t *e);

usmp_state_t usmp_engine_state(const usmp_engine_t *e);
/* The sticky error in FAILED; in CLOSED, USMP_ERR_PEER_CLOSED when the
 * peer's BYE closed the session (USMP_OK when this side closed it); else
 * USMP_OK. */
int usmp_engine_error(const usmp_engine_t *e);
/* The code of the peer's ERROR (PEER_ERROR) or BYE (PEER_CLOSED). During a
 * datagram handshake: the code of the last ERROR recorded, 0 when none. */
uint8_t usmp_engine_peer_code(const usmp_engine_t *e);
/* The code this side sent in its ERROR or BYE (REKEY after the soft usage
 * limit, IDLE_TIMEOUT, ...), USMP_CODE_NONE for a normal close. */
uint8_t usmp_engine_close_code(const usmp_engine_t *e);
/* After the handshake: the session id (8 bytes). */
const uint8_t *usmp_engine_session_id(const usmp_engine_t *e);
/* Server, after HELLO: the client's device id. */
const uint8_t *usmp_engine_device_id(const usmp_engine_t *e);
/* After the handshake: the peer's announced limits. */
uint16_t usmp_engine_peer_max_record(const usmp_engine_t *e);
uint16_t usmp_engine_peer_max_message(const usmp_engine_t *e);
/* The largest message usmp_engine_send accepts without fragmenting. */
size_t usmp_engine_max_single_record(const usmp_engine_t *e);

#if USMP_SERVER && USMP_DATAGRAM
/* Stateless UDP cookie (spec 8.3; src/usmp_cookie.c): HMAC-SHA256(secret,
 * "usmp-v1 cookie" || client_address || hello)[0:16], hello being the
 * datagram HELLO frame without a cookie (45 bytes). Errors: USMP_ERR_ARG (a
 * NULL pointer, or hello not 45 bytes), USMP_ERR_CRYPTO. */
int usmp_cookie_compute(uint8_t cookie[16], const uint8_t secret[32], const uint8_t *client_address,
                        size_t address_len, const uint8_t *hello, size_t hello_len);
#endif

/* ==========================================================================
 * Private: everything below is exposed for its size only, so that an engine
 * can live in static memory. Do not rely on the size, the names or the
 * contents of these types; use the functions above. Tests and src/ read
 * them.
 * ========================================================================== */

/* Sizes of the engine's own copies (spec sections 4, 5). */
#define USMP_KEY_BYTES           32u /* X25519 keys, record keys, hashes */
#define USMP_HANDSHAKE_MAC_BYTES 16u /* HELLO_ACK and SESSION_OK MACs */
/* The largest CHALLENGE frame: the stream header and the 54-byte body. */
#define USMP_CHALLENGE_MAX_FRAME (USMP_STREAM_HEADER_BYTES + 54u)

/* e->flags */
#define USMP_F_STARTED        0x01u /* usmp_engine_start was called */
#define USMP_F_PING_OUT       0x04u /* PING sent, PONG deadline running */
#define USMP_F_RESEND_ALLOWED 0x20u /* server, datagram: SESSION_OK may be resent */
#define USMP_F_UNKNOWN_DEVICE 0x40u /* server: no PSK for the device; fail at HELLO_ACK */
#define USMP_F_PEER_ERROR     0x80u /* datagram handshake: an ERROR was recorded (row 25) */

/* e->pending: control frames waiting for the tx buffer, built in this order */
#define USMP_P_FLIGHT 0x04u /* this side's current handshake flight */
#define USMP_P_ERROR  0x01u
#define USMP_P_BYE    0x02u
#define USMP_P_PONG   0x08u
#define USMP_P_PING   0x10u

#if USMP_DATAGRAM
/* The datagram replay window (src/usmp_replay.h, spec 6.5). */
typedef struct {
    uint64_t top;    /* the highest seq accepted */
    uint64_t bitmap; /* bit i: seq top - i accepted; 0: none accepted yet */
} usmp_replay_t;
#endif

/* A message being sent in fragments (src/usmp_fragment.h, spec 6.4). */
typedef struct {
    uint16_t total; /* 0: none in progress */
    uint16_t sent;
} usmp_fragmenter_t;

/* A fragmented message being received (src/usmp_fragment.h, spec 6.4). */
typedef struct {
    uint16_t total; /* 0: none in progress */
    uint16_t len;   /* bytes received, all from offset 0 */
#if USMP_DATAGRAM
    uint64_t last_seq; /* the record counter of the last fragment */
#endif
} usmp_reassembly_t;

/*
 * Which secrets may exist when (spec 5.7: secrets die with their phase,
 * keys with the session). The engine keeps this at the end of every call;
 * tests/unit/test_engine.c checks it after every step of its fault cases.
 *
 *   state                      hs (handshake union)        aead_send/aead_recv
 *   START, WAIT_HELLO          zero                        zero
 *   WAIT_CHALLENGE  (client)   hs.start: e_C, HELLO        zero
 *   WAIT_SESSION_OK (client)   hs.confirm                  set
 *   WAIT_HELLO_ACK  (server)   hs.confirm (+ CHALLENGE)    set
 *   ESTABLISHED                zero, except the server's   set
 *                              hs.resend while SESSION_OK
 *                              is owed (USMP_P_FLIGHT) or
 *                              may be resent (datagram,
 *                              USMP_F_RESEND_ALLOWED)
 *   CLOSED, FAILED             zero unless USMP_P_FLIGHT   zero unless USMP_P_BYE
 *                              is pending (a flight owed   is pending (its seal
 *                              for an earlier frame)       needs aead_send)
 *
 * Every ending goes through end_session() in usmp_engine.c (a failure, the
 * soft usage limit, the peer's BYE, a local close, the transport's end),
 * which applies the last row; every handshake phase ends through
 * end_handshake_phase(). After usmp_engine_transport_closed nothing is
 * pending and nothing secret is left.
 *
 * aead_send and aead_recv are the record keys as the crypto backend keeps
 * them (usmp_aead.h): the key schedule in its context, itself a secret.
 * "set" is a context created when the keys are derived (the CHALLENGE's
 * handling); "zero" is one wiped and released (usmp_crypto_aead_wipe), its
 * storage all zero. With USMP_KEYLOG the key bytes (keylog_send,
 * keylog_recv) follow the same column. With the OpenSSL backend the context lives on
 * OpenSSL's heap, so an engine dropped while its keys are set (neither
 * ended nor wiped) leaks it: usmp_engine_wipe releases it, and
 * usmp_engine_init must not be called again on such an engine before
 * that.
 */
struct usmp_engine {
    /* fixed configuration */
    uint8_t role, mode;
    uint16_t max_record, max_message;
    const uint8_t *psk;
    uint8_t psk_len;
    uint8_t device_id[USMP_DEVICE_ID_BYTES];
    uint64_t boot_counter, connection_counter; /* client: spec 5.8 */
#if USMP_SERVER
    usmp_psk_lookup_fn psk_lookup;
    void *psk_lookup_user;
    uint32_t idle_timeout_ms;
#endif
    usmp_random_fn random;
    void *random_user;
    uint8_t *rx_buf, *tx_buf, *reassembly_buf;
    uint32_t rx_cap, tx_cap, reassembly_cap;
    uint32_t handshake_timeout_ms, keepalive_ms, pong_timeout_ms;

    /* state */
    uint8_t state;
    /* code of the peer's ERROR or BYE (datagram
     * handshake: of the last ERROR recorded) */
    uint8_t peer_code;
    uint8_t close_code; /* code this side sent in ERROR or BYE */
    uint8_t flags;      /* USMP_F_* above */
    int error;          /* sticky error once FAILED */
    uint16_t peer_max_record, peer_max_message;
    uint8_t session_id[USMP_SESSION_ID_BYTES];

    /* receive side */
    uint32_t rx_len; /* bytes of the current stream frame held */
    usmp_reassembly_t reassembly;
    uint64_t recv_next; /* stream: the counter of the next record */
#if USMP_DATAGRAM
    usmp_replay_t replay; /* datagram: the counters accepted */
#endif

    /* send side */
    uint32_t tx_len, tx_sent;
    usmp_fragmenter_t fragmenter;
    uint64_t send_counter;
    uint64_t send_usage; /* AES blocks under the send key (spec 7) */
    uint8_t pending;     /* USMP_P_*: control frames waiting for tx space */
    uint8_t flight;      /* frame type of this side's handshake flight */
    uint8_t pong_len;
    uint8_t pong_payload[USMP_MAX_PING_PAYLOAD];

    /* timers */
    uint32_t handshake_deadline;
#if USMP_DATAGRAM
    uint32_t retransmit_at, retransmit_interval;
#endif
    uint32_t last_rx; /* last authenticated record */
    uint32_t ping_sent_at;

    /* The record keys (spec 5.5), each set up once into its backend's
     * AEAD context for the session's life: secrets, wiped and released
     * with the session (the table above). */
    usmp_aead_t aead_send;
    usmp_aead_t aead_recv;
#if USMP_KEYLOG
    /* USMP_KEYLOG builds only (host debugging, never the device profile):
     * the record keys' bytes, for the key log line written at ESTABLISHED
     * (the contexts above cannot give them back). Secrets with the same
     * lifetime as aead_send/aead_recv in the table above. */
    uint8_t keylog_send[USMP_KEY_BYTES];
    uint8_t keylog_recv[USMP_KEY_BYTES];
#endif

    /* handshake material, by phase (the table above says when each is
     * wiped) */
    union {
        struct { /* client, WAIT_CHALLENGE: until the CHALLENGE */
            uint8_t ephemeral_private[USMP_KEY_BYTES];
            uint8_t hello[USMP_HANDSHAKE_MAX_FRAME];
            uint8_t hello_len;
        } start;
        /* client WAIT_SESSION_OK, server WAIT_HELLO_ACK: the
         * key confirmation */
        struct {
            uint8_t transcript_hash[USMP_KEY_BYTES];
            uint8_t confirm_server_key[USMP_KEY_BYTES];
            uint8_t hello_ack_mac[USMP_HANDSHAKE_MAC_BYTES];
#if USMP_SERVER
            uint8_t challenge[USMP_CHALLENGE_MAX_FRAME]; /* server: sent and resent */
            uint8_t challenge_len;
#endif
        } confirm;
#if USMP_SERVER
        struct { /* server ESTABLISHED: SESSION_OK to send (datagram: and resend) */
            uint8_t hello_ack_mac[USMP_HANDSHAKE_MAC_BYTES];
            uint8_t session_ok_mac[USMP_HANDSHAKE_MAC_BYTES];
        } resend;
#endif
    } hs;
};

#ifdef __cplusplus
}
#endif

#endif /* USMP_ENGINE_H */
