/*
 * test_device.c - the blocking device API (usmp.h) over a loopback
 * transport whose far end is a gateway engine in the same process.
 *
 * The transport's send() feeds the gateway engine and queues its answer;
 * recv() hands the answer back. Flags make the gateway refuse, freeze (stop
 * answering, as a dead peer) or say BYE, so connect, send, recv, keepalive,
 * dead-peer detection, reconnect with backoff and close are all exercised
 * on the real POSIX port hooks and clock.
 */
#include <stdio.h>
#include <string.h>

#include "usmp.h"
#include "usmp_port_posix.h"
#include "usmp_test.h"

static const uint8_t PSK[] = "a-test-psk-of-32-bytes-exactly!!";
static const uint8_t OTHER_PSK[] = "another-psk-that-is-wrong-here!!";

typedef struct {
    usmp_engine_t gw;
    uint8_t rx[USMP_RECORD_BUFFER_BYTES(4096)], tx[USMP_RECORD_BUFFER_BYTES(4096)];
    uint8_t reassembly[8192];
    uint8_t pending[16384]; /* gateway -> device, not yet read */
    size_t pending_len;
    uint8_t echo[8192];
    size_t echo_len;
    int echo_pending;
    int connected, freeze, refuse_connect, connects, messages;
    int corrupt_session_ok; /* flip a bit of the gateway's SESSION_OK MAC */
    int available_calls, recv_calls;
    const uint8_t *gateway_psk;
} loop_t;

static loop_t loop;

static size_t gateway_lookup(void *user, const uint8_t id[6], uint8_t psk[64])
{
    loop_t *l = user;
    (void)id;
    memcpy(psk, l->gateway_psk, 32);
    return 32;
}

static void gateway_random(void *user, uint8_t *buf, size_t len)
{
    (void)user;
    usmp_port_random(buf, len);
}

static void gateway_collect(loop_t *l)
{
    for (;;) {
        const uint8_t *d;
        size_t n;
        usmp_engine_output(&l->gw, &d, &n);
        if (n == 0) {
            break;
        }
        if (n <= sizeof l->pending - l->pending_len) {
            memcpy(l->pending + l->pending_len, d, n);
            if (l->corrupt_session_ok && d[0] == USMP_TYPE_SESSION_OK) {
                l->pending[l->pending_len + n - 1] ^= 0x01;
            }
            l->pending_len += n;
        }
        usmp_engine_output_done(&l->gw, n);
    }
    /* echo what arrived, fragment by fragment */
    while (l->echo_pending) {
        size_t done = 0;
        do { /* at least once: a 0-byte message is echoed too */
            int rc =
                usmp_engine_send(&l->gw, l->echo + done, l->echo_len - done, usmp_port_millis());
            const uint8_t *d;
            size_t n;
            if (rc < 0) {
                break;
            }
            done += (size_t)rc;
            usmp_engine_output(&l->gw, &d, &n);
            memcpy(l->pending + l->pending_len, d, n);
            l->pending_len += n;
            usmp_engine_output_done(&l->gw, n);
        } while (done < l->echo_len);
        l->echo_pending = 0;
    }
}

static int loop_send(void *ctx, const uint8_t *data, size_t len)
{
    loop_t *l = ctx;
    size_t off = 0;
    if (!l->connected) {
        return USMP_ERR_TRANSPORT;
    }
    if (l->freeze) {
        return (int)len; /* swallowed: the gateway is dead */
    }
    while (off < len) {
        size_t used = 0;
        usmp_event_t ev;
        int rc = usmp_engine_feed(&l->gw, data + off, len - off, usmp_port_millis(), &used, &ev);
        off += used;
        if (ev.type == USMP_EVENT_MESSAGE) {
            l->messages++;
            memcpy(l->echo, ev.data, ev.len);
            l->echo_len = ev.len;
            l->echo_pending = 1;
        }
        gateway_collect(l);
        if (rc != USMP_OK || used == 0) {
            break;
        }
    }
    return (int)len;
}

static int loop_recv(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    loop_t *l = ctx;
    size_t n;
    if (!l->connected) {
        return USMP_ERR_TRANSPORT;
    }
    l->recv_calls++;
    (void)usmp_engine_tick(&l->gw, usmp_port_millis());
    gateway_collect(l);
    if (l->pending_len == 0 || l->freeze) {
        usmp_port_delay_ms(timeout_ms < 5 ? timeout_ms : 5);
        return 0;
    }
    n = l->pending_len < cap ? l->pending_len : cap;
    memcpy(buf, l->pending, n);
    memmove(l->pending, l->pending + n, l->pending_len - n);
    l->pending_len -= n;
    return (int)n;
}

