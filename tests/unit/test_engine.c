/*
 * test_engine.c - the engine as a client/server pair wired in memory.
 *
 * Covers: handshakes in both modes, delivered in one piece and byte by
 * byte; messages of every size class both ways, fragmented ones included;
 * fault injection on every byte of every handshake frame and of a record
 * (flip, cut, duplicate), with the invariant that a tampered exchange
 * never yields a session and no record is accepted twice; keepalive, dead
 * peer and idle timers across a clock wrap; key usage limits; datagram
 * retransmission; API misuse; sticky errors; wiping of secrets.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usmp_engine.h"
#include "usmp_crypto.h"
#include "usmp_record.h"
#include "usmp_test.h"
#include "usmp_wire.h"

static const uint8_t PSK[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t DEVICE_ID[6] = { 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01 };

/* Deterministic random source: a counter through SHA-256, so each run and
 * each side draws different but reproducible keys. */
typedef struct {
    uint32_t counter;
    uint8_t seed;
} rng_t;

static void test_random(void *user, uint8_t *buf, size_t len)
{
    rng_t *r = user;
    while (len > 0) {
        uint8_t block[32], in[5];
        usmp_slice_t part = { in, sizeof in };
        size_t n = len < 32 ? len : 32;
        in[0] = r->seed;
        usmp_put_be(in + 1, r->counter++, 4);
        usmp_crypto_sha256(block, &part, 1);
        memcpy(buf, block, n);
        buf += n;
        len -= n;
    }
}

static size_t lookup(void *user, const uint8_t id[6], uint8_t psk[64])
{
    (void)user;
    if (memcmp(id, DEVICE_ID, 6) != 0) {
        return 0;
    }
    memcpy(psk, PSK, sizeof PSK);
    return sizeof PSK;
}

#define BUF_BYTES USMP_RECORD_BUFFER_BYTES(2048)

typedef struct {
    usmp_engine_t e;
    rng_t rng;
    uint8_t rx[BUF_BYTES], tx[BUF_BYTES], reassembly[8192];
    uint8_t wire[16384]; /* frames sent, not yet delivered to the peer */
    size_t wire_len;
    size_t frame_ends[64]; /* datagram boundaries in wire */
    size_t frames;
    uint8_t got[8192];
    size_t got_len;
    int messages, closed_events, established_events;
    int controls, control_channel; /* CONTROL events (spec 6.7) and the last one's channel */
    uint8_t control_body[2048];
    size_t control_len;
} end_t;

typedef struct {
    usmp_mode_t mode;
    uint16_t client_record, client_message, server_record, server_message;
    uint32_t keepalive_ms, idle_ms;
    size_t client_tx; /* 0: full buffer */
} pair_cfg_t;

static end_t client, server;

static void end_init(end_t *x, usmp_role_t role, const pair_cfg_t *pc, uint8_t seed)
{
    usmp_engine_config_t cfg;
    /* The last run's session may still hold its record keys' contexts
     * (backend memory): wiped first, as every owner of an engine must. */
    usmp_engine_wipe(&x->e);
    memset(x, 0, sizeof *x);
    memset(&cfg, 0, sizeof cfg);
    x->rng.seed = seed;
    cfg.role = role;
    cfg.mode = pc->mode;
    cfg.random = test_random;
    cfg.random_user = &x->rng;
    cfg.rx_buf = x->rx;
    cfg.rx_cap = sizeof x->rx;
    cfg.tx_buf = x->tx;
    cfg.tx_cap = role == USMP_ROLE_CLIENT && pc->client_tx ? pc->client_tx : sizeof x->tx;
    cfg.reassembly_buf = x->reassembly;
    cfg.reassembly_cap = sizeof x->reassembly;
    cfg.keepalive_ms = pc->keepalive_ms;
    cfg.idle_timeout_ms = pc->idle_ms;
    if (role == USMP_ROLE_CLIENT) {
        cfg.psk = PSK;
        cfg.psk_len = sizeof PSK;
        memcpy(cfg.device_id, DEVICE_ID, 6);
        cfg.max_record = pc->client_record;
        cfg.max_message = pc->client_message;
    } else {
        cfg.psk_lookup = lookup;
        cfg.max_record = pc->server_record;
        cfg.max_message = pc->server_message;
    }
    CHECK_INT_EQ(usmp_engine_init(&x->e, &cfg), USMP_OK);
}

static int all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t i;
    for (i = 0; i < n; i++) {
        if (b[i] != 0) {
            return 0;
        }
    }
    return 1;
}

/* The invariant written above struct usmp_engine (usmp_engine.h): which
 * secrets may exist in which state, judged from outside by the engine's
 * state, its pending frames and its memory. Checked after every step:
 * every feed, every output taken, every timer and every close. */
/* The engine keeps a record key only inside its AEAD context (the key
 * schedule, no key bytes): two contexts hold the same key when what one
 * seals the other opens. Contexts without a key hold none in common. */
static int same_record_key(usmp_aead_t *sealer, usmp_aead_t *opener)
{
    uint8_t frame[USMP_STREAM_OVERHEAD + 4] = { 0 };
    uint8_t plain[4];
    int n = usmp_record_seal_aead(frame, USMP_MODE_STREAM, USMP_TYPE_DATA, NULL, 0, sealer, 4);

    return n == (int)sizeof frame && usmp_record_open_aead(plain, USMP_MODE_STREAM, frame,
                                                           sizeof frame, 0, opener) == USMP_OK;
}

static void check_secrets(const end_t *x, const char *step)
{
    const usmp_engine_t *e = &x->e;
    int hs_zero = all_zero(&e->hs, sizeof e->hs);
    int keys_zero = all_zero(&e->aead_send, sizeof e->aead_send) &&
                    all_zero(&e->aead_recv, sizeof e->aead_recv);
#if USMP_KEYLOG
    keys_zero = keys_zero && all_zero(e->keylog_send, sizeof e->keylog_send) &&
                all_zero(e->keylog_recv, sizeof e->keylog_recv);
#endif
    const char *who = e->role == USMP_ROLE_CLIENT ? "client" : "server";

    switch (e->state) {
    case USMP_STATE_START:
    case USMP_STATE_WAIT_HELLO:
        CHECK_MSG(hs_zero && keys_zero, "%s %s: secrets before the handshake", who, step);
        break;
    case USMP_STATE_WAIT_CHALLENGE:
        CHECK_MSG(keys_zero, "%s %s: record keys before the CHALLENGE", who, step);
        break;
    case USMP_STATE_WAIT_SESSION_OK:
    case USMP_STATE_WAIT_HELLO_ACK: break;
    case USMP_STATE_ESTABLISHED:
        CHECK_MSG(hs_zero || (e->role == USMP_ROLE_SERVER &&
                              ((e->pending & USMP_P_FLIGHT) || (e->flags & USMP_F_RESEND_ALLOWED))),
                  "%s %s: handshake material left in ESTABLISHED", who, step);
        break;
    default: /* CLOSED, FAILED */
        CHECK_MSG(hs_zero || (e->pending & USMP_P_FLIGHT),
                  "%s %s: handshake material left after the end with no flight owed", who, step);
        CHECK_MSG(keys_zero || (e->pending & USMP_P_BYE),
                  "%s %s: record keys left after the end with no BYE owed", who, step);
        break;
    }
}

/* The engine's calls that are steps of their own, each followed by the
 * secrets check. */
static int tick(end_t *x, uint32_t now)
{
    int rc = usmp_engine_tick(&x->e, now);
    check_secrets(x, "after a tick");
    return rc;
}

