/*
 * usmp_engine.c - the USMP state machine (spec/state-machine.md), both
 * roles, both modes. Row numbers in comments refer to that table.
 *
 * Output discipline: the tx buffer holds one frame at a time. Control
 * frames (the handshake flight, ERROR, BYE, PONG, PING) are recorded as
 * pending bits and built when the buffer is free, so an input never has to
 * wait for the transport; application data is only accepted when nothing
 * is pending, which keeps SESSION_OK ahead of the first record and a BYE
 * behind the last.
 */
#include "usmp_engine.h"

#include <string.h>

#include "usmp_crypto.h"
#include "usmp_fragment.h"
#include "usmp_handshake.h"
#include "usmp_hello.h"
#include "usmp_keylog.h"
#include "usmp_record.h"
#include "usmp_replay.h"
#include "usmp_wire.h"

/* usmp_engine.h sizes the stored CHALLENGE without the body layout. */
typedef char challenge_max_frame_matches_the_layout
    [USMP_CHALLENGE_MAX_FRAME == USMP_STREAM_HEADER_BYTES + USMP_CHALLENGE_BODY_BYTES ? 1 : -1];

#define DEFAULT_HANDSHAKE_TIMEOUT_MS 10000u
#define DEFAULT_IDLE_TIMEOUT_MS      90000u
#define RETRANSMIT_FIRST_MS          1000u
#define RETRANSMIT_MAX_MS            4000u

/* ------------------------------------------------------------------ helpers */

/* Mode and role tests that fold to constants when a feature is compiled
 * out (usmp_options.h), so the compiler drops the dead branches. */
#define IS_DATAGRAM(e) (USMP_DATAGRAM && (e)->mode == USMP_MODE_DATAGRAM)
#define IS_STREAM(e)   (!IS_DATAGRAM(e))
#define IS_SERVER(e)   (USMP_SERVER && (e)->role == USMP_ROLE_SERVER)
#define IS_CLIENT(e)   (!IS_SERVER(e))

static size_t header_len(const usmp_engine_t *e)
{
    return usmp_record_header_len((usmp_mode_t)e->mode);
}

static int is_handshake_state(uint8_t state)
{
    return state == USMP_STATE_WAIT_CHALLENGE || state == USMP_STATE_WAIT_SESSION_OK ||
           state == USMP_STATE_WAIT_HELLO || state == USMP_STATE_WAIT_HELLO_ACK;
}

static int is_defined_type(uint8_t type)
{
    return (type >= USMP_TYPE_HELLO && type <= USMP_TYPE_CONTROL) || type == USMP_TYPE_ERROR;
}

static int is_record_type(uint8_t type)
{
    return (type >= USMP_TYPE_DATA && type <= USMP_TYPE_DATA_FRAGMENT) || type == USMP_TYPE_CONTROL;
}

/* Where each handshake phase's material dies (the table above struct
 * usmp_engine in usmp_engine.h): the client's e_C and HELLO at the
 * CHALLENGE, the key confirmation at HELLO_ACK (server) or SESSION_OK
 * (client), the server's SESSION_OK once it may not be resent, and
 * whatever is left when the session ends. */
static void end_handshake_phase(usmp_engine_t *e)
{
    usmp_crypto_wipe(&e->hs, sizeof e->hs);
    e->flags &= (uint8_t) ~(USMP_F_RESEND_ALLOWED | USMP_F_UNKNOWN_DEVICE);
}

/* The record keys live in their AEAD contexts (key schedule and all, set
 * up once per session): wiping frees what the backend allocated for them and
 * zeroes the storage. */
static void wipe_keys(usmp_engine_t *e)
{
    usmp_crypto_aead_wipe(&e->aead_send);
    usmp_crypto_aead_wipe(&e->aead_recv);
#if USMP_KEYLOG
    usmp_crypto_wipe(e->keylog_send, sizeof e->keylog_send);
    usmp_crypto_wipe(e->keylog_recv, sizeof e->keylog_recv);
#endif
}

/* The record keys of a new session (spec 5.5), each set up once into its
 * context. On a failure neither is kept: the caller fails the handshake. */
static int set_record_keys(usmp_engine_t *e, const uint8_t send_key[USMP_KEY_BYTES],
                           const uint8_t recv_key[USMP_KEY_BYTES])
{
    if (usmp_crypto_aead_init(&e->aead_send, send_key) != USMP_CRYPTO_OK ||
        usmp_crypto_aead_init(&e->aead_recv, recv_key) != USMP_CRYPTO_OK) {
        wipe_keys(e);
        return USMP_ERR_CRYPTO;
    }
#if USMP_KEYLOG
    memcpy(e->keylog_send, send_key, sizeof e->keylog_send);
    memcpy(e->keylog_recv, recv_key, sizeof e->keylog_recv);
#endif
    return USMP_OK;
}

/* CLOSED and FAILED keep the handshake material only for a flight still
 * owed, the record keys only for a BYE still to be sealed. */
static void drop_dead_secrets(usmp_engine_t *e)
{
    if (!(e->pending & USMP_P_FLIGHT)) {
        end_handshake_phase(e);
    }
    if (!(e->pending & USMP_P_BYE)) {
        wipe_keys(e);
    }
}

/*
 * The one place a session ends: a failure (fail), the soft usage limit
 * (row 41), the peer's BYE (row 33), a local close (rows 43, 46, 47) and
 * the transport's end (usmp_engine_transport_closed). state is CLOSED or
 * FAILED and err what usmp_engine_error reports. Of the pending frames only
 * those in keep may still go out (a handshake flight owed for an earlier
 * frame goes first: what the peer receives must not depend on how its
 * bytes were cut into reads); farewell (USMP_P_BYE, USMP_P_ERROR or 0)
 * tells the peer code. The secrets the new state does not allow die here.
 */
static void end_session(usmp_engine_t *e, uint8_t state, int err, uint8_t keep, uint8_t farewell,
                        uint8_t code)
{
    e->state = state;
    e->error = err;
    e->pending &= keep;
    if (farewell != 0) {
        e->close_code = code;
        e->pending |= farewell;
    }
    drop_dead_secrets(e);
}

/*
 * A fatal condition: the session ends, the condition is kept (sticky) and,
 * when it has a wire code, reported to the peer once: ERROR during the
 * handshake, BYE after it (spec 9.2, 9.3).
 */
static int fail(usmp_engine_t *e, int err)
{
    uint8_t code = usmp_error_to_wire(err);
    uint8_t farewell = 0;

    if (code != USMP_CODE_NONE) {
        farewell = e->state == USMP_STATE_ESTABLISHED ? USMP_P_BYE : USMP_P_ERROR;
    }
    end_session(e, USMP_STATE_FAILED, err, USMP_P_FLIGHT, farewell, code);
    return err;
}

/* The error a finished engine keeps returning (row 49). */
static int terminal_error(const usmp_engine_t *e)
{
    return e->error != USMP_OK ? e->error : USMP_ERR_STATE;
}

/* ------------------------------------------------------------------- output */

static int tx_busy(const usmp_engine_t *e)
{
    return e->tx_len > e->tx_sent;
}

/* Row 41: past the soft usage limit, finish the message being sent (all
 * its fragments), then BYE(REKEY); the client reconnects with fresh keys. */
static void check_soft_limit(usmp_engine_t *e)
{
    if (e->send_usage >= USMP_USAGE_SOFT_LIMIT && e->state == USMP_STATE_ESTABLISHED &&
        usmp_fragmenter_remaining(&e->fragmenter) == 0) {
        end_session(e, USMP_STATE_CLOSED, USMP_OK, USMP_P_FLIGHT, USMP_P_BYE, USMP_CODE_REKEY);
    }
}

/* Seals the plaintext already at tx_buf + header into one record, unless
 * that would pass the key usage hard limit (spec 7). */
static int seal_tx(usmp_engine_t *e, uint8_t type, size_t plaintext_len)
{
    uint64_t blocks = usmp_record_blocks(plaintext_len);
    int n;

    if (e->send_usage + blocks > USMP_USAGE_HARD_LIMIT ||
        e->send_counter >= USMP_RECORD_COUNTER_LIMIT) {
        return USMP_ERR_KEY_LIMIT;
    }
    n = usmp_record_seal_aead(e->tx_buf, (usmp_mode_t)e->mode, type, e->session_id, e->send_counter,
                              &e->aead_send, plaintext_len);
    if (n < 0) {
        return n;
    }
    /* The counter is consumed now, whatever the transport does next: a
     * (key, nonce) pair is never used twice (spec 6.1). */
    e->send_counter++;
    e->send_usage += blocks;
    e->tx_len = (uint32_t)n;
    e->tx_sent = 0;
    check_soft_limit(e);
    return USMP_OK;
}

