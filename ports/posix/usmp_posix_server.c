/*
 * usmp_posix_server.c - see usmp_posix_server.h.
 *
 * Each connection owns one engine and its buffers. Input is only read while
 * the previous message's echo is fully handed to the engine, so a client
 * that does not read its echoes is slowed down, not buffered for.
 */
#define _POSIX_C_SOURCE 200809L

#include "usmp_posix_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "usmp_port.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

typedef struct {
    int fd;
    usmp_engine_t engine;
    uint8_t *rx, *tx, *reassembly, *echo;
    uint8_t in[4096];      /* read from the socket, not yet fed */
    size_t in_len, in_off;
    size_t echo_len, echo_done;
    int echo_pending;
    int established;
    char peer[64];
} session_t;

typedef struct {
    const usmp_posix_server_config_t *cfg;
    session_t *sessions;
    size_t active;
    size_t rx_cap, tx_cap;
} server_t;

static void say(const server_t *s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void say(const server_t *s, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    if (s->cfg->log == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    s->cfg->log(s->cfg->log_user, line);
}

static void hex(char *out, const uint8_t *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15u];
    }
    out[2 * n] = '\0';
}

static void server_random(void *user, uint8_t *buf, size_t len)
{
    (void)user;
    usmp_port_random(buf, len);
}

static int set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL, 0);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static int listen_on(const server_t *s)
{
    struct addrinfo hints, *list = NULL, *ai;
    char port[8];
    int fd = -1, one = 1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    snprintf(port, sizeof port, "%u", (unsigned)s->cfg->port);
    if (getaddrinfo(s->cfg->host, port, &hints, &list) != 0) {
        say(s, "cannot resolve %s", s->cfg->host);
        return -1;
    }
    for (ai = list; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0 ||
            set_nonblocking(fd) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(list);
    if (fd < 0) {
        say(s, "cannot listen on %s:%u: %s", s->cfg->host, (unsigned)s->cfg->port, strerror(errno));
    }
    return fd;
}

static uint16_t bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void describe_peer(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char addr[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, addr, sizeof addr);
        port = ntohs(a->sin6_port);
    } else if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, addr, sizeof addr);
        port = ntohs(a->sin_port);
    }
    snprintf(out, cap, "%s:%u", addr, port);
}

/* Writes what the engine has queued; stops when the socket is full. */
static int flush(session_t *c)
{
    for (;;) {
        const uint8_t *data;
        size_t len;
        ssize_t n;
        usmp_engine_output(&c->engine, &data, &len);
        if (len == 0) {
            return 0;
        }
        n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        }
        usmp_engine_output_done(&c->engine, (size_t)n);
    }
}

static int output_pending(session_t *c)
{
    const uint8_t *data;
    size_t len;
    usmp_engine_output(&c->engine, &data, &len);
    return len > 0;
}

/* Hands the echo to the engine record by record while the socket takes it. */
static void pump_echo(session_t *c)
{
    while (c->echo_pending && !output_pending(c)) {
        int n = usmp_engine_send(&c->engine, c->echo + c->echo_done, c->echo_len - c->echo_done,
                                 usmp_port_millis());
        if (n < 0) {
            c->echo_pending = 0;
            return;
        }
        c->echo_done += (size_t)n;
        if (c->echo_done == c->echo_len) {
            c->echo_pending = 0;
        }
        if (flush(c) != 0) {
            return;
        }
    }
}

static void end_session(server_t *s, session_t *c, const char *why)
{
    char sid[17];
    hex(sid, usmp_engine_session_id(&c->engine), 8);
    if (c->established) {
        say(s, "session %s closed: %s", sid, why);
    } else {
        say(s, "connection from %s failed: %s", c->peer, why);
    }
    close(c->fd);
    c->fd = -1;
    usmp_engine_wipe(&c->engine);
    s->active--;
}

