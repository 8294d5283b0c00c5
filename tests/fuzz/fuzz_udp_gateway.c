/*
 * fuzz_udp_gateway.c - libFuzzer target for the C gateway's UDP
 * demultiplexer (tools/c/usmp_gateway.c, spec 8.4), without sockets: the
 * gateway is set up with a datagram_send hook, a real client engine
 * completes a handshake through it, and then the input is a list of
 * operations:
 *
 *   op 0x00-0x7F  [len u16][bytes]  a raw datagram from source port
 *                                   40000 + (op & 15) (15: the client's)
 *   op 0x80-0xBF  [len u16][bytes]  the client sends these bytes as a
 *                                   message (fragmented if long)
 *   op 0xC0-0xFF                    the client's last datagram again
 *                                   (a replay), from port 40000 + (op & 15)
 *
 * After each operation what the gateway sent to the client's address is
 * fed to the client. Invariants: no memory error (the sanitizers), and at
 * most once (spec 8.5): the gateway never delivers more messages than the
 * client sent, whatever was replayed or forged around them.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "usmp_engine.h"
#include "usmp_gateway.h"
#include "usmp_port.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CLIENT_PORT_INDEX 15u
#define QUEUE 16u

static const uint8_t PSK[32] = "udp-gateway-fuzz-psk-0123456789";
static const uint8_t DEVICE[USMP_DEVICE_ID_BYTES] = {0xde, 0xad, 0xbe, 0xef, 0x00, 0x01};

typedef struct {
    uint8_t datagrams[QUEUE][USMP_RECORD_BUFFER_BYTES(USMP_DATAGRAM_MAX_RECORD)];
    size_t lens[QUEUE];
    size_t count;
} to_client_t;

static to_client_t to_client;
static uint8_t last_client_datagram[USMP_RECORD_BUFFER_BYTES(USMP_DATAGRAM_MAX_RECORD)];
static size_t last_client_len;

static size_t lookup(void *user, const uint8_t id[USMP_DEVICE_ID_BYTES], uint8_t psk[USMP_PSK_MAX_BYTES])
{
    (void)user;
    if (memcmp(id, DEVICE, USMP_DEVICE_ID_BYTES) != 0) {
        return 0;
    }
    memcpy(psk, PSK, sizeof PSK);
    return sizeof PSK;
}

static void source(struct sockaddr_in *a, unsigned index)
{
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)(40000u + index));
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

/* Keeps what goes to the client's address; the rest goes nowhere. */
static void capture(void *user, const uint8_t *datagram, size_t len, const struct sockaddr *to, socklen_t to_len)
{
    (void)user;
    if (to_len != sizeof(struct sockaddr_in) || to->sa_family != AF_INET ||
        ntohs(((const struct sockaddr_in *)(const void *)to)->sin_port) != 40000u + CLIENT_PORT_INDEX) {
        return;
    }
    if (to_client.count < QUEUE && len <= sizeof to_client.datagrams[0]) {
        memcpy(to_client.datagrams[to_client.count], datagram, len);
        to_client.lens[to_client.count++] = len;
    }
}

static void client_random(void *user, uint8_t *buf, size_t len)
{
    (void)user;
    usmp_port_random(buf, len);
}

/* The client's output to the gateway, from its own address. */
static void client_flush(usmp_engine_t *client, usmp_gateway_t *gw)
{
    struct sockaddr_in from;
    const uint8_t *out;
    size_t len;

    source(&from, CLIENT_PORT_INDEX);
    for (;;) {
        usmp_engine_output(client, &out, &len);
        if (len == 0) {
            return;
        }
        if (len <= sizeof last_client_datagram) {
            memcpy(last_client_datagram, out, len);
            last_client_len = len;
        }
        usmp_gateway_datagram_input(gw, out, len, (const struct sockaddr *)&from, sizeof from);
        usmp_engine_output_done(client, len);
    }
}

/* What the gateway sent the client, fed to it (its own answers go back). */
static void client_receive(usmp_engine_t *client, usmp_gateway_t *gw)
{
    size_t i;
    for (i = 0; i < to_client.count; i++) {
        usmp_event_t ev;
        size_t used;
        (void)usmp_engine_feed(client, to_client.datagrams[i], to_client.lens[i], usmp_port_millis(), &used, &ev);
    }
    to_client.count = 0;
    client_flush(client, gw);
}

