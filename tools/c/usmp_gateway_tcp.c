/*
 * usmp_gateway_tcp.c - the C gateway's TCP connections (see
 * usmp_gateway_internal.h).
 *
 * A new connection first waits in the pending queue, with no engine and
 * no slot, until it has sent its first frame (the HELLO): at most
 * max_pending of them, each for at most hello_timeout, the oldest evicted
 * when a new one arrives at the bound. Idle connections therefore cannot
 * fill the session slots that honest devices need (spec section 13).
 */
#define _POSIX_C_SOURCE 200809L

#include "usmp_gateway_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "usmp_port.h"

/* Spec section 13: TCP or serial output that makes no progress for
 * write_timeout ends the session (no BYE: none could be written). Returns
 * 1 if it is time. */
int usmp_gw_write_stalled(usmp_gateway_t *gw, usmp_gateway_session_t *c, uint32_t now, int *timeout)
{
    int32_t left;
    if (usmp_gw_is_datagram(gw) || !usmp_gw_output_pending(c)) {
        c->write_blocked = 0;
        return 0;
    }
    if (!c->write_blocked) {
        c->write_blocked = 1;
        c->write_blocked_ms = now;
    }
    left = (int32_t)(c->write_blocked_ms + gw->write_timeout_ms - now);
    if (left <= 0) {
        return 1;
    }
    if (left < *timeout) {
        *timeout = left;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * TCP: pending connections (accepted, no complete first frame yet), then
 * one session per connection.
 * ------------------------------------------------------------------------ */

/* A connection that has sent its first frame gets a slot and is fed that
 * frame; BUSY when no slot is free. */
static void tcp_session_open(usmp_gateway_t *gw, int fd, const char *peer, const uint8_t *first,
                             size_t first_len, uint32_t accepted_ms)
{
    usmp_gateway_session_t *c = usmp_gw_free_slot(gw);
    if (c == NULL) {
        usmp_gw_refuse_busy(gw, fd, peer, NULL, 0);
        return;
    }
    if (usmp_gw_session_start(gw, c, peer, accepted_ms) != 0) {
        close(fd);
        return;
    }
    c->fd = fd;
    memcpy(c->in, first, first_len);
    c->in_len = first_len;
}

/* Logged like an engine's failure ("failed: CONDITION (...)"), with the
 * condition of state rows 52-53 or 48. */
static void pending_drop(usmp_gateway_t *gw, pending_t *p, const char *why)
{
    usmp_gw_say(gw, "connection from %s failed: %s", p->peer, why);
    close(p->fd);
    p->fd = -1;
    p->len = 0;
    gw->pending_count--;
}

/* A free place in the queue; at max_pending the oldest pending connection is
 * evicted to make room (a newcomer is never refused for it). */
static pending_t *pending_place(usmp_gateway_t *gw)
{
    pending_t *oldest = NULL;
    size_t i;

    for (i = 0; i < gw->max_pending; i++) {
        pending_t *p = &gw->pending[i];
        if (p->fd < 0) {
            return p;
        }
        if (oldest == NULL || p->order < oldest->order) {
            oldest = p;
        }
    }
    pending_drop(gw, oldest, "BUSY (evicted: no HELLO yet and the pending queue is full)");
    return oldest;
}

/* Accepts one connection into the pending queue (or refuses it at the rate
 * limit). Returns 0 when there was none to accept. */
static int accept_one(usmp_gateway_t *gw)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int one = 1;
    int fd = accept(gw->fd, (struct sockaddr *)&ss, &len);
    pending_t *p;
    char peer[64];

    if (fd < 0) {
        return 0;
    }
    usmp_gw_describe_peer(&ss, peer, sizeof peer);
    if (!usmp_rate_limiter_allow(&gw->limiter, (const struct sockaddr *)&ss, usmp_port_millis())) {
        /* Spec section 13: excess connections are closed before any X25519 work. */
        usmp_gw_say(gw, "connection from %s refused: rate limit", peer);
        close(fd);
        return 1;
    }
    (void)usmp_gw_set_nonblocking(fd);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    p = pending_place(gw);
    p->fd = fd;
    p->accepted_ms = usmp_port_millis();
    p->order = gw->accepted++;
    p->len = 0;
    snprintf(p->peer, sizeof p->peer, "%s", peer);
    gw->pending_count++;
    return 1;
}

/* How many bytes the first frame needs: its header (3 bytes), then, if the
 * header is a HELLO's, its body. Any other header needs nothing more: the
 * engine rejects it from the header alone (spec 5.1), at once. */
static size_t pending_needed(const pending_t *p)
{
    size_t body;
    if (p->len < USMP_STREAM_HEADER_BYTES) {
        return USMP_STREAM_HEADER_BYTES;
    }
    body = ((size_t)p->frame[1] << 8) | p->frame[2];
    return p->frame[0] == USMP_TYPE_HELLO && body == HELLO_BODY_BYTES
               ? USMP_STREAM_HEADER_BYTES + body
               : USMP_STREAM_HEADER_BYTES;
}

/* Reads what a pending connection sent; with its first frame complete it
 * moves to a session slot (or is refused with BUSY). */
static void pending_read(usmp_gateway_t *gw, pending_t *p)
{
    size_t need = pending_needed(p);
    ssize_t n;

    do {
        n = recv(p->fd, p->frame + p->len, need - p->len, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return;
    }
    if (n <= 0) {
        pending_drop(gw, p, "TRANSPORT_CLOSED (before its HELLO)");
        return;
    }
    p->len += (size_t)n;
    if (p->len == USMP_STREAM_HEADER_BYTES) {
        need = pending_needed(p);
    }
    if (p->len == need) {
        int fd = p->fd;
        p->fd = -1;
        gw->pending_count--;
        tcp_session_open(gw, fd, p->peer, p->frame, p->len, p->accepted_ms);
        p->len = 0;
    }
}

/* Spec section 13: a connection without a complete HELLO within
 * hello_timeout is closed without a word. Returns the ms until the next
 * pending deadline (or 'limit' if none is sooner). */
static int pending_expire(usmp_gateway_t *gw, uint32_t now, int limit)
{
    size_t i;
    for (i = 0; i < gw->max_pending; i++) {
        pending_t *p = &gw->pending[i];
        int32_t left;
        if (p->fd < 0) {
            continue;
        }
        left = (int32_t)(p->accepted_ms + gw->hello_timeout_ms - now);
        if (left <= 0) {
            pending_drop(gw, p, "TIMEOUT (no HELLO in time)");
        } else if (left < limit) {
            limit = left;
        }
    }
    return limit;
}

/* Feeds buffered input to the engine, but only while no reply is waiting:
 * the next message must not be taken before the last one is answered. */
void usmp_gw_tcp_feed_input(usmp_gateway_session_t *c)
{
    while (!c->reply_pending && c->in_off < c->in_len) {
        size_t used = 0;
        usmp_event_t ev;
        int rc = usmp_engine_feed(&c->engine, c->in + c->in_off, c->in_len - c->in_off,
                                  usmp_port_millis(), &used, &ev);
        c->in_off += used;
        usmp_gw_handle_event(c, &ev);
        if (rc != USMP_OK) {
            c->in_off = c->in_len; /* the session has ended: drop the rest */
            break;
        }
        if (used == 0) {
            /* The engine takes no more input until its output is sent (one
             * PONG per PING, spec 6.3): send it now and feed the rest, or
             * wait for the socket to take it (POLLOUT brings us back). */
            if (usmp_gw_flush(c) != 0 || usmp_gw_output_pending(c)) {
                break;
            }
        }
    }
}

/* Reads what one connection sent and feeds it. */
static void tcp_read(usmp_gateway_session_t *c)
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
        usmp_gw_tcp_feed_input(c);
    }
}