static void loop_close(void *ctx)
{
    loop_t *l = ctx;
    l->connected = 0;
}

static int loop_reconnect(void *ctx)
{
    loop_t *l = ctx;
    usmp_engine_config_t cfg;

    if (l->refuse_connect) {
        return USMP_ERR_TRANSPORT;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.role = USMP_ROLE_SERVER;
    cfg.mode = USMP_MODE_STREAM;
    cfg.psk_lookup = gateway_lookup;
    cfg.psk_lookup_user = l;
    cfg.random = gateway_random;
    cfg.max_record = 4096;
    cfg.max_message = 8192;
    cfg.rx_buf = l->rx;
    cfg.rx_cap = sizeof l->rx;
    cfg.tx_buf = l->tx;
    cfg.tx_cap = sizeof l->tx;
    cfg.reassembly_buf = l->reassembly;
    cfg.reassembly_cap = sizeof l->reassembly;
    /* The previous connection's engine may still hold its record keys'
     * contexts (backend memory): wiped before it is set up again. */
    usmp_engine_wipe(&l->gw);
    if (usmp_engine_init(&l->gw, &cfg) != USMP_OK ||
        usmp_engine_start(&l->gw, usmp_port_millis()) != USMP_OK) {
        return USMP_ERR_TRANSPORT;
    }
    l->pending_len = 0;
    l->echo_pending = 0;
    l->connected = 1;
    l->connects++;
    return USMP_OK;
}

/* As usmp_transport.h says: negative when the connection is gone, so
 * that the caller reads and learns why. */
static int loop_available(void *ctx)
{
    loop_t *l = ctx;
    if (!l->connected) {
        return USMP_ERR_TRANSPORT;
    }
    l->available_calls++;
    return l->pending_len > 0 && !l->freeze;
}

static void loop_transport(usmp_transport_t *t)
{
    memset(t, 0, sizeof *t);
    /* The last test's gateway session may still hold its record keys'
     * contexts (backend memory): released before the loop is reset. */
    usmp_engine_wipe(&loop.gw);
    memset(&loop, 0, sizeof loop);
    loop.gateway_psk = PSK;
    t->send = loop_send;
    t->recv = loop_recv;
    t->close = loop_close;
    t->reconnect = loop_reconnect;
    t->available = loop_available;
    t->ctx = &loop;
}

static usmp_ctx_t ctx;

static void test_connect_send_recv(void)
{
    usmp_transport_t t;
    usmp_config_t cfg = { PSK, sizeof PSK - 1, 0, 0, 0, 0, 0 };
    uint8_t buf[600], small[3];
    static uint8_t big[600];
    size_t len = 99;

    loop_transport(&t);
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_OK);
    CHECK_INT_EQ(usmp_state(&ctx), USMP_STATE_ESTABLISHED);
    CHECK_INT_EQ(usmp_stats(&ctx)->bytes_sent + usmp_stats(&ctx)->bytes_received, 150);

    CHECK_INT_EQ(usmp_send(&ctx, (const uint8_t *)"hello", 5), USMP_OK);
    CHECK_INT_EQ(usmp_stats(&ctx)->last_send_wire_bytes, 5 + 19);
    CHECK_INT_EQ(usmp_recv(&ctx, buf, sizeof buf, 1000), 5);
    CHECK_MEM_EQ(buf, "hello", 5);
    /* Nothing more: a timeout gives 0 after about the time asked. */
    {
        uint32_t t0 = usmp_port_millis();
        CHECK_INT_EQ(usmp_recv(&ctx, buf, sizeof buf, 50), 0);
        CHECK(usmp_port_millis() - t0 >= 50);
    }
    /* A 0-byte message is told from a timeout by usmp_recv_message. */
    CHECK_INT_EQ(usmp_send(&ctx, buf, 0), USMP_OK);
    CHECK_INT_EQ(usmp_recv_message(&ctx, buf, sizeof buf, 1000, &len), USMP_OK);
    CHECK_INT_EQ(len, 0);
    CHECK_INT_EQ(usmp_recv_message(&ctx, buf, sizeof buf, 20, &len), USMP_ERR_WOULD_BLOCK);
    /* Too small a buffer loses nothing. */
    CHECK_INT_EQ(usmp_send(&ctx, (const uint8_t *)"12345", 5), USMP_OK);
    CHECK_INT_EQ(usmp_recv(&ctx, small, sizeof small, 1000), USMP_ERR_BUFFER);
    CHECK_INT_EQ(usmp_recv(&ctx, buf, sizeof buf, 1000), 5);
    /* The largest message the device can send (what its tx buffer holds,
     * the gateway accepting more) and receive (its max_record). */
    memset(big, 'b', sizeof big);
    CHECK_INT_EQ(usmp_send(&ctx, big, USMP_MAX_RECORD), USMP_OK);
    CHECK_INT_EQ(usmp_recv(&ctx, buf, sizeof buf, 1000), USMP_MAX_RECORD);
    {
        size_t most = usmp_engine_max_single_record(&ctx.engine);
        CHECK(most >= USMP_MAX_RECORD);
        CHECK_INT_EQ(usmp_send(&ctx, big, most), USMP_OK);
        CHECK_INT_EQ(loop.echo_len, most); /* arrived whole */
        CHECK_INT_EQ(usmp_send(&ctx, big, most + 1), USMP_ERR_MESSAGE_TOO_LARGE);
        /* The gateway cannot echo more than the device's max_message. */
        CHECK_INT_EQ(usmp_recv(&ctx, buf, sizeof buf, 50), 0);
    }
    CHECK_INT_EQ(usmp_send(&ctx, NULL, 3), USMP_ERR_ARG);
    CHECK_INT_EQ(loop.messages, 5);

    CHECK_INT_EQ(usmp_close(&ctx), USMP_OK);
    CHECK_INT_EQ(usmp_engine_state(&loop.gw), USMP_STATE_CLOSED); /* the BYE arrived */
    CHECK_INT_EQ(usmp_send(&ctx, buf, 1), USMP_ERR_STATE);
}

