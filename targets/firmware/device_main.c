/*
 * device_main.c - firmware image "device": the blocking device API
 * (usmp_connect, usmp_send, usmp_recv, usmp_keepalive_tick, usmp_close),
 * built in the device profile (client role, stream mode), against a
 * scripted gateway in memory that replays the first stream case of
 * spec/vectors/handshake.json: every frame the device sends must be the
 * vector's, byte for byte. A second session measures 64-byte records.
 *
 * Spec 5.8: the device derives its ephemeral key from the random source,
 * usmp_config_t.boot_counter and the device API's connection counter (RAM,
 * 0 for the first handshake after boot). The first session is the first
 * usmp_connect of this boot, so it replays a case whose connection counter
 * is 0, with the case's boot counter set through usmp_config_t and the
 * case's client_random scripted; the second (connection counter 1, which
 * no case has) is derived here as a gateway would see it.
 *
 * What it reports (RESULT lines, targets/run.py): instructions per
 * handshake (usmp_connect) and per 64-byte record sent and received, one
 * X25519 of each kind, painted-stack high-water per API call, mbedTLS's
 * heap peak and its allocations per handshake, and sizeof(usmp_ctx_t).
 *
 * The transport here is a script; the device over the emulated UART
 * against the Python gateway's serial transport is the "uart" image
 * (uart_main.c).
 */
#include <stdio.h>
#include <string.h>

#include "target.h"
#include "usmp.h"
#include "usmp_crypto.h"
#include "usmp_handshake.h"
#include "usmp_record.h"
#include "usmp_vectors.h"

#if USMP_SERVER || USMP_DATAGRAM
#error "the device image is built in the device profile (USMP_SERVER=0 USMP_DATAGRAM=0)"
#endif

/* --- the scripted gateway -------------------------------------------------- */

typedef struct {
    vec_bytes_t expect;      /* what the device must send next */
    const uint8_t *reply[2]; /* then what the gateway answers (up to two frames) */
    size_t reply_len[2];
} step_t;

#define MAX_STEPS 8u
static struct {
    step_t steps[MAX_STEPS];
    size_t count, next;
    uint8_t sent[96];
    size_t sent_len;
    uint8_t pending[640];
    size_t pending_len, pending_pos;
} gw;

static void gw_reset(void)
{
    memset(&gw, 0, sizeof gw);
}

static step_t *gw_step(const uint8_t *expect, size_t expect_len)
{
    step_t *s;

    TARGET_CHECK(gw.count < MAX_STEPS, "gateway script: too many steps");
    s = &gw.steps[gw.count < MAX_STEPS ? gw.count++ : MAX_STEPS - 1];

    s->expect.ptr = expect;
    s->expect.len = expect_len;
    return s;
}

static void gw_queue(const uint8_t *data, size_t len)
{
    if (len == 0) {
        return;
    }
    if (gw.pending_pos == gw.pending_len) {
        gw.pending_pos = gw.pending_len = 0;
    }
    if (len > sizeof gw.pending - gw.pending_len) {
        TARGET_CHECK(0, "gateway script: reply too long");
        return;
    }
    memcpy(gw.pending + gw.pending_len, data, len);
    gw.pending_len += len;
}

static void print_hex(const char *what, const uint8_t *p, size_t n)
{
    size_t i;

    printf("  %s ", what);
    for (i = 0; i < n; i++) {
        printf("%02x", p[i]);
    }
    printf("\n");
}

static int gw_send(void *ctx, const uint8_t *data, size_t len)
{
    (void)ctx;
    if (len > sizeof gw.sent - gw.sent_len) {
        TARGET_CHECK(0, "the device sent more than the gateway script expects");
        return USMP_ERR_TRANSPORT;
    }
    memcpy(gw.sent + gw.sent_len, data, len);
    gw.sent_len += len;
    while (gw.next < gw.count && gw.sent_len >= gw.steps[gw.next].expect.len) {
        const step_t *s = &gw.steps[gw.next++];
        size_t n = s->expect.len;

        if (memcmp(gw.sent, s->expect.ptr, n) != 0) {
            print_hex("sent    ", gw.sent, n);
            print_hex("expected", s->expect.ptr, n);
            TARGET_CHECK(0, "the device sent a frame other than the vector's");
        }
        memmove(gw.sent, gw.sent + n, gw.sent_len - n);
        gw.sent_len -= n;
        gw_queue(s->reply[0], s->reply_len[0]);
        gw_queue(s->reply[1], s->reply_len[1]);
    }
    return (int)len;
}