static int close_end(end_t *x, uint8_t code)
{
    int rc = usmp_engine_close(&x->e, code);
    check_secrets(x, "after a close");
    return rc;
}

static int transport_closed(end_t *x)
{
    int rc = usmp_engine_transport_closed(&x->e);
    check_secrets(x, "after the transport closed");
    return rc;
}

static int send_step(end_t *x, const uint8_t *msg, size_t len, uint32_t now)
{
    int rc = usmp_engine_send(&x->e, msg, len, now);
    check_secrets(x, "after a send");
    return rc;
}

/* Collects the engine's output onto its wire. */
static void collect(end_t *x)
{
    for (;;) {
        const uint8_t *d;
        size_t n;
        usmp_engine_output(&x->e, &d, &n);
        if (n == 0 || x->wire_len + n > sizeof x->wire || x->frames == 64) {
            return;
        }
        memcpy(x->wire + x->wire_len, d, n);
        x->wire_len += n;
        x->frame_ends[x->frames++] = x->wire_len;
        usmp_engine_output_done(&x->e, n);
        check_secrets(x, "after output");
    }
}

static void note_event(end_t *to, const usmp_event_t *ev)
{
    if (ev->type == USMP_EVENT_MESSAGE) {
        to->messages++;
        memcpy(to->got, ev->data, ev->len);
        to->got_len = ev->len;
    } else if (ev->type == USMP_EVENT_CLOSED) {
        to->closed_events++;
    } else if (ev->type == USMP_EVENT_ESTABLISHED) {
        to->established_events++;
    } else if (ev->type == USMP_EVENT_CONTROL) {
        to->controls++;
        to->control_channel = ev->channel;
        to->control_len = ev->len;
        if (ev->len <= sizeof to->control_body) {
            memcpy(to->control_body, ev->data, ev->len);
        }
    }
}

/* Feeds bytes to an end (stream: in chunks of `chunk`; datagram: as one
 * datagram). Returns the first error. */
static int feed(end_t *to, const uint8_t *d, size_t len, size_t chunk, uint32_t now)
{
    size_t off = 0;
    int first = USMP_OK;

    if (to->e.mode == USMP_MODE_DATAGRAM) {
        size_t used;
        usmp_event_t ev;
        int rc = usmp_engine_feed(&to->e, d, len, now, &used, &ev);
        note_event(to, &ev);
        check_secrets(to, "after a datagram");
        return rc;
    }
    while (off < len) {
        size_t used = 0, n = len - off < chunk ? len - off : chunk;
        usmp_event_t ev;
        int rc = usmp_engine_feed(&to->e, d + off, n, now, &used, &ev);
        note_event(to, &ev);
        check_secrets(to, "after a read");
        if (rc != USMP_OK) {
            if (first == USMP_OK) {
                first = rc;
            }
            break;
        }
        if (used == 0) {
            /* A PING waits for an unsent PONG (row 31): send, go on. */
            size_t frames_before = to->frames;
            collect(to);
            if (to->frames == frames_before) {
                break;
            }
        }
        off += used;
    }
    return first;
}

/* Moves everything on from's wire to `to`, frame by frame. */
static int deliver(end_t *from, end_t *to, size_t chunk, uint32_t now)
{
    size_t i, start = 0;
    int first = USMP_OK;
    collect(from);
    for (i = 0; i < from->frames; i++) {
        int rc = feed(to, from->wire + start, from->frame_ends[i] - start, chunk, now);
        if (rc != USMP_OK && first == USMP_OK) {
            first = rc;
        }
        start = from->frame_ends[i];
    }
    from->wire_len = 0;
    from->frames = 0;
    return first;
}

static const pair_cfg_t STREAM_CFG = { USMP_MODE_STREAM, 512, 512, 1024, 4096, 0, 0, 0 };
static const pair_cfg_t DGRAM_CFG = { USMP_MODE_DATAGRAM, 512, 2048, 1207, 8192, 0, 0, 0 };

/* Runs a clean handshake; returns 1 when both ends are established. */
static int handshake(const pair_cfg_t *pc, size_t chunk, uint32_t now)
{
    end_init(&client, USMP_ROLE_CLIENT, pc, 1);
    end_init(&server, USMP_ROLE_SERVER, pc, 2);
    CHECK_INT_EQ(usmp_engine_start(&client.e, now), USMP_OK);
    CHECK_INT_EQ(usmp_engine_start(&server.e, now), USMP_OK);
    CHECK_INT_EQ(deliver(&client, &server, chunk, now), USMP_OK);
    CHECK_INT_EQ(deliver(&server, &client, chunk, now), USMP_OK);
    CHECK_INT_EQ(deliver(&client, &server, chunk, now), USMP_OK);
    CHECK_INT_EQ(deliver(&server, &client, chunk, now), USMP_OK);
    return usmp_engine_state(&client.e) == USMP_STATE_ESTABLISHED &&
           usmp_engine_state(&server.e) == USMP_STATE_ESTABLISHED;
}

/* Sends a whole message through usmp_engine_send, fragment by fragment,
 * delivering each record. Returns the send error, if any. */
static int send_message(end_t *from, end_t *to, const uint8_t *msg, size_t len, uint32_t now)
{
    size_t done = 0;
    for (;;) {
        int rc = send_step(from, msg + done, len - done, now);
        if (rc < 0) {
            return rc;
        }
        done += (size_t)rc;
        CHECK_INT_EQ(deliver(from, to, 7, now), USMP_OK);
        if (done == len) {
            return USMP_OK;
        }
    }
}

/* ----------------------------------------------------------------- tests */

static void test_handshake_and_messages(void)
{
    static uint8_t msg[8192];
    const pair_cfg_t *cfgs[2] = { &STREAM_CFG, &DGRAM_CFG };
    const size_t sizes[] = { 0, 1, 15, 16, 17, 511, 512, 513, 1000, 1207, 1208, 2048, 4096 };
    size_t i, c, k;

    for (i = 0; i < sizeof msg; i++) {
        msg[i] = (uint8_t)(i * 7 + 3);
    }
    for (c = 0; c < 2; c++) {
        const pair_cfg_t *pc = cfgs[c];
        /* Whole frames and byte by byte. */
        for (k = 0; k < 2; k++) {
            if (!CHECK(handshake(pc, k == 0 ? 100000 : 1, 0))) {
                continue;
            }
            CHECK(client.established_events == 1 && server.established_events == 1);
            CHECK_MEM_EQ(usmp_engine_session_id(&client.e), usmp_engine_session_id(&server.e), 8);
        }
        for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            /* client -> server: the server accepts up to its max_message */
            if (n <= pc->server_message) {
                server.messages = 0;
                CHECK_INT_EQ(send_message(&client, &server, msg, n, 0), USMP_OK);
                CHECK_MSG(server.messages == 1 && server.got_len == n &&
                              memcmp(server.got, msg, n) == 0,
                          "mode %d: %zu-byte message client->server", (int)pc->mode, n);
            } else {
                CHECK_INT_EQ(send_step(&client, msg, n, 0), USMP_ERR_MESSAGE_TOO_LARGE);
            }
            if (n <= pc->client_message) {
                client.messages = 0;
                CHECK_INT_EQ(send_message(&server, &client, msg, n, 0), USMP_OK);
                CHECK_MSG(client.messages == 1 && client.got_len == n &&
                              memcmp(client.got, msg, n) == 0,
                          "mode %d: %zu-byte message server->client", (int)pc->mode, n);
            } else {
                CHECK_INT_EQ(send_step(&server, msg, n, 0), USMP_ERR_MESSAGE_TOO_LARGE);
                collect(&server);
                CHECK_INT_EQ(server.wire_len, 0); /* nothing was sent */
            }
        }
        /* Both sides sending at once: records cross on the wire. */
        CHECK(send_step(&client, msg, 10, 0) == 10);
        CHECK(send_step(&server, msg + 1, 11, 0) == 11);
        collect(&client);
        collect(&server);
        client.messages = server.messages = 0;
        CHECK_INT_EQ(deliver(&client, &server, 3, 0), USMP_OK);
        CHECK_INT_EQ(deliver(&server, &client, 3, 0), USMP_OK);
        CHECK(client.messages == 1 && server.messages == 1);
        /* Clean close. */
        CHECK_INT_EQ(close_end(&client, USMP_CODE_NONE), USMP_OK);
        CHECK_INT_EQ(deliver(&client, &server, 5, 0), USMP_OK);
        CHECK_INT_EQ(usmp_engine_state(&server.e), USMP_STATE_CLOSED);
        CHECK_INT_EQ(server.closed_events, 1);
        CHECK_INT_EQ(usmp_engine_peer_code(&server.e), USMP_CODE_NONE);
        CHECK_INT_EQ(send_step(&server, msg, 1, 0), USMP_ERR_STATE);
    }
}