static void put_handshake_frame(usmp_engine_t *e, uint8_t type, const uint8_t *body1, size_t len1,
                                const uint8_t *body2, size_t len2)
{
    size_t h = usmp_hs_header(e->tx_buf, (usmp_mode_t)e->mode, type, len1 + len2);
    memcpy(e->tx_buf + h, body1, len1);
    if (len2 > 0) {
        memcpy(e->tx_buf + h + len1, body2, len2);
    }
    e->tx_len = (uint32_t)(h + len1 + len2);
    e->tx_sent = 0;
}

/* Queues this side's handshake flight: the frame it sends (and resends)
 * for the handshake frame it just accepted. */
static void queue_flight(usmp_engine_t *e, uint8_t type)
{
    e->flight = type;
    e->pending |= USMP_P_FLIGHT;
}

/* Builds this side's current handshake flight into the tx buffer. */
static void build_flight(usmp_engine_t *e)
{
    switch (e->flight) {
    case USMP_TYPE_HELLO:
        memcpy(e->tx_buf, e->hs.start.hello, e->hs.start.hello_len);
        e->tx_len = e->hs.start.hello_len;
        e->tx_sent = 0;
        break;
    case USMP_TYPE_HELLO_ACK:
        put_handshake_frame(e, USMP_TYPE_HELLO_ACK, e->hs.confirm.hello_ack_mac, USMP_MAC_BYTES,
                            NULL, 0);
        break;
#if USMP_SERVER
    case USMP_TYPE_CHALLENGE:
        memcpy(e->tx_buf, e->hs.confirm.challenge, e->hs.confirm.challenge_len);
        e->tx_len = e->hs.confirm.challenge_len;
        e->tx_sent = 0;
        break;
    case USMP_TYPE_SESSION_OK:
        put_handshake_frame(e, USMP_TYPE_SESSION_OK, e->session_id, USMP_SESSION_ID_BYTES,
                            e->hs.resend.session_ok_mac, USMP_MAC_BYTES);
        break;
#endif
    default: break;
    }
    if (e->state == USMP_STATE_FAILED || e->state == USMP_STATE_CLOSED) {
        drop_dead_secrets(e);
    } else if (e->flight == USMP_TYPE_SESSION_OK && !(e->flags & USMP_F_RESEND_ALLOWED)) {
        end_handshake_phase(e); /* kept only while it may be resent (datagram, spec 8.2) */
    }
}

/* Builds the first pending control frame, if the tx buffer is free. */
static void build_pending(usmp_engine_t *e)
{
    size_t h = header_len(e);

    if (tx_busy(e) || e->pending == 0) {
        return;
    }
    if (e->pending & USMP_P_FLIGHT) {
        /* The flight answers an earlier frame: it goes before an ERROR or a
         * BYE caused by a later one, as it would have had the frames come
         * in separate reads. */
        e->pending &= (uint8_t)~USMP_P_FLIGHT;
        build_flight(e);
    } else if (e->pending & USMP_P_ERROR) {
        e->pending &= (uint8_t)~USMP_P_ERROR;
        put_handshake_frame(e, USMP_TYPE_ERROR, &e->close_code, 1u, NULL, 0);
    } else if (e->pending & USMP_P_BYE) {
        e->pending &= (uint8_t)~USMP_P_BYE;
        e->tx_buf[h] = e->close_code;
        if (seal_tx(e, USMP_TYPE_BYE, 1u) != USMP_OK) {
            e->tx_len = 0; /* over the hard limit: close without BYE */
        }
        if (e->state != USMP_STATE_ESTABLISHED) {
            e->pending = 0; /* the session's last frame */
            drop_dead_secrets(e);
        }
    } else if (e->pending & USMP_P_PONG) {
        e->pending &= (uint8_t)~USMP_P_PONG;
        memcpy(e->tx_buf + h, e->pong_payload, e->pong_len);
        if (seal_tx(e, USMP_TYPE_PONG, e->pong_len) != USMP_OK) {
            (void)fail(e, USMP_ERR_KEY_LIMIT);
        }
    } else if (e->pending & USMP_P_PING) {
        e->pending &= (uint8_t)~USMP_P_PING;
        /* The payload is the send time, echoed in the PONG: the driver
         * measures the round trip without keeping state. */
        usmp_put_be(e->tx_buf + h, e->ping_sent_at, 4);
        if (seal_tx(e, USMP_TYPE_PING, 4u) != USMP_OK) {
            (void)fail(e, USMP_ERR_KEY_LIMIT);
        }
    }
}

void usmp_engine_output(usmp_engine_t *e, const uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (e == NULL || e->tx_buf == NULL) {
        return;
    }
    build_pending(e);
    if (tx_busy(e)) {
        *data = e->tx_buf + e->tx_sent;
        *len = e->tx_len - e->tx_sent;
    }
}

void usmp_engine_output_done(usmp_engine_t *e, size_t n)
{
    if (e == NULL) {
        return;
    }
    if (n >= (size_t)(e->tx_len - e->tx_sent)) {
        e->tx_len = 0;
        e->tx_sent = 0;
    } else {
        e->tx_sent += (uint32_t)n;
    }
}

/* -------------------------------------------------------------------- init */

int usmp_engine_init(usmp_engine_t *e, const usmp_engine_config_t *cfg)
{
    if (e == NULL || cfg == NULL) {
        return USMP_ERR_ARG;
    }
    memset(e, 0, sizeof *e);
    if (cfg->random == NULL || (cfg->role != USMP_ROLE_CLIENT && cfg->role != USMP_ROLE_SERVER) ||
        (cfg->mode != USMP_MODE_STREAM && cfg->mode != USMP_MODE_DATAGRAM) ||
        !usmp_limits_valid((uint8_t)cfg->mode, cfg->max_record, cfg->max_message)) {
        return USMP_ERR_ARG;
    }
    if ((cfg->role == USMP_ROLE_SERVER && !USMP_SERVER) ||
        (cfg->mode == USMP_MODE_DATAGRAM && !USMP_DATAGRAM)) {
        return USMP_ERR_ARG; /* compiled out (usmp_options.h) */
    }
    if (cfg->role == USMP_ROLE_CLIENT) {
        if (cfg->psk == NULL || cfg->psk_len < USMP_PSK_MIN_BYTES ||
            cfg->psk_len > USMP_PSK_MAX_BYTES) {
            return USMP_ERR_PSK;
        }
    } else if (cfg->psk_lookup == NULL) {
        return USMP_ERR_ARG;
    }
    if (cfg->rx_buf == NULL || cfg->rx_cap < USMP_RECORD_BUFFER_BYTES(cfg->max_record) ||
        cfg->tx_buf == NULL || cfg->tx_cap < USMP_HANDSHAKE_MAX_FRAME ||
        cfg->tx_cap > 0xFFFFFFFFu || cfg->rx_cap > 0xFFFFFFFFu) {
        return USMP_ERR_BUFFER;
    }
    if (cfg->max_message > cfg->max_record &&
        (cfg->reassembly_buf == NULL || cfg->reassembly_cap < cfg->max_message)) {
        return USMP_ERR_BUFFER;
    }

    e->role = (uint8_t)cfg->role;
    e->mode = (uint8_t)cfg->mode;
    e->max_record = cfg->max_record;
    e->max_message = cfg->max_message;
    e->psk = cfg->psk;
    e->psk_len = (uint8_t)cfg->psk_len;
    memcpy(e->device_id, cfg->device_id, USMP_DEVICE_ID_BYTES);
    e->boot_counter = cfg->boot_counter;
    e->connection_counter = cfg->connection_counter;
#if USMP_SERVER
    e->psk_lookup = cfg->psk_lookup;
    e->psk_lookup_user = cfg->psk_lookup_user;
    e->idle_timeout_ms = cfg->idle_timeout_ms != 0 ? cfg->idle_timeout_ms : DEFAULT_IDLE_TIMEOUT_MS;
#endif
    e->random = cfg->random;
    e->random_user = cfg->random_user;
    e->rx_buf = cfg->rx_buf;
    e->rx_cap = (uint32_t)cfg->rx_cap;
    e->tx_buf = cfg->tx_buf;
    e->tx_cap = (uint32_t)cfg->tx_cap;
    e->reassembly_buf = cfg->max_message > cfg->max_record ? cfg->reassembly_buf : NULL;
    e->reassembly_cap = e->reassembly_buf != NULL ? (uint32_t)cfg->reassembly_cap : 0u;
    e->handshake_timeout_ms =
        cfg->handshake_timeout_ms != 0 ? cfg->handshake_timeout_ms : DEFAULT_HANDSHAKE_TIMEOUT_MS;
    e->keepalive_ms = cfg->keepalive_ms;
    e->pong_timeout_ms = cfg->pong_timeout_ms != 0 ? cfg->pong_timeout_ms : cfg->keepalive_ms;
    e->state = cfg->role == USMP_ROLE_CLIENT ? USMP_STATE_START : USMP_STATE_WAIT_HELLO;
    return USMP_OK;
}