static int gw_recv(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    size_t n = gw.pending_len - gw.pending_pos;

    (void)ctx;
    if (n == 0) {
        target_now_ms += timeout_ms; /* waited in vain (a poll does not wait) */
        return 0;
    }
    if (n > cap) {
        n = cap;
    }
    memcpy(buf, gw.pending + gw.pending_pos, n);
    gw.pending_pos += n;
    return (int)n;
}

static void gw_close(void *ctx)
{
    (void)ctx;
}

static int gw_reconnect(void *ctx)
{
    (void)ctx;
    return USMP_OK;
}

static int gw_available(void *ctx)
{
    (void)ctx;
    return gw.pending_len > gw.pending_pos;
}

/* --- measurement around one API call ---------------------------------------- */

typedef struct {
    const char *name;
    size_t stack;
    uint64_t instructions;
} call_t;

enum { CALL_CONNECT, CALL_SEND, CALL_RECV, CALL_TICK, CALL_CLOSE, CALL_COUNT };
static call_t calls[CALL_COUNT] = {
    { "connect", 0, 0 },        { "send", 0, 0 },  { "recv", 0, 0 },
    { "keepalive_tick", 0, 0 }, { "close", 0, 0 },
};

static usmp_ctx_t ctx;
static usmp_transport_t transport = { gw_send,      gw_recv, gw_close, gw_reconnect,
                                      gw_available, NULL,    0,        { { 0 } } };
static uint64_t last_instructions;

/* Each measured call is made from a frame of its own, right after painting:
 * the stack figure is the depth below this function's stack pointer. */
#define MEASURE(which, call, rc)                                                                   \
    do {                                                                                           \
        uintptr_t sp_;                                                                             \
        uint64_t t0_;                                                                              \
        size_t used_;                                                                              \
        target_stack_paint();                                                                      \
        sp_ = board_sp();                                                                          \
        t0_ = board_instructions();                                                                \
        (rc) = (call);                                                                             \
        last_instructions = board_instructions() - t0_;                                            \
        used_ = target_stack_used(sp_);                                                            \
        if (used_ > calls[which].stack) {                                                          \
            calls[which].stack = used_;                                                            \
        }                                                                                          \
        calls[which].instructions = last_instructions;                                             \
    } while (0)

static const vec_handshake_t *stream_case(void)
{
    size_t i;

    for (i = 0; i < VEC_HANDSHAKE_COUNT; i++) {
        /* Connection counter 0: session 1 is the first handshake since boot. */
        if (!vec_handshakes[i].datagram && vec_handshakes[i].client_max_record == USMP_MAX_RECORD &&
            vec_handshakes[i].client_max_message == USMP_MAX_MESSAGE &&
            vec_handshakes[i].client_connection_counter == 0) {
            return &vec_handshakes[i];
        }
    }
    return NULL;
}

static usmp_config_t config_for(const vec_handshake_t *hs)
{
    usmp_config_t cfg;

    memset(&cfg, 0, sizeof cfg);
    cfg.psk = hs->psk.ptr;
    cfg.psk_len = hs->psk.len;
    cfg.keepalive_ms = 42; /* the vectors' PING at t = 42 */
    cfg.no_reconnect = 1;
    cfg.boot_counter = hs->client_boot_counter; /* spec 5.8, the case's */
    return cfg;
}

/* The gateway's side of one handshake: the device's HELLO is answered with
 * the case's CHALLENGE, its HELLO_ACK with SESSION_OK. The random source
 * plays back the case's client_random (R of spec 5.8). */