static void accept_one(server_t *s, int listen_fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    size_t i;
    int one = 1;
    int fd = accept(listen_fd, (struct sockaddr *)&ss, &len);
    session_t *c = NULL;
    usmp_engine_config_t ec;
    char peer[64];

    if (fd < 0) {
        return;
    }
    describe_peer(&ss, peer, sizeof peer);
    (void)set_nonblocking(fd);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (i = 0; i < s->cfg->max_sessions && c == NULL; i++) {
        if (s->sessions[i].fd < 0) {
            c = &s->sessions[i];
        }
    }
    memset(&ec, 0, sizeof ec);
    ec.role = USMP_ROLE_SERVER;
    ec.mode = USMP_MODE_STREAM;
    ec.psk_lookup = s->cfg->psk_lookup;
    ec.psk_lookup_user = s->cfg->psk_lookup_user;
    ec.random = server_random;
    ec.max_record = s->cfg->max_record;
    ec.max_message = s->cfg->max_message;
    ec.handshake_timeout_ms = s->cfg->handshake_timeout_ms;
    ec.idle_timeout_ms = s->cfg->idle_timeout_ms;
    if (c == NULL) {
        /* At capacity: a throwaway engine says ERROR(BUSY). */
        static uint8_t rx[USMP_HANDSHAKE_MAX_FRAME + USMP_DATAGRAM_OVERHEAD], tx[64];
        usmp_engine_t busy;
        const uint8_t *data;
        size_t n;
        ec.rx_buf = rx;
        ec.rx_cap = sizeof rx;
        ec.tx_buf = tx;
        ec.tx_cap = sizeof tx;
        ec.max_record = 16;
        ec.max_message = 16;
        if (usmp_engine_init(&busy, &ec) == USMP_OK &&
            usmp_engine_close(&busy, USMP_CODE_BUSY) == USMP_OK) {
            usmp_engine_output(&busy, &data, &n);
            (void)send(fd, data, n, MSG_NOSIGNAL);
        }
        say(s, "connection from %s refused: BUSY (%zu sessions)", peer, s->active);
        close(fd);
        return;
    }
    ec.rx_buf = c->rx;
    ec.rx_cap = s->rx_cap;
    ec.tx_buf = c->tx;
    ec.tx_cap = s->tx_cap;
    ec.reassembly_buf = c->reassembly;
    ec.reassembly_cap = s->cfg->max_message;
    if (usmp_engine_init(&c->engine, &ec) != USMP_OK ||
        usmp_engine_start(&c->engine, usmp_port_millis()) != USMP_OK) {
        close(fd);
        return;
    }
    c->fd = fd;
    c->established = 0;
    c->echo_pending = 0;
    c->in_len = 0;
    c->in_off = 0;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    s->active++;
}

/* Feeds buffered input to the engine, but only while no echo is waiting:
 * the next message must not overwrite the one being echoed. */
static void feed_input(server_t *s, session_t *c)
{
    while (!c->echo_pending && c->in_off < c->in_len) {
        size_t used = 0;
        usmp_event_t ev;
        int rc = usmp_engine_feed(&c->engine, c->in + c->in_off, c->in_len - c->in_off,
                                  usmp_port_millis(), &used, &ev);
        c->in_off += used;
        if (ev.type == USMP_EVENT_ESTABLISHED) {
            char sid[17], dev[13];
            c->established = 1;
            hex(sid, usmp_engine_session_id(&c->engine), 8);
            hex(dev, usmp_engine_device_id(&c->engine), 6);
            say(s, "session %s open: device %s from %s", sid, dev, c->peer);
        } else if (ev.type == USMP_EVENT_MESSAGE && s->cfg->echo) {
            memcpy(c->echo, ev.data, ev.len);
            c->echo_len = ev.len;
            c->echo_done = 0;
            c->echo_pending = 1;
            pump_echo(c);
        }
        if (rc != USMP_OK || used == 0) {
            c->in_off = c->in_len; /* the session has ended: drop the rest */
            break;
        }
    }
}

/* Reads what one connection sent and feeds it. */
static void serve_input(server_t *s, session_t *c)
{
    ssize_t n;

    if (c->in_off < c->in_len) {
        return; /* still feeding the last read */
    }
    do {
        n = recv(c->fd, c->in, sizeof c->in, 0);
    } while (n < 0 && errno == EINTR);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        (void)usmp_engine_transport_closed(&c->engine);
        return;
    }
    if (n > 0) {
        c->in_len = (size_t)n;
        c->in_off = 0;
        feed_input(s, c);
    }
}

static const char *end_reason(const session_t *c, char *buf, size_t cap)
{
    usmp_state_t st = usmp_engine_state(&c->engine);
    if (st == USMP_STATE_CLOSED) {
        if (usmp_engine_close_code(&c->engine) != USMP_CODE_NONE && c->engine.error != USMP_ERR_PEER_CLOSED) {
            snprintf(buf, cap, "closed by the gateway (code %u)", usmp_engine_close_code(&c->engine));
        } else {
            snprintf(buf, cap, "BYE from the device (code %u)", usmp_engine_peer_code(&c->engine));
        }
        return buf;
    }
    snprintf(buf, cap, "%s", usmp_error_name(usmp_engine_error(&c->engine)));
    return buf;
}

