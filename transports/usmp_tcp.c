/*
 * usmp_tcp.c - TCP client transport over BSD sockets: POSIX on Linux and
 * macOS, lwIP's socket API on ESP32 (the same calls).
 *
 * The socket is non-blocking; every wait is a poll() with a timeout, so a
 * dead network never hangs a call longer than asked. EINTR is retried;
 * SIGPIPE is suppressed per send.
 */
#if !defined(_POSIX_C_SOURCE) && !defined(ESP_PLATFORM)
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "usmp_errors.h"
#include "usmp_socket_common.h"
#include "usmp_tcp.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 5000u
/* How long a send waits for room in the socket buffer before reporting
 * "nothing sent" to the caller, which decides when to give up. */
#define SEND_WAIT_MS 1000

#ifdef MSG_NOSIGNAL
#define SEND_FLAGS MSG_NOSIGNAL
#else
#define SEND_FLAGS 0
#endif

static usmp_tcp_state_t *state_of(void *ctx)
{
    return (usmp_tcp_state_t *)(void *)&((usmp_transport_t *)ctx)->state;
}

static void tcp_close(void *ctx)
{
    usmp_tcp_state_t *s = state_of(ctx);
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

static int tcp_send(void *ctx, const uint8_t *data, size_t len)
{
    usmp_tcp_state_t *s = state_of(ctx);
    ssize_t n;

    if (s->fd < 0) {
        return USMP_ERR_TRANSPORT;
    }
    for (;;) {
        n = send(s->fd, data, len, SEND_FLAGS);
        if (n >= 0) {
            return (int)n;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return USMP_ERR_TRANSPORT;
        }
        if (usmp_socket_wait(s->fd, POLLOUT, SEND_WAIT_MS) <= 0) {
            return 0; /* no room yet */
        }
    }
}

static int tcp_recv(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    usmp_tcp_state_t *s = state_of(ctx);
    ssize_t n;
    int rc;

    if (s->fd < 0) {
        return USMP_ERR_TRANSPORT;
    }
    rc = usmp_socket_wait(s->fd, POLLIN, usmp_socket_timeout(timeout_ms));
    if (rc == 0) {
        return 0;
    }
    if (rc < 0) {
        return USMP_ERR_TRANSPORT;
    }
    do {
        n = recv(s->fd, buf, cap, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        return (int)n;
    }
    if (n == 0) {
        return USMP_ERR_TRANSPORT_CLOSED;
    }
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : USMP_ERR_TRANSPORT;
}

static int tcp_available(void *ctx)
{
    usmp_tcp_state_t *s = state_of(ctx);
    if (s->fd < 0) {
        return USMP_ERR_TRANSPORT;
    }
    return usmp_socket_wait(s->fd, POLLIN, 0) > 0 ? 1 : 0;
}

/* One connect attempt with a deadline. Returns the socket or -1. */
static int connect_one(const struct addrinfo *ai, uint32_t timeout_ms, int *timed_out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    int flags, err = 0, one = 1;
    socklen_t err_len = sizeof err;

    if (fd < 0) {
        return -1;
    }
    flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        close(fd);
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        int rc;
        if (errno != EINPROGRESS && errno != EINTR) {
            close(fd);
            return -1;
        }
        rc = usmp_socket_wait(fd, POLLOUT, (int)timeout_ms);
        if (rc == 0) {
            *timed_out = 1;
        }
        if (rc <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0 || err != 0) {
            close(fd);
            return -1;
        }
    }
    /* Small records should leave at once, not wait for Nagle. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef SO_NOSIGPIPE
    (void)setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    return fd;
}

static int tcp_reconnect(void *ctx)
{
    usmp_tcp_state_t *s = state_of(ctx);
    struct addrinfo hints, *list = NULL, *ai;
    char port[6];
    int timed_out = 0;

    tcp_close(ctx);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(s->host, usmp_socket_port_text(port, s->port), &hints, &list) != 0 ||
        list == NULL) {
        return USMP_ERR_TRANSPORT;
    }
    for (ai = list; ai != NULL && s->fd < 0; ai = ai->ai_next) {
        s->fd = connect_one(ai, s->connect_timeout_ms, &timed_out);
    }
    freeaddrinfo(list);
    if (s->fd < 0) {
        return timed_out ? USMP_ERR_TIMEOUT : USMP_ERR_TRANSPORT;
    }
    return USMP_OK;
}

int usmp_tcp_transport_init(usmp_transport_t *transport, const char *host, uint16_t port)
{
    if (transport == NULL || host == NULL || host[0] == '\0' || port == 0) {
        return USMP_ERR_ARG;
    }
    memset(transport, 0, sizeof *transport);
    transport->send = tcp_send;
    transport->recv = tcp_recv;
    transport->close = tcp_close;
    transport->reconnect = tcp_reconnect;
    transport->available = tcp_available;
    transport->ctx = transport;
    transport->datagram = 0;
    state_of(transport)->fd = -1;
    state_of(transport)->host = host;
    state_of(transport)->port = port;
    state_of(transport)->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    return USMP_OK;
}

void usmp_tcp_transport_set_connect_timeout(usmp_transport_t *transport, uint32_t timeout_ms)
{
    if (transport != NULL && timeout_ms > 0 && timeout_ms <= 0x7FFFFFFFu) {
        state_of(transport)->connect_timeout_ms = timeout_ms;
    }
}