/* The pending connections' part of the poll set, after the listener and
 * the sessions. Expires first, so that no closed descriptor is polled.
 * Returns the poll timeout that the nearest pending deadline allows. */
int usmp_gw_pending_poll_set(usmp_gateway_t *gw, uint32_t now, int timeout)
{
    size_t i;
    timeout = pending_expire(gw, now, timeout);
    for (i = 0; i < gw->max_pending; i++) {
        gw->fds[gw->slots + 1 + i].fd = gw->pending[i].fd;
        gw->fds[gw->slots + 1 + i].events = POLLIN;
        gw->fds[gw->slots + 1 + i].revents = 0;
    }
    return timeout;
}

/* What poll() reported on the connections. Pending connections first: a
 * HELLO that has arrived moves to a slot before a new connection could
 * evict it. */
void usmp_gw_tcp_read_ready(usmp_gateway_t *gw)
{
    size_t i;
    for (i = 0; i < gw->max_pending; i++) {
        pending_t *p = &gw->pending[i];
        struct pollfd *f = &gw->fds[gw->slots + 1 + i];
        if (p->fd >= 0 && f->fd == p->fd && (f->revents & (POLLIN | POLLHUP | POLLERR))) {
            pending_read(gw, p);
        }
    }
    for (i = 0; i < gw->slots; i++) {
        usmp_gateway_session_t *c = &gw->sessions[i];
        if (c->in_use && gw->fds[i + 1].fd == c->fd &&
            (gw->fds[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) {
            tcp_read(c);
        }
    }
}

/* New connections on the listener. A burst of them is taken in one pass,
 * so the listen backlog does not overflow while idle connections arrive. */
void usmp_gw_tcp_accept_ready(usmp_gateway_t *gw)
{
    size_t i;
    if (gw->fds[0].revents & POLLIN) {
        for (i = 0; i < 64 && accept_one(gw); i++) {
        }
    }
}