/* A tampered handshake frame must never give a session, on either side. */
static void tamper_run(const pair_cfg_t *pc, int target, size_t offset, int action, size_t *runs)
{
    int step, failed_side;
    end_t *from, *to;

    end_init(&client, USMP_ROLE_CLIENT, pc, 1);
    end_init(&server, USMP_ROLE_SERVER, pc, 2);
    usmp_engine_start(&client.e, 0);
    usmp_engine_start(&server.e, 0);
    for (step = 0; step < 4; step++) {
        from = step % 2 == 0 ? &client : &server;
        to = step % 2 == 0 ? &server : &client;
        collect(from);
        if (step == target) {
            if (offset >= from->wire_len) {
                return; /* past this frame's end */
            }
            if (action < 3) {
                static const uint8_t flips[3] = { 0x01, 0x80, 0xFF };
                from->wire[offset] ^= flips[action];
            } else if (action == 3) {
                /* cut the frame at offset, then end the stream / datagram */
                from->wire_len = offset;
                from->frame_ends[0] = offset;
            } else {
                /* duplicate the frame */
                memcpy(from->wire + from->wire_len, from->wire, from->wire_len);
                from->frame_ends[from->frames++] = from->wire_len * 2;
                from->wire_len *= 2;
            }
        }
        (void)deliver(from, to, step == target ? 1 : 64, 0);
        if (step == target && action == 3 && pc->mode == USMP_MODE_STREAM) {
            (void)transport_closed(to);
        }
    }
    /* Let both sides answer whatever is left (ERRORs) and time out. */
    (void)deliver(&client, &server, 64, 0);
    (void)deliver(&server, &client, 64, 0);
    (void)tick(&client, 60000);
    (void)tick(&server, 60000);
    check_secrets(&client, "after the timers");
    check_secrets(&server, "after the timers");
    (*runs)++;
    failed_side = usmp_engine_state(&client.e) != USMP_STATE_ESTABLISHED ||
                  usmp_engine_state(&server.e) != USMP_STATE_ESTABLISHED;
    if (action == 4 && pc->mode == USMP_MODE_DATAGRAM) {
        /* A duplicated datagram is a retransmission: harmless. */
        CHECK_MSG(!failed_side, "datagram duplicate of frame %d broke the handshake", target);
        return;
    }
    CHECK_MSG(failed_side,
              "mode %d frame %d offset %zu action %d: session established after tampering",
              (int)pc->mode, target, offset, action);
    /* Neither side may believe in a session the other does not share. */
    CHECK_MSG(usmp_engine_state(&client.e) != USMP_STATE_ESTABLISHED ||
                  same_record_key(&client.e.aead_send, &server.e.aead_recv),
              "client established with keys the server does not have");
    CHECK_MSG(client.messages == 0 && server.messages == 0, "a message was delivered");
}

static void test_handshake_tampering(void)
{
    const pair_cfg_t *cfgs[2] = { &STREAM_CFG, &DGRAM_CFG };
    size_t runs = 0, c, offset, stride = usmp_test_stride();
    int target, action;

    for (c = 0; c < 2; c++) {
        for (target = 0; target < 4; target++) {
            for (offset = 0; offset < 60; offset += stride) {
                for (action = 0; action < 5; action++) {
                    if (action == 4 && offset > 0) {
                        continue; /* one duplicate per frame */
                    }
                    tamper_run(cfgs[c], target, offset, action, &runs);
                }
            }
        }
    }
    usmp_test_note("handshake tampering: %zu runs (flip 3 ways, cut, duplicate; every %zu byte%s)",
                   runs, stride, stride == 1 ? "" : "s, sampled");
}

/* Every byte of a record flipped: never delivered, never twice. */
static void test_record_tampering(void)
{
    const pair_cfg_t *cfgs[2] = { &STREAM_CFG, &DGRAM_CFG };
    size_t c, offset, runs = 0;
    uint8_t record[64];
    size_t record_len;

    for (c = 0; c < 2; c++) {
        for (offset = 0;; offset += usmp_test_stride()) {
            int rc;
            if (!handshake(cfgs[c], 1000, 0)) {
                FAIL("handshake");
                return;
            }
            CHECK_INT_EQ(send_step(&client, (const uint8_t *)"secret!", 7, 0), 7);
            collect(&client);
            record_len = client.wire_len;
            if (offset >= record_len) {
                break;
            }
            memcpy(record, client.wire, record_len);
            record[offset] ^= 0x04;
            server.messages = 0;
            rc = feed(&server, record, record_len, 1000, 0);
            CHECK_MSG(rc != USMP_OK && server.messages == 0,
                      "mode %d: record with byte %zu flipped was accepted", (int)cfgs[c]->mode,
                      offset);
            if (cfgs[c]->mode == USMP_MODE_DATAGRAM) {
                /* Dropped without a state change: the genuine record still
                 * arrives, once. */
                CHECK_INT_EQ(usmp_engine_state(&server.e), USMP_STATE_ESTABLISHED);
                CHECK_INT_EQ(feed(&server, client.wire, record_len, 1000, 0), USMP_OK);
                CHECK_INT_EQ(feed(&server, client.wire, record_len, 1000, 0), USMP_ERR_REPLAY);
                CHECK_INT_EQ(server.messages, 1);
            } else {
                CHECK_INT_EQ(usmp_engine_state(&server.e), USMP_STATE_FAILED);
            }
            runs++;
        }
    }
    usmp_test_note("record tampering: %zu single-byte corruptions rejected", runs);
}

