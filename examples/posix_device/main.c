/*
 * main.c - a simulated device: the ESP32 example's application
 * (examples/common/echo_app.c) on the POSIX port, over TCP (default), UDP
 * or a serial line; the application is the same, only the transport's init
 * call differs.
 *
 *   USMP_PSK=<hex> usmp_device --psk-env USMP_PSK --port 9000 "hello" "temp=21.5"
 *   USMP_PSK=<hex> usmp_device --psk-env USMP_PSK --udp 127.0.0.1:9000 "hello"
 *   USMP_PSK=<hex> usmp_device --psk-env USMP_PSK --serial /dev/ttyUSB0 --baud 115200 "hello"
 *
 * Exit status: 0 when every message came back, 1 on a protocol or network
 * failure, 2 for a usage or configuration error.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo_app.h"
#include "psk_file.h"
#include "usmp.h"
#include "usmp_port_posix.h"

static void report(void *user, const char *line)
{
    (void)user;
    printf("device: %s\n", line);
    fflush(stdout);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: usmp_device (--psk-env VAR | --psk-file FILE) [options] [message ...]\n"
                 "\n"
                 "A simulated USMP device: connects, sends each message, checks the echo.\n"
                 "\n"
                 "  --psk-env VAR        the device's PSK (hex) from environment variable VAR\n"
                 "  --psk-file FILE      the device's line in a gateway PSK file\n"
                 "  --device-id HEX      12 hex digits (default: $USMP_DEVICE_ID or 020000000001)\n"
                 "  --host HOST          TCP gateway (default 127.0.0.1)\n"
                 "  --port N             TCP gateway port (default 9000)\n"
                 "  --udp HOST:PORT      UDP gateway instead of TCP (datagram mode)\n"
                 "  --serial PATH        serial line instead of TCP (COBS frames, datagram mode)\n"
                 "  --baud N             serial line speed (default 115200)\n"
                 "  --keepalive-ms N     PING after N ms idle (default 5000)\n"
                 "  --timeout-ms N       wait for each echo (default 3000)\n"
                 "  --verbose            show the library's own log lines (usmp_port_log)\n"
                 "  --help\n");
}

int main(int argc, char **argv)
{
    static const char *default_messages[] = { "hello from a USMP device", "temperature=21.5C", "" };
    static usmp_ctx_t ctx;
    static psk_table_t table;
    const char *host = "127.0.0.1", *psk_env = NULL, *psk_file = NULL, *serial = NULL;
    static char udp_host[256];
    int udp = 0;
    unsigned long baud = 115200;
    const char *const *messages = default_messages;
    size_t message_count = 3;
    unsigned long port = 9000, keepalive = 5000, timeout = 3000;
    uint8_t device_id[6];
    usmp_transport_t transport;
    usmp_config_t cfg;
    echo_app_t app;
    char err[256];
    int i, verbose = 0;

    usmp_port_get_device_id(device_id);
    for (i = 1; i < argc; i += 2) { /* options take one value, flags none */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--verbose") == 0) {
            verbose = 1;
            i--; /* a flag: no value to skip */
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            messages = (const char *const *)&argv[i];
            message_count = (size_t)(argc - i);
            break;
        }
        if (v == NULL) {
            fprintf(stderr, "usmp_device: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--psk-env") == 0) {
            psk_env = v;
        } else if (strcmp(a, "--psk-file") == 0) {
            psk_file = v;
        } else if (strcmp(a, "--host") == 0) {
            host = v;
        } else if (strcmp(a, "--device-id") == 0) {
            if (usmp_posix_parse_device_id(v, device_id) != 0) {
                fprintf(stderr, "usmp_device: --device-id wants 12 hex digits, not '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "--port") == 0) {
            port = strtoul(v, &end, 10);
        } else if (strcmp(a, "--udp") == 0) {
            const char *colon = strrchr(v, ':');
            if (colon == NULL || colon == v || (size_t)(colon - v) >= sizeof udp_host) {
                fprintf(stderr, "usmp_device: --udp wants HOST:PORT, not '%s'\n", v);
                return 2;
            }
            memcpy(udp_host, v, (size_t)(colon - v));
            udp_host[colon - v] = '\0';
            host = udp_host;
            udp = 1;
            port = strtoul(colon + 1, &end, 10);
        } else if (strcmp(a, "--serial") == 0) {
            serial = v;
        } else if (strcmp(a, "--baud") == 0) {
            baud = strtoul(v, &end, 10);
        } else if (strcmp(a, "--keepalive-ms") == 0) {
            keepalive = strtoul(v, &end, 10);
        } else if (strcmp(a, "--timeout-ms") == 0) {
            timeout = strtoul(v, &end, 10);
        } else {
            fprintf(stderr, "usmp_device: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (end != NULL && (*end != '\0' || port == 0 || port > 65535 || timeout > 3600000ul ||
                            keepalive > 3600000ul || baud == 0 || baud > 4000000ul)) {
            fprintf(stderr, "usmp_device: bad value for %s: %s\n", a, v);
            return 2;
        }
    }
    if (udp && serial != NULL) {
        fprintf(stderr, "usmp_device: give at most one of --udp and --serial\n");
        return 2;
    }
    if ((psk_env == NULL) == (psk_file == NULL)) {
        fprintf(
            stderr,
            "usmp_device: give exactly one of --psk-env and --psk-file; there is no default PSK\n");
        return 2;
    }
    if ((psk_env != NULL ? psk_table_load_env(&table, psk_env, err, sizeof err)
                         : psk_table_load_file(&table, psk_file, err, sizeof err)) != 0) {
        fprintf(stderr, "usmp_device: %s\n", err);
        return 2;
    }
    usmp_posix_set_device_id(device_id);
    usmp_posix_set_log_enabled(verbose);

    memset(&cfg, 0, sizeof cfg);
    cfg.psk_len = psk_table_lookup(&table, device_id, table.entries[0].psk);
    cfg.psk = table.entries[0].psk;
    if (cfg.psk_len == 0) {
        fprintf(stderr, "usmp_device: %s has no line for this device id\n", psk_file);
        return 2;
    }
    cfg.keepalive_ms = (uint32_t)keepalive;
    /* The one line that differs between transports. */
#if USMP_DATAGRAM
    if ((serial != NULL ? usmp_uart_transport_init(&transport, serial, (uint32_t)baud)
         : udp          ? usmp_udp_transport_init(&transport, host, (uint16_t)port)
                        : usmp_tcp_transport_init(&transport, host, (uint16_t)port)) != USMP_OK) {
#else
    if (udp || serial != NULL) {
        fprintf(
            stderr,
            "usmp_device: --udp and --serial need datagram mode; this build has USMP_DATAGRAM=0\n");
        return 2;
    }
    if (usmp_tcp_transport_init(&transport, host, (uint16_t)port) != USMP_OK) {
#endif
        fprintf(stderr, "usmp_device: bad gateway address\n");
        return 2;
    }
    memset(&app, 0, sizeof app);
    app.transport = &transport;
    app.config = &cfg;
    app.messages = messages;
    app.message_count = message_count;
    app.reply_timeout_ms = (uint32_t)timeout;
    app.report = report;
    if (serial != NULL) {
        printf("device: connecting over serial %s at %lu baud as device ", serial, baud);
    } else {
        printf("device: connecting to %s%s:%lu as device ", udp ? "udp://" : "", host, port);
    }
    for (i = 0; i < 6; i++) {
        printf("%02x", device_id[i]);
    }
    printf("\n");
    fflush(stdout);
    return echo_app_run(&ctx, &app) == USMP_OK ? 0 : 1;
}
