/*
 * vectors_main.c - firmware image "vectors": both engines, client and
 * server, in memory on the target, reproducing spec/vectors/handshake.json
 * and records.json byte for byte, and giving every step of negative.json
 * its condition, outcome, reply and peer code (tests/unit/test_vectors.c does the same
 * on the host, from the JSON files; here they are compiled in by
 * targets/gen_vectors.py). Built with every feature (server role, datagram
 * mode), since the server engine plays the gateway.
 */
#include <stdio.h>
#include <string.h>

#include "target.h"
#include "usmp_crypto.h"
#include "usmp_engine.h"
#include "usmp_handshake.h"
#include "usmp_record.h"
#include "usmp_vectors.h"

#if !USMP_SERVER || !USMP_DATAGRAM
#error "the vectors image needs the server role and datagram mode"
#endif

/* The largest limits a side may announce (protocol section 4), as some
 * vectors do: about 400 KB of buffers for the two sides, which the emulated
 * boards' RAM holds. */
#define MAX_RECORD  USMP_STREAM_MAX_RECORD
#define MAX_MESSAGE 65535u

/* The engine's random callback plays back a case's fixed choices. */
typedef struct {
    uint8_t bytes[64];
    size_t len, pos;
} script_t;

static void script_random(void *user, uint8_t *buf, size_t len)
{
    script_t *s = user;
    size_t i;

    for (i = 0; i < len; i++) {
        buf[i] = s->pos < s->len ? s->bytes[s->pos++] : 0x5A;
    }
}

static void script_add(script_t *s, vec_bytes_t b)
{
    if (b.len <= sizeof s->bytes - s->len) {
        memcpy(s->bytes + s->len, b.ptr, b.len);
        s->len += b.len;
    }
}

typedef struct {
    usmp_engine_t e;
    script_t rng;
    const vec_handshake_t *hs; /* the server's PSK table: one device */
    uint8_t rx[USMP_RECORD_BUFFER_BYTES(MAX_RECORD)];
    uint8_t tx[USMP_RECORD_BUFFER_BYTES(MAX_RECORD)];
    uint8_t reassembly[MAX_MESSAGE];
    uint8_t out[256]; /* what the engine sent since the last reset */
    size_t out_len;
    uint8_t delivered[2048];
    size_t delivered_len;
    int delivered_any;
} side_t;

static side_t client_side, server_side;

static size_t table_lookup(void *user, const uint8_t id[6], uint8_t psk[64])
{
    const vec_handshake_t *hs = user;

    if (memcmp(id, hs->device_id.ptr, 6) != 0 || hs->psk.len > 64) {
        return 0;
    }
    memcpy(psk, hs->psk.ptr, hs->psk.len);
    return hs->psk.len;
}

static int side_init(side_t *s, const vec_handshake_t *hs, usmp_role_t role, uint32_t keepalive_ms)
{
    usmp_engine_config_t cfg;

    memset(&cfg, 0, sizeof cfg);
    memset(&s->rng, 0, sizeof s->rng);
    s->out_len = 0;
    s->hs = hs;
    cfg.role = role;
    cfg.mode = hs->datagram ? USMP_MODE_DATAGRAM : USMP_MODE_STREAM;
    cfg.random = script_random;
    cfg.random_user = &s->rng;
    cfg.rx_buf = s->rx;
    cfg.rx_cap = sizeof s->rx;
    cfg.tx_buf = s->tx;
    cfg.tx_cap = sizeof s->tx;
    cfg.reassembly_buf = s->reassembly;
    cfg.reassembly_cap = sizeof s->reassembly;
    if (role == USMP_ROLE_CLIENT) {
        cfg.keepalive_ms = keepalive_ms;
        cfg.max_record = hs->client_max_record;
        cfg.max_message = hs->client_max_message;
        cfg.psk = hs->psk.ptr;
        cfg.psk_len = hs->psk.len;
        memcpy(cfg.device_id, hs->device_id.ptr, 6);
        /* Spec 5.8: the client draws R and derives its key with the counters. */
        script_add(&s->rng, hs->client_random);
        cfg.boot_counter = hs->client_boot_counter;
        cfg.connection_counter = hs->client_connection_counter;
    } else {
        cfg.max_record = hs->server_max_record;
        cfg.max_message = hs->server_max_message;
        cfg.psk_lookup = table_lookup;
        cfg.psk_lookup_user = (void *)(uintptr_t)hs;
        /* The server draws, in order: ephemeral key, nonce, session id. */
        script_add(&s->rng, hs->server_ephemeral_private);
        script_add(&s->rng, hs->server_nonce);
        script_add(&s->rng, hs->session_id);
    }
    TARGET_CHECK(cfg.max_record <= MAX_RECORD && cfg.max_message <= MAX_MESSAGE,
                 "a vector announces limits larger than this image's buffers");
    /* The last case's session may still hold its record keys' contexts,
     * whose AES contexts mbedTLS took from the static heap: released before
     * the side is set up again (a side never used is all zero). */
    usmp_engine_wipe(&s->e);
    if (usmp_engine_init(&s->e, &cfg) != USMP_OK || usmp_engine_start(&s->e, 0) != USMP_OK) {
        TARGET_CHECK(0, "engine init or start failed");
        return 0;
    }
    return 1;
}