static void test_stream_replay_and_reflection(void)
{
    uint8_t record[64];
    size_t len;

    CHECK(handshake(&STREAM_CFG, 100, 0));
    CHECK(send_step(&client, (const uint8_t *)"one", 3, 0) == 3);
    collect(&client);
    len = client.wire_len;
    memcpy(record, client.wire, len);
    CHECK_INT_EQ(deliver(&client, &server, 100, 0), USMP_OK);
    CHECK_INT_EQ(server.messages, 1);
    CHECK_INT_EQ(feed(&server, record, len, 100, 0), USMP_ERR_BAD_RECORD);
    CHECK_INT_EQ(server.messages, 1);
    /* Sticky: the same error from every later call. */
    CHECK_INT_EQ(feed(&server, record, len, 100, 0), USMP_ERR_BAD_RECORD);
    CHECK_INT_EQ(send_step(&server, record, 1, 0), USMP_ERR_BAD_RECORD);
    CHECK_INT_EQ(tick(&server, 5), USMP_ERR_BAD_RECORD);
    CHECK_INT_EQ(usmp_engine_error(&server.e), USMP_ERR_BAD_RECORD);

    /* Reflection: the server's own record back to it. */
    CHECK(handshake(&STREAM_CFG, 100, 0));
    CHECK(send_step(&server, (const uint8_t *)"two", 3, 0) == 3);
    collect(&server);
    CHECK_INT_EQ(feed(&server, server.wire, server.wire_len, 100, 0), USMP_ERR_BAD_RECORD);
    CHECK_INT_EQ(server.messages, 0);
    /* The client gets the genuine record, then the server's BYE(BAD_RECORD). */
    client.messages = 0;
    CHECK_INT_EQ(deliver(&server, &client, 100, 0), USMP_OK);
    CHECK_INT_EQ(client.messages, 1);
    CHECK_INT_EQ(usmp_engine_state(&client.e), USMP_STATE_CLOSED);
    CHECK_INT_EQ(usmp_engine_peer_code(&client.e), USMP_CODE_BAD_RECORD);
}

static void test_keepalive_and_timers(void)
{
    pair_cfg_t pc = STREAM_CFG;
    const uint32_t t0 = 0xFFFFF000u; /* the clock wraps during this test */
    uint32_t deadline;

    pc.keepalive_ms = 5000;
    pc.idle_ms = 20000;
    CHECK(handshake(&pc, 100, t0));
    CHECK(usmp_engine_next_deadline(&client.e, &deadline) && deadline == t0 + 5000);
    CHECK_INT_EQ(tick(&client, t0 + 4999), USMP_OK);
    collect(&client);
    CHECK_INT_EQ(client.wire_len, 0);
    CHECK_INT_EQ(tick(&client, t0 + 5000), USMP_OK); /* past the wrap */
    collect(&client);
    CHECK_INT_EQ(client.wire_len, USMP_STREAM_OVERHEAD + 4); /* PING */
    CHECK_INT_EQ(deliver(&client, &server, 100, t0 + 5001), USMP_OK);
    CHECK_INT_EQ(deliver(&server, &client, 100, t0 + 5002), USMP_OK); /* PONG */
    CHECK(usmp_engine_next_deadline(&client.e, &deadline) && deadline == t0 + 5002 + 5000);

    /* The server stops answering: dead peer after keepalive + pong timeout. */
    CHECK_INT_EQ(tick(&client, t0 + 10002), USMP_OK); /* PING */
    collect(&client);
    client.wire_len = 0;
    client.frames = 0;
    CHECK_INT_EQ(tick(&client, t0 + 15001), USMP_OK);
    CHECK_INT_EQ(tick(&client, t0 + 15002), USMP_ERR_PEER_TIMEOUT);
    CHECK_INT_EQ(usmp_engine_state(&client.e), USMP_STATE_FAILED);

    /* The server closes a session idle for idle_timeout with BYE(IDLE_TIMEOUT). */
    CHECK_INT_EQ(tick(&server, t0 + 5001 + 20000), USMP_OK);
    CHECK_INT_EQ(usmp_engine_state(&server.e), USMP_STATE_CLOSED);
    CHECK_INT_EQ(usmp_engine_close_code(&server.e), USMP_CODE_IDLE_TIMEOUT);

    /* Handshake timeout on a server that hears nothing (slow client). */
    end_init(&server, USMP_ROLE_SERVER, &pc, 2);
    usmp_engine_start(&server.e, t0);
    CHECK_INT_EQ(tick(&server, t0 + 9999), USMP_OK);
    CHECK_INT_EQ(tick(&server, t0 + 10000), USMP_ERR_TIMEOUT);
    collect(&server);
    CHECK_INT_EQ(server.wire_len, 0); /* a timeout sends nothing */
}

static void test_datagram_retransmission(void)
{
    end_init(&client, USMP_ROLE_CLIENT, &DGRAM_CFG, 1);
    end_init(&server, USMP_ROLE_SERVER, &DGRAM_CFG, 2);
    usmp_engine_start(&client.e, 0);
    usmp_engine_start(&server.e, 0);
    /* HELLO lost. */
    collect(&client);
    client.wire_len = 0;
    client.frames = 0;
    CHECK_INT_EQ(tick(&client, 999), USMP_OK);
    collect(&client);
    CHECK_INT_EQ(client.wire_len, 0);
    CHECK_INT_EQ(tick(&client, 1000), USMP_OK); /* resent at 1 s */
    CHECK_INT_EQ(deliver(&client, &server, 1, 1000), USMP_OK);
    /* CHALLENGE arrives; HELLO_ACK goes; SESSION_OK lost. */
    CHECK_INT_EQ(deliver(&server, &client, 1, 1001), USMP_OK);
    CHECK_INT_EQ(deliver(&client, &server, 1, 1002), USMP_OK);
    CHECK_INT_EQ(usmp_engine_state(&server.e), USMP_STATE_ESTABLISHED);
    collect(&server);
    server.wire_len = 0;
    server.frames = 0;
    /* The client retransmits HELLO_ACK (due at 1001 + 1000, spec 8.4 rule
     * 2); the server resends SESSION_OK. */
    CHECK_INT_EQ(tick(&client, 3000), USMP_OK);
    CHECK_INT_EQ(deliver(&client, &server, 1, 3000), USMP_OK);
    CHECK_INT_EQ(deliver(&server, &client, 1, 3001), USMP_OK);
    CHECK_INT_EQ(usmp_engine_state(&client.e), USMP_STATE_ESTABLISHED);
    /* After the first client record, a late HELLO_ACK is dropped. */
    CHECK(send_step(&client, (const uint8_t *)"x", 1, 3002) == 1);
    CHECK_INT_EQ(deliver(&client, &server, 1, 3002), USMP_OK);
    {
        uint8_t ack[17];
        ack[0] = USMP_TYPE_HELLO_ACK;
        memcpy(ack + 1, server.e.hs.resend.hello_ack_mac, 16);
        CHECK_INT_EQ(feed(&server, ack, sizeof ack, 1, 3003), USMP_ERR_UNEXPECTED);
        collect(&server);
        CHECK_INT_EQ(server.wire_len, 0);
    }
    /* The handshake gives up at the handshake timeout. */
    end_init(&client, USMP_ROLE_CLIENT, &DGRAM_CFG, 1);
    usmp_engine_start(&client.e, 0);
    CHECK_INT_EQ(tick(&client, 9999), USMP_OK);
    CHECK_INT_EQ(tick(&client, 10000), USMP_ERR_TIMEOUT);
}

/* Spec 8.4 rule 2: HELLO_ACK replacing HELLO on a CHALLENGE is a new
 * flight, whose retransmission timeout starts at 1000 ms from then, however
 * often HELLO was resent; the handshake timeout still counts from the
 * first HELLO. */