static void test_config_errors(void)
{
    usmp_transport_t t;
    usmp_config_t cfg = { PSK, 15, 0, 0, 0, 0, 0 };

    loop_transport(&t);
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_ERR_PSK);
    CHECK_INT_EQ(loop.connects, 0); /* refused before touching the network */
    cfg.psk_len = 65;
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_ERR_PSK);
    cfg.psk = NULL;
    cfg.psk_len = 32;
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_ERR_PSK);
    cfg.psk = PSK;
    CHECK_INT_EQ(usmp_connect(NULL, &t, &cfg), USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_connect(&ctx, NULL, &cfg), USMP_ERR_ARG);
    t.send = NULL;
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_ERR_ARG);
    loop_transport(&t);
    t.datagram = 1; /* datagram mode against this stream gateway: never established */
#if !USMP_DATAGRAM
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_ERR_ARG);
    CHECK_INT_EQ(loop.connects, 0);
#endif

    /* The gateway holds another PSK: its ERROR(AUTH_FAILED) reaches the
     * device as the peer's word (test_peer_error_is_not_a_local_auth_failure). */
    loop_transport(&t);
    loop.gateway_psk = OTHER_PSK;
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_ERR_PEER_ERROR);
    CHECK_INT_EQ(usmp_engine_state(&loop.gw), USMP_STATE_FAILED);
    CHECK_INT_EQ(usmp_engine_error(&loop.gw), USMP_ERR_AUTH_FAILED);
    CHECK_INT_EQ(loop.connected, 0); /* the transport was closed */

    /* No gateway at all. */
    loop_transport(&t);
    loop.refuse_connect = 1;
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_ERR_TRANSPORT);

    /* A gateway that never answers: the handshake times out. */
    loop_transport(&t);
    loop.freeze = 1;
    cfg.handshake_timeout_ms = 200;
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_ERR_TIMEOUT);
}

/* Finding 4: a gateway's ERROR(AUTH_FAILED) is an unauthenticated claim
 * and is reported as USMP_ERR_PEER_ERROR with the code; USMP_ERR_AUTH_FAILED
 * means only that this side found a MAC wrong. */