static void side_drain(side_t *s)
{
    for (;;) {
        const uint8_t *data;
        size_t len;

        usmp_engine_output(&s->e, &data, &len);
        if (len == 0) {
            return;
        }
        if (len <= sizeof s->out - s->out_len) {
            memcpy(s->out + s->out_len, data, len);
            s->out_len += len;
        } else {
            TARGET_CHECK(0, "an engine sent more than the capture holds");
        }
        usmp_engine_output_done(&s->e, len);
    }
}

/* Feeds one frame (an empty input: end of stream); returns the first
 * error or USMP_OK. */
static int side_feed(side_t *s, const uint8_t *in, size_t len)
{
    size_t off = 0;
    int rc = USMP_OK;

    if (len == 0) {
        return usmp_engine_transport_closed(&s->e);
    }
    while (off < len) {
        size_t used = 0;
        usmp_event_t ev;

        rc = usmp_engine_feed(&s->e, in + off, len - off, 0, &used, &ev);
        if (ev.type == USMP_EVENT_MESSAGE) {
            TARGET_CHECK(ev.len <= sizeof s->delivered,
                         "a delivered message larger than the capture");
            if (ev.len <= sizeof s->delivered) {
                memcpy(s->delivered, ev.data, ev.len);
                s->delivered_len = ev.len;
                s->delivered_any = 1;
            }
        }
        if (rc != USMP_OK) {
            break;
        }
        if (used == 0) {
            /* A PING waits while a PONG is unsent (row 31): send it, then
             * feed the rest, as a driver does. */
            size_t sent_before = s->out_len;

            side_drain(s);
            if (s->out_len == sent_before) {
                break;
            }
            continue;
        }
        off += used;
    }
    side_drain(s);
    return rc;
}

static int same(const uint8_t *a, size_t a_len, vec_bytes_t b)
{
    return a_len == b.len && (b.len == 0 || memcmp(a, b.ptr, b.len) == 0);
}

/* Feeds `frame` to `to` and checks that it answers exactly `answer`. */
static void exchange(side_t *to, vec_bytes_t frame, vec_bytes_t answer, const char *what)
{
    to->out_len = 0;
    TARGET_CHECK(side_feed(to, frame.ptr, frame.len) == USMP_OK, what);
    TARGET_CHECK(same(to->out, to->out_len, answer), what);
}

