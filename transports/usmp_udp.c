/*
 * usmp_udp.c - UDP client transport over BSD sockets: POSIX on Linux and
 * macOS, lwIP's socket API on ESP32 (the same calls). See usmp_udp.h.
 *
 * The socket is connect()ed to the gateway's address, so the kernel (or
 * lwIP) delivers nothing from anyone else, and non-blocking: every wait
 * is a poll() with a timeout. A datagram is sent whole or not at all;
 * loss on the way, including the ICMP "port unreachable" a connected
 * socket reports as ECONNREFUSED, is what datagram mode is made for: the
 * engine retransmits its handshake flight (spec 8.2), and records are
 * delivered at most once (spec 8.5), so neither is an error here.
 */
#include "usmp_options.h"

/* Datagram transports: nothing to compile without datagram mode. */
#if USMP_DATAGRAM

#if !defined(_POSIX_C_SOURCE) && !defined(ESP_PLATFORM)
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "usmp_errors.h"
#include "usmp_socket_common.h"
#include "usmp_udp.h"

#ifdef MSG_TRUNC
#define RECV_FLAGS MSG_TRUNC /* Linux: the datagram's real length, to spot truncation */
#else
#define RECV_FLAGS 0
#endif

static usmp_udp_state_t *state_of(void *ctx)
{
    return (usmp_udp_state_t *)(void *)&((usmp_transport_t *)ctx)->state;
}

/* Errors a datagram socket reports for a datagram lost on the way. */
static int is_loss(int err)
{
    return err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH || err == EAGAIN ||
           err == EWOULDBLOCK || err == ENOBUFS;
}

static void udp_close(void *ctx)
{
    usmp_udp_state_t *s = state_of(ctx);
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

static int udp_send(void *ctx, const uint8_t *data, size_t len)
{
    usmp_udp_state_t *s = state_of(ctx);
    ssize_t n;

    if (s->fd < 0) {
        return USMP_ERR_TRANSPORT;
    }
    do {
        n = send(s->fd, data, len, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        /* Lost before it left: as if lost on the way. */
        return is_loss(errno) ? (int)len : USMP_ERR_TRANSPORT;
    }
    return (size_t)n == len ? (int)n : USMP_ERR_TRANSPORT;
}

static int udp_recv(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    usmp_udp_state_t *s = state_of(ctx);
    ssize_t n;
    int rc;

    if (s->fd < 0) {
        return USMP_ERR_TRANSPORT;
    }
    rc = usmp_socket_wait(s->fd, POLLIN, usmp_socket_timeout(timeout_ms));
    if (rc == 0) {
        return 0;
    }
    /* rc < 0 (POLLERR) is usually a pending ICMP error: recv reads it. */
    do {
        n = recv(s->fd, buf, cap, RECV_FLAGS);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return is_loss(errno) ? 0 : USMP_ERR_TRANSPORT;
    }
    (void)rc;
    if ((size_t)n > cap) {
        return USMP_ERR_TOO_LARGE; /* truncated: dropped, the caller counts it */
    }
    if (n == 0) {
        return 0; /* an empty datagram carries no frame */
    }
    return (int)n;
}

static int udp_available(void *ctx)
{
    usmp_udp_state_t *s = state_of(ctx);
    if (s->fd < 0) {
        return USMP_ERR_TRANSPORT;
    }
    return usmp_socket_wait(s->fd, POLLIN, 0) > 0 ? 1 : 0;
}

static int udp_reconnect(void *ctx)
{
    usmp_udp_state_t *s = state_of(ctx);
    struct addrinfo hints, *list = NULL, *ai;
    char port[6];

    udp_close(ctx);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    if (getaddrinfo(s->host, usmp_socket_port_text(port, s->port), &hints, &list) != 0 ||
        list == NULL) {
        return USMP_ERR_TRANSPORT;
    }
    for (ai = list; ai != NULL && s->fd < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        int flags;
        if (fd < 0) {
            continue;
        }
        /* A new socket, hence a new source port: the gateway sees a new
         * association, which is what a fresh handshake should be. */
        flags = fcntl(fd, F_GETFL, 0);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
            connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            continue;
        }
        s->fd = fd;
    }
    freeaddrinfo(list);
    return s->fd >= 0 ? USMP_OK : USMP_ERR_TRANSPORT;
}

int usmp_udp_transport_init(usmp_transport_t *transport, const char *host, uint16_t port)
{
    if (transport == NULL || host == NULL || host[0] == '\0' || port == 0) {
        return USMP_ERR_ARG;
    }
    memset(transport, 0, sizeof *transport);
    transport->send = udp_send;
    transport->recv = udp_recv;
    transport->close = udp_close;
    transport->reconnect = udp_reconnect;
    transport->available = udp_available;
    transport->ctx = transport;
    transport->datagram = 1;
    state_of(transport)->fd = -1;
    state_of(transport)->host = host;
    state_of(transport)->port = port;
    return USMP_OK;
}

#else
typedef int usmp_no_datagram_transports; /* ISO C wants a declaration */
#endif /* USMP_DATAGRAM */