static void test_datagram_hello_ack_restarts_the_retransmission_timeout_at_1000_ms(void)
{
    uint32_t deadline = 0;

    end_init(&client, USMP_ROLE_CLIENT, &DGRAM_CFG, 1);
    end_init(&server, USMP_ROLE_SERVER, &DGRAM_CFG, 2);
    usmp_engine_start(&client.e, 0);
    usmp_engine_start(&server.e, 0);
    /* HELLO lost twice: resent at 1000 and at 3000, next due at 7000. */
    collect(&client);
    client.wire_len = 0;
    client.frames = 0;
    CHECK_INT_EQ(tick(&client, 1000), USMP_OK);
    collect(&client);
    client.wire_len = 0;
    client.frames = 0;
    CHECK_INT_EQ(tick(&client, 3000), USMP_OK);
    CHECK(usmp_engine_next_deadline(&client.e, &deadline) == 1);
    CHECK_INT_EQ(deadline, 7000);
    CHECK_INT_EQ(deliver(&client, &server, 1, 3000), USMP_OK);
    /* The CHALLENGE at 3500: HELLO_ACK goes, and is lost. */
    CHECK_INT_EQ(deliver(&server, &client, 1, 3500), USMP_OK);
    CHECK_INT_EQ(usmp_engine_state(&client.e), USMP_STATE_WAIT_SESSION_OK);
    collect(&client);
    CHECK_INT_EQ(client.frames, 1);
    client.wire_len = 0;
    client.frames = 0;
    CHECK(usmp_engine_next_deadline(&client.e, &deadline) == 1);
    CHECK_INT_EQ(deadline, 4500);
    CHECK_INT_EQ(tick(&client, 4499), USMP_OK);
    collect(&client);
    CHECK_INT_EQ(client.frames, 0);
    CHECK_INT_EQ(tick(&client, 4500), USMP_OK);
    collect(&client);
    CHECK_INT_EQ(client.frames, 1);
    CHECK_INT_EQ(client.wire[0], USMP_TYPE_HELLO_ACK);
    client.wire_len = 0;
    client.frames = 0;
    /* Resends of the same flight double it: 4500 + 2000, then 6500 + 4000
     * is past the handshake deadline, 10000 from the first HELLO. */
    CHECK(usmp_engine_next_deadline(&client.e, &deadline) == 1);
    CHECK_INT_EQ(deadline, 6500);
    CHECK_INT_EQ(tick(&client, 6500), USMP_OK);
    CHECK(usmp_engine_next_deadline(&client.e, &deadline) == 1);
    CHECK_INT_EQ(deadline, 10000);
    CHECK_INT_EQ(tick(&client, 9999), USMP_OK);
    CHECK_INT_EQ(tick(&client, 10000), USMP_ERR_TIMEOUT);
}

/* Spec 8.4 rule 2: the HELLO with a cookie replacing the bare HELLO on a
 * COOKIE is a new flight too. */
static void test_datagram_cookie_restarts_the_retransmission_timeout_at_1000_ms(void)
{
    uint8_t cookie[1 + USMP_COOKIE_BYTES];
    uint32_t deadline = 0;

    end_init(&client, USMP_ROLE_CLIENT, &DGRAM_CFG, 1);
    usmp_engine_start(&client.e, 0);
    collect(&client);
    client.wire_len = 0;
    client.frames = 0;
    CHECK_INT_EQ(tick(&client, 1000), USMP_OK); /* next due at 3000 */
    collect(&client);
    client.wire_len = 0;
    client.frames = 0;
    memset(cookie, 0x5a, sizeof cookie);
    cookie[0] = USMP_TYPE_COOKIE;
    CHECK_INT_EQ(feed(&client, cookie, sizeof cookie, 1, 1500), USMP_OK);
    collect(&client);
    CHECK_INT_EQ(client.frames, 1);
    CHECK_INT_EQ(client.wire_len, 1u + USMP_HELLO_BODY_BYTES + USMP_COOKIE_BYTES);
    client.wire_len = 0;
    client.frames = 0;
    CHECK(usmp_engine_next_deadline(&client.e, &deadline) == 1);
    CHECK_INT_EQ(deadline, 2500);
    CHECK_INT_EQ(tick(&client, 2500), USMP_OK);
    collect(&client);
    CHECK_INT_EQ(client.frames, 1);
    CHECK_INT_EQ(client.wire_len, 1u + USMP_HELLO_BODY_BYTES + USMP_COOKIE_BYTES);
    CHECK(usmp_engine_next_deadline(&client.e, &deadline) == 1);
    CHECK_INT_EQ(deadline, 4500);
}

static void test_usage_limits(void)
{
    uint8_t byte = 0;
    CHECK(handshake(&STREAM_CFG, 100, 0));
    /* One record short of the soft limit: the record goes, then BYE(REKEY). */
    client.e.send_usage = ((uint64_t)1 << 34) - 1;
    CHECK_INT_EQ(send_step(&client, &byte, 1, 0), 1);
    CHECK_INT_EQ(usmp_engine_state(&client.e), USMP_STATE_CLOSED);
    CHECK_INT_EQ(usmp_engine_close_code(&client.e), USMP_CODE_REKEY);
    server.messages = 0;
    CHECK_INT_EQ(deliver(&client, &server, 100, 0), USMP_OK);
    CHECK_INT_EQ(server.messages, 1);
    CHECK_INT_EQ(usmp_engine_peer_code(&server.e), USMP_CODE_REKEY);

    /* Crossing the soft limit in the middle of a fragmented message: the
     * whole message goes, then BYE(REKEY). */
    {
        static uint8_t big[3000];
        CHECK(handshake(&STREAM_CFG, 100, 0));
        client.e.send_usage = ((uint64_t)1 << 34) - 2;
        server.messages = 0;
        CHECK_INT_EQ(send_message(&client, &server, big, sizeof big, 0), USMP_OK);
        CHECK_INT_EQ(server.messages, 1);
        CHECK_INT_EQ(server.got_len, sizeof big);
        CHECK_INT_EQ(usmp_engine_state(&client.e), USMP_STATE_CLOSED);
        CHECK_INT_EQ(usmp_engine_peer_code(&server.e), USMP_CODE_REKEY);
    }

    /* The hard limit: the seal is refused and nothing leaves. */
    CHECK(handshake(&STREAM_CFG, 100, 0));
    client.e.send_usage = ((uint64_t)1 << 36) - 1;
    CHECK_INT_EQ(send_step(&client, &byte, 1, 0), USMP_ERR_KEY_LIMIT);
    collect(&client);
    CHECK_INT_EQ(client.wire_len, 0);

    /* The receive counter limit. */
    CHECK(handshake(&STREAM_CFG, 100, 0));
    server.e.recv_next = (uint64_t)1 << 36;
    CHECK(send_step(&client, &byte, 1, 0) == 1);
    CHECK_INT_EQ(deliver(&client, &server, 100, 0), USMP_ERR_KEY_LIMIT);
}

