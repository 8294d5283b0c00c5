/*
 * test_constant_random.c - finding 5: a device whose random source returns
 * the same bytes every time (a generator that restarts its sequence after a
 * reset, an ESP32 before its RF is on) must still make a new ephemeral key
 * for every connect (spec 5.8), so that a recorded gateway flight replayed
 * into a later handshake is refused.
 *
 * The program brings its own port hooks, usmp_port_random among them, so
 * it links the core without a real port. Session 1 runs against a gateway
 * engine in the same process and records what the gateway sent: CHALLENGE,
 * SESSION_OK and one DATA record (an "old command"). Session 2 talks to no
 * gateway at all: its transport plays the recording back.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include <string.h>
#include <time.h>

#include "usmp.h"
#include "usmp_test.h"

static const uint8_t PSK[] = "a-test-psk-of-32-bytes-exactly!!";
static const uint8_t OLD_COMMAND[] = "unlock the door";

/* ------------------------------------------------------------ port hooks */

void usmp_port_random(uint8_t *buf, size_t len)
{
    memset(buf, 0x42, len); /* the broken generator under test */
}

void usmp_port_get_device_id(uint8_t out[6])
{
    static const uint8_t id[6] = { 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01 };
    memcpy(out, id, 6);
}

uint32_t usmp_port_millis(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

void usmp_port_delay_ms(uint32_t ms)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000u);
    ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
    nanosleep(&ts, NULL);
}

void usmp_port_log(const char *msg)
{
    (void)msg;
}

/* -------------------------------------------------------------- transport */

typedef struct {
    int replay; /* 0: a live gateway engine; 1: play `recorded` back */
    int connected;
    usmp_engine_t gw;
    uint32_t gw_counter;
    uint8_t rx[USMP_RECORD_BUFFER_BYTES(1024)], tx[USMP_RECORD_BUFFER_BYTES(1024)];
    uint8_t recorded[1024]; /* everything the gateway sent in session 1 */
    size_t recorded_len;
    uint8_t to_device[1024]; /* not yet read by the device */
    size_t to_device_len;
    uint8_t hello[64]; /* the device's HELLO of this session */
    size_t hello_len;
} wire_t;

static wire_t wire;

/* The gateway's own random source works: a counter, different per draw. */
static void gateway_random(void *user, uint8_t *buf, size_t len)
{
    wire_t *w = user;
    size_t i;
    for (i = 0; i < len; i++) {
        buf[i] = (uint8_t)(w->gw_counter * 131u + i * 7u + 1u);
    }
    w->gw_counter++;
}

static size_t gateway_lookup(void *user, const uint8_t id[6], uint8_t psk[64])
{
    (void)user;
    (void)id;
    memcpy(psk, PSK, 32);
    return 32;
}

static void gateway_collect(wire_t *w)
{
    for (;;) {
        const uint8_t *d;
        size_t n;
        usmp_engine_output(&w->gw, &d, &n);
        if (n == 0 || n > sizeof w->recorded - w->recorded_len) {
            return;
        }
        memcpy(w->recorded + w->recorded_len, d, n);
        w->recorded_len += n;
        memcpy(w->to_device + w->to_device_len, d, n);
        w->to_device_len += n;
        usmp_engine_output_done(&w->gw, n);
    }
}

static int wire_send(void *ctx, const uint8_t *data, size_t len)
{
    wire_t *w = ctx;
    size_t off = 0;

    if (!w->connected) {
        return USMP_ERR_TRANSPORT;
    }
    if (w->hello_len == 0 && len <= sizeof w->hello && data[0] == USMP_TYPE_HELLO) {
        memcpy(w->hello, data, len);
        w->hello_len = len;
    }
    while (!w->replay && off < len) {
        size_t used = 0;
        usmp_event_t ev;
        int rc = usmp_engine_feed(&w->gw, data + off, len - off, usmp_port_millis(), &used, &ev);
        off += used;
        gateway_collect(w);
        if (rc != USMP_OK || used == 0) {
            break;
        }
    }
    return (int)len;
}

static int wire_recv(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    wire_t *w = ctx;
    size_t n = w->to_device_len < cap ? w->to_device_len : cap;

    if (!w->connected) {
        return USMP_ERR_TRANSPORT;
    }
    if (n == 0) {
        usmp_port_delay_ms(timeout_ms < 5 ? timeout_ms : 5);
        return 0;
    }
    memcpy(buf, w->to_device, n);
    memmove(w->to_device, w->to_device + n, w->to_device_len - n);
    w->to_device_len -= n;
    return (int)n;
}

