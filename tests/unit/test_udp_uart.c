/*
 * test_udp_uart.c - the UDP and UART transports against local peers: a UDP
 * socket on loopback and the other end of a pseudo-terminal. Checks the
 * transport contract of usmp_transport.h for datagram transports: one
 * whole datagram per recv, drops reported and survived, timeouts bounded,
 * and spec section 10's framing byte for byte on the serial line.
 */
#define _DEFAULT_SOURCE 1 /* openpty */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "usmp.h"
#include "usmp_cobs.h"
#include "usmp_port_posix.h"
#include "usmp_test.h"

/* ------------------------------------------------------------------ UDP */

static int udp_peer(uint16_t *port)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_udp(void)
{
    usmp_transport_t t;
    struct sockaddr_in from;
    socklen_t from_len = sizeof from;
    uint8_t big[1500], buf[600], got[1500];
    uint16_t port = 0;
    uint32_t t0;
    int peer = udp_peer(&port), stranger;
    uint16_t stranger_port = 0;
    ssize_t n;
    size_t i;

    CHECK(peer >= 0);
    CHECK_INT_EQ(usmp_udp_transport_init(NULL, "127.0.0.1", port), USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_udp_transport_init(&t, "", port), USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_udp_transport_init(&t, "127.0.0.1", 0), USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_udp_transport_init(&t, "127.0.0.1", port), USMP_OK);
    CHECK_INT_EQ(t.datagram, 1);
    CHECK_INT_EQ(t.send(t.ctx, (const uint8_t *)"x", 1), USMP_ERR_TRANSPORT); /* not open yet */
    CHECK_INT_EQ(t.reconnect(t.ctx), USMP_OK);

    /* One send, one datagram, byte for byte (zeros included). */
    for (i = 0; i < sizeof big; i++) {
        big[i] = (uint8_t)(i * 7u);
    }
    CHECK_INT_EQ(t.send(t.ctx, big, 537), 537);
    n = recvfrom(peer, got, sizeof got, 0, (struct sockaddr *)&from, &from_len);
    CHECK_INT_EQ(n, 537);
    CHECK_MEM_EQ(got, big, 537);

    /* Nothing waiting: available says so, recv times out on time. */
    CHECK_INT_EQ(t.available(t.ctx), 0);
    t0 = usmp_port_millis();
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 100), 0);
    CHECK(usmp_port_millis() - t0 >= 90 && usmp_port_millis() - t0 < 1000);

    /* Datagrams come whole, one per recv, in the order sent. */
    CHECK(sendto(peer, big, 100, 0, (struct sockaddr *)&from, from_len) == 100);
    CHECK(sendto(peer, big + 100, 30, 0, (struct sockaddr *)&from, from_len) == 30);
    usmp_port_delay_ms(20);
    CHECK_INT_EQ(t.available(t.ctx), 1);
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 1000), 100);
    CHECK_MEM_EQ(buf, big, 100);
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 1000), 30);
    CHECK_MEM_EQ(buf, big + 100, 30);

    /* A datagram longer than the buffer is dropped and reported, not cut;
     * the next one is read as usual. */
    CHECK(sendto(peer, big, 700, 0, (struct sockaddr *)&from, from_len) == 700);
    CHECK(sendto(peer, big, 10, 0, (struct sockaddr *)&from, from_len) == 10);
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 1000), USMP_ERR_TOO_LARGE);
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 1000), 10);

    /* Someone else's datagram never reaches the device (connected socket). */
    stranger = udp_peer(&stranger_port);
    CHECK(stranger >= 0);
    CHECK(sendto(stranger, big, 20, 0, (struct sockaddr *)&from, from_len) == 20);
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 100), 0);
    close(stranger);

    /* The gateway's port closes: the ICMP error is loss, not failure. */
    close(peer);
    CHECK_INT_EQ(t.send(t.ctx, big, 50), 50);
    usmp_port_delay_ms(20);
    CHECK(t.recv(t.ctx, buf, sizeof buf, 50) == 0);
    CHECK_INT_EQ(t.send(t.ctx, big, 50), 50);

    t.close(t.ctx);
    t.close(t.ctx); /* twice is safe */
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 0), USMP_ERR_TRANSPORT);
    CHECK(t.available(t.ctx) < 0);
    CHECK_INT_EQ(usmp_udp_transport_init(&t, "no-such-host.invalid", 9), USMP_OK);
    CHECK_INT_EQ(t.reconnect(t.ctx), USMP_ERR_TRANSPORT);
}

/* ----------------------------------------------------------------- UART */

static int read_all(int fd, uint8_t *buf, size_t cap, uint32_t wait_ms)
{
    size_t n = 0;
    struct pollfd p;

    p.fd = fd;
    p.events = POLLIN;
    while (n < cap && poll(&p, 1, (int)wait_ms) > 0) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r <= 0) {
            break;
        }
        n += (size_t)r;
    }
    return (int)n;
}

static void write_all(int fd, const void *data, size_t len)
{
    CHECK(write(fd, data, len) == (ssize_t)len);
}

