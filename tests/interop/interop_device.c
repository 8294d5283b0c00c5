/*
 * interop_device.c - a scriptable USMP device for the interop tests
 * (tests/interop, pytest): the blocking device API of usmp.h on the POSIX port
 * and the TCP transport, driven by one command per line on stdin.
 *
 *   usmp_interop_device --port N --psk-hex HEX [--device-id HEX]
 *       [--host H] [--keepalive-ms N] [--pong-timeout-ms N]
 *       [--handshake-timeout-ms N] [--connect-timeout-ms N] [--no-reconnect]
 *
 * Every command answers with exactly one final line starting with "ok",
 * "err" or "timeout"; before it, "event" lines may report what happened
 * meanwhile. Times are CLOCK_MONOTONIC milliseconds, the clock Python's
 * time.monotonic() reads, so the tests can compare them with their own.
 *
 *   connect                       -> ok connect <session id hex> <largest single-record message>
 *                                    | err connect <COND> <peer code|-> api=<COND the call returned>
 *                                    (every "err" line: COND is the engine's condition when it
 *                                    failed, else the call's result)
 *   send <len> <seed>             -> ok send <wire bytes> | err send <COND> <peer code|->
 *   sendhex <hex|->               -> as send
 *   recv <timeout_ms>             -> ok recv <len> <hex|-> | timeout recv | err recv <COND> <peer code|->
 *   echo <from> <to> <step> <seed> <timeout_ms>
 *                                 -> sends pattern(n, seed + n) for each n, checks each echo:
 *                                    ok echo <count> | err echo <n> <stage> <COND> <peer code|->
 *   burst <count> <len> <extra> <timeout_ms>
 *                                 -> sends count messages back to back without reading, then
 *                                    reads until count echoes (in order) and extra other messages
 *                                    came: "event other <hex>" per other message, then
 *                                    ok burst <echoes> <others> | err burst <COND> <echoes> <others>
 *   tick <max_ms> <until> <interval_ms>
 *                                 -> calls usmp_keepalive_tick every interval_ms; reports changes as
 *                                    "event tick <ms> rc=<COND> state=<STATE> last=<COND> reconnects=<n>";
 *                                    until "lost" (rc != OK), "up" (rc == OK after a reconnect) or "none":
 *                                    ok tick <ms> | timeout tick <ms>
 *   close                         -> ok close
 *   state                         -> ok state <STATE> <COND of the engine or last error> <peer code>
 *   stats                         -> ok stats messages_sent=.. messages_received=.. bytes_sent=..
 *                                    bytes_received=.. reconnects=.. rtt=..
 *   quit                          -> exits 0
 *
 * The transport is wrapped to report each connection attempt and close:
 *   event connect <ms> <COND>     (after the TCP connect, OK or the error)
 *   event closed <ms> state=<STATE> err=<COND> peer=<code>   (the engine as it was when closed)
 *
 * pattern(len, seed)[i] = (seed * 31 + i * 7 + len) mod 251, as in the tests.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "usmp.h"
#include "usmp_port_posix.h"

#define LINE_MAX_BYTES (2 * 65536 + 64)

static usmp_ctx_t ctx;
static usmp_transport_t tcp;     /* the real TCP transport */
static usmp_transport_t wrapped; /* what the device API gets: tcp, reported */
static usmp_config_t cfg;
static uint8_t psk[64];
static uint8_t msg_buf[65536];
static uint8_t rx_buf[65536];
static char line[LINE_MAX_BYTES];

static unsigned long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000ull;
}

static const char *state_name(usmp_state_t s)
{
    static const char *const names[] = { "START",      "WAIT_CHALLENGE", "WAIT_SESSION_OK",
                                         "WAIT_HELLO", "WAIT_HELLO_ACK", "ESTABLISHED",
                                         "CLOSED",     "FAILED" };
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "UNKNOWN";
}

static void pattern(uint8_t *out, size_t len, unsigned long seed)
{
    size_t i;
    for (i = 0; i < len; i++) {
        out[i] = (uint8_t)((seed * 31u + i * 7u + len) % 251u);
    }
}

static void print_hex(const uint8_t *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;
    if (n == 0) {
        fputc('-', stdout);
        return;
    }
    for (i = 0; i < n; i++) {
        fputc(digits[b[i] >> 4], stdout);
        fputc(digits[b[i] & 15u], stdout);
    }
}

static int parse_hex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex), i;
    if (strcmp(hex, "-") == 0) {
        return 0;
    }
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