void usmp_engine_wipe(usmp_engine_t *e)
{
    if (e != NULL) {
        wipe_keys(e); /* releases the backend's memory before the zeroing */
        usmp_crypto_wipe(e, sizeof *e);
    }
}

/* ------------------------------------------------------------- handshake */

/* Spec 8.4 rule 2: each new flight of the datagram client (HELLO, then
 * HELLO_ACK on a CHALLENGE or the HELLO with a cookie on a COOKIE) starts
 * its retransmission timeout at the first value; only resends of the same
 * flight double it (usmp_engine_tick). The handshake deadline is not
 * touched: it counts from the first HELLO. */
static void restart_retransmission(usmp_engine_t *e, uint32_t now)
{
#if USMP_DATAGRAM
    e->retransmit_interval = RETRANSMIT_FIRST_MS;
    e->retransmit_at = now + RETRANSMIT_FIRST_MS;
#else
    (void)e;
    (void)now;
#endif
}

static void arm_handshake_timers(usmp_engine_t *e, uint32_t now)
{
    e->handshake_deadline = now + e->handshake_timeout_ms;
    restart_retransmission(e, now);
}

int usmp_engine_start(usmp_engine_t *e, uint32_t now_ms)
{
    uint8_t *hello;
    usmp_hello_t offer;
    uint8_t random32[USMP_X25519_KEY_BYTES];
    size_t h;
    int rc;

    if (e == NULL) {
        return USMP_ERR_ARG;
    }
    if (e->flags & USMP_F_STARTED) {
        return USMP_ERR_STATE;
    }
    e->flags |= USMP_F_STARTED;
    arm_handshake_timers(e, now_ms);
    if (IS_SERVER(e)) {
        return USMP_OK;
    }

    /* Row 1: HELLO = versions || suites || device_id || e_C || limits. */
    hello = e->hs.start.hello;
    h = usmp_hs_header(hello, (usmp_mode_t)e->mode, USMP_TYPE_HELLO, USMP_HELLO_BODY_BYTES);
    /* Spec 5.8: the key is not the random output itself but an HMAC of it
     * under the PSK with the counters, so a random source that repeats
     * (after a reset, before the ESP32's RF is on) does not repeat e_C. */
    e->random(e->random_user, random32, sizeof random32);
    rc = usmp_hs_client_ephemeral(e->hs.start.ephemeral_private, e->psk, e->psk_len,
                                  e->boot_counter, e->connection_counter, random32);
    usmp_crypto_wipe(random32, sizeof random32);
    if (rc != USMP_OK) {
        return fail(e, USMP_ERR_CRYPTO);
    }
    rc = usmp_crypto_x25519_public(hello + h + USMP_HELLO_EPHEMERAL, e->hs.start.ephemeral_private);
    if (rc != USMP_CRYPTO_OK) {
        return fail(e, USMP_ERR_CRYPTO);
    }
    offer.versions = 1u << (USMP_VERSION_1 - 1u);
    offer.suites = 1u << (USMP_SUITE_1 - 1u);
    offer.device_id = e->device_id;
    offer.ephemeral = NULL; /* computed in place above */
    offer.max_record = e->max_record;
    offer.max_message = e->max_message;
    usmp_hello_encode(hello + h, &offer);
    e->hs.start.hello_len = (uint8_t)(h + USMP_HELLO_BODY_BYTES);
    e->state = USMP_STATE_WAIT_CHALLENGE;
    queue_flight(e, USMP_TYPE_HELLO);
    return USMP_OK;
}

#if USMP_SERVER
/* Rows 13-17: a HELLO in WAIT_HELLO. */
static int on_hello(usmp_engine_t *e, const uint8_t *frame, size_t frame_len, size_t h,
                    uint32_t now, usmp_event_t *ev)
{
    usmp_hello_t hello;
    usmp_challenge_t answer;
    uint8_t ephemeral_private[USMP_X25519_KEY_BYTES];
    uint8_t dh[USMP_X25519_KEY_BYTES];
    uint8_t psk[USMP_PSK_MAX_BYTES];
    size_t psk_len;
    uint8_t nonce[USMP_NONCE_BYTES];
    uint8_t *challenge = e->hs.confirm.challenge;
    size_t ch;
    usmp_hs_keys_t keys;
    int rc;

    (void)now;
    (void)ev;
    /* Spec 4.5, in order: steps 1-3 are the parse. A datagram HELLO may
     * carry a cookie, which the server's dispatcher has checked and the
     * transcript leaves out. */
    rc = usmp_hello_parse(&hello, frame + h, frame_len - h, e->mode);
    if (rc != USMP_OK) {
        return fail(e, rc);
    }
    frame_len = h + USMP_HELLO_BODY_BYTES;
    e->peer_max_record = hello.max_record;
    e->peer_max_message = hello.max_message;
    memcpy(e->device_id, hello.device_id, USMP_DEVICE_ID_BYTES);

    e->random(e->random_user, ephemeral_private, sizeof ephemeral_private);
    e->random(e->random_user, nonce, sizeof nonce);
    e->random(e->random_user, e->session_id, sizeof e->session_id);
    psk_len = e->psk_lookup(e->psk_lookup_user, e->device_id, psk);
    if (psk_len < USMP_PSK_MIN_BYTES || psk_len > USMP_PSK_MAX_BYTES) {
        /* Unknown device (or a lookup that returned an unusable key): go on
         * exactly as for a known one with a random stand-in PSK, and fail at
         * HELLO_ACK (spec 4.5 step 6). */
        e->random(e->random_user, psk, USMP_KEY_BYTES);
        psk_len = USMP_KEY_BYTES;
        e->flags |= USMP_F_UNKNOWN_DEVICE;
    }

    ch = usmp_hs_header(challenge, (usmp_mode_t)e->mode, USMP_TYPE_CHALLENGE,
                        USMP_CHALLENGE_BODY_BYTES);
    answer.version = USMP_VERSION_1;
    answer.suite = USMP_SUITE_1;
    answer.nonce = nonce;
    answer.ephemeral = NULL; /* computed in place below */
    answer.max_record = e->max_record;
    answer.max_message = e->max_message;
    usmp_challenge_encode(challenge + ch, &answer);
    e->hs.confirm.challenge_len = (uint8_t)(ch + USMP_CHALLENGE_BODY_BYTES);

    /* e_S's public key and the shared secret from one key object: no
     * backend computes the public key twice. */
    rc = usmp_crypto_x25519_keypair_shared(challenge + ch + USMP_CHALLENGE_EPHEMERAL, dh,
                                           ephemeral_private, hello.ephemeral);
    usmp_crypto_wipe(ephemeral_private, sizeof ephemeral_private);
    if (rc != USMP_CRYPTO_OK) {
        usmp_crypto_wipe(psk, sizeof psk);
        return fail(e, rc == USMP_CRYPTO_ERR_BAD_KEY ? USMP_ERR_BAD_KEY : USMP_ERR_CRYPTO);
    }

    rc = usmp_hs_transcript(e->hs.confirm.transcript_hash, (usmp_mode_t)e->mode, frame, frame_len,
                            challenge, e->hs.confirm.challenge_len);
    if (rc == USMP_OK) {
        rc = usmp_hs_derive_keys(&keys, dh, psk, psk_len, nonce, e->hs.confirm.transcript_hash);
    }
    usmp_crypto_wipe(dh, sizeof dh);
    usmp_crypto_wipe(psk, sizeof psk);
    if (rc == USMP_OK) {
        rc = usmp_hs_client_mac(e->hs.confirm.hello_ack_mac, keys.confirm_client,
                                e->hs.confirm.transcript_hash);
    }
    if (rc == USMP_OK) {
        rc = set_record_keys(e, keys.s2c, keys.c2s);
    }
    if (rc != USMP_OK) {
        usmp_crypto_wipe(&keys, sizeof keys);
        return fail(e, rc);
    }
    memcpy(e->hs.confirm.confirm_server_key, keys.confirm_server,
           sizeof e->hs.confirm.confirm_server_key);
    usmp_crypto_wipe(&keys, sizeof keys);

    e->state = USMP_STATE_WAIT_HELLO_ACK;
    queue_flight(e, USMP_TYPE_CHALLENGE);
    return USMP_OK;
}