static void echo(void *user, usmp_gateway_session_t *session, const uint8_t *msg, size_t len)
{
    (void)user;
    (void)usmp_gateway_reply(session, msg, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t rx[USMP_RECORD_BUFFER_BYTES(USMP_DATAGRAM_MAX_RECORD)];
    static uint8_t tx[USMP_RECORD_BUFFER_BYTES(USMP_DATAGRAM_MAX_RECORD)];
    static uint8_t reassembly[4096];
    usmp_gateway_config_t cfg;
    usmp_engine_config_t ec;
    usmp_engine_t client;
    usmp_gateway_t *gw;
    usmp_gateway_stats_t stats;
    uint64_t messages_sent = 0;
    size_t pos = 0;
    int round;

    memset(&cfg, 0, sizeof cfg);
    cfg.transport = USMP_GATEWAY_UDP;
    cfg.max_sessions = 4;
    cfg.cookie_threshold = 2;
    cfg.max_record = USMP_DATAGRAM_MAX_RECORD;
    cfg.max_message = 4096;
    cfg.handshake_rate = 1000000;
    cfg.handshake_burst = 1000000;
    cfg.psk_lookup = lookup;
    cfg.on_message = echo;
    cfg.datagram_send = capture;
    gw = usmp_gateway_setup(&cfg);
    if (gw == NULL) {
        abort();
    }
    to_client.count = 0;
    last_client_len = 0;

    memset(&ec, 0, sizeof ec);
    ec.role = USMP_ROLE_CLIENT;
    ec.mode = USMP_MODE_DATAGRAM;
    ec.psk = PSK;
    ec.psk_len = sizeof PSK;
    memcpy(ec.device_id, DEVICE, sizeof DEVICE);
    ec.random = client_random;
    ec.max_record = USMP_DATAGRAM_MAX_RECORD;
    ec.max_message = sizeof reassembly;
    ec.rx_buf = rx;
    ec.rx_cap = sizeof rx;
    ec.tx_buf = tx;
    ec.tx_cap = sizeof tx;
    ec.reassembly_buf = reassembly;
    ec.reassembly_cap = sizeof reassembly;
    if (usmp_engine_init(&client, &ec) != USMP_OK || usmp_engine_start(&client, usmp_port_millis()) != USMP_OK) {
        abort();
    }
    client_flush(&client, gw);
    for (round = 0; round < 4 && usmp_engine_state(&client) != USMP_STATE_ESTABLISHED; round++) {
        client_receive(&client, gw);
    }
    if (usmp_engine_state(&client) != USMP_STATE_ESTABLISHED) {
        abort(); /* the handshake through the demultiplexer must work */
    }

    while (pos < size) {
        uint8_t op = data[pos++];
        size_t len = 0;
        if (op < 0xC0) {
            if (size - pos < 2) {
                break;
            }
            len = ((size_t)data[pos] << 8) | data[pos + 1];
            pos += 2;
            if (len > size - pos) {
                len = size - pos;
            }
        }
        if (op < 0x80) {
            struct sockaddr_in from;
            source(&from, op & 15u);
            usmp_gateway_datagram_input(gw, data + pos, len, (const struct sockaddr *)&from, sizeof from);
        } else if (op < 0xC0) {
            size_t done = 0;
            if (usmp_engine_state(&client) == USMP_STATE_ESTABLISHED && len <= sizeof reassembly) {
                messages_sent++;
                do {
                    int n = usmp_engine_send(&client, data + pos + done, len - done, usmp_port_millis());
                    if (n < 0) {
                        break;
                    }
                    done += (size_t)n;
                    client_flush(&client, gw);
                } while (done < len);
            }
        } else if (last_client_len > 0) {
            struct sockaddr_in from;
            source(&from, op & 15u);
            usmp_gateway_datagram_input(gw, last_client_datagram, last_client_len, (const struct sockaddr *)&from,
                                        sizeof from);
        }
        pos += len;
        client_receive(&client, gw);
    }
    usmp_gateway_tick(gw);
    usmp_gateway_stats(gw, &stats);
    if (stats.messages_in > messages_sent) {
        fprintf(stderr, "fuzz_udp_gateway: %llu messages delivered, %llu sent\n",
                (unsigned long long)stats.messages_in, (unsigned long long)messages_sent);
        abort(); /* at most once (spec 8.5) */
    }
    usmp_engine_wipe(&client);
    usmp_gateway_shutdown(gw);
    return 0;
}