/* The peer's code is meaningful after PEER_ERROR and PEER_CLOSED only. */
static void print_peer_code(int rc)
{
    if (rc == USMP_ERR_PEER_ERROR || rc == USMP_ERR_PEER_CLOSED) {
        printf("%u", (unsigned)usmp_peer_code(&ctx));
    } else {
        fputc('-', stdout);
    }
}

/* "err <what> <condition> <peer code|-> api=<what the call returned>". The
 * condition is the engine's own when it failed, else the call's result;
 * both report a gateway's ERROR as PEER_ERROR with the peer's code. */
static void fail_line(const char *what, int rc)
{
    int cond = rc;
    if (usmp_engine_state(&ctx.engine) == USMP_STATE_FAILED) {
        cond = usmp_engine_error(&ctx.engine);
    }
    printf("err %s %s ", what, usmp_error_name(cond));
    print_peer_code(cond);
    printf(" api=%s\n", usmp_error_name(rc));
}

/* ------------------------------------------------------- reporting transport */

static int w_send(void *c, const uint8_t *data, size_t len)
{
    (void)c;
    return tcp.send(tcp.ctx, data, len);
}

static int w_recv(void *c, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    (void)c;
    return tcp.recv(tcp.ctx, buf, cap, timeout_ms);
}

static int w_available(void *c)
{
    (void)c;
    return tcp.available(tcp.ctx);
}

static int w_reconnect(void *c)
{
    int rc;
    (void)c;
    rc = tcp.reconnect(tcp.ctx);
    printf("event connect %llu %s\n", mono_ms(), usmp_error_name(rc));
    fflush(stdout);
    return rc;
}

static void w_close(void *c)
{
    (void)c;
    if (((const usmp_tcp_state_t *)(const void *)&tcp.state)->fd >= 0) {
        usmp_state_t st = usmp_engine_state(&ctx.engine);
        printf("event closed %llu state=%s err=%s peer=%u\n", mono_ms(), state_name(st),
               usmp_error_name(st == USMP_STATE_FAILED ? usmp_engine_error(&ctx.engine)
                                                       : ctx.last_error),
               (unsigned)usmp_engine_peer_code(&ctx.engine));
        fflush(stdout);
    }
    tcp.close(tcp.ctx);
}

/* ------------------------------------------------------------------ commands */

static void cmd_connect(void)
{
    int rc = usmp_connect(&ctx, &wrapped, &cfg);
    if (rc == USMP_OK) {
        printf("ok connect ");
        print_hex(usmp_session_id(&ctx), USMP_SESSION_ID_BYTES);
        printf(" %zu\n", usmp_engine_max_single_record(&ctx.engine));
    } else {
        fail_line("connect", rc);
    }
}

static void do_send(const uint8_t *data, size_t len)
{
    int rc = usmp_send(&ctx, data, len);
    if (rc == USMP_OK) {
        printf("ok send %u\n", (unsigned)usmp_stats(&ctx)->last_send_wire_bytes);
    } else {
        fail_line("send", rc);
    }
}

static void cmd_recv(unsigned long timeout_ms)
{
    size_t len = 0;
    int rc = usmp_recv_message(&ctx, rx_buf, sizeof rx_buf, (uint32_t)timeout_ms, &len);
    if (rc == USMP_OK) {
        printf("ok recv %zu ", len);
        print_hex(rx_buf, len);
        printf("\n");
    } else if (rc == USMP_ERR_WOULD_BLOCK) {
        printf("timeout recv\n");
    } else {
        fail_line("recv", rc);
    }
}

static void cmd_echo(unsigned long from, unsigned long to, unsigned long step, unsigned long seed,
                     unsigned long timeout_ms)
{
    unsigned long n, count = 0;
    if (step == 0 || to >= sizeof msg_buf) {
        printf("err echo 0 args MISUSE -\n");
        return;
    }
    for (n = from; n <= to; n += step) {
        size_t got = 0;
        int rc;
        pattern(msg_buf, n, seed + n);
        rc = usmp_send(&ctx, msg_buf, n);
        if (rc != USMP_OK) {
            printf("err echo %lu send %s ", n, usmp_error_name(rc));
            print_peer_code(rc);
            printf("\n");
            return;
        }
        rc = usmp_recv_message(&ctx, rx_buf, sizeof rx_buf, (uint32_t)timeout_ms, &got);
        if (rc != USMP_OK) {
            printf("err echo %lu recv %s ", n, usmp_error_name(rc));
            print_peer_code(rc);
            printf("\n");
            return;
        }
        if (got != n || memcmp(rx_buf, msg_buf, n) != 0) {
            printf("err echo %lu compare DIFFERS %zu\n", n, got);
            return;
        }
        count++;
    }
    printf("ok echo %lu\n", count);
}