#endif /* USMP_SERVER */

/* Rows 2-6: a CHALLENGE in WAIT_CHALLENGE. */
static int on_challenge(usmp_engine_t *e, const uint8_t *frame, size_t frame_len, size_t h,
                        uint32_t now, usmp_event_t *ev)
{
    usmp_challenge_t challenge;
    uint8_t dh[USMP_X25519_KEY_BYTES];
    uint8_t th[USMP_SHA256_BYTES];
    uint8_t mac[USMP_MAC_BYTES];
    usmp_hs_keys_t keys;
    size_t hello_len;
    int rc;

    (void)ev;
    rc = usmp_challenge_parse(&challenge, frame + h, frame_len - h, e->mode);
    if (rc != USMP_OK) {
        return fail(e, rc);
    }
    e->peer_max_record = challenge.max_record;
    e->peer_max_message = challenge.max_message;
    /* The transcript takes HELLO without the cookie (spec 5.3). */
    hello_len = (IS_STREAM(e) ? USMP_STREAM_HEADER_BYTES : USMP_DATAGRAM_HANDSHAKE_HEADER_BYTES) +
                USMP_HELLO_BODY_BYTES;
    /* e_C's public key is in the HELLO kept for the transcript: with it, no
     * backend computes it a second time. */
    rc = usmp_crypto_x25519_shared_with_public(dh, e->hs.start.ephemeral_private,
                                               e->hs.start.hello + hello_len -
                                                   USMP_HELLO_BODY_BYTES + USMP_HELLO_EPHEMERAL,
                                               challenge.ephemeral);
    if (rc != USMP_CRYPTO_OK) {
        return fail(e, rc == USMP_CRYPTO_ERR_BAD_KEY ? USMP_ERR_BAD_KEY : USMP_ERR_CRYPTO);
    }
    rc = usmp_hs_transcript(th, (usmp_mode_t)e->mode, e->hs.start.hello, hello_len, frame,
                            frame_len);
    if (rc == USMP_OK) {
        rc = usmp_hs_derive_keys(&keys, dh, e->psk, e->psk_len, challenge.nonce, th);
    }
    usmp_crypto_wipe(dh, sizeof dh);
    if (rc == USMP_OK) {
        rc = usmp_hs_client_mac(mac, keys.confirm_client, th);
    }
    end_handshake_phase(e); /* the ephemeral private key and HELLO are done */
    if (rc == USMP_OK) {
        rc = set_record_keys(e, keys.c2s, keys.s2c);
    }
    if (rc != USMP_OK) {
        usmp_crypto_wipe(&keys, sizeof keys);
        usmp_crypto_wipe(th, sizeof th);
        return fail(e, rc);
    }
    memcpy(e->hs.confirm.transcript_hash, th, sizeof th);
    memcpy(e->hs.confirm.confirm_server_key, keys.confirm_server,
           sizeof e->hs.confirm.confirm_server_key);
    memcpy(e->hs.confirm.hello_ack_mac, mac, sizeof mac);
    usmp_crypto_wipe(&keys, sizeof keys);
    usmp_crypto_wipe(th, sizeof th);

    e->state = USMP_STATE_WAIT_SESSION_OK;
    queue_flight(e, USMP_TYPE_HELLO_ACK);
    restart_retransmission(e, now); /* a new flight (spec 8.4 rule 2) */
    return USMP_OK;
}

static void enter_established(usmp_engine_t *e, uint32_t now, usmp_event_t *ev)
{
    /* A datagram ERROR recorded during the handshake was not the peer's
     * (spec 9.2): forget it. */
    e->flags &= (uint8_t)~USMP_F_PEER_ERROR;
    e->peer_code = USMP_CODE_NONE;
    e->state = USMP_STATE_ESTABLISHED;
    e->send_counter = 0;
    e->recv_next = 0;
    e->send_usage = 0;
#if USMP_DATAGRAM
    usmp_replay_init(&e->replay);
#endif
    e->last_rx = now;
    ev->type = USMP_EVENT_ESTABLISHED;
#if USMP_KEYLOG
    /* Opt-in debugging export of host builds, a no-op unless
     * USMP_KEYLOG_FILE is set (usmp_keylog.h). */
    if (IS_CLIENT(e)) {
        usmp_keylog_session(e->session_id, e->keylog_send, e->keylog_recv);
    } else {
        usmp_keylog_session(e->session_id, e->keylog_recv, e->keylog_send);
    }
#endif
}

#if USMP_SERVER
/* Rows 20-22: HELLO_ACK in WAIT_HELLO_ACK. */
static int on_hello_ack(usmp_engine_t *e, const uint8_t *frame, size_t frame_len, size_t h,
                        uint32_t now, usmp_event_t *ev)
{
    uint8_t mac[USMP_MAC_BYTES];
    uint8_t hello_ack_mac[USMP_MAC_BYTES];
    int equal, rc;

    if (frame_len != h + USMP_HELLO_ACK_BODY_BYTES) {
        return fail(e, USMP_ERR_MALFORMED);
    }
    equal = usmp_crypto_equal(frame + h, e->hs.confirm.hello_ack_mac, USMP_MAC_BYTES);

    /* An unknown device fails here even in the astronomically unlikely case
     * that its MAC matches the random stand-in key. */
    if (!equal || (e->flags & USMP_F_UNKNOWN_DEVICE)) {
        return fail(e, USMP_ERR_AUTH_FAILED);
    }
    rc = usmp_hs_server_mac(mac, e->hs.confirm.confirm_server_key, e->hs.confirm.transcript_hash,
                            frame, frame_len, e->session_id);
    memcpy(hello_ack_mac, frame + h, sizeof hello_ack_mac);
    end_handshake_phase(e);
    if (rc != USMP_OK) {
        return fail(e, rc);
    }
    memcpy(e->hs.resend.session_ok_mac, mac, sizeof mac);
    memcpy(e->hs.resend.hello_ack_mac, hello_ack_mac, sizeof hello_ack_mac);
    if (IS_DATAGRAM(e)) {
        e->flags |= USMP_F_RESEND_ALLOWED;
    }
    enter_established(e, now, ev);
    queue_flight(e, USMP_TYPE_SESSION_OK);
    return USMP_OK;
}

#endif /* USMP_SERVER */

/* Rows 8-10: SESSION_OK in WAIT_SESSION_OK. */
static int on_session_ok(usmp_engine_t *e, const uint8_t *frame, size_t frame_len, size_t h,
                         uint32_t now, usmp_event_t *ev)
{
    const uint8_t *body = frame + h;
    uint8_t hello_ack[USMP_STREAM_HEADER_BYTES + USMP_MAC_BYTES];
    uint8_t expected[USMP_MAC_BYTES];
    int rc;

    if (frame_len != h + USMP_SESSION_OK_BODY_BYTES) {
        return fail(e, USMP_ERR_MALFORMED);
    }
    h = usmp_hs_header(hello_ack, (usmp_mode_t)e->mode, USMP_TYPE_HELLO_ACK, USMP_MAC_BYTES);
    memcpy(hello_ack + h, e->hs.confirm.hello_ack_mac, USMP_MAC_BYTES);
    rc = usmp_hs_server_mac(expected, e->hs.confirm.confirm_server_key,
                            e->hs.confirm.transcript_hash, hello_ack, h + USMP_MAC_BYTES, body);
    if (rc != USMP_OK) {
        return fail(e, rc);
    }
    if (!usmp_crypto_equal(expected, body + USMP_SESSION_ID_BYTES, USMP_MAC_BYTES)) {
        return fail(e, USMP_ERR_AUTH_FAILED);
    }
    memcpy(e->session_id, body, USMP_SESSION_ID_BYTES);
    end_handshake_phase(e);
    enter_established(e, now, ev);
    return USMP_OK;
}