static void test_misuse(void)
{
    usmp_engine_config_t cfg;
    usmp_engine_t e;
    uint8_t rx[BUF_BYTES], tx[BUF_BYTES];
    rng_t rng = { 0, 9 };
    size_t used;
    usmp_event_t ev;

    memset(&cfg, 0, sizeof cfg);
    CHECK_INT_EQ(usmp_engine_init(NULL, &cfg), USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_engine_init(&e, NULL), USMP_ERR_ARG);
    cfg.role = USMP_ROLE_CLIENT;
    cfg.mode = USMP_MODE_STREAM;
    cfg.random = test_random;
    cfg.random_user = &rng;
    cfg.max_record = 512;
    cfg.max_message = 512;
    cfg.rx_buf = rx;
    cfg.rx_cap = sizeof rx;
    cfg.tx_buf = tx;
    cfg.tx_cap = sizeof tx;
    cfg.psk = PSK;
    cfg.psk_len = 15;
    CHECK_INT_EQ(usmp_engine_init(&e, &cfg), USMP_ERR_PSK);
    cfg.psk_len = 65;
    CHECK_INT_EQ(usmp_engine_init(&e, &cfg), USMP_ERR_PSK);
    cfg.psk = NULL;
    cfg.psk_len = 32;
    CHECK_INT_EQ(usmp_engine_init(&e, &cfg), USMP_ERR_PSK);
    cfg.psk = PSK;
    cfg.max_record = 15;
    CHECK_INT_EQ(usmp_engine_init(&e, &cfg), USMP_ERR_ARG);
    cfg.max_record = 512;
    cfg.max_message = 511;
    CHECK_INT_EQ(usmp_engine_init(&e, &cfg), USMP_ERR_ARG);
    cfg.max_message = 1024; /* needs a reassembly buffer */
    CHECK_INT_EQ(usmp_engine_init(&e, &cfg), USMP_ERR_BUFFER);
    cfg.max_message = 512;
    cfg.rx_cap = 100;
    CHECK_INT_EQ(usmp_engine_init(&e, &cfg), USMP_ERR_BUFFER);
    cfg.rx_cap = sizeof rx;
    cfg.mode = USMP_MODE_DATAGRAM;
    cfg.max_record = 1208;
    cfg.max_message = 1208;
    CHECK_INT_EQ(usmp_engine_init(&e, &cfg), USMP_ERR_ARG);
    cfg.mode = USMP_MODE_STREAM;
    cfg.max_record = 512;
    cfg.max_message = 512;
    cfg.random = NULL;
    CHECK_INT_EQ(usmp_engine_init(&e, &cfg), USMP_ERR_ARG);
    cfg.random = test_random;
    CHECK_INT_EQ(usmp_engine_init(&e, &cfg), USMP_OK);
    /* Calls in the wrong state. */
    CHECK_INT_EQ(usmp_engine_feed(&e, tx, 3, 0, &used, &ev), USMP_ERR_STATE);
    CHECK_INT_EQ(usmp_engine_send(&e, tx, 1, 0), USMP_ERR_STATE);
    CHECK_INT_EQ(usmp_engine_start(&e, 0), USMP_OK);
    CHECK_INT_EQ(usmp_engine_start(&e, 0), USMP_ERR_STATE);
    CHECK_INT_EQ(usmp_engine_send(&e, tx, 1, 0), USMP_ERR_STATE);
    CHECK_INT_EQ(usmp_engine_feed(&e, NULL, 3, 0, &used, &ev), USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_engine_feed(&e, tx, 3, 0, NULL, &ev), USMP_ERR_ARG);

    /* A message that fits one peer record but not this side's tx buffer is
     * refused, not fragmented (spec 6.4). */
    {
        pair_cfg_t pc = STREAM_CFG;
        static uint8_t big[2000];
        pc.client_tx = 100;
        CHECK(handshake(&pc, 100, 0));
        CHECK_INT_EQ(send_step(&client, big, 1000, 0), USMP_ERR_MESSAGE_TOO_LARGE);
        CHECK_INT_EQ(send_step(&client, big, 75, 0), 75);
        CHECK_INT_EQ(deliver(&client, &server, 100, 0), USMP_OK);
        /* Longer than the server's record: fragments of what tx holds. */
        server.messages = 0;
        CHECK_INT_EQ(send_message(&client, &server, big, 2000, 0), USMP_OK);
        CHECK(server.messages == 1 && server.got_len == 2000);
        /* A continuation that is not the rest of the message. */
        CHECK(send_step(&client, big, 2000, 0) > 0);
        CHECK_INT_EQ(deliver(&client, &server, 100, 0), USMP_OK);
        CHECK_INT_EQ(send_step(&client, big, 5, 0), USMP_ERR_STATE);
        /* Output pending: the next send waits. */
        end_init(&client, USMP_ROLE_CLIENT, &pc, 1);
    }
}

static void test_wiping(void)
{
    CHECK(handshake(&STREAM_CFG, 100, 0));
    collect(&server);
    /* After the handshake no ephemeral key, transcript or confirmation key
     * is left (spec 5.7). */
    CHECK(all_zero(&client.e.hs, sizeof client.e.hs));
    CHECK(all_zero(&server.e.hs, sizeof server.e.hs));
    CHECK(!all_zero(&client.e.aead_send, sizeof client.e.aead_send));
    /* After a close, once the BYE is out, the record keys are gone too. */
    CHECK_INT_EQ(close_end(&client, USMP_CODE_NONE), USMP_OK);
    collect(&client);
    CHECK(all_zero(&client.e.aead_send, sizeof client.e.aead_send) &&
          all_zero(&client.e.aead_recv, sizeof client.e.aead_recv));
    CHECK_INT_EQ(deliver(&client, &server, 100, 0), USMP_OK);
    CHECK(all_zero(&server.e.aead_send, sizeof server.e.aead_send) &&
          all_zero(&server.e.aead_recv, sizeof server.e.aead_recv));
    usmp_engine_wipe(&server.e);
    CHECK(all_zero(&server.e, sizeof server.e));
}

/* Finding 4 (spec 9.2, rows 25-26): in datagram mode anyone who knows the
 * device's address can send ERROR; it must not end the handshake. */
static void
test_datagram_spoofed_error_is_recorded_and_the_real_challenge_completes_the_handshake(void)
{
    static const uint8_t spoofed[2] = { USMP_TYPE_ERROR, USMP_CODE_AUTH_FAILED };

    end_init(&client, USMP_ROLE_CLIENT, &DGRAM_CFG, 1);
    end_init(&server, USMP_ROLE_SERVER, &DGRAM_CFG, 2);
    CHECK_INT_EQ(usmp_engine_start(&client.e, 0), USMP_OK);
    CHECK_INT_EQ(usmp_engine_start(&server.e, 0), USMP_OK);
    collect(&client);
    CHECK_INT_EQ(feed(&client, spoofed, sizeof spoofed, 1, 10), USMP_ERR_PEER_ERROR);
    CHECK_INT_EQ(usmp_engine_state(&client.e), USMP_STATE_WAIT_CHALLENGE);
    CHECK_INT_EQ(usmp_engine_peer_code(&client.e), USMP_CODE_AUTH_FAILED);
    CHECK_INT_EQ(client.wire_len, 47u - 2u); /* only the HELLO: no answer to an ERROR */
    CHECK_INT_EQ(deliver(&client, &server, 1, 20), USMP_OK);
    CHECK_INT_EQ(deliver(&server, &client, 1, 30), USMP_OK);
    /* Another spoofed ERROR after HELLO_ACK changes nothing either. */
    CHECK_INT_EQ(feed(&client, spoofed, sizeof spoofed, 1, 35), USMP_ERR_PEER_ERROR);
    CHECK_INT_EQ(usmp_engine_state(&client.e), USMP_STATE_WAIT_SESSION_OK);
    CHECK_INT_EQ(deliver(&client, &server, 1, 40), USMP_OK);
    CHECK_INT_EQ(deliver(&server, &client, 1, 50), USMP_OK);
    CHECK_INT_EQ(usmp_engine_state(&client.e), USMP_STATE_ESTABLISHED);
    CHECK_INT_EQ(usmp_engine_state(&server.e), USMP_STATE_ESTABLISHED);
    CHECK_INT_EQ(usmp_engine_peer_code(&client.e), USMP_CODE_NONE); /* forgotten */
    CHECK_INT_EQ(tick(&client, 20000u), USMP_OK);                   /* no late failure */
    CHECK_INT_EQ(usmp_engine_state(&client.e), USMP_STATE_ESTABLISHED);
}