int usmp_posix_server_run(const usmp_posix_server_config_t *cfg)
{
    server_t s;
    struct pollfd *fds;
    size_t i, rx_cap, tx_cap;
    int listen_fd;

    memset(&s, 0, sizeof s);
    s.cfg = cfg;
    if (cfg->max_sessions == 0 || cfg->psk_lookup == NULL) {
        say(&s, "server configuration needs max_sessions > 0 and a PSK lookup");
        return -1;
    }
    rx_cap = USMP_RECORD_BUFFER_BYTES(cfg->max_record);
    tx_cap = USMP_RECORD_BUFFER_BYTES(USMP_STREAM_MAX_RECORD);
    s.rx_cap = rx_cap;
    s.tx_cap = tx_cap;
    s.sessions = calloc(cfg->max_sessions, sizeof *s.sessions);
    fds = calloc(cfg->max_sessions + 1, sizeof *fds);
    if (s.sessions == NULL || fds == NULL) {
        say(&s, "out of memory for %zu sessions", cfg->max_sessions);
        free(s.sessions);
        free(fds);
        return -1;
    }
    for (i = 0; i < cfg->max_sessions; i++) {
        session_t *c = &s.sessions[i];
        c->fd = -1;
        c->rx = malloc(rx_cap);
        c->tx = malloc(tx_cap);
        c->reassembly = malloc(cfg->max_message);
        c->echo = malloc(cfg->max_message);
        if (c->rx == NULL || c->tx == NULL || c->reassembly == NULL || c->echo == NULL) {
            say(&s, "out of memory for %zu sessions", cfg->max_sessions);
            listen_fd = -1;
            goto done;
        }
    }
    listen_fd = listen_on(&s);
    if (listen_fd < 0) {
        goto done;
    }
    say(&s, "listening on %s:%u (max %zu sessions, max record %u, max message %u)", cfg->host,
        (unsigned)bound_port(listen_fd), cfg->max_sessions, (unsigned)cfg->max_record,
        (unsigned)cfg->max_message);

    while (cfg->stop == NULL || !*cfg->stop) {
        uint32_t now = usmp_port_millis(), deadline;
        int timeout = 1000;
        size_t n = 1;

        fds[0].fd = listen_fd;
        fds[0].events = POLLIN;
        for (i = 0; i < cfg->max_sessions; i++) {
            session_t *c = &s.sessions[i];
            fds[i + 1].fd = c->fd;
            fds[i + 1].events = 0;
            fds[i + 1].revents = 0;
            if (c->fd < 0) {
                continue;
            }
            n = i + 2;
            if (!c->echo_pending && c->in_off == c->in_len) {
                fds[i + 1].events |= POLLIN;
            }
            if (output_pending(c)) {
                fds[i + 1].events |= POLLOUT;
            }
            if (usmp_engine_next_deadline(&c->engine, &deadline)) {
                int32_t left = (int32_t)(deadline - now);
                if (left < timeout) {
                    timeout = left < 0 ? 0 : left;
                }
            }
        }
        if (poll(fds, (nfds_t)n, timeout) < 0 && errno != EINTR) {
            say(&s, "poll failed: %s", strerror(errno));
            break;
        }
        if (fds[0].revents & POLLIN) {
            accept_one(&s, listen_fd);
        }
        for (i = 0; i + 1 < n; i++) {
            session_t *c = &s.sessions[i];
            char why[96];
            if (c->fd < 0 || fds[i + 1].fd != c->fd) {
                continue;
            }
            if (fds[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) {
                serve_input(&s, c);
            }
            (void)usmp_engine_tick(&c->engine, usmp_port_millis());
            if (flush(c) != 0) {
                (void)usmp_engine_transport_closed(&c->engine);
            }
            pump_echo(c);
            feed_input(&s, c);
            if ((usmp_engine_state(&c->engine) == USMP_STATE_FAILED ||
                 usmp_engine_state(&c->engine) == USMP_STATE_CLOSED) && !output_pending(c)) {
                end_session(&s, c, end_reason(c, why, sizeof why));
            }
        }
    }

    /* Stop: BYE(SHUTDOWN) to every session, best effort. */
    for (i = 0; i < cfg->max_sessions; i++) {
        session_t *c = &s.sessions[i];
        if (c->fd >= 0) {
            (void)usmp_engine_close(&c->engine, USMP_CODE_SHUTDOWN);
            (void)flush(c);
            end_session(&s, c, "gateway shutting down");
        }
    }
    close(listen_fd);
    listen_fd = 0;
    say(&s, "stopped");
done:
    for (i = 0; i < cfg->max_sessions; i++) {
        free(s.sessions[i].rx);
        free(s.sessions[i].tx);
        free(s.sessions[i].reassembly);
        free(s.sessions[i].echo);
    }
    free(s.sessions);
    free(fds);
    return listen_fd < 0 ? -1 : 0;
}