/* The exact body length of each handshake frame type in stream mode; 0 for
 * the others. */
static size_t handshake_body_len(uint8_t type)
{
    switch (type) {
    case USMP_TYPE_HELLO: return USMP_HELLO_BODY_BYTES;
    case USMP_TYPE_CHALLENGE: return USMP_CHALLENGE_BODY_BYTES;
    case USMP_TYPE_HELLO_ACK: return USMP_HELLO_ACK_BODY_BYTES;
    case USMP_TYPE_SESSION_OK: return USMP_SESSION_OK_BODY_BYTES;
    case USMP_TYPE_ERROR: return USMP_ERROR_BODY_BYTES;
    default: return 0;
    }
}

/* A violation that is fatal on a stream and dropped on datagrams. */
static int violation(usmp_engine_t *e, int err)
{
    return IS_STREAM(e) ? fail(e, err) : err;
}

/* Row 25, spec 9.2. ERROR is unauthenticated: it can only end a handshake,
 * and in datagram mode not even that at once, since anyone who knows the
 * address can send one: the code is recorded (a later ERROR replaces it)
 * and reported when the handshake times out (row 26). */
static int on_error(usmp_engine_t *e, const uint8_t *frame, size_t frame_len, size_t h,
                    uint32_t now, usmp_event_t *ev)
{
    (void)now;
    (void)ev;
    if (frame_len != h + USMP_ERROR_BODY_BYTES) {
        return violation(e, USMP_ERR_MALFORMED);
    }
    e->peer_code = frame[h];
    if (IS_DATAGRAM(e)) {
        e->flags |= USMP_F_PEER_ERROR;
        return USMP_ERR_PEER_ERROR; /* a drop: the handshake goes on */
    }
    return fail(e, USMP_ERR_PEER_ERROR);
}

#if USMP_DATAGRAM
/* Row 7: resend the same HELLO with the cookie appended. */
static int on_cookie(usmp_engine_t *e, const uint8_t *frame, size_t frame_len, size_t h,
                     uint32_t now, usmp_event_t *ev)
{
    (void)ev;
    if (frame_len != h + USMP_COOKIE_BYTES) {
        return USMP_ERR_MALFORMED; /* a COOKIE can only cause a resend: dropped */
    }
    memcpy(e->hs.start.hello + USMP_DATAGRAM_HANDSHAKE_HEADER_BYTES + USMP_HELLO_COOKIE, frame + h,
           USMP_COOKIE_BYTES);
    e->hs.start.hello_len =
        (uint8_t)(USMP_DATAGRAM_HANDSHAKE_HEADER_BYTES + USMP_HELLO_BODY_BYTES + USMP_COOKIE_BYTES);
    e->pending |= USMP_P_FLIGHT;
    restart_retransmission(e, now); /* a new flight (spec 8.4 rule 2) */
    return USMP_OK;
}

#endif /* USMP_DATAGRAM */

#if USMP_SERVER && USMP_DATAGRAM
/* Row 23: a duplicate HELLO gets the stored CHALLENGE again. It is the same
 * HELLO exactly when it gives the same transcript (cookie left out). Row
 * 51: any other HELLO is dropped here (UNEXPECTED); the server gives it to
 * a new engine (spec 8.2). */
static int on_duplicate_hello(usmp_engine_t *e, const uint8_t *frame, size_t frame_len, size_t h,
                              uint32_t now, usmp_event_t *ev)
{
    uint8_t th[USMP_SHA256_BYTES];

    (void)now;
    (void)ev;
    if ((frame_len == h + USMP_HELLO_BODY_BYTES ||
         frame_len == h + USMP_HELLO_BODY_BYTES + USMP_COOKIE_BYTES) &&
        usmp_hs_transcript(th, (usmp_mode_t)e->mode, frame, h + USMP_HELLO_BODY_BYTES,
                           e->hs.confirm.challenge, e->hs.confirm.challenge_len) == USMP_OK &&
        usmp_crypto_equal(th, e->hs.confirm.transcript_hash, sizeof th)) {
        e->pending |= USMP_P_FLIGHT;
        return USMP_OK;
    }
    return USMP_ERR_UNEXPECTED; /* another HELLO: the dispatcher starts a new handshake */
}

/* Row 24: the accepted HELLO_ACK again: our SESSION_OK was lost. Only until
 * the client's first record proves it has the SESSION_OK. */
static int on_duplicate_hello_ack(usmp_engine_t *e, const uint8_t *frame, size_t frame_len,
                                  size_t h, uint32_t now, usmp_event_t *ev)
{
    (void)now;
    (void)ev;
    if ((e->flags & USMP_F_RESEND_ALLOWED) && frame_len == h + USMP_HELLO_ACK_BODY_BYTES &&
        usmp_crypto_equal(frame + h, e->hs.resend.hello_ack_mac, USMP_MAC_BYTES)) {
        e->pending |= USMP_P_FLIGHT;
        return USMP_OK;
    }
    return USMP_ERR_UNEXPECTED;
}

#endif /* USMP_SERVER && USMP_DATAGRAM */

/* ------------------------------------------------------------------ records */

/* Row 30 and spec 6.4: parse, check, apply (usmp_fragment.h). seq is the
 * record's counter (datagram continuity). A fragment out of sequence loses
 * the partial message: fatal on a stream, a drop on datagrams. */
static int on_fragment(usmp_engine_t *e, const uint8_t *payload, size_t len, uint64_t seq,
                       usmp_event_t *ev)
{
    usmp_fragment_t f;
    int rc = usmp_fragment_parse(&f, payload, len, e->max_record, e->max_message);

    if (rc != USMP_OK) {
        return violation(e, rc);
    }
    rc = usmp_reassembly_check(&e->reassembly, &f, IS_DATAGRAM(e), seq);
    if (rc != USMP_OK) {
        usmp_reassembly_reset(&e->reassembly);
        return violation(e, rc);
    }
    /* total <= max_message <= reassembly_cap, and a reassembly buffer
     * exists whenever max_message > max_record < total. */
    if (usmp_reassembly_apply(&e->reassembly, e->reassembly_buf, &f, seq)) {
        ev->type = USMP_EVENT_MESSAGE;
        ev->data = e->reassembly_buf;
        ev->len = f.total;
    }
    return USMP_OK;
}

/* Rows 29-33 and 61: an authenticated record's payload. */
static int on_record_payload(usmp_engine_t *e, uint8_t type, const uint8_t *payload, size_t len,
                             uint64_t seq, usmp_event_t *ev)
{
    switch (type) {
    case USMP_TYPE_DATA:
        if (usmp_reassembly_active(&e->reassembly)) {
            if (IS_STREAM(e)) {
                return fail(e, USMP_ERR_UNEXPECTED);
            }
            usmp_reassembly_reset(&e->reassembly); /* datagram: the partial message is lost */
        }
        ev->type = USMP_EVENT_MESSAGE;
        ev->data = payload;
        ev->len = len;
        return USMP_OK;
    case USMP_TYPE_DATA_FRAGMENT: return on_fragment(e, payload, len, seq, ev);
    case USMP_TYPE_PING:
        if (len > USMP_MAX_PING_PAYLOAD) {
            return violation(e, USMP_ERR_MALFORMED);
        }
        /* Row 31. Stream: the feed loop reads no PING while a PONG is
         * unsent. Datagram: a PONG still unsent is replaced (spec 6.3). */
        memcpy(e->pong_payload, payload, len);
        e->pong_len = (uint8_t)len;
        e->pending |= USMP_P_PONG;
        return USMP_OK;
    case USMP_TYPE_PONG:
        if (len > USMP_MAX_PING_PAYLOAD) {
            return violation(e, USMP_ERR_MALFORMED);
        }
        ev->type = USMP_EVENT_PONG;
        ev->data = payload;
        ev->len = len;
        return USMP_OK;
    case USMP_TYPE_CONTROL:
        /* Row 61, spec 6.7: a channel byte, then the body; reported apart
         * from messages, and a partial message is left as it is. */
        if (len == 0u) {
            return violation(e, USMP_ERR_MALFORMED);
        }
        ev->type = USMP_EVENT_CONTROL;
        ev->channel = payload[0];
        ev->data = payload + 1;
        ev->len = len - 1u;
        return USMP_OK;
    default: /* USMP_TYPE_BYE */
        if (len != 1u) {
            return violation(e, USMP_ERR_MALFORMED);
        }
        e->peer_code = payload[0];
        end_session(e, USMP_STATE_CLOSED, USMP_ERR_PEER_CLOSED, 0, 0, USMP_CODE_NONE);
        ev->type = USMP_EVENT_CLOSED;
        return USMP_OK;
    }
}