static void cmd_burst(unsigned long count, unsigned long len, unsigned long extra,
                      unsigned long timeout_ms)
{
    unsigned long i, echoes = 0, others = 0;
    unsigned long long deadline = mono_ms() + timeout_ms;
    int rc;

    if (len >= sizeof msg_buf) {
        printf("err burst MISUSE 0 0\n");
        return;
    }
    for (i = 0; i < count; i++) {
        pattern(msg_buf, len, i);
        rc = usmp_send(&ctx, msg_buf, len);
        if (rc != USMP_OK) {
            printf("err burst %s %lu %lu\n", usmp_error_name(rc), echoes, others);
            return;
        }
    }
    while (echoes < count || others < extra) {
        size_t got = 0;
        unsigned long long now = mono_ms();
        if (now >= deadline) {
            printf("timeout burst %lu %lu\n", echoes, others);
            return;
        }
        rc = usmp_recv_message(&ctx, rx_buf, sizeof rx_buf, (uint32_t)(deadline - now), &got);
        if (rc == USMP_ERR_WOULD_BLOCK) {
            continue;
        }
        if (rc != USMP_OK) {
            printf("err burst %s %lu %lu\n", usmp_error_name(rc), echoes, others);
            return;
        }
        pattern(msg_buf, len, echoes);
        if (echoes < count && got == len && memcmp(rx_buf, msg_buf, len) == 0) {
            echoes++;
        } else {
            others++;
            printf("event other ");
            print_hex(rx_buf, got);
            printf("\n");
        }
    }
    printf("ok burst %lu %lu\n", echoes, others);
}

static void cmd_tick(unsigned long max_ms, const char *until, unsigned long interval_ms)
{
    unsigned long long start = mono_ms();
    uint32_t start_reconnects = usmp_stats(&ctx)->reconnects;
    int last_rc = 1, last_state = -1;
    uint32_t last_reconnects = start_reconnects;

    for (;;) {
        int rc = usmp_keepalive_tick(&ctx);
        int st = (int)usmp_state(&ctx);
        uint32_t reconnects = usmp_stats(&ctx)->reconnects;
        unsigned long long now = mono_ms();
        if (rc != last_rc || st != last_state || reconnects != last_reconnects) {
            printf("event tick %llu rc=%s state=%s last=%s reconnects=%u\n", now,
                   usmp_error_name(rc), state_name((usmp_state_t)st),
                   usmp_error_name(ctx.last_error), (unsigned)reconnects);
            fflush(stdout);
            last_rc = rc;
            last_state = st;
            last_reconnects = reconnects;
        }
        if ((strcmp(until, "lost") == 0 && rc != USMP_OK) ||
            (strcmp(until, "up") == 0 && rc == USMP_OK && reconnects > start_reconnects)) {
            printf("ok tick %llu\n", now);
            return;
        }
        if (now - start >= max_ms) {
            printf("%s tick %llu\n", strcmp(until, "none") == 0 ? "ok" : "timeout", now);
            return;
        }
        usmp_port_delay_ms((uint32_t)interval_ms);
    }
}

static void cmd_state(void)
{
    usmp_state_t st = usmp_state(&ctx);
    int err = st == USMP_STATE_FAILED ? usmp_engine_error(&ctx.engine) : ctx.last_error;
    printf("ok state %s %s %u\n", state_name(st), usmp_error_name(err),
           (unsigned)usmp_engine_peer_code(&ctx.engine));
}

static void cmd_stats(void)
{
    const usmp_stats_t *s = usmp_stats(&ctx);
    printf("ok stats messages_sent=%u messages_received=%u bytes_sent=%u bytes_received=%u "
           "reconnects=%u rtt=%u\n",
           (unsigned)s->messages_sent, (unsigned)s->messages_received, (unsigned)s->bytes_sent,
           (unsigned)s->bytes_received, (unsigned)s->reconnects, (unsigned)s->last_rtt_ms);
}