static void wire_close(void *ctx)
{
    ((wire_t *)ctx)->connected = 0;
}

static int wire_reconnect(void *ctx)
{
    wire_t *w = ctx;
    usmp_engine_config_t cfg;

    w->connected = 1;
    w->hello_len = 0;
    if (w->replay) {
        memcpy(w->to_device, w->recorded, w->recorded_len);
        w->to_device_len = w->recorded_len;
        return USMP_OK;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.role = USMP_ROLE_SERVER;
    cfg.mode = USMP_MODE_STREAM;
    cfg.psk_lookup = gateway_lookup;
    cfg.random = gateway_random;
    cfg.random_user = w;
    cfg.max_record = 1024;
    cfg.max_message = 1024;
    cfg.rx_buf = w->rx;
    cfg.rx_cap = sizeof w->rx;
    cfg.tx_buf = w->tx;
    cfg.tx_cap = sizeof w->tx;
    if (usmp_engine_init(&w->gw, &cfg) != USMP_OK ||
        usmp_engine_start(&w->gw, usmp_port_millis()) != USMP_OK) {
        return USMP_ERR_TRANSPORT;
    }
    return USMP_OK;
}

static int wire_available(void *ctx)
{
    return ((wire_t *)ctx)->to_device_len > 0;
}

/* ------------------------------------------------------------------- test */

static void test_constant_random_two_connects_differ_and_a_replayed_gateway_flight_is_refused(void)
{
    static usmp_ctx_t device;
    usmp_transport_t t;
    usmp_config_t cfg;
    uint8_t first_hello[64], buf[64];
    size_t first_hello_len, len = 0;

    memset(&t, 0, sizeof t);
    t.send = wire_send;
    t.recv = wire_recv;
    t.close = wire_close;
    t.reconnect = wire_reconnect;
    t.available = wire_available;
    t.ctx = &wire;
    memset(&cfg, 0, sizeof cfg);
    cfg.psk = PSK;
    cfg.psk_len = sizeof PSK - 1;
    cfg.handshake_timeout_ms = 2000;

    /* Session 1, genuine: the gateway sends one command. */
    if (!CHECK_INT_EQ(usmp_connect(&device, &t, &cfg), USMP_OK)) {
        return;
    }
    memcpy(first_hello, wire.hello, wire.hello_len);
    first_hello_len = wire.hello_len;
    CHECK_INT_EQ(usmp_engine_send(&wire.gw, OLD_COMMAND, sizeof OLD_COMMAND, usmp_port_millis()),
                 (int)sizeof OLD_COMMAND);
    gateway_collect(&wire);
    CHECK_INT_EQ(usmp_recv_message(&device, buf, sizeof buf, 1000, &len), USMP_OK);
    CHECK(len == sizeof OLD_COMMAND && memcmp(buf, OLD_COMMAND, len) == 0);
    CHECK_INT_EQ(usmp_close(&device), USMP_OK);
    /* CHALLENGE (57) + SESSION_OK (27) + the DATA record */
    CHECK_INT_EQ(wire.recorded_len, 57u + 27u + USMP_STREAM_OVERHEAD + sizeof OLD_COMMAND);

    /* Session 2: an attacker with no key plays session 1's gateway back. */
    wire.replay = 1;
    len = 0;
    CHECK_INT_EQ(usmp_connect(&device, &t, &cfg), USMP_ERR_AUTH_FAILED);
    CHECK_INT_EQ(wire.hello_len, first_hello_len);
    CHECK_MSG(memcmp(wire.hello, first_hello, first_hello_len) != 0,
              "the same random bytes gave the same HELLO twice");
    CHECK_INT_EQ(usmp_state(&device), USMP_STATE_FAILED);
    CHECK_INT_EQ(usmp_recv_message(&device, buf, sizeof buf, 0, &len), USMP_ERR_AUTH_FAILED);
    CHECK_INT_EQ(len, 0u); /* the old command was not delivered again */
}

int main(void)
{
    test_constant_random_two_connects_differ_and_a_replayed_gateway_flight_is_refused();
    return usmp_test_finish("test_constant_random");
}