static void
test_datagram_error_without_challenge_fails_at_the_timeout_as_peer_error_with_the_last_code(void)
{
    static const uint8_t busy[2] = { USMP_TYPE_ERROR, USMP_CODE_BUSY };
    static const uint8_t auth[2] = { USMP_TYPE_ERROR, USMP_CODE_AUTH_FAILED };
    static const uint8_t too_long[3] = { USMP_TYPE_ERROR, USMP_CODE_BUSY, 0 };
    size_t i;

    end_init(&client, USMP_ROLE_CLIENT, &DGRAM_CFG, 1);
    CHECK_INT_EQ(usmp_engine_start(&client.e, 0), USMP_OK);
    collect(&client);
    CHECK_INT_EQ(feed(&client, busy, sizeof busy, 1, 100), USMP_ERR_PEER_ERROR);
    CHECK_INT_EQ(feed(&client, auth, sizeof auth, 1, 200), USMP_ERR_PEER_ERROR);
    CHECK_INT_EQ(feed(&client, too_long, sizeof too_long, 1, 300), USMP_ERR_MALFORMED);
    CHECK_INT_EQ(usmp_engine_peer_code(&client.e), USMP_CODE_AUTH_FAILED);
    /* The client keeps retransmitting its HELLO until the timeout. */
    CHECK_INT_EQ(tick(&client, 1000), USMP_OK);
    collect(&client);
    CHECK_INT_EQ(tick(&client, 3000), USMP_OK);
    collect(&client);
    CHECK_INT_EQ(client.frames, 3u);
    CHECK_INT_EQ(usmp_engine_state(&client.e), USMP_STATE_WAIT_CHALLENGE);
    CHECK_INT_EQ(tick(&client, 10000), USMP_ERR_PEER_ERROR);
    CHECK_INT_EQ(usmp_engine_state(&client.e), USMP_STATE_FAILED);
    CHECK_INT_EQ(usmp_engine_error(&client.e), USMP_ERR_PEER_ERROR);
    CHECK_INT_EQ(usmp_engine_peer_code(&client.e), USMP_CODE_AUTH_FAILED);
    collect(&client);
    CHECK_INT_EQ(client.frames, 3u); /* HELLO and two resends; no ERROR after */
    for (i = 0; i < client.frames; i++) {
        CHECK_INT_EQ(client.wire[i == 0 ? 0 : client.frame_ends[i - 1]], USMP_TYPE_HELLO);
    }

    /* Without any ERROR, the same timeout is TIMEOUT. */
    end_init(&client, USMP_ROLE_CLIENT, &DGRAM_CFG, 1);
    CHECK_INT_EQ(usmp_engine_start(&client.e, 0), USMP_OK);
    CHECK_INT_EQ(tick(&client, 10000), USMP_ERR_TIMEOUT);
}

/* Row 31: one PONG per PING, also when many PINGs arrive in one read. */
static void test_stream_200_pings_in_one_read_get_200_pongs_in_order(void)
{
    static uint8_t wire[200 * (USMP_STREAM_OVERHEAD + 4)];
    size_t off = 0, i, pongs = 0;
    uint32_t expected = 0;

    CHECK(handshake(&STREAM_CFG, 1000, 0));
    for (i = 0; i < 200; i++) {
        uint8_t *frame = wire + i * (USMP_STREAM_OVERHEAD + 4);
        usmp_put_be(frame + USMP_STREAM_HEADER_BYTES, (uint64_t)i, 4);
        CHECK_INT_EQ(usmp_record_seal_aead(frame, USMP_MODE_STREAM, USMP_TYPE_PING,
                                           client.e.session_id, client.e.send_counter++,
                                           &client.e.aead_send, 4),
                     (int)(USMP_STREAM_OVERHEAD + 4));
    }
    /* A driver: feed what is left of the read, send what the engine has. */
    while (off < sizeof wire || pongs < 200) {
        size_t used = 0, n;
        const uint8_t *d;
        usmp_event_t ev;
        int progress = 0;

        if (off < sizeof wire) {
            CHECK_INT_EQ(usmp_engine_feed(&server.e, wire + off, sizeof wire - off, 0, &used, &ev),
                         USMP_OK);
            off += used;
            progress = used > 0;
        }
        for (;;) {
            usmp_engine_output(&server.e, &d, &n);
            if (n == 0) {
                break;
            }
            progress = 1;
            CHECK_INT_EQ(usmp_engine_feed(&client.e, d, n, 0, &used, &ev), USMP_OK);
            usmp_engine_output_done(&server.e, n);
            if (CHECK_INT_EQ(ev.type, USMP_EVENT_PONG) && CHECK_INT_EQ(ev.len, 4u)) {
                CHECK_INT_EQ(usmp_get_be(ev.data, 4), expected);
                expected++;
                pongs++;
            }
        }
        if (!progress) {
            break;
        }
    }
    CHECK_INT_EQ(off, sizeof wire);
    CHECK_INT_EQ(pongs, 200u);
    CHECK_INT_EQ(usmp_engine_state(&server.e), USMP_STATE_ESTABLISHED);
}

/* Datagram mode: a PING while a PONG is unsent replaces it (spec 6.3). */
static void test_datagram_ping_replaces_an_unsent_pong(void)
{
    uint8_t frame[USMP_DATAGRAM_OVERHEAD + 1];
    const uint8_t *d;
    size_t n, used;
    usmp_event_t ev;
    uint8_t i;

    CHECK(handshake(&DGRAM_CFG, 1000, 0));
    for (i = 1; i <= 2; i++) {
        frame[USMP_DATAGRAM_HEADER_BYTES] = i;
        usmp_record_seal_aead(frame, USMP_MODE_DATAGRAM, USMP_TYPE_PING, client.e.session_id,
                              client.e.send_counter++, &client.e.aead_send, 1);
        CHECK_INT_EQ(usmp_engine_feed(&server.e, frame, sizeof frame, 0, &used, &ev), USMP_OK);
    }
    usmp_engine_output(&server.e, &d, &n);
    CHECK_INT_EQ(usmp_engine_feed(&client.e, d, n, 0, &used, &ev), USMP_OK);
    usmp_engine_output_done(&server.e, n);
    CHECK(ev.type == USMP_EVENT_PONG && ev.len == 1 && ev.data[0] == 2);
    usmp_engine_output(&server.e, &d, &n);
    CHECK_INT_EQ(n, 0u);
}

/* Spec 5.7: the record keys are wiped when the session ends in any way,
 * also when the stream ends before a pending BYE could be sent. */