static int run_command(char *text)
{
    char *argv[8];
    int argc = 0;
    char *tok = strtok(text, " \t\r\n");
    unsigned long a[5] = { 0, 0, 0, 0, 0 };
    int i;

    while (tok != NULL && argc < 8) {
        argv[argc++] = tok;
        tok = strtok(NULL, " \t\r\n");
    }
    if (argc == 0) {
        return 1;
    }
    for (i = 1; i < argc && i <= 5; i++) {
        a[i - 1] = strtoul(argv[i], NULL, 10);
    }
    if (strcmp(argv[0], "quit") == 0) {
        return 0;
    } else if (strcmp(argv[0], "connect") == 0) {
        cmd_connect();
    } else if (strcmp(argv[0], "send") == 0 && argc == 3) {
        if (a[0] > sizeof msg_buf) {
            printf("err send MISUSE -\n");
        } else {
            pattern(msg_buf, a[0], a[1]);
            do_send(msg_buf, a[0]);
        }
    } else if (strcmp(argv[0], "sendhex") == 0 && argc == 2) {
        int n = parse_hex(argv[1], msg_buf, sizeof msg_buf);
        if (n < 0) {
            printf("err send MISUSE -\n");
        } else {
            do_send(msg_buf, (size_t)n);
        }
    } else if (strcmp(argv[0], "recv") == 0 && argc == 2) {
        cmd_recv(a[0]);
    } else if (strcmp(argv[0], "echo") == 0 && argc == 6) {
        cmd_echo(a[0], a[1], a[2], a[3], a[4]);
    } else if (strcmp(argv[0], "burst") == 0 && argc == 5) {
        cmd_burst(a[0], a[1], a[2], a[3]);
    } else if (strcmp(argv[0], "tick") == 0 && argc == 4) {
        cmd_tick(a[0], argv[2], strtoul(argv[3], NULL, 10));
    } else if (strcmp(argv[0], "close") == 0) {
        usmp_close(&ctx);
        printf("ok close\n");
    } else if (strcmp(argv[0], "state") == 0) {
        cmd_state();
    } else if (strcmp(argv[0], "stats") == 0) {
        cmd_stats();
    } else {
        printf("err usage %s -\n", argv[0]);
    }
    fflush(stdout);
    return 1;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    unsigned long port = 0, connect_timeout = 0;
    uint8_t device_id[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
    int psk_len = -1, i;

    memset(&cfg, 0, sizeof cfg);
    for (i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(o, "--no-reconnect") == 0) {
            cfg.no_reconnect = 1;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "usmp_interop_device: %s needs a value\n", o);
            return 2;
        }
        i++;
        if (strcmp(o, "--host") == 0) {
            host = v;
        } else if (strcmp(o, "--port") == 0) {
            port = strtoul(v, NULL, 10);
        } else if (strcmp(o, "--psk-hex") == 0) {
            psk_len = parse_hex(v, psk, sizeof psk);
        } else if (strcmp(o, "--device-id") == 0) {
            if (usmp_posix_parse_device_id(v, device_id) != 0) {
                fprintf(stderr, "usmp_interop_device: bad device id %s\n", v);
                return 2;
            }
        } else if (strcmp(o, "--keepalive-ms") == 0) {
            cfg.keepalive_ms = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(o, "--pong-timeout-ms") == 0) {
            cfg.pong_timeout_ms = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(o, "--handshake-timeout-ms") == 0) {
            cfg.handshake_timeout_ms = (uint32_t)strtoul(v, NULL, 10);
        } else if (strcmp(o, "--connect-timeout-ms") == 0) {
            connect_timeout = strtoul(v, NULL, 10);
        } else {
            fprintf(stderr, "usmp_interop_device: unknown option %s\n", o);
            return 2;
        }
    }
    if (port == 0 || port > 65535 || psk_len < 0) {
        fprintf(stderr, "usmp_interop_device: needs --port and --psk-hex\n");
        return 2;
    }
    cfg.psk = psk;
    cfg.psk_len = (size_t)psk_len;
    usmp_posix_set_device_id(device_id);
    if (usmp_tcp_transport_init(&tcp, host, (uint16_t)port) != USMP_OK) {
        fprintf(stderr, "usmp_interop_device: bad address\n");
        return 2;
    }
    if (connect_timeout != 0) {
        usmp_tcp_transport_set_connect_timeout(&tcp, (uint32_t)connect_timeout);
    }
    wrapped = tcp;
    wrapped.send = w_send;
    wrapped.recv = w_recv;
    wrapped.close = w_close;
    wrapped.reconnect = w_reconnect;
    wrapped.available = w_available;
    wrapped.ctx = &wrapped;

    printf("ready max_record=%u max_message=%u\n", (unsigned)USMP_MAX_RECORD,
           (unsigned)USMP_MAX_MESSAGE);
    fflush(stdout);
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (!run_command(line)) {
            break;
        }
    }
    usmp_close(&ctx);
    return 0;
}
