/*
 * usmp_server.c - the C gateway on POSIX: an echo server on the gateway
 * loop of usmp_gateway.c, over TCP, UDP or a serial line.
 *
 *   usmp_server --psk-file devices.psk [--host 127.0.0.1] [--port 9000]
 *   usmp_server --psk-file devices.psk --udp 9000
 *   usmp_server --psk-file devices.psk --serial /dev/ttyUSB0 [--baud 115200]
 *   USMP_PSK=<hex> usmp_server --psk-env USMP_PSK
 *
 * Exit status: 0 after SIGINT/SIGTERM (every session gets BYE(SHUTDOWN)),
 * 1 when it cannot listen, 2 for a usage or configuration error.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psk_file.h"
#include "usmp_gateway.h"

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void log_line(void *user, const char *line)
{
    (void)user;
    printf("usmp_server: %s\n", line);
    fflush(stdout);
}

/* The echo: every message goes back to the device it came from. */
static void echo_message(void *user, usmp_gateway_session_t *session, const uint8_t *msg, size_t len)
{
    (void)user;
    (void)usmp_gateway_reply(session, msg, len);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: usmp_server (--psk-file FILE | --psk-env VAR) [options]\n"
            "\n"
            "An echo gateway for USMP devices: TCP (stream mode, the default), UDP or\n"
            "a serial line (datagram mode).\n"
            "\n"
            "  --psk-file FILE          device PSKs, lines of '<device id hex> <psk hex>'\n"
            "  --psk-env VAR            one PSK (hex) for every device, from variable VAR;\n"
            "                           device ids are then NOT authenticated (any holder\n"
            "                           of the key can claim any id)\n"
            "  --host ADDR              address to listen on (default 127.0.0.1)\n"
            "  --port N                 TCP port (default 9000; 0 picks a free one)\n"
            "  --udp N                  serve UDP on port N instead (0 picks a free one):\n"
            "                           one socket for every device, cookies under load\n"
            "  --serial PATH            serve the serial line PATH instead (COBS frames,\n"
            "                           one session on the line)\n"
            "  --baud N                 serial speed (default 115200)\n"
            "  --cookie-threshold N     UDP: handshakes in progress above which a HELLO\n"
            "                           needs a cookie (default half of --max-sessions)\n"
            "  --max-sessions N         sessions and handshakes past their HELLO (default 64)\n"
            "  --max-pending N          connections without a HELLO yet; one more evicts\n"
            "                           the oldest (default 256)\n"
            "  --hello-timeout-ms N     time a new connection has to send its HELLO (default 2000)\n"
            "  --write-timeout-ms N     output without progress this long drops the\n"
            "                           connection (default 10000)\n"
            "  --handshake-rate N       new connections per second per source prefix (default 10)\n"
            "  --handshake-burst N      ... with bursts up to N (default 20)\n"
            "  --rate-prefix-v4 N       IPv4 prefix length a source counts under (default 32)\n"
            "  --rate-prefix-v6 N       IPv6 prefix length a source counts under (default 64)\n"
            "  --max-record N           largest record accepted (default 4096; UDP and\n"
            "                           serial 1207)\n"
            "  --max-message N          largest message accepted (default 16384)\n"
            "  --handshake-timeout-ms N (default 10000)\n"
            "  --idle-timeout-ms N      (default 90000)\n"
            "  --no-echo                receive only\n"
            "  --help\n");
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;
    if (s == NULL || *s == '\0') {
        return -1;
    }
    v = strtoul(s, &end, 10);
    if (*end != '\0' || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    static psk_table_t table;
    usmp_gateway_config_t cfg;
    int max_record_given = 0;
    const char *psk_file = NULL, *psk_env = NULL;
    char err[256];
    struct sigaction sa;
    int i;

    memset(&cfg, 0, sizeof cfg);
    cfg.host = "127.0.0.1";
    cfg.port = 9000;
    cfg.max_sessions = 64;
    cfg.max_record = 4096;
    cfg.max_message = 16384;
    cfg.on_message = echo_message;
    for (i = 1; i < argc; i += 2) { /* options take one value, flags none */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long n = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--no-echo") == 0) {
            cfg.on_message = NULL;
            i--; /* a flag: no value to skip */
            continue;
        } else if (v == NULL) {
            fprintf(stderr, "usmp_server: %s needs a value\n", a);
            return 2;
        } else if (strcmp(a, "--psk-file") == 0) {
            psk_file = v;
        } else if (strcmp(a, "--psk-env") == 0) {
            psk_env = v;
        } else if (strcmp(a, "--host") == 0) {
            cfg.host = v;
        } else if (strcmp(a, "--port") == 0 && parse_uint(v, 65535, &n) == 0) {
            cfg.port = (uint16_t)n;
        } else if (strcmp(a, "--udp") == 0 && parse_uint(v, 65535, &n) == 0) {
            cfg.transport = USMP_GATEWAY_UDP;
            cfg.port = (uint16_t)n;
        } else if (strcmp(a, "--serial") == 0) {
            cfg.transport = USMP_GATEWAY_SERIAL;
            cfg.serial_path = v;
        } else if (strcmp(a, "--baud") == 0 && parse_uint(v, 4000000, &n) == 0 && n > 0) {
            cfg.baud = (uint32_t)n;
        } else if (strcmp(a, "--cookie-threshold") == 0 && parse_uint(v, 100000, &n) == 0 && n > 0) {
            cfg.cookie_threshold = n;
        } else if (strcmp(a, "--max-sessions") == 0 && parse_uint(v, 100000, &n) == 0 && n > 0) {
            cfg.max_sessions = n;
        } else if (strcmp(a, "--max-pending") == 0 && parse_uint(v, 100000, &n) == 0 && n > 0) {
            cfg.max_pending = n;
        } else if (strcmp(a, "--hello-timeout-ms") == 0 && parse_uint(v, 3600000, &n) == 0 && n > 0) {
            cfg.hello_timeout_ms = (uint32_t)n;
        } else if (strcmp(a, "--write-timeout-ms") == 0 && parse_uint(v, 3600000, &n) == 0 && n > 0) {
            cfg.write_timeout_ms = (uint32_t)n;
        } else if (strcmp(a, "--handshake-rate") == 0 && parse_uint(v, 1000000, &n) == 0 && n > 0) {
            cfg.handshake_rate = (uint32_t)n;
        } else if (strcmp(a, "--handshake-burst") == 0 && parse_uint(v, 1000000, &n) == 0 && n > 0) {
            cfg.handshake_burst = (uint32_t)n;
        } else if (strcmp(a, "--rate-prefix-v4") == 0 && parse_uint(v, 32, &n) == 0 && n > 0) {
            cfg.rate_prefix_v4 = (uint8_t)n;
        } else if (strcmp(a, "--rate-prefix-v6") == 0 && parse_uint(v, 128, &n) == 0 && n > 0) {
            cfg.rate_prefix_v6 = (uint8_t)n;
        } else if (strcmp(a, "--max-record") == 0 && parse_uint(v, 65519, &n) == 0 && n >= 16) {
            cfg.max_record = (uint16_t)n;
            max_record_given = 1;
        } else if (strcmp(a, "--max-message") == 0 && parse_uint(v, 65535, &n) == 0) {
            cfg.max_message = (uint16_t)n;
        } else if (strcmp(a, "--handshake-timeout-ms") == 0 && parse_uint(v, 3600000, &n) == 0) {
            cfg.handshake_timeout_ms = (uint32_t)n;
        } else if (strcmp(a, "--idle-timeout-ms") == 0 && parse_uint(v, 86400000, &n) == 0) {
            cfg.idle_timeout_ms = (uint32_t)n;
        } else {
            fprintf(stderr, "usmp_server: bad option or value: %s %s\n", a, v);
            usage(stderr);
            return 2;
        }
    }
    if (cfg.transport != USMP_GATEWAY_TCP && !max_record_given) {
        cfg.max_record = USMP_DATAGRAM_MAX_RECORD; /* one record per datagram (spec 6.6) */
    }
    if (cfg.transport != USMP_GATEWAY_TCP && cfg.max_record > USMP_DATAGRAM_MAX_RECORD) {
        fprintf(stderr, "usmp_server: --max-record is at most %u over UDP and serial\n",
                (unsigned)USMP_DATAGRAM_MAX_RECORD);
        return 2;
    }
    if (cfg.max_message < cfg.max_record) {
        fprintf(stderr, "usmp_server: --max-message must be at least --max-record (%u)\n",
                (unsigned)cfg.max_record);
        return 2;
    }
    if ((psk_file == NULL) == (psk_env == NULL)) {
        fprintf(stderr, "usmp_server: give exactly one of --psk-file and --psk-env; there is no default PSK\n");
        return 2;
    }
    if ((psk_file != NULL ? psk_table_load_file(&table, psk_file, err, sizeof err)
                          : psk_table_load_env(&table, psk_env, err, sizeof err)) != 0) {
        fprintf(stderr, "usmp_server: %s\n", err);
        return 2;
    }
    if (psk_env != NULL) {
        /* spec/security.md: whoever holds the one shared key can claim any device id. */
        cfg.shared_psk = 1;
        printf("usmp_server: warning: one key for every device: device ids are not authenticated "
               "(any holder of the key can claim any id); use --psk-file for per-device keys\n");
        fflush(stdout);
    }
    cfg.psk_lookup = psk_table_lookup;
    cfg.psk_lookup_user = &table;
    cfg.log = log_line;
    cfg.stop = &stop_requested;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return usmp_gateway_run(&cfg) == 0 ? 0 : 1;
}
