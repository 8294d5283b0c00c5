/*
 * datagram_device.c - the device API over UDP or a serial line for the
 * lossy-link tests (tests/interop/test_datagram_device.py): connects,
 * sends numbered messages while receiving the gateway's, and reports what
 * arrived. Built with USMP_MAX_RECORD 128 and USMP_MAX_MESSAGE 2048, so
 * that the gateway's longer messages arrive fragmented.
 *
 *   INTEROP_PSK=<hex> datagram_device (--udp HOST:PORT | --serial PATH)
 *                     [--count N] [--quiet-ms N] [--device-id HEX]
 *
 * Message i (both directions, tests/interop/test_datagram_device.py):
 * 4 bytes i, 2 bytes length, then byte k = (i * 31 + k * 7) mod 256;
 * its length is message_length(i): one record, or longer than the
 * gateway's datagram max_record (1207), so fragmented both ways (a
 * message between this device's record size and the peer's max_record
 * is refused by usmp_engine_send, MESSAGE_TOO_LARGE). Output, one line each:
 *   handshake ms=<elapsed> session=<hex>       or  handshake failed <condition>
 *   received <i>                               per message from the gateway
 *   bad <i> <why>                              a message that is not message i intact
 *   done sent=<n> received=<unique> duplicates=<n> corrupt=<n> dropped=<n>
 *        framing=<n> last_drop=<condition> state=<state> delivered=<fraction>
 * Exit status 0 when nothing arrived twice or damaged and the session is
 * still up at the end, 1 otherwise, 2 for a usage error.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usmp.h"
#include "usmp_port_posix.h"

#define MAX_COUNT 10000

static usmp_ctx_t ctx;
static uint8_t seen[MAX_COUNT];
static unsigned duplicates, corrupt, received;

static size_t message_length(uint32_t i)
{
    static const size_t lengths[] = { 6, 40, 100, 1300, 1500 };
    return lengths[i % 5u] + (i % 7u);
}

static void make_message(uint32_t i, uint8_t *out, size_t len)
{
    size_t k;
    out[0] = (uint8_t)(i >> 24);
    out[1] = (uint8_t)(i >> 16);
    out[2] = (uint8_t)(i >> 8);
    out[3] = (uint8_t)i;
    out[4] = (uint8_t)(len >> 8);
    out[5] = (uint8_t)len;
    for (k = 6; k < len; k++) {
        out[k] = (uint8_t)(i * 31u + k * 7u);
    }
}

static int hex_bytes(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex), i;
    if (n % 2 != 0 || n / 2 > cap) {
        return -1;
    }
    for (i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            return -1;
        }
        out[i] = (uint8_t)v;
    }
    return (int)(n / 2);
}

static void check_message(const uint8_t *m, size_t len, uint32_t count)
{
    static uint8_t want[2048];
    uint32_t i;

    if (len < 6) {
        corrupt++;
        printf("bad ? short %zu\n", len);
        return;
    }
    i = (uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 | (uint32_t)m[2] << 8 | m[3];
    if (i >= count || len != message_length(i)) {
        corrupt++;
        printf("bad %u length %zu\n", (unsigned)i, len);
        return;
    }
    make_message(i, want, len);
    if (memcmp(m, want, len) != 0) {
        corrupt++;
        printf("bad %u content\n", (unsigned)i);
        return;
    }
    if (seen[i]) {
        duplicates++;
        printf("bad %u duplicate\n", (unsigned)i);
        return;
    }
    seen[i] = 1;
    received++;
    printf("received %u\n", (unsigned)i);
}

/* Takes every message waiting, without blocking. */
static int drain(uint32_t count, uint32_t wait_ms)
{
    static uint8_t buf[USMP_MAX_MESSAGE];
    size_t len = 0;
    int rc, got = 0;

    while ((rc = usmp_recv_message(&ctx, buf, sizeof buf, wait_ms, &len)) == USMP_OK) {
        check_message(buf, len, count);
        got = 1;
        wait_ms = 0;
    }
    return rc == USMP_ERR_WOULD_BLOCK ? got : rc;
}