static void test_peer_error_is_not_a_local_auth_failure(void)
{
    usmp_transport_t t;
    usmp_config_t cfg = { PSK, sizeof PSK - 1, 0, 0, 0, 0, 0 };

    loop_transport(&t);
    loop.gateway_psk = OTHER_PSK;
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_ERR_PEER_ERROR);
    CHECK_INT_EQ(usmp_peer_code(&ctx), 0x05);
    CHECK_INT_EQ(usmp_peer_code(&ctx), USMP_CODE_AUTH_FAILED);

    /* The same key on both sides, but the SESSION_OK MAC arrives damaged:
     * the device itself detects it. */
    loop_transport(&t);
    loop.corrupt_session_ok = 1;
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_ERR_AUTH_FAILED);
    CHECK_INT_EQ(usmp_peer_code(&ctx), 0);
    CHECK_INT_EQ(usmp_engine_error(&ctx.engine), USMP_ERR_AUTH_FAILED);

    /* Non-blocking connect reports the same. */
    loop_transport(&t);
    loop.gateway_psk = OTHER_PSK;
    CHECK_INT_EQ(usmp_connect_start(&ctx, &t, &cfg), USMP_OK);
    {
        int rc, polls = 0;
        do {
            rc = usmp_connect_poll(&ctx, 10);
        } while (rc == USMP_ERR_WOULD_BLOCK && ++polls < 100);
        CHECK_INT_EQ(rc, USMP_ERR_PEER_ERROR);
        CHECK_INT_EQ(usmp_peer_code(&ctx), USMP_CODE_AUTH_FAILED);
    }
}

static void test_nonblocking_connect(void)
{
    usmp_transport_t t;
    usmp_config_t cfg = { PSK, sizeof PSK - 1, 0, 0, 0, 0, 0 };
    int rc, polls = 0;

    loop_transport(&t);
    CHECK_INT_EQ(usmp_connect_start(&ctx, &t, &cfg), USMP_OK);
    CHECK_INT_EQ(usmp_state(&ctx), USMP_STATE_WAIT_CHALLENGE);
    do {
        rc = usmp_connect_poll(&ctx, 0);
        polls++;
    } while (rc == USMP_ERR_WOULD_BLOCK && polls < 100);
    CHECK_INT_EQ(rc, USMP_OK);
    CHECK_INT_EQ(usmp_state(&ctx), USMP_STATE_ESTABLISHED);
    (void)usmp_close(&ctx);
}

/* Issue 16 item 5: available has a caller. An idle usmp_keepalive_tick
 * asks it and reads nothing; with data waiting it reads; a transport
 * without available (it is optional) works through recv alone. */
static void test_available_before_zero_wait_read(void)
{
    usmp_transport_t t;
    usmp_config_t cfg = { PSK, sizeof PSK - 1, 0, 0, 0, 0, 0 };
    uint8_t buf[16];
    int recv_before;

    loop_transport(&t);
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_OK);
    loop.available_calls = 0;
    recv_before = loop.recv_calls;
    CHECK_INT_EQ(usmp_keepalive_tick(&ctx), USMP_OK);
    CHECK_INT_EQ(usmp_keepalive_tick(&ctx), USMP_OK);
    CHECK_INT_EQ(loop.available_calls, 2);
    CHECK_INT_EQ(loop.recv_calls, recv_before); /* idle: no read at all */
    /* An echo waits: the tick reads it and usmp_recv hands it over. */
    CHECK_INT_EQ(usmp_send(&ctx, (const uint8_t *)"hello", 5), USMP_OK);
    CHECK_INT_EQ(usmp_keepalive_tick(&ctx), USMP_OK);
    CHECK(loop.recv_calls > recv_before);
    CHECK_INT_EQ(usmp_recv(&ctx, buf, sizeof buf, 0), 5);
    (void)usmp_close(&ctx);

    loop_transport(&t);
    t.available = NULL;
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_OK);
    recv_before = loop.recv_calls;
    CHECK_INT_EQ(usmp_keepalive_tick(&ctx), USMP_OK);
    CHECK_INT_EQ(loop.recv_calls, recv_before + 1); /* asked recv with timeout 0 instead */
    CHECK_INT_EQ(usmp_send(&ctx, (const uint8_t *)"hello", 5), USMP_OK);
    CHECK_INT_EQ(usmp_recv(&ctx, buf, sizeof buf, 1000), 5);
    (void)usmp_close(&ctx);
}