static void script_handshake(const vec_handshake_t *hs, vec_bytes_t hello, vec_bytes_t hello_ack,
                             vec_bytes_t session_ok)
{
    step_t *s;

    gw_reset();
    target_port_script_random(hs->client_random.ptr, hs->client_random.len);
    target_port_set_device_id(hs->device_id.ptr);
    s = gw_step(hello.ptr, hello.len);
    s->reply[0] = hs->frame_challenge.ptr;
    s->reply_len[0] = hs->frame_challenge.len;
    s = gw_step(hello_ack.ptr, hello_ack.len);
    s->reply[0] = session_ok.ptr;
    s->reply_len[0] = session_ok.len;
}

/* The second handshake of this boot (connection counter 1): the same R and
 * the same CHALLENGE (which does not depend on HELLO: protocol 4.2), but a
 * new ephemeral key, so a new HELLO, transcript, session keys and MACs.
 * Derived here from the spec's steps, as the gateway computes them (its
 * shared secret from its own private key and the device's e_C). */
#define SECOND_CONNECTION 1u
enum { STREAM_HELLO = 47, STREAM_HELLO_ACK = 19, STREAM_SESSION_OK = 27, STREAM_HEADER = 3 };
static struct {
    uint8_t hello[STREAM_HELLO], hello_ack[STREAM_HELLO_ACK], session_ok[STREAM_SESSION_OK];
    usmp_hs_keys_t keys;
} second;

static void derive_second_handshake(const vec_handshake_t *hs)
{
    uint8_t private_key[32], e_c[32], dh[32], th[32], mac[16];
    int ok = hs->frame_hello.len == STREAM_HELLO && hs->frame_hello_ack.len == STREAM_HELLO_ACK &&
             hs->frame_session_ok.len == STREAM_SESSION_OK &&
             memcmp(hs->frame_session_ok.ptr + STREAM_HEADER, hs->session_id.ptr, 8) == 0;

    /* HELLO: the case's, with e_C (body offset 8, protocol 4.1) replaced. */
    ok = ok &&
         usmp_hs_client_ephemeral(private_key, hs->psk.ptr, hs->psk.len, hs->client_boot_counter,
                                  SECOND_CONNECTION, hs->client_random.ptr) == USMP_OK;
    ok = ok && usmp_crypto_x25519_public(e_c, private_key) == USMP_CRYPTO_OK;
    if (ok) {
        memcpy(second.hello, hs->frame_hello.ptr, STREAM_HELLO);
        memcpy(second.hello + STREAM_HEADER + 8, e_c, 32);
    }
    ok = ok && memcmp(second.hello, hs->frame_hello.ptr, STREAM_HELLO) != 0;
    /* The key schedule of spec 5.3 to 5.5, from the gateway's side. */
    ok = ok && usmp_hs_transcript(th, USMP_MODE_STREAM, second.hello, STREAM_HELLO,
                                  hs->frame_challenge.ptr, hs->frame_challenge.len) == USMP_OK;
    ok = ok &&
         usmp_crypto_x25519_shared(dh, hs->server_ephemeral_private.ptr, e_c) == USMP_CRYPTO_OK;
    ok = ok && usmp_hs_derive_keys(&second.keys, dh, hs->psk.ptr, hs->psk.len, hs->server_nonce.ptr,
                                   th) == USMP_OK;
    ok = ok && usmp_hs_client_mac(mac, second.keys.confirm_client, th) == USMP_OK;
    if (ok) {
        memcpy(second.hello_ack, hs->frame_hello_ack.ptr, STREAM_HEADER);
        memcpy(second.hello_ack + STREAM_HEADER, mac, 16);
    }
    ok = ok && usmp_hs_server_mac(mac, second.keys.confirm_server, th, second.hello_ack,
                                  STREAM_HELLO_ACK, hs->session_id.ptr) == USMP_OK;
    if (ok) {
        memcpy(second.session_ok, hs->frame_session_ok.ptr, STREAM_HEADER + 8);
        memcpy(second.session_ok + STREAM_HEADER + 8, mac, 16);
    }
    TARGET_CHECK(ok, "deriving the second handshake (connection counter 1)");
}