int main(int argc, char **argv)
{
    static uint8_t psk[64], msg[2048];
    static char host[256];
    const char *serial = NULL, *hex = getenv("INTEROP_PSK");
    unsigned long port = 0, count = 1000, quiet_ms = 3000;
    usmp_transport_t transport;
    usmp_config_t cfg;
    uint8_t device_id[6];
    uint32_t i, t0, last;
    int psk_len, rc, a;

    usmp_port_get_device_id(device_id);
    for (a = 1; a + 1 < argc; a += 2) {
        const char *v = argv[a + 1];
        if (strcmp(argv[a], "--udp") == 0) {
            const char *colon = strrchr(v, ':');
            if (colon == NULL || (size_t)(colon - v) >= sizeof host) {
                return 2;
            }
            memcpy(host, v, (size_t)(colon - v));
            port = strtoul(colon + 1, NULL, 10);
        } else if (strcmp(argv[a], "--serial") == 0) {
            serial = v;
        } else if (strcmp(argv[a], "--count") == 0) {
            count = strtoul(v, NULL, 10);
        } else if (strcmp(argv[a], "--quiet-ms") == 0) {
            quiet_ms = strtoul(v, NULL, 10);
        } else if (strcmp(argv[a], "--device-id") == 0) {
            if (usmp_posix_parse_device_id(v, device_id) != 0) {
                return 2;
            }
        } else {
            fprintf(stderr, "datagram_device: unknown option %s\n", argv[a]);
            return 2;
        }
    }
    psk_len = hex == NULL ? -1 : hex_bytes(hex, psk, sizeof psk);
    if (psk_len < 16 || count > MAX_COUNT || (serial == NULL && (port == 0 || port > 65535))) {
        fprintf(stderr, "usage: INTEROP_PSK=<hex> datagram_device (--udp HOST:PORT | --serial "
                        "PATH) [--count N]\n");
        return 2;
    }
    usmp_posix_set_device_id(device_id);
    usmp_posix_set_log_enabled(0);
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* The application's only transport-specific line. */
    rc = serial != NULL ? usmp_uart_transport_init(&transport, serial, 115200)
                        : usmp_udp_transport_init(&transport, host, (uint16_t)port);
    if (rc != USMP_OK) {
        return 2;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.psk = psk;
    cfg.psk_len = (size_t)psk_len;
    cfg.no_reconnect = 1;
    t0 = usmp_port_millis();
    rc = usmp_connect(&ctx, &transport, &cfg);
    if (rc != USMP_OK) {
        printf("handshake failed %s\n", usmp_error_name(rc));
        return 1;
    }
    printf("handshake ms=%u session=", (unsigned)(usmp_port_millis() - t0));
    for (a = 0; a < 8; a++) {
        printf("%02x", usmp_session_id(&ctx)[a]);
    }
    printf("\n");

    for (i = 0; i < count; i++) {
        size_t len = message_length(i);
        make_message(i, msg, len);
        rc = usmp_send(&ctx, msg, len);
        if (rc != USMP_OK) {
            printf("send %u failed %s\n", (unsigned)i, usmp_error_name(rc));
            break;
        }
        if (drain((uint32_t)count, 1) < 0) {
            break;
        }
    }
    /* The gateway's messages still on the way: until quiet_ms of silence. */
    last = usmp_port_millis();
    while (usmp_port_millis() - last < quiet_ms) {
        rc = drain((uint32_t)count, 100);
        if (rc < 0) {
            break;
        }
        if (rc > 0) {
            last = usmp_port_millis();
        }
    }
    {
        const usmp_stats_t *st = usmp_stats(&ctx);
        usmp_state_t state = usmp_state(&ctx);
        printf(
            "done sent=%u received=%u duplicates=%u corrupt=%u dropped=%u framing=%u last_drop=%s "
            "state=%s delivered=%.3f\n",
            (unsigned)st->messages_sent, received, duplicates, corrupt,
            (unsigned)st->datagrams_dropped, (unsigned)st->framing_errors,
            usmp_error_name(st->last_drop),
            state == USMP_STATE_ESTABLISHED ? "ESTABLISHED" : "DOWN",
            count > 0 ? (double)received / (double)count : 0.0);
        rc = duplicates == 0 && corrupt == 0 && state == USMP_STATE_ESTABLISHED ? 0 : 1;
    }
    (void)usmp_close(&ctx);
    return rc;
}
