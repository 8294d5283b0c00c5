/*
 * test_tcp.c - the device API over the real TCP transport against the C
 * gateway loop (tools/c/usmp_gateway.c) in a child process, on
 * loopback. Runs in every configuration, so the socket code is checked
 * under the sanitizers and valgrind with both crypto backends.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "psk_file.h"
#include "usmp.h"
#include "usmp_port_posix.h"
#include "usmp_gateway.h"
#include "usmp_test.h"

static const uint8_t PSK[32] = "tcp-test-psk-0123456789abcdefgh";
static int port_pipe[2];
static volatile sig_atomic_t child_stop = 0;

static void child_on_term(int sig)
{
    (void)sig;
    child_stop = 1;
}

static size_t child_lookup(void *user, const uint8_t id[6], uint8_t psk[64])
{
    (void)user;
    if (id[5] == 0x99) {
        return 0; /* an unknown device */
    }
    memcpy(psk, PSK, sizeof PSK);
    return sizeof PSK;
}

/* The gateway reports its port in its first log line; send it up the pipe. */
static void child_log(void *user, const char *line)
{
    const char *p = strstr(line, "listening on 127.0.0.1:");
    (void)user;
    if (p != NULL) {
        unsigned port = (unsigned)strtoul(p + strlen("listening on 127.0.0.1:"), NULL, 10);
        if (write(port_pipe[1], &port, sizeof port) != (ssize_t)sizeof port) {
            _exit(3);
        }
    }
}

static void echo_message(void *user, usmp_gateway_session_t *session, const uint8_t *msg, size_t len)
{
    (void)user;
    (void)usmp_gateway_reply(session, msg, len);
}

static pid_t start_gateway(unsigned *port, size_t max_sessions)
{
    pid_t pid;
    if (pipe(port_pipe) != 0) {
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        usmp_gateway_config_t cfg;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = child_on_term;
        sigaction(SIGTERM, &sa, NULL);
        memset(&cfg, 0, sizeof cfg);
        cfg.host = "127.0.0.1";
        cfg.port = 0;
        cfg.max_sessions = max_sessions;
        cfg.max_record = 4096;
        cfg.max_message = 16384;
        cfg.on_message = echo_message;
        cfg.psk_lookup = child_lookup;
        cfg.log = child_log;
        cfg.stop = &child_stop;
        _exit(usmp_gateway_run(&cfg) == 0 ? 0 : 1);
    }
    close(port_pipe[1]);
    if (read(port_pipe[0], port, sizeof *port) != (ssize_t)sizeof *port) {
        close(port_pipe[0]);
        return -1;
    }
    close(port_pipe[0]);
    return pid;
}

static int stop_gateway(pid_t pid)
{
    int status = 0;
    kill(pid, SIGTERM);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static usmp_ctx_t ctx, second;

/* A source address for the rate limiter: "a.b.c.d" or an IPv6 text form. */
static int limiter_allows(usmp_rate_limiter_t *rl, const char *address, uint32_t now_ms)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(address, ':') != NULL) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)(void *)&ss;
        a->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, address, &a->sin6_addr) != 1) {
            return -1;
        }
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)(void *)&ss;
        a->sin_family = AF_INET;
        if (inet_pton(AF_INET, address, &a->sin_addr) != 1) {
            return -1;
        }
    }
    return usmp_rate_limiter_allow(rl, (const struct sockaddr *)&ss, now_ms);
}

/* Spec section 13: the per-source handshake rate counts per prefix, IPv4
 * /32 and IPv6 /64 by default, so the addresses of one /64 share a bucket
 * while neighbouring IPv4 hosts do not. */
static void check_rate_limiter(void)
{
    static usmp_rate_limiter_t rl;
    int i;

    usmp_rate_limiter_init(&rl, 1, 3, 32, 64);
    for (i = 0; i < 3; i++) {
        CHECK_INT_EQ(limiter_allows(&rl, "192.0.2.1", 1000), 1);
    }
    CHECK_INT_EQ(limiter_allows(&rl, "192.0.2.1", 1000), 0);        /* burst used up */
    CHECK_INT_EQ(limiter_allows(&rl, "::ffff:192.0.2.1", 1000), 0); /* the same host, IPv4-mapped */
    CHECK_INT_EQ(limiter_allows(&rl, "192.0.2.2", 1000), 1);        /* its /32 neighbour has its own */
    CHECK_INT_EQ(limiter_allows(&rl, "192.0.2.1", 1999), 0);
    CHECK_INT_EQ(limiter_allows(&rl, "192.0.2.1", 2000), 1); /* one token per second */

    /* Three addresses of one /64: one bucket. Another /64: its own. */
    CHECK_INT_EQ(limiter_allows(&rl, "2001:db8:0:5::1", 5000), 1);
    CHECK_INT_EQ(limiter_allows(&rl, "2001:db8:0:5::2", 5000), 1);
    CHECK_INT_EQ(limiter_allows(&rl, "2001:db8:0:5:ffff:ffff:ffff:ffff", 5000), 1);
    CHECK_INT_EQ(limiter_allows(&rl, "2001:db8:0:5::77", 5000), 0);
    CHECK_INT_EQ(limiter_allows(&rl, "2001:db8:0:6::1", 5000), 1);

    /* Configurable prefixes: IPv4 /24, IPv6 /128. */
    usmp_rate_limiter_init(&rl, 1, 1, 24, 128);
    CHECK_INT_EQ(limiter_allows(&rl, "198.51.100.1", 0), 1);
    CHECK_INT_EQ(limiter_allows(&rl, "198.51.100.200", 0), 0);
    CHECK_INT_EQ(limiter_allows(&rl, "198.51.101.1", 0), 1);
    CHECK_INT_EQ(limiter_allows(&rl, "2001:db8::1", 0), 1);
    CHECK_INT_EQ(limiter_allows(&rl, "2001:db8::2", 0), 1);
    CHECK_INT_EQ(limiter_allows(&rl, "2001:db8::1", 0), 0);

    /* More sources than buckets: memory stays bounded, new sources still get a full bucket. */
    usmp_rate_limiter_init(&rl, 1, 1, 32, 64);
    for (i = 0; i < (int)USMP_RATE_LIMIT_SOURCES + 10; i++) {
        char address[32];
        snprintf(address, sizeof address, "10.%d.%d.1", i / 256, i % 256);
        if (!CHECK_INT_EQ(limiter_allows(&rl, address, (uint32_t)i), 1)) {
            break;
        }
    }
}