/* Session 1: the vector's handshake and its six session records. */
static void vector_session(const vec_handshake_t *hs)
{
    usmp_config_t cfg = config_for(hs);
    uint8_t buf[USMP_MAX_MESSAGE];
    unsigned long allocations;
    size_t i;
    int rc;

    target_now_ms = 0; /* the vectors' engines start at t = 0 */
    script_handshake(hs, hs->frame_hello, hs->frame_hello_ack, hs->frame_session_ok);
    /* Each record the device sends is expected; the gateway's records that
     * follow it in the vector are its reply. */
    for (i = 0; i < hs->record_count; i++) {
        const vec_session_record_t *r = &hs->records[i];

        if (r->c2s) {
            step_t *s = gw_step(r->frame.ptr, r->frame.len);
            size_t k;

            for (k = 0; i + 1 < hs->record_count && !hs->records[i + 1].c2s && k < 2; k++, i++) {
                s->reply[k] = hs->records[i + 1].frame.ptr;
                s->reply_len[k] = hs->records[i + 1].frame.len;
            }
        }
    }

    allocations = target_heap_allocations;
    MEASURE(CALL_CONNECT, usmp_connect(&ctx, &transport, &cfg), rc);
    TARGET_CHECK(rc == USMP_OK && usmp_state(&ctx) == USMP_STATE_ESTABLISHED, "usmp_connect");
    target_result("handshake_instructions", last_instructions);
    if (target_counting_allocations) {
        target_result("handshake_heap_allocations", target_heap_allocations - allocations);
    }
    TARGET_CHECK(memcmp(usmp_session_id(&ctx), hs->session_id.ptr, 8) == 0, "session id");

    for (i = 0; i < hs->record_count; i++) {
        const vec_session_record_t *r = &hs->records[i];

        if (!r->c2s) {
            if (r->type == USMP_TYPE_DATA) {
                MEASURE(CALL_RECV, usmp_recv(&ctx, buf, sizeof buf, 100), rc);
                TARGET_CHECK(rc == (int)r->plaintext.len &&
                                 memcmp(buf, r->plaintext.ptr, r->plaintext.len) == 0,
                             "usmp_recv: not the vector's message");
            }
            continue;
        }
        if (r->type == USMP_TYPE_DATA) {
            MEASURE(CALL_SEND, usmp_send(&ctx, r->plaintext.ptr, r->plaintext.len), rc);
            TARGET_CHECK(rc == USMP_OK, "usmp_send");
        } else if (r->type == USMP_TYPE_PING) {
            target_now_ms = 42;
            MEASURE(CALL_TICK, usmp_keepalive_tick(&ctx), rc);
            TARGET_CHECK(rc == USMP_OK, "usmp_keepalive_tick");
        } else if (r->type == USMP_TYPE_BYE) {
            TARGET_CHECK(r->plaintext.len == 1, "BYE carries one code byte");
            MEASURE(CALL_CLOSE, usmp_close(&ctx), rc);
            TARGET_CHECK(rc == USMP_OK, "usmp_close");
        }
    }
    TARGET_CHECK(gw.next == gw.count && gw.sent_len == 0,
                 "the device did not send every frame of the vector");
}

/* Session 2: one 64-byte message each way, sealed with the keys of the
 * second handshake (derive_second_handshake). */