/* Marks the peer alive after an authenticated record (spec 11). */
static void note_alive(usmp_engine_t *e, uint32_t now)
{
    e->last_rx = now;
    e->flags &= (uint8_t)~USMP_F_PING_OUT;
#if USMP_SERVER && USMP_DATAGRAM
    if (e->flags & USMP_F_RESEND_ALLOWED) {
        /* The client has the SESSION_OK: no more resending (spec 8.2). */
        end_handshake_phase(e);
        e->pending &= (uint8_t)~USMP_P_FLIGHT;
    }
#endif
}

/* Checks 2 and 3 of spec 6.2 (check 1, the type, is the transition
 * table's); shared by both modes (stream: from the header alone). */
static int check_record_size(usmp_engine_t *e, size_t sealed_len)
{
    if (sealed_len < USMP_TAG_BYTES) {
        return violation(e, USMP_ERR_MALFORMED);
    }
    if (sealed_len - USMP_TAG_BYTES > e->max_record) {
        return violation(e, USMP_ERR_TOO_LARGE);
    }
    return USMP_OK;
}

/* A whole stream record in rx_buf (header already checked). */
static int stream_on_record(usmp_engine_t *e, uint32_t now, usmp_event_t *ev)
{
    size_t frame_len = USMP_STREAM_HEADER_BYTES + usmp_get_u16(e->rx_buf + 1);
    uint8_t *plain = e->rx_buf + USMP_STREAM_HEADER_BYTES;
    uint64_t counter = e->recv_next;
    /* Opened in place: the plaintext stays where the ciphertext was. */
    int rc = usmp_record_open_aead(plain, USMP_MODE_STREAM, e->rx_buf, frame_len, counter,
                                   &e->aead_recv);

    if (rc != USMP_OK) {
        return fail(e, rc);
    }
    e->recv_next++;
    note_alive(e, now);
    return on_record_payload(e, e->rx_buf[0], plain, frame_len - USMP_STREAM_OVERHEAD, counter, ev);
}

#if USMP_DATAGRAM
/* A datagram record (spec 6.2 checks 1-8). */
static int datagram_on_record(usmp_engine_t *e, const uint8_t *frame, size_t len, uint32_t now,
                              usmp_event_t *ev)
{
    uint64_t seq;
    int rc;

    /* A datagram shorter than the header has no room for a tag either. */
    rc = check_record_size(e, len >= USMP_DATAGRAM_HEADER_BYTES ? len - USMP_DATAGRAM_HEADER_BYTES
                                                                : 0u);
    if (rc != USMP_OK) {
        return rc;
    }
    if (memcmp(frame + 1, e->session_id, USMP_SESSION_INDEX_BYTES) != 0) {
        return USMP_ERR_UNKNOWN_SESSION;
    }
    seq = usmp_get_be(frame + 4, 5);
    if (seq >= USMP_RECORD_COUNTER_LIMIT) {
        return USMP_ERR_KEY_LIMIT;
    }
    rc = usmp_replay_check(&e->replay, seq);
    if (rc != USMP_OK) {
        return rc;
    }
    /* From the caller's datagram straight into rx_buf: no copy first. */
    rc = usmp_record_open_aead(e->rx_buf, USMP_MODE_DATAGRAM, frame, len, seq, &e->aead_recv);
    if (rc != USMP_OK) {
        return rc == USMP_ERR_BAD_RECORD ? rc : fail(e, rc);
    }
    rc = on_record_payload(e, frame[0], e->rx_buf, len - USMP_DATAGRAM_OVERHEAD, seq, ev);
    if (rc != USMP_OK) {
        return rc; /* check 8 failed: the record changes nothing (spec 6.2) */
    }
    usmp_replay_accept(&e->replay, seq);
    note_alive(e, now);
    return USMP_OK;
}

#endif /* USMP_DATAGRAM */

/* Rows 29-33 and 61: any record in ESTABLISHED. */
static int on_record(usmp_engine_t *e, const uint8_t *frame, size_t frame_len, size_t h,
                     uint32_t now, usmp_event_t *ev)
{
    (void)h;
#if USMP_DATAGRAM
    if (IS_DATAGRAM(e)) {
        return datagram_on_record(e, frame, frame_len, now, ev);
    }
#else
    (void)frame;
    (void)frame_len;
#endif
    return stream_on_record(e, now, ev); /* frame is rx_buf */
}

/* ------------------------------------------------------- transition table */

/*
 * The state machine as data: which frame a role may receive in which state,
 * and in which mode, with the row of spec/state-machine.md it implements
 * (tests/spec/test_spec.py checks the rows against the spec). Each handler
 * produces the row's other outcomes (the failure rows that follow it in the
 * spec). A frame with no entry is row 27 (UNEXPECTED) or 28 (MALFORMED).
 */
typedef int (*frame_handler_t)(usmp_engine_t *e, const uint8_t *frame, size_t frame_len,
                               size_t header_len, uint32_t now, usmp_event_t *ev);

#define R_CLIENT   1u
#define R_SERVER   2u
#define R_BOTH     (R_CLIENT | R_SERVER)
#define M_STREAM   1u
#define M_DATAGRAM 2u
#define M_BOTH     (M_STREAM | M_DATAGRAM)

typedef struct {
    uint8_t roles;
    uint8_t state;
    uint8_t type;
    uint8_t modes;
    uint8_t spec_row;
    frame_handler_t handler;
} transition_t;

/* The table is read as a table, by people and by tests/spec: no reflowing. */
/* clang-format off */
static const transition_t transitions[] = {
    /* roles     state                        frame                    modes       row handler */
    { R_CLIENT, USMP_STATE_WAIT_CHALLENGE,  USMP_TYPE_CHALLENGE,     M_BOTH,     2, on_challenge },
#if USMP_DATAGRAM
    { R_CLIENT, USMP_STATE_WAIT_CHALLENGE,  USMP_TYPE_COOKIE,        M_DATAGRAM, 7, on_cookie },
#endif
    { R_CLIENT, USMP_STATE_WAIT_SESSION_OK, USMP_TYPE_SESSION_OK,    M_BOTH,     8, on_session_ok },
#if USMP_SERVER
    { R_SERVER, USMP_STATE_WAIT_HELLO,      USMP_TYPE_HELLO,         M_BOTH,     13, on_hello },
    { R_SERVER, USMP_STATE_WAIT_HELLO_ACK,  USMP_TYPE_HELLO_ACK,     M_BOTH,     20, on_hello_ack },
#endif
#if USMP_SERVER && USMP_DATAGRAM
    { R_SERVER, USMP_STATE_WAIT_HELLO_ACK,  USMP_TYPE_HELLO,         M_DATAGRAM, 23, on_duplicate_hello },
    { R_SERVER, USMP_STATE_ESTABLISHED,     USMP_TYPE_HELLO_ACK,     M_DATAGRAM, 24, on_duplicate_hello_ack },
#endif
    { R_CLIENT, USMP_STATE_WAIT_CHALLENGE,  USMP_TYPE_ERROR,         M_BOTH,     25, on_error },
    { R_CLIENT, USMP_STATE_WAIT_SESSION_OK, USMP_TYPE_ERROR,         M_BOTH,     25, on_error },
#if USMP_SERVER
    { R_SERVER, USMP_STATE_WAIT_HELLO,      USMP_TYPE_ERROR,         M_BOTH,     25, on_error },
    { R_SERVER, USMP_STATE_WAIT_HELLO_ACK,  USMP_TYPE_ERROR,         M_BOTH,     25, on_error },
#endif
    { R_BOTH,   USMP_STATE_ESTABLISHED,     USMP_TYPE_DATA,          M_BOTH,     29, on_record },
    { R_BOTH,   USMP_STATE_ESTABLISHED,     USMP_TYPE_DATA_FRAGMENT, M_BOTH,     30, on_record },
    { R_BOTH,   USMP_STATE_ESTABLISHED,     USMP_TYPE_PING,          M_BOTH,     31, on_record },
    { R_BOTH,   USMP_STATE_ESTABLISHED,     USMP_TYPE_PONG,          M_BOTH,     32, on_record },
    { R_BOTH,   USMP_STATE_ESTABLISHED,     USMP_TYPE_BYE,           M_BOTH,     33, on_record },
    { R_BOTH,   USMP_STATE_ESTABLISHED,     USMP_TYPE_CONTROL,       M_BOTH,     61, on_record },
};
/* clang-format on */

