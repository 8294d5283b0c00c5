/*
 * test_device_datagram.c - the device API (usmp.h) in datagram mode over
 * the real UDP transport, against a datagram gateway engine (server role)
 * in a child process on loopback. The gateway drops its first CHALLENGE,
 * sends every record twice and can be told to send noise, so that the
 * engine's retransmission, the replay window and the drop counters are
 * exercised through the blocking API, without Python (this test also runs
 * under valgrind).
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "usmp.h"
#include "usmp_port_posix.h"
#include "usmp_test.h"

static const uint8_t PSK[32] = "datagram-test-psk-0123456789abc";

static size_t gateway_lookup(void *user, const uint8_t id[6], uint8_t psk[64])
{
    (void)user;
    (void)id;
    memcpy(psk, PSK, sizeof PSK);
    return sizeof PSK;
}

static void gateway_random(void *user, uint8_t *buf, size_t len)
{
    (void)user;
    usmp_port_random(buf, len);
}

/* The child: one datagram session, echoing each message. A message "noise"
 * makes it send a datagram of garbage before the echo. */
static void gateway_run(int fd)
{
    static uint8_t rx[USMP_RECORD_BUFFER_BYTES(1024)], tx[USMP_RECORD_BUFFER_BYTES(1024)];
    static uint8_t in[2048];
    static const uint8_t noise[] = { 0x05, 0x13, 0x37, 0x00, 0x42 };
    usmp_engine_t gw;
    usmp_engine_config_t cfg;
    struct sockaddr_storage peer;
    socklen_t peer_len = 0;
    int challenges = 0;

    memset(&cfg, 0, sizeof cfg);
    cfg.role = USMP_ROLE_SERVER;
    cfg.mode = USMP_MODE_DATAGRAM;
    cfg.psk_lookup = gateway_lookup;
    cfg.random = gateway_random;
    cfg.max_record = 1024;
    cfg.max_message = 1024;
    cfg.rx_buf = rx;
    cfg.rx_cap = sizeof rx;
    cfg.tx_buf = tx;
    cfg.tx_cap = sizeof tx;
    if (usmp_engine_init(&gw, &cfg) != USMP_OK ||
        usmp_engine_start(&gw, usmp_port_millis()) != USMP_OK) {
        _exit(3);
    }
    for (;;) {
        struct pollfd p;
        const uint8_t *out;
        size_t out_len;

        p.fd = fd;
        p.events = POLLIN;
        if (poll(&p, 1, 20) > 0) {
            socklen_t len = sizeof peer;
            ssize_t n = recvfrom(fd, in, sizeof in, 0, (struct sockaddr *)&peer, &len);
            if (n > 0) {
                usmp_event_t ev;
                size_t used;
                peer_len = len;
                (void)usmp_engine_feed(&gw, in, (size_t)n, usmp_port_millis(), &used, &ev);
                if (ev.type == USMP_EVENT_MESSAGE) {
                    if (ev.len == 5 && memcmp(ev.data, "noise", 5) == 0) {
                        (void)sendto(fd, noise, sizeof noise, 0, (struct sockaddr *)&peer,
                                     peer_len);
                    }
                    (void)usmp_engine_send(&gw, ev.data, ev.len, usmp_port_millis());
                }
            }
        }
        (void)usmp_engine_tick(&gw, usmp_port_millis());
        for (;;) {
            usmp_engine_output(&gw, &out, &out_len);
            if (out_len == 0 || peer_len == 0) {
                break;
            }
            if (out[0] == USMP_TYPE_CHALLENGE && challenges++ == 0) {
                /* Lost: the device must resend HELLO (spec 8.2). */
            } else {
                (void)sendto(fd, out, out_len, 0, (struct sockaddr *)&peer, peer_len);
                if (out[0] == USMP_TYPE_DATA || out[0] == USMP_TYPE_PONG) {
                    /* Duplicated on the way: the device's replay window drops it. */
                    (void)sendto(fd, out, out_len, 0, (struct sockaddr *)&peer, peer_len);
                }
            }
            usmp_engine_output_done(&gw, out_len);
        }
        if (usmp_engine_state(&gw) == USMP_STATE_CLOSED ||
            usmp_engine_state(&gw) == USMP_STATE_FAILED) {
            _exit(usmp_engine_state(&gw) == USMP_STATE_CLOSED ? 0 : 4);
        }
    }
}