static void record64_session(const vec_handshake_t *hs)
{
    enum { PAYLOAD = 64, FRAME = USMP_STREAM_OVERHEAD + PAYLOAD };
    static uint8_t to_device[FRAME], from_device[FRAME], bye[USMP_STREAM_OVERHEAD + 1];
    static const uint8_t no_index[3] = { 0, 0, 0 };
    usmp_config_t cfg = config_for(hs);
    uint8_t message[PAYLOAD], buf[USMP_MAX_MESSAGE];
    step_t *s;
    size_t i;
    int rc;

    for (i = 0; i < PAYLOAD; i++) {
        message[i] = (uint8_t)i;
    }
    /* What the device must send (c2s counter 0), what it gets (s2c 0), and
     * its BYE (c2s 1, normal close: code 0, as in the vector's BYE). */
    memcpy(from_device + USMP_STREAM_HEADER_BYTES, message, PAYLOAD);
    memcpy(to_device + USMP_STREAM_HEADER_BYTES, message, PAYLOAD);
    bye[USMP_STREAM_HEADER_BYTES] = hs->records[hs->record_count - 1].plaintext.ptr[0];
    derive_second_handshake(hs);
    TARGET_CHECK(usmp_record_seal(from_device, USMP_MODE_STREAM, USMP_TYPE_DATA, no_index, 0,
                                  second.keys.c2s, PAYLOAD) == FRAME &&
                     usmp_record_seal(to_device, USMP_MODE_STREAM, USMP_TYPE_DATA, no_index, 0,
                                      second.keys.s2c, PAYLOAD) == FRAME &&
                     usmp_record_seal(bye, USMP_MODE_STREAM, USMP_TYPE_BYE, no_index, 1,
                                      second.keys.c2s, 1) == (int)sizeof bye,
                 "sealing the 64-byte records");

    target_now_ms = 1000;
    {
        static const vec_bytes_t hello = { second.hello, STREAM_HELLO };
        static const vec_bytes_t hello_ack = { second.hello_ack, STREAM_HELLO_ACK };
        static const vec_bytes_t session_ok = { second.session_ok, STREAM_SESSION_OK };

        script_handshake(hs, hello, hello_ack, session_ok);
    }
    s = gw_step(from_device, sizeof from_device);
    s->reply[0] = to_device;
    s->reply_len[0] = sizeof to_device;
    (void)gw_step(bye, sizeof bye);

    MEASURE(CALL_CONNECT, usmp_connect(&ctx, &transport, &cfg), rc);
    TARGET_CHECK(rc == USMP_OK, "usmp_connect (second session)");
    MEASURE(CALL_SEND, usmp_send(&ctx, message, PAYLOAD), rc);
    TARGET_CHECK(rc == USMP_OK, "usmp_send of 64 bytes");
    target_result("record64_instructions", last_instructions);
    MEASURE(CALL_RECV, usmp_recv(&ctx, buf, sizeof buf, 100), rc);
    TARGET_CHECK(rc == PAYLOAD && memcmp(buf, message, PAYLOAD) == 0, "usmp_recv of 64 bytes");
    target_result("record64_recv_instructions", last_instructions);
    MEASURE(CALL_CLOSE, usmp_close(&ctx), rc);
    TARGET_CHECK(rc == USMP_OK && gw.next == gw.count && gw.sent_len == 0,
                 "usmp_close (second session)");
}

/* One X25519 of each kind through the seam, for the provider's figures. */
static void x25519_figures(const vec_handshake_t *hs)
{
    uint8_t out[32];
    uint64_t t0;

    t0 = board_instructions();
    TARGET_CHECK(usmp_crypto_x25519_public(out, hs->client_ephemeral_private.ptr) ==
                         USMP_CRYPTO_OK &&
                     memcmp(out, hs->client_ephemeral_public.ptr, 32) == 0,
                 "X25519 public key");
    target_result("x25519_base_instructions", board_instructions() - t0);
    t0 = board_instructions();
    TARGET_CHECK(usmp_crypto_x25519_shared(out, hs->client_ephemeral_private.ptr,
                                           hs->server_ephemeral_public.ptr) == USMP_CRYPTO_OK &&
                     memcmp(out, hs->shared_secret.ptr, 32) == 0,
                 "X25519 shared secret");
    target_result("x25519_shared_instructions", board_instructions() - t0);
}

int main(void)
{
    const vec_handshake_t *hs = stream_case();
    size_t i;

    target_start("device");
    target_result("context_bytes", sizeof(usmp_ctx_t));
    if (hs == NULL) {
        TARGET_CHECK(0,
                     "no stream case in handshake.json with this build's USMP_MAX_RECORD/MESSAGE");
        target_finish();
    }
    vector_session(hs);
    record64_session(hs);
    x25519_figures(hs);
    for (i = 0; i < CALL_COUNT; i++) {
        char key[40];

        snprintf(key, sizeof key, "stack_%s", calls[i].name);
        target_result(key, calls[i].stack);
    }
    target_finish();
}