int main(void)
{
    usmp_transport_t t, t2;
    usmp_config_t cfg = { PSK, sizeof PSK, 0, 0, 0, 0, 0 };
    static uint8_t msg[USMP_MAX_RECORD], buf[USMP_MAX_MESSAGE];
    static const uint8_t known[6] = { 2, 0, 0, 0, 0, 1 }, unknown[6] = { 2, 0, 0, 0, 0, 0x99 };
    unsigned port = 0;
    size_t i;
    pid_t gw;

    check_rate_limiter();
    usmp_posix_set_log_enabled(0);
    usmp_posix_set_device_id(known);
    gw = start_gateway(&port, 1);
    if (!CHECK(gw > 0 && port > 0)) {
        return usmp_test_finish("test_tcp");
    }
    CHECK_INT_EQ(usmp_tcp_transport_init(&t, "127.0.0.1", (uint16_t)port), USMP_OK);
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_OK);
    /* Every size from 0 to the largest the device sends in one record. */
    for (i = 0; i < sizeof msg; i++) {
        msg[i] = (uint8_t)(i * 13 + 1);
    }
    for (i = 0; i <= USMP_MAX_RECORD; i += (i < 40 ? 1 : 37)) {
        size_t len = 0;
        if (!CHECK_INT_EQ(usmp_send(&ctx, msg, i), USMP_OK) ||
            !CHECK_INT_EQ(usmp_recv_message(&ctx, buf, sizeof buf, 3000, &len), USMP_OK)) {
            break;
        }
        CHECK_MSG(len == i && memcmp(buf, msg, i) == 0, "echo of %zu bytes", i);
    }
    /* A second device while the gateway has room for one session: BUSY. */
    CHECK_INT_EQ(usmp_tcp_transport_init(&t2, "127.0.0.1", (uint16_t)port), USMP_OK);
    CHECK_INT_EQ(usmp_connect(&second, &t2, &cfg), USMP_ERR_PEER_ERROR);
    CHECK_INT_EQ(usmp_peer_code(&second), USMP_CODE_BUSY);
    CHECK_INT_EQ(usmp_close(&ctx), USMP_OK);
    CHECK_INT_EQ(stop_gateway(gw), 0);

    /* Wrong PSK and unknown device look the same: the gateway's
     * ERROR(AUTH_FAILED). */
    gw = start_gateway(&port, 4);
    CHECK_INT_EQ(usmp_tcp_transport_init(&t, "127.0.0.1", (uint16_t)port), USMP_OK);
    cfg.psk = (const uint8_t *)"some-other-psk-for-this-device!";
    cfg.psk_len = 31;
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_ERR_PEER_ERROR);
    CHECK_INT_EQ(usmp_peer_code(&ctx), USMP_CODE_AUTH_FAILED);
    cfg.psk = PSK;
    cfg.psk_len = sizeof PSK;
    usmp_posix_set_device_id(unknown);
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_ERR_PEER_ERROR);
    CHECK_INT_EQ(usmp_peer_code(&ctx), USMP_CODE_AUTH_FAILED);
    usmp_posix_set_device_id(known);
    /* The gateway stops: the device hears BYE(SHUTDOWN). */
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_OK);
    CHECK_INT_EQ(stop_gateway(gw), 0);
    CHECK_INT_EQ(usmp_recv(&ctx, buf, sizeof buf, 3000), USMP_ERR_PEER_CLOSED);
    CHECK_INT_EQ(usmp_engine_peer_code(&ctx.engine), USMP_CODE_SHUTDOWN);
    /* Nobody listens any more. */
    CHECK(usmp_connect(&ctx, &t, &cfg) == USMP_ERR_TRANSPORT);
    CHECK_INT_EQ(usmp_tcp_transport_init(&t, "", 1), USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_tcp_transport_init(&t, "127.0.0.1", 0), USMP_ERR_ARG);
    return usmp_test_finish("test_tcp");
}