static pid_t start_gateway(uint16_t *port)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    pid_t pid;

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        return -1;
    }
    *port = ntohs(a.sin_port);
    pid = fork();
    if (pid == 0) {
        gateway_run(fd);
    }
    close(fd);
    return pid;
}

static usmp_ctx_t ctx;

static void test_device_api_over_udp(void)
{
    usmp_transport_t t;
    usmp_config_t cfg;
    uint8_t buf[256];
    uint16_t port = 0;
    uint32_t t0;
    int status = -1, rc;
    pid_t pid = start_gateway(&port);

    CHECK(pid > 0);
    CHECK_INT_EQ(usmp_udp_transport_init(&t, "127.0.0.1", port), USMP_OK);
    memset(&cfg, 0, sizeof cfg);
    cfg.psk = PSK;
    cfg.psk_len = sizeof PSK;
    cfg.keepalive_ms = 200;
    cfg.pong_timeout_ms = 3000;
    cfg.no_reconnect = 1;

    /* The first CHALLENGE is lost: the engine resends HELLO after 1 s. */
    t0 = usmp_port_millis();
    CHECK_INT_EQ(usmp_connect(&ctx, &t, &cfg), USMP_OK);
    CHECK_MSG(usmp_port_millis() - t0 >= 900, "handshake took %u ms: the resend comes after ~1000",
              (unsigned)(usmp_port_millis() - t0));
    CHECK_INT_EQ(usmp_state(&ctx), USMP_STATE_ESTABLISHED);

    /* Spec 6.2: a datagram DATA record is the message plus 25 bytes. */
    CHECK_INT_EQ(usmp_send(&ctx, (const uint8_t *)"ten bytes!", 10), USMP_OK);
    CHECK_INT_EQ(usmp_stats(&ctx)->last_send_wire_bytes, 10 + 25);
    CHECK_INT_EQ(USMP_DATAGRAM_OVERHEAD, 25);
    CHECK_INT_EQ(usmp_recv(&ctx, buf, sizeof buf, 2000), 10);
    CHECK_MEM_EQ(buf, "ten bytes!", 10);
    /* Its duplicate is dropped by the replay window, never delivered. */
    CHECK_INT_EQ(usmp_recv(&ctx, buf, sizeof buf, 300), 0);
    CHECK(usmp_stats(&ctx)->datagrams_dropped >= 1);
    CHECK_INT_EQ(usmp_stats(&ctx)->last_drop, USMP_ERR_REPLAY);

    /* Noise from the gateway's address is dropped and counted; the
     * session goes on. */
    {
        uint32_t dropped = usmp_stats(&ctx)->datagrams_dropped;
        CHECK_INT_EQ(usmp_send(&ctx, (const uint8_t *)"noise", 5), USMP_OK);
        CHECK_INT_EQ(usmp_recv(&ctx, buf, sizeof buf, 2000), 5);
        usmp_port_delay_ms(100);
        CHECK_INT_EQ(usmp_recv(&ctx, buf, sizeof buf, 100), 0);
        CHECK(usmp_stats(&ctx)->datagrams_dropped >= dropped + 2); /* the noise, the duplicate */
    }

    /* Keepalive over datagrams: a PING, its PONG, a round-trip time. */
    t0 = usmp_port_millis();
    rc = USMP_OK;
    while (usmp_port_millis() - t0 < 600 && rc == USMP_OK) {
        rc = usmp_keepalive_tick(&ctx);
        usmp_port_delay_ms(20);
    }
    CHECK_INT_EQ(rc, USMP_OK);
    CHECK(usmp_stats(&ctx)->messages_received == 2);
    CHECK_INT_EQ(usmp_state(&ctx), USMP_STATE_ESTABLISHED);

    CHECK_INT_EQ(usmp_close(&ctx), USMP_OK);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "gateway exit status %d", status);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    usmp_posix_set_log_enabled(0);
    test_device_api_over_udp();
    return usmp_test_finish("test_device_datagram");
}