static void test_transport_closed_wipes_the_record_keys_with_a_bye_pending(void)
{
    uint8_t record[USMP_STREAM_OVERHEAD + 1] = { 0 };
    const uint8_t *d;
    size_t n;

    /* CLOSED, BYE(NONE) queued but not sent. */
    CHECK(handshake(&STREAM_CFG, 1000, 0));
    CHECK_INT_EQ(close_end(&client, USMP_CODE_NONE), USMP_OK);
    CHECK(!all_zero(&client.e.aead_send, sizeof client.e.aead_send));
    CHECK_INT_EQ(transport_closed(&client), USMP_OK);
    CHECK(all_zero(&client.e.aead_send, sizeof client.e.aead_send) &&
          all_zero(&client.e.aead_recv, sizeof client.e.aead_recv));
    usmp_engine_output(&client.e, &d, &n);
    CHECK_INT_EQ(n, 0u);

    /* FAILED by a bad record, BYE(BAD_RECORD) queued but not sent. */
    record[0] = USMP_TYPE_DATA;
    record[2] = USMP_TAG_BYTES + 1;
    CHECK_INT_EQ(feed(&server, record, sizeof record, sizeof record, 0), USMP_ERR_BAD_RECORD);
    CHECK_INT_EQ(usmp_engine_state(&server.e), USMP_STATE_FAILED);
    CHECK(!all_zero(&server.e.aead_send, sizeof server.e.aead_send));
    CHECK_INT_EQ(transport_closed(&server), USMP_ERR_BAD_RECORD);
    CHECK(all_zero(&server.e.aead_send, sizeof server.e.aead_send) &&
          all_zero(&server.e.aead_recv, sizeof server.e.aead_recv));
    usmp_engine_output(&server.e, &d, &n);
    CHECK_INT_EQ(n, 0u);
}

static void test_unknown_device_and_busy(void)
{
    pair_cfg_t pc = STREAM_CFG;
    static const uint8_t other[6] = { 1, 2, 3, 4, 5, 6 };

    end_init(&client, USMP_ROLE_CLIENT, &pc, 1);
    memcpy(client.e.device_id, other, 6);
    end_init(&server, USMP_ROLE_SERVER, &pc, 2);
    usmp_engine_start(&client.e, 0);
    usmp_engine_start(&server.e, 0);
    CHECK_INT_EQ(deliver(&client, &server, 100, 0), USMP_OK); /* answered like a known id */
    CHECK_INT_EQ(usmp_engine_state(&server.e), USMP_STATE_WAIT_HELLO_ACK);
    CHECK_INT_EQ(deliver(&server, &client, 100, 0), USMP_OK);
    CHECK_INT_EQ(deliver(&client, &server, 100, 0), USMP_ERR_AUTH_FAILED);
    CHECK_INT_EQ(deliver(&server, &client, 100, 0), USMP_ERR_PEER_ERROR);
    CHECK_INT_EQ(usmp_engine_peer_code(&client.e), USMP_CODE_AUTH_FAILED);

    /* A server at capacity refuses with ERROR(BUSY). */
    end_init(&client, USMP_ROLE_CLIENT, &pc, 1);
    end_init(&server, USMP_ROLE_SERVER, &pc, 2);
    usmp_engine_start(&client.e, 0);
    CHECK_INT_EQ(close_end(&server, USMP_CODE_BUSY), USMP_OK);
    CHECK_INT_EQ(deliver(&server, &client, 100, 0), USMP_ERR_PEER_ERROR);
    CHECK_INT_EQ(usmp_engine_peer_code(&client.e), USMP_CODE_BUSY);
}

/* Spec 6.7, rows 61-63: CONTROL records both ways in both modes reach the
 * control event with their channel and body, never the message path; the
 * sender refuses what does not fit one peer record, and waits while a
 * fragmented message is being sent. */
static void test_control_records_reach_the_control_event_never_the_messages(void)
{
    static const pair_cfg_t *const cfgs[] = { &STREAM_CFG, &DGRAM_CFG };
    static uint8_t big[2000];
    size_t i;
    const uint8_t *out;
    size_t out_len;

    for (i = 0; i < 2; i++) {
        const pair_cfg_t *pc = cfgs[i];
        int rc;

        end_init(&client, USMP_ROLE_CLIENT, pc, 1);
        CHECK_INT_EQ(usmp_engine_send_control(&client.e, USMP_CONTROL_CHANNEL_OTA,
                                              (const uint8_t *)"x", 1, 0),
                     USMP_ERR_STATE);
        if (!CHECK(handshake(pc, 5, 0))) {
            continue;
        }
        /* Client to server, then server to client. */
        CHECK_INT_EQ(usmp_engine_send_control(&client.e, USMP_CONTROL_CHANNEL_OTA,
                                              (const uint8_t *)"abc", 3, 10),
                     USMP_OK);
        CHECK_INT_EQ(deliver(&client, &server, 7, 10), USMP_OK);
        CHECK_INT_EQ(server.controls, 1);
        CHECK_INT_EQ(server.control_channel, USMP_CONTROL_CHANNEL_OTA);
        CHECK(server.control_len == 3 && memcmp(server.control_body, "abc", 3) == 0);
        CHECK_INT_EQ(server.messages, 0);
        CHECK_INT_EQ(usmp_engine_send_control(&server.e, 0x7E, NULL, 0, 10), USMP_OK);
        CHECK_INT_EQ(deliver(&server, &client, 7, 10), USMP_OK);
        CHECK_INT_EQ(client.controls, 1);
        CHECK_INT_EQ(client.control_channel, 0x7E);
        CHECK_INT_EQ(client.control_len, 0u);
        CHECK_INT_EQ(client.messages, 0);

        /* Row 63: the channel byte and the body fill the peer's max_record
         * exactly; one byte more is refused locally and nothing is sent. */
        CHECK_INT_EQ(usmp_engine_send_control(&client.e, 1, big, pc->server_record - 1u, 20),
                     USMP_OK);
        CHECK_INT_EQ(deliver(&client, &server, 64, 20), USMP_OK);
        CHECK_INT_EQ(server.controls, 2);
        CHECK_INT_EQ(server.control_len, pc->server_record - 1u);
        CHECK_INT_EQ(usmp_engine_send_control(&client.e, 1, big, pc->server_record, 20),
                     USMP_ERR_MESSAGE_TOO_LARGE);
        usmp_engine_output(&client.e, &out, &out_len);
        CHECK_INT_EQ(out_len, 0u);
        CHECK_INT_EQ(usmp_engine_state(&client.e), USMP_STATE_ESTABLISHED);

        /* Not between the fragments of a message (spec 6.4, 6.7). */
        rc = send_step(&client, big, sizeof big, 30);
        CHECK(rc > 0 && (size_t)rc < sizeof big);
        collect(&client);
        CHECK_INT_EQ(usmp_engine_send_control(&client.e, 1, (const uint8_t *)"y", 1, 30),
                     USMP_ERR_WOULD_BLOCK);
        client.wire_len = 0;
        client.frames = 0;
    }
}

int main(void)
{
    test_handshake_and_messages();
    test_handshake_tampering();
    test_record_tampering();
    test_stream_replay_and_reflection();
    test_keepalive_and_timers();
    test_datagram_retransmission();
    test_datagram_hello_ack_restarts_the_retransmission_timeout_at_1000_ms();
    test_datagram_cookie_restarts_the_retransmission_timeout_at_1000_ms();
    test_usage_limits();
    test_misuse();
    test_wiping();
    test_unknown_device_and_busy();
    test_datagram_spoofed_error_is_recorded_and_the_real_challenge_completes_the_handshake();
    test_datagram_error_without_challenge_fails_at_the_timeout_as_peer_error_with_the_last_code();
    test_stream_200_pings_in_one_read_get_200_pongs_in_order();
    test_datagram_ping_replaces_an_unsent_pong();
    test_transport_closed_wipes_the_record_keys_with_a_bye_pending();
    test_control_records_reach_the_control_event_never_the_messages();
    return usmp_test_finish("test_engine");
}