static const transition_t *find_transition(const usmp_engine_t *e, uint8_t type)
{
    uint8_t role = IS_CLIENT(e) ? R_CLIENT : R_SERVER;
    uint8_t mode = IS_STREAM(e) ? M_STREAM : M_DATAGRAM;
    size_t i;

    for (i = 0; i < sizeof transitions / sizeof transitions[0]; i++) {
        const transition_t *t = &transitions[i];
        if ((t->roles & role) && t->state == e->state && t->type == type && (t->modes & mode)) {
            return t;
        }
    }
    return NULL;
}

/* Rows 27 and 28: a frame this state has no transition for. */
static int no_transition(usmp_engine_t *e, uint8_t type)
{
    return violation(e, is_defined_type(type) ? USMP_ERR_UNEXPECTED : USMP_ERR_MALFORMED);
}

#if USMP_DATAGRAM
/* ---------------------------------------------------------------- datagrams */

static int datagram_feed(usmp_engine_t *e, const uint8_t *d, size_t len, uint32_t now,
                         usmp_event_t *ev)
{
    const transition_t *t;

    if (len == 0) {
        return USMP_ERR_MALFORMED;
    }
    t = find_transition(e, d[0]);
    if (t == NULL) {
        return no_transition(e, d[0]);
    }
    return t->handler(e, d, len,
                      is_record_type(d[0]) ? USMP_DATAGRAM_HEADER_BYTES
                                           : USMP_DATAGRAM_HANDSHAKE_HEADER_BYTES,
                      now, ev);
}

#endif /* USMP_DATAGRAM */

/* ------------------------------------------------------------------ streams */

/* Checks a complete stream header (spec 5.1: before the body is read).
 * Returns the body length, or a negative condition. */
static int stream_check_header(usmp_engine_t *e)
{
    uint8_t type = e->rx_buf[0];
    size_t len = usmp_get_u16(e->rx_buf + 1);
    int rc;

    if (find_transition(e, type) == NULL) {
        return no_transition(e, type);
    }
    if (is_record_type(type)) {
        rc = check_record_size(e, len);
        if (rc != USMP_OK) {
            return rc;
        }
        if (e->recv_next >= USMP_RECORD_COUNTER_LIMIT) {
            return fail(e, USMP_ERR_KEY_LIMIT);
        }
        return (int)len;
    }
    if (len != handshake_body_len(type)) {
        return fail(e, USMP_ERR_MALFORMED);
    }
    return (int)len;
}

static int stream_feed(usmp_engine_t *e, const uint8_t *d, size_t len, uint32_t now,
                       size_t *consumed, usmp_event_t *ev)
{
    while (*consumed < len) {
        size_t need = USMP_STREAM_HEADER_BYTES;
        size_t take;
        int rc;

        if (e->rx_len == 0 && d[*consumed] == USMP_TYPE_PING && (e->pending & USMP_P_PONG) &&
            e->state == USMP_STATE_ESTABLISHED) {
            /* Row 31: one PONG per PING, and at most one PONG unsent. Read
             * no further until the driver sends it (spec 6.3). */
            return USMP_OK;
        }
        if (e->rx_len >= USMP_STREAM_HEADER_BYTES) {
            need += usmp_get_u16(e->rx_buf + 1);
        }
        take = need - e->rx_len;
        if (take > len - *consumed) {
            take = len - *consumed;
        }
        memcpy(e->rx_buf + e->rx_len, d + *consumed, take);
        e->rx_len += (uint32_t)take;
        *consumed += take;

        if (e->rx_len == USMP_STREAM_HEADER_BYTES) {
            rc = stream_check_header(e);
            if (rc < 0) {
                return rc;
            }
            if (rc > 0) {
                continue; /* read the body */
            }
        } else if (e->rx_len < need) {
            continue;
        }
        /* A whole frame is in rx_buf; its header found a transition. */
        e->rx_len = 0;
        rc = find_transition(e, e->rx_buf[0])
                 ->handler(e, e->rx_buf, USMP_STREAM_HEADER_BYTES + usmp_get_u16(e->rx_buf + 1),
                           USMP_STREAM_HEADER_BYTES, now, ev);
        if (rc != USMP_OK || ev->type != USMP_EVENT_NONE || e->state >= USMP_STATE_CLOSED) {
            return rc;
        }
    }
    return USMP_OK;
}

int usmp_engine_feed(usmp_engine_t *e, const uint8_t *data, size_t len, uint32_t now_ms,
                     size_t *consumed, usmp_event_t *event)
{
    size_t used = 0;
    usmp_event_t none = { USMP_EVENT_NONE, NULL, 0, 0 };
    int rc;

    if (event != NULL) {
        *event = none;
    }
    if (consumed != NULL) {
        *consumed = 0;
    }
    if (e == NULL || event == NULL || consumed == NULL || (data == NULL && len > 0)) {
        return USMP_ERR_ARG;
    }
    if (e->state == USMP_STATE_FAILED || e->state == USMP_STATE_CLOSED) {
        return terminal_error(e);
    }
    if (!(e->flags & USMP_F_STARTED)) {
        return USMP_ERR_STATE;
    }
#if USMP_DATAGRAM
    if (IS_DATAGRAM(e)) {
        *consumed = len;
        return datagram_feed(e, data, len, now_ms, event);
    }
#endif
    rc = stream_feed(e, data, len, now_ms, &used, event);
    *consumed = used;
    return rc;
}

int usmp_engine_transport_closed(usmp_engine_t *e)
{
    if (e == NULL) {
        return USMP_ERR_ARG;
    }
    /* Nothing can be sent any more: drop what waits, a partly sent frame
     * included, so that the caller sees no output pending. A BYE that was
     * still pending kept the record keys for its seal; with nobody left to
     * read it, they go now (spec 5.7: wiped when the session ends). */
    e->tx_len = 0;
    e->tx_sent = 0;
    if (e->state == USMP_STATE_CLOSED || e->state == USMP_STATE_FAILED) {
        int rc = e->state == USMP_STATE_CLOSED ? USMP_OK : e->error;
        end_session(e, e->state, e->error, 0, 0, USMP_CODE_NONE);
        return rc;
    }
    /* Nobody left to tell: no ERROR, no BYE. */
    end_session(e, USMP_STATE_FAILED, USMP_ERR_TRANSPORT_CLOSED, 0, 0, USMP_CODE_NONE);
    return USMP_ERR_TRANSPORT_CLOSED;
}

/* --------------------------------------------------------------------- send */

size_t usmp_engine_max_single_record(const usmp_engine_t *e)
{
    size_t own = e->tx_cap - header_len(e) - USMP_TAG_BYTES;
    return own < e->peer_max_record ? own : e->peer_max_record;
}