static void test_keepalive_and_reconnect(void)
{
    usmp_transport_t t;
    usmp_config_t cfg = { PSK, sizeof PSK - 1, 100, 150, 0, 0, 0 };
    uint8_t first_session[8];
    uint32_t t0;
    int rc = USMP_OK, lost = 0;

    loop_transport(&t);
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_OK);
    memcpy(first_session, usmp_session_id(&ctx), 8);
    /* Idle: a PING goes out and its PONG gives a round-trip time. */
    t0 = usmp_port_millis();
    while (usmp_port_millis() - t0 < 250) {
        CHECK_INT_EQ(usmp_keepalive_tick(&ctx), USMP_OK);
        usmp_port_delay_ms(10);
    }
    CHECK(usmp_stats(&ctx)->bytes_sent > 150 / 2);
    CHECK_INT_EQ(usmp_state(&ctx), USMP_STATE_ESTABLISHED);

    /* The gateway dies: within keepalive + pong timeout the device knows. */
    loop.freeze = 1;
    t0 = usmp_port_millis();
    while (usmp_port_millis() - t0 < 1000) {
        rc = usmp_keepalive_tick(&ctx);
        if (rc != USMP_OK) {
            lost = 1;
            break;
        }
        usmp_port_delay_ms(10);
    }
    CHECK(lost);
    CHECK_MSG(usmp_port_millis() - t0 <= 100 + 150 + 100, "dead peer noticed after %u ms",
              (unsigned)(usmp_port_millis() - t0));
    /* It comes back: the device reconnects after the backoff. */
    loop.freeze = 0;
    t0 = usmp_port_millis();
    do {
        rc = usmp_keepalive_tick(&ctx);
        usmp_port_delay_ms(10);
    } while (rc != USMP_OK && usmp_port_millis() - t0 < 3000);
    CHECK_INT_EQ(rc, USMP_OK);
    CHECK_INT_EQ(usmp_stats(&ctx)->reconnects, 1);
    CHECK(memcmp(first_session, usmp_session_id(&ctx), 8) != 0);
    CHECK_INT_EQ(usmp_send(&ctx, (const uint8_t *)"again", 5), USMP_OK);
    {
        uint8_t buf[16];
        CHECK_INT_EQ(usmp_recv(&ctx, buf, sizeof buf, 1000), 5);
    }

    /* The gateway says BYE(SHUTDOWN): recv reports it. */
    CHECK_INT_EQ(usmp_engine_close(&loop.gw, USMP_CODE_SHUTDOWN), USMP_OK);
    gateway_collect(&loop);
    {
        uint8_t buf[16];
        CHECK_INT_EQ(usmp_recv(&ctx, buf, sizeof buf, 1000), USMP_ERR_PEER_CLOSED);
    }
    CHECK_INT_EQ(usmp_peer_code(&ctx), USMP_CODE_SHUTDOWN);
    /* The gateway comes back with another key for this device: the
     * reconnect in usmp_keepalive_tick reports its ERROR as the peer's. */
    loop.gateway_psk = OTHER_PSK;
    t0 = usmp_port_millis();
    do {
        rc = usmp_keepalive_tick(&ctx);
        usmp_port_delay_ms(10);
    } while (rc == USMP_ERR_WOULD_BLOCK && usmp_port_millis() - t0 < 3000);
    CHECK_INT_EQ(rc, USMP_ERR_PEER_ERROR);
    CHECK_INT_EQ(usmp_peer_code(&ctx), USMP_CODE_AUTH_FAILED);
    loop.gateway_psk = PSK;
    /* With no_reconnect the session stays down. The old context is closed
     * first, as an application must before connecting it again. */
    (void)usmp_close(&ctx);
    cfg.no_reconnect = 1;
    loop_transport(&t);
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_OK);
    loop.connected = 0;
    CHECK(usmp_keepalive_tick(&ctx) < 0);
    CHECK(usmp_keepalive_tick(&ctx) < 0);
    CHECK_INT_EQ(loop.connects, 1);
    (void)usmp_close(&ctx); /* releases the record keys' contexts */
}

int main(void)
{
    usmp_posix_set_log_enabled(0);
    test_connect_send_recv();
    test_config_errors();
    test_peer_error_is_not_a_local_auth_failure();
    test_nonblocking_connect();
    test_keepalive_and_reconnect();
    test_available_before_zero_wait_read();
    return usmp_test_finish("test_device");
}