static void test_uart(void)
{
    usmp_transport_t t;
    int master, slave;
    char path[64];
    uint8_t frame[700], line[800], buf[USMP_RECORD_BUFFER_BYTES(USMP_MAX_RECORD)], enc[800];
    struct termios raw;
    uint32_t t0;
    int n;
    size_t i;

    CHECK_INT_EQ(openpty(&master, &slave, path, NULL, NULL), 0);
    /* The test's end of the line passes bytes as they are. */
    CHECK_INT_EQ(tcgetattr(master, &raw), 0);
    cfmakeraw(&raw);
    CHECK_INT_EQ(tcsetattr(master, TCSANOW, &raw), 0);

    CHECK_INT_EQ(usmp_uart_transport_init(&t, path, 0), USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_uart_transport_init(&t, "", 115200), USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_uart_transport_init(&t, path, 12345), USMP_OK);
    CHECK_INT_EQ(t.reconnect(t.ctx), USMP_ERR_ARG); /* no such baud rate */
    CHECK_INT_EQ(usmp_uart_transport_init(&t, "/nonexistent/tty", 115200), USMP_OK);
    CHECK_INT_EQ(t.reconnect(t.ctx), USMP_ERR_TRANSPORT);
    CHECK_INT_EQ(usmp_uart_transport_init(&t, path, 115200), USMP_OK);
    CHECK_INT_EQ(t.datagram, 1);
    CHECK_INT_EQ(t.reconnect(t.ctx), USMP_OK);
    /* Opening resynchronises the peer with a lone delimiter (spec 10). */
    CHECK_INT_EQ(read_all(master, line, 1, 200), 1);
    CHECK_INT_EQ(line[0], 0);

    /* Sending: COBS(frame) || 0x00, the same bytes as usmp_cobs_encode, for
     * frames with zeros, without, and longer than one 254-byte block. */
    {
        static const size_t lens[] = { 1, 25, 253, 254, 255, 508, 600 };
        size_t k;
        for (k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            size_t len = lens[k];
            for (i = 0; i < len; i++) {
                frame[i] = (uint8_t)(k == 2 || k == 3 || k == 6 ? 1u + i % 255u : i * 13u);
            }
            n = usmp_cobs_encode(enc, sizeof enc, frame, len);
            CHECK_INT_EQ(t.send(t.ctx, frame, len), (int)len);
            CHECK_INT_EQ(read_all(master, line, (size_t)n + 1u, 500), n + 1);
            CHECK_MEM_EQ(line, enc, (size_t)n);
            CHECK_INT_EQ(line[n], 0);
        }
    }

    /* Receiving. Nothing: recv times out on time, available is 0. */
    CHECK_INT_EQ(t.available(t.ctx), 0);
    t0 = usmp_port_millis();
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 100), 0);
    CHECK(usmp_port_millis() - t0 >= 90 && usmp_port_millis() - t0 < 1000);

    /* Noise, then frames with empty frames between, in one write. */
    for (i = 0; i < 40; i++) {
        frame[i] = (uint8_t)i; /* a zero first */
    }
    n = usmp_cobs_encode(enc, sizeof enc, frame, 40);
    {
        size_t len = 0;
        line[len++] = 0; /* the peer's resync */
        line[len++] = 0;
        memcpy(line + len, enc, (size_t)n);
        len += (size_t)n;
        line[len++] = 0;
        memcpy(line + len, enc, (size_t)n);
        len += (size_t)n;
        line[len++] = 0;
        write_all(master, line, len);
    }
    usmp_port_delay_ms(20);
    CHECK(t.available(t.ctx) > 0);
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 500), 40);
    CHECK_MEM_EQ(buf, frame, 40);
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 500), 40); /* from the bytes held over */
    CHECK_MEM_EQ(buf, frame, 40);

    /* A frame split over writes, with a timeout in between: the part held
     * is completed by the next recv with the same buffer. */
    write_all(master, enc, 10);
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 50), 0);
    write_all(master, enc + 10, (size_t)n - 10u);
    write_all(master, "\0", 1);
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 500), 40);
    CHECK_MEM_EQ(buf, frame, 40);

    /* Garbage (a code byte that runs past the delimiter) is dropped and
     * reported; the frame after it arrives. */
    write_all(master, "\x13\x37\x42\0", 4);
    write_all(master, enc, (size_t)n);
    write_all(master, "\0", 1);
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 500), USMP_ERR_MALFORMED);
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 500), 40);

    /* Oversize (more encoded bytes than the longest encoding of a buffer's
     * worth, spec 10): MALFORMED; one that decodes past the buffer while
     * short enough encoded: TOO_LARGE. The session's next frame arrives. */
    memset(line, 0x05, 600);
    write_all(master, line, 600);
    write_all(master, "\0", 1);
    write_all(master, enc, (size_t)n);
    write_all(master, "\0", 1);
    CHECK_INT_EQ(t.recv(t.ctx, buf, 100, 500), USMP_ERR_MALFORMED);
    CHECK_INT_EQ(t.recv(t.ctx, buf, 100, 500), 40);
    memset(line, 0x01, 302); /* 302 encoded bytes (the limit for 300) decode to 301 zeros */
    write_all(master, line, 302);
    write_all(master, "\0", 1);
    write_all(master, line, 301); /* 300 zeros: fits */
    write_all(master, "\0", 1);
    CHECK_INT_EQ(t.recv(t.ctx, buf, 300, 500), USMP_ERR_TOO_LARGE);
    CHECK_INT_EQ(t.recv(t.ctx, buf, 300, 500), 300);

    /* Closed: recv and send fail; reconnect reopens the line. */
    t.close(t.ctx);
    t.close(t.ctx);
    CHECK_INT_EQ(t.recv(t.ctx, buf, sizeof buf, 0), USMP_ERR_TRANSPORT);
    CHECK_INT_EQ(t.send(t.ctx, frame, 4), USMP_ERR_TRANSPORT);
    CHECK_INT_EQ(t.reconnect(t.ctx), USMP_OK);
    CHECK_INT_EQ(t.send(t.ctx, frame, 4), 4);
    t.close(t.ctx);
    close(slave);
    close(master);
}

int main(void)
{
    usmp_posix_set_log_enabled(0);
    test_udp();
    test_uart();
    return usmp_test_finish("test_udp_uart");
}