static void check_handshake(const vec_handshake_t *hs)
{
    static const vec_bytes_t nothing = { 0, 0 };
    side_t *c = &client_side, *s = &server_side;
    uint8_t pub[32], shared[32];
    size_t i;

    printf("handshake %s\n", hs->name);
    /* The client's ephemeral key is the spec 5.8 derivation of the case's
     * random and counters. */
    TARGET_CHECK(hs->client_random.len == 32 &&
                     usmp_hs_client_ephemeral(
                         pub, hs->psk.ptr, hs->psk.len, hs->client_boot_counter,
                         hs->client_connection_counter, hs->client_random.ptr) == USMP_OK &&
                     same(pub, 32, hs->client_ephemeral_private),
                 "client_ephemeral_private is not the spec 5.8 derivation");
    /* The X25519 results the vector fixes. */
    TARGET_CHECK(usmp_crypto_x25519_public(pub, hs->client_ephemeral_private.ptr) ==
                         USMP_CRYPTO_OK &&
                     same(pub, 32, hs->client_ephemeral_public),
                 "client ephemeral public key");
    TARGET_CHECK(usmp_crypto_x25519_shared(shared, hs->client_ephemeral_private.ptr,
                                           hs->server_ephemeral_public.ptr) == USMP_CRYPTO_OK &&
                     same(shared, 32, hs->shared_secret),
                 "X25519 shared secret");

    /* keepalive 42 ms: the client's first PING goes out at t = 42, whose
     * payload (the send time) is the vector's 0000002a. */
    if (!side_init(c, hs, USMP_ROLE_CLIENT, 42) || !side_init(s, hs, USMP_ROLE_SERVER, 0)) {
        return;
    }
    side_drain(c);
    TARGET_CHECK(same(c->out, c->out_len, hs->frame_hello), "HELLO differs");
    if (hs->frame_cookie.len != 0) {
        uint8_t cookie[16];

        TARGET_CHECK(usmp_cookie_compute(cookie, hs->cookie_secret.ptr, hs->client_address.ptr,
                                         hs->client_address.len, hs->frame_hello.ptr,
                                         hs->frame_hello.len) == USMP_OK &&
                         hs->frame_cookie.len == 17 &&
                         memcmp(cookie, hs->frame_cookie.ptr + 1, 16) == 0,
                     "cookie differs");
        exchange(c, hs->frame_cookie, hs->frame_hello_with_cookie, "answer to COOKIE");
        exchange(s, hs->frame_hello_with_cookie, hs->frame_challenge,
                 "answer to HELLO with cookie");
    } else {
        exchange(s, hs->frame_hello, hs->frame_challenge, "answer to HELLO");
    }
    exchange(c, hs->frame_challenge, hs->frame_hello_ack, "answer to CHALLENGE");
    exchange(s, hs->frame_hello_ack, hs->frame_session_ok, "answer to HELLO_ACK");
    exchange(c, hs->frame_session_ok, nothing, "answer to SESSION_OK");
    TARGET_CHECK(usmp_engine_state(&c->e) == USMP_STATE_ESTABLISHED, "client not established");
    TARGET_CHECK(usmp_engine_state(&s->e) == USMP_STATE_ESTABLISHED, "server not established");
    TARGET_CHECK(memcmp(usmp_engine_session_id(&c->e), hs->session_id.ptr, 8) == 0, "session id");

    /* The session's first records, from the engines' own actions: DATA by
     * usmp_engine_send, PING by the keepalive timer, PONG as its answer,
     * BYE by usmp_engine_close. */
    for (i = 0; i < hs->record_count; i++) {
        const vec_session_record_t *r = &hs->records[i];
        side_t *from = r->c2s ? c : s, *to = r->c2s ? s : c;

        if (r->type != USMP_TYPE_PONG) {
            from->out_len = 0; /* a PONG is pending since the PING was fed */
        }
        if (r->type == USMP_TYPE_DATA) {
            TARGET_CHECK(usmp_engine_send(&from->e, r->plaintext.ptr, r->plaintext.len, 0) ==
                             (int)r->plaintext.len,
                         "usmp_engine_send");
        } else if (r->type == USMP_TYPE_PING) {
            TARGET_CHECK(usmp_engine_tick(&from->e, 42) == USMP_OK, "keepalive tick");
        } else if (r->type == USMP_TYPE_BYE) {
            TARGET_CHECK(r->plaintext.len == 1 &&
                             usmp_engine_close(&from->e, r->plaintext.ptr[0]) == USMP_OK,
                         "usmp_engine_close");
        }
        side_drain(from);
        TARGET_CHECK(same(from->out, from->out_len, r->frame), "session record differs");
        to->delivered_any = 0;
        to->out_len = 0;
        TARGET_CHECK(side_feed(to, r->frame.ptr, r->frame.len) == USMP_OK,
                     "session record rejected");
        if (r->type == USMP_TYPE_DATA) {
            TARGET_CHECK(to->delivered_any && same(to->delivered, to->delivered_len, r->plaintext),
                         "DATA not delivered");
        }
        if (r->type == USMP_TYPE_BYE) {
            TARGET_CHECK(usmp_engine_state(&to->e) == USMP_STATE_CLOSED, "BYE did not close");
        }
    }
}

static void check_records(void)
{
    size_t i;

    for (i = 0; i < VEC_RECORD_COUNT; i++) {
        const vec_record_t *r = &vec_records[i];
        usmp_mode_t mode = r->datagram ? USMP_MODE_DATAGRAM : USMP_MODE_STREAM;
        size_t h = usmp_record_header_len(mode);
        uint8_t frame[160], opened[96];
        uint8_t index[3] = { 0, 0, 0 };
        int len;

        if (h + r->plaintext.len + USMP_TAG_BYTES > sizeof frame ||
            r->plaintext.len > sizeof opened) {
            TARGET_CHECK(0, "records.json: a record larger than this image's buffers");
            continue;
        }
        if (r->session_index.len == 3) {
            memcpy(index, r->session_index.ptr, 3);
        }
        if (r->plaintext.len != 0) {
            memcpy(frame + h, r->plaintext.ptr, r->plaintext.len);
        }
        len =
            usmp_record_seal(frame, mode, r->type, index, r->counter, r->key.ptr, r->plaintext.len);
        TARGET_CHECK(len > 0 && same(frame, (size_t)len, r->frame),
                     "records.json: sealed differently");
        TARGET_CHECK(
            usmp_record_open(opened, mode, r->frame.ptr, r->frame.len, r->counter, r->key.ptr) ==
                    USMP_OK &&
                (r->plaintext.len == 0 || memcmp(opened, r->plaintext.ptr, r->plaintext.len) == 0),
            "records.json: does not open");
        /* The nonce is bound: the next counter must not open it. */
        TARGET_CHECK(usmp_record_open(opened, mode, r->frame.ptr, r->frame.len, r->counter + 1u,
                                      r->key.ptr) == USMP_ERR_BAD_RECORD,
                     "records.json: opens under the wrong counter");
    }
}