int usmp_engine_send(usmp_engine_t *e, const uint8_t *msg, size_t len, uint32_t now_ms)
{
    size_t h, room, chunk;
    int rc;

    (void)now_ms;
    if (e == NULL || (msg == NULL && len > 0)) {
        return USMP_ERR_ARG;
    }
    if (e->state == USMP_STATE_FAILED) {
        return e->error;
    }
    if (e->state != USMP_STATE_ESTABLISHED) {
        return USMP_ERR_STATE;
    }
    if (tx_busy(e) || e->pending != 0) {
        return USMP_ERR_WOULD_BLOCK;
    }
    h = header_len(e);
    room = e->tx_cap - h - USMP_TAG_BYTES; /* the largest record tx_buf holds */

    if (usmp_fragmenter_remaining(&e->fragmenter) == 0) {
        if (len > e->peer_max_message) {
            return USMP_ERR_MESSAGE_TOO_LARGE;
        }
        if (len <= e->peer_max_record) {
            /* Spec 6.4: a message that fits one peer record is one DATA. */
            if (len > room) {
                return USMP_ERR_MESSAGE_TOO_LARGE;
            }
            memcpy(e->tx_buf + h, msg, len);
            rc = seal_tx(e, USMP_TYPE_DATA, len);
            return rc == USMP_OK ? (int)len : fail(e, rc);
        }
        usmp_fragmenter_start(&e->fragmenter, (uint16_t)len);
    } else if (len != usmp_fragmenter_remaining(&e->fragmenter)) {
        return USMP_ERR_STATE; /* not the rest of the message in progress */
    }

    chunk = usmp_fragmenter_write(&e->fragmenter, e->tx_buf + h,
                                  room < e->peer_max_record ? room : e->peer_max_record, msg, len);
    rc = seal_tx(e, USMP_TYPE_DATA_FRAGMENT, USMP_FRAGMENT_HEADER_BYTES + chunk);
    if (rc != USMP_OK) {
        return fail(e, rc);
    }
    if (usmp_fragmenter_sent(&e->fragmenter, chunk)) {
        check_soft_limit(e);
    }
    return (int)chunk;
}

int usmp_engine_send_control(usmp_engine_t *e, uint8_t channel, const uint8_t *body, size_t len,
                             uint32_t now_ms)
{
    size_t h, room;
    int rc;

    (void)now_ms;
    if (e == NULL || (body == NULL && len > 0)) {
        return USMP_ERR_ARG;
    }
    if (e->state == USMP_STATE_FAILED) {
        return e->error;
    }
    if (e->state != USMP_STATE_ESTABLISHED) {
        return USMP_ERR_STATE;
    }
    /* Spec 6.7: not between the fragments of a message (6.4). */
    if (tx_busy(e) || e->pending != 0 || usmp_fragmenter_remaining(&e->fragmenter) != 0) {
        return USMP_ERR_WOULD_BLOCK;
    }
    h = header_len(e);
    room = e->tx_cap - h - USMP_TAG_BYTES;
    /* Row 63: a control message is never fragmented. */
    if (len >= e->peer_max_record || len >= room) {
        return USMP_ERR_MESSAGE_TOO_LARGE;
    }
    e->tx_buf[h] = channel;
    if (len > 0) {
        memcpy(e->tx_buf + h + 1, body, len);
    }
    rc = seal_tx(e, USMP_TYPE_CONTROL, 1u + len);
    return rc == USMP_OK ? USMP_OK : fail(e, rc);
}

int usmp_engine_close(usmp_engine_t *e, uint8_t code)
{
    if (e == NULL) {
        return USMP_ERR_ARG;
    }
    switch (e->state) {
    case USMP_STATE_ESTABLISHED:
        /* Rows 43, 46, 47. */
        end_session(e, USMP_STATE_CLOSED, USMP_OK, USMP_P_FLIGHT, USMP_P_BYE, code);
        return USMP_OK;
    case USMP_STATE_CLOSED:
    case USMP_STATE_FAILED: return USMP_OK;
    default: {
        /* During the handshake an ERROR goes out for the codes ERROR carries
         * (a server refusing with BUSY); the others just end it. */
        int err = usmp_error_from_wire(code);
        (void)fail(e, err != USMP_OK ? err : USMP_ERR_STATE);
        return USMP_OK;
    }
    }
}

/* ------------------------------------------------------------------- timers */

static void earliest(uint32_t *best, int *have, uint32_t candidate)
{
    if (!*have || (int32_t)(candidate - *best) < 0) {
        *best = candidate;
        *have = 1;
    }
}

int usmp_engine_next_deadline(const usmp_engine_t *e, uint32_t *deadline_ms)
{
    uint32_t best = 0;
    int have = 0;

    if (e == NULL || deadline_ms == NULL || !(e->flags & USMP_F_STARTED)) {
        return 0;
    }
    if (is_handshake_state(e->state)) {
        earliest(&best, &have, e->handshake_deadline);
#if USMP_DATAGRAM
        if (IS_DATAGRAM(e) && IS_CLIENT(e)) {
            earliest(&best, &have, e->retransmit_at);
        }
#endif
    } else if (e->state == USMP_STATE_ESTABLISHED) {
        if (e->flags & USMP_F_PING_OUT) {
            earliest(&best, &have, e->ping_sent_at + e->pong_timeout_ms);
        } else if (e->keepalive_ms != 0) {
            earliest(&best, &have, e->last_rx + e->keepalive_ms);
        }
#if USMP_SERVER
        if (IS_SERVER(e)) {
            earliest(&best, &have, e->last_rx + e->idle_timeout_ms);
        }
#endif
    }
    if (have) {
        *deadline_ms = best;
    }
    return have;
}

int usmp_engine_tick(usmp_engine_t *e, uint32_t now_ms)
{
    if (e == NULL) {
        return USMP_ERR_ARG;
    }
    if (e->state == USMP_STATE_FAILED) {
        return e->error;
    }
    if (!(e->flags & USMP_F_STARTED)) {
        return USMP_OK;
    }
    if (is_handshake_state(e->state)) {
        if (usmp_time_reached(now_ms, e->handshake_deadline)) {
            /* Row 26: the last datagram ERROR recorded, if any (spec 9.2). */
            return fail(e, (e->flags & USMP_F_PEER_ERROR) ? USMP_ERR_PEER_ERROR : USMP_ERR_TIMEOUT);
        }
#if USMP_DATAGRAM
        if (IS_DATAGRAM(e) && IS_CLIENT(e) && usmp_time_reached(now_ms, e->retransmit_at)) {
            /* Row 12: resend the last flight, unless it is still unsent. */
            if (!tx_busy(e)) {
                e->pending |= USMP_P_FLIGHT;
            }
            e->retransmit_interval *= 2u;
            if (e->retransmit_interval > RETRANSMIT_MAX_MS) {
                e->retransmit_interval = RETRANSMIT_MAX_MS;
            }
            e->retransmit_at = now_ms + e->retransmit_interval;
        }
#endif
        return USMP_OK;
    }
    if (e->state != USMP_STATE_ESTABLISHED) {
        return USMP_OK;
    }
    if (e->flags & USMP_F_PING_OUT) {
        if (usmp_time_reached(now_ms, e->ping_sent_at + e->pong_timeout_ms)) {
            return fail(e, USMP_ERR_PEER_TIMEOUT); /* row 45 */
        }
    } else if (e->keepalive_ms != 0 && usmp_time_reached(now_ms, e->last_rx + e->keepalive_ms)) {
        e->flags |= USMP_F_PING_OUT; /* row 44 */
        e->ping_sent_at = now_ms;
        e->pending |= USMP_P_PING;
    }
#if USMP_SERVER
    if (IS_SERVER(e) && usmp_time_reached(now_ms, e->last_rx + e->idle_timeout_ms)) {
        (void)usmp_engine_close(e, USMP_CODE_IDLE_TIMEOUT); /* row 46 */
    }
#endif
    return USMP_OK;
}

/* ------------------------------------------------------------------ queries */

usmp_state_t usmp_engine_state(const usmp_engine_t *e)
{
    return e != NULL ? (usmp_state_t)e->state : USMP_STATE_FAILED;
}

int usmp_engine_error(const usmp_engine_t *e)
{
    if (e == NULL) {
        return USMP_ERR_ARG;
    }
    return e->state == USMP_STATE_FAILED || e->state == USMP_STATE_CLOSED ? e->error : USMP_OK;
}

uint8_t usmp_engine_peer_code(const usmp_engine_t *e)
{
    return e != NULL ? e->peer_code : 0u;
}

uint8_t usmp_engine_close_code(const usmp_engine_t *e)
{
    return e != NULL ? e->close_code : 0u;
}

const uint8_t *usmp_engine_session_id(const usmp_engine_t *e)
{
    return e != NULL ? e->session_id : NULL;
}

const uint8_t *usmp_engine_device_id(const usmp_engine_t *e)
{
    return e != NULL ? e->device_id : NULL;
}

uint16_t usmp_engine_peer_max_record(const usmp_engine_t *e)
{
    return e != NULL ? e->peer_max_record : 0u;
}

uint16_t usmp_engine_peer_max_message(const usmp_engine_t *e)
{
    return e != NULL ? e->peer_max_message : 0u;
}