/* Brings a fresh engine to the case's start state with the genuine frames. */
static side_t *reach(const vec_handshake_t *hs, int server, const char *start)
{
    side_t *s = server ? &server_side : &client_side;

    if (!side_init(s, hs, server ? USMP_ROLE_SERVER : USMP_ROLE_CLIENT, 0)) {
        return NULL;
    }
    side_drain(s);
    if (server && strcmp(start, "WAIT_HELLO") != 0) {
        TARGET_CHECK(side_feed(s, hs->frame_hello.ptr, hs->frame_hello.len) == USMP_OK,
                     "reach: HELLO");
        if (strcmp(start, "ESTABLISHED") == 0) {
            TARGET_CHECK(side_feed(s, hs->frame_hello_ack.ptr, hs->frame_hello_ack.len) == USMP_OK,
                         "reach: HELLO_ACK");
        }
    }
    if (!server && strcmp(start, "WAIT_CHALLENGE") != 0) {
        TARGET_CHECK(side_feed(s, hs->frame_challenge.ptr, hs->frame_challenge.len) == USMP_OK,
                     "reach: CHALLENGE");
        if (strcmp(start, "ESTABLISHED") == 0) {
            TARGET_CHECK(side_feed(s, hs->frame_session_ok.ptr, hs->frame_session_ok.len) ==
                             USMP_OK,
                         "reach: SESSION_OK");
        }
    }
    s->out_len = 0;
    return s;
}

/* Every step of negative.json: the condition, the outcome, the exact reply
 * and the message delivered, if any. */
static size_t check_negative(void)
{
    size_t i, j, steps = 0;

    for (i = 0; i < VEC_NEGATIVE_COUNT; i++) {
        const vec_negative_t *c = &vec_negative[i];
        side_t *s = reach(&vec_handshakes[c->handshake], c->server, c->start);

        if (s == NULL) {
            printf("negative %s: cannot reach %s\n", c->name, c->start);
            TARGET_CHECK(0, "negative: start state not reached");
            continue;
        }
        for (j = 0; j < c->step_count; j++) {
            const vec_negative_step_t *st = &c->steps[j];
            int rc, closed, ok = 1;

            s->out_len = 0;
            s->delivered_any = 0;
            if (st->timer_handshake) {
                /* Not an input: the clock passes handshake_timeout (10 s). */
                rc = usmp_engine_tick(&s->e, 20000u);
                side_drain(s);
            } else {
                rc = side_feed(s, st->input.ptr, st->input.len);
            }
            closed = usmp_engine_state(&s->e) == USMP_STATE_FAILED ||
                     usmp_engine_state(&s->e) == USMP_STATE_CLOSED;
            ok &= strcmp(st->expect, rc == USMP_OK ? "ok" : usmp_error_name(rc)) == 0;
            ok &= st->outcome == NULL || closed == (strcmp(st->outcome, "closed") == 0);
            ok &= same(s->out, s->out_len, st->reply);
            ok &= !st->peer_code_present || usmp_engine_peer_code(&s->e) == st->peer_code;
            ok &= st->delivers_present
                      ? s->delivered_any && same(s->delivered, s->delivered_len, st->delivers)
                      : !s->delivered_any;
            if (!ok) {
                printf("negative %s step %u: expected %s, got %s (peer code %u)\n", c->name,
                       (unsigned)j, st->expect, rc == USMP_OK ? "ok" : usmp_error_name(rc),
                       (unsigned)usmp_engine_peer_code(&s->e));
                TARGET_CHECK(0, "negative: condition, outcome, reply or delivery differs");
            }
            steps++;
        }
    }
    return steps;
}

int main(void)
{
    size_t i;
    uint64_t start;

    target_start("vectors");
    start = board_instructions();
    check_records();
    target_result("records_checked", VEC_RECORD_COUNT);
    target_result("records_instructions", board_instructions() - start);
    for (i = 0; i < VEC_HANDSHAKE_COUNT; i++) {
        start = board_instructions();
        check_handshake(&vec_handshakes[i]);
        printf("  %llu instructions, both sides\n",
               (unsigned long long)(board_instructions() - start));
    }
    target_result("handshakes_checked", VEC_HANDSHAKE_COUNT);
    target_result("negative_steps_checked", check_negative());
    target_finish();
}
