/*
 * usmp_gateway_tcp.c - the C gateway's TCP connections (see
 * usmp_gateway_internal.h).
 *
 * A new connection first waits in the pending queue, with no engine and
 * no slot, until it has sent its first frame (the HELLO): at most
 * max_pending of them, each for at most hello_timeout, the oldest evicted
 * when a new one arrives at the bound. Idle connections therefore cannot
 * fill the session slots that honest devices need (spec section 13).
 *
 * The gateway frames the stream itself (spec 5.1), since the engines
 * share one receive buffer: see feed_frames. A partial frame waits in the
 * session's held bytes (at most one frame, whose header the engine has
 * accepted), which an idle session does not have.
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
int usmp_gw_write_stalled(usmp_gateway_t *gw, usmp_gateway_session_t *c, uint32_t now,
                          int *has_deadline, uint32_t *deadline)
{
    *has_deadline = 0;
    if (usmp_gw_is_datagram(gw) || !usmp_gw_output_pending(c)) {
        c->write_blocked = 0;
        return 0;
    }
    if (!c->write_blocked) {
        c->write_blocked = 1;
        c->write_blocked_ms = now;
    }
    *deadline = c->write_blocked_ms + gw->write_timeout_ms;
    *has_deadline = 1;
    return (int32_t)(*deadline - now) <= 0;
}

/* ------------------------------------------------------------------------
 * Framing (spec 5.1): the engine sees each header first, and bodies whole.
 * ------------------------------------------------------------------------ */

static size_t frame_length(const uint8_t *header)
{
    return USMP_STREAM_HEADER_BYTES + (((size_t)header[1] << 8) | header[2]);
}

/* 1 when the held bytes give the engine something to take: a header it
 * has not seen, or the rest of a frame whose header it has. */
static int held_work(const usmp_gateway_session_t *c)
{
    size_t have = c->held.len - c->held.off;
    if (have < USMP_STREAM_HEADER_BYTES) {
        return 0;
    }
    return !c->header_fed || have >= frame_length(c->held.data + c->held.off);
}

/* 1 while the session may take more input: no reply or output waiting and
 * nothing held that the engine could take now. */
static int can_read(usmp_gateway_session_t *c)
{
    return c->in_use && !c->reply_pending && !usmp_gw_output_pending(c) && !held_work(c);
}

/* One call of the engine on n bytes at d that must all be taken; 0, or -1
 * when the session has failed (or the engine did not take them all, which
 * the rules of 5.1 rule out: ended rather than trusted). */
static int feed_exactly(usmp_gateway_session_t *c, const uint8_t *d, size_t n)
{
    usmp_event_t ev;
    size_t used = 0;
    int rc = usmp_engine_feed(&c->engine, d, n, usmp_port_millis(), &used, &ev);
    usmp_gw_handle_event(c, &ev);
    if (usmp_gw_flush(c) != 0 || (rc == USMP_OK && used != n)) {
        usmp_gw_transport_lost(c);
        return -1;
    }
    /* Ended, here or from on_message (a reply whose sending failed drops
     * the held bytes, which d may point into): nothing more is fed. */
    return rc == USMP_OK && usmp_engine_state(&c->engine) != USMP_STATE_FAILED &&
                   usmp_engine_state(&c->engine) != USMP_STATE_CLOSED
               ? 0
               : -1;
}

/* Feeds the frames at d while no reply or output waits. A whole frame
 * goes in one call; of a frame not all here yet, the header goes alone
 * (spec 5.1: checked before any of the body is buffered), and the rest
 * once it has all come. Between the two, other engines use the shared
 * receive buffer: the header the engine holds (its first 3 bytes, as any
 * stream framer holds a partial frame) is put back before the rest is
 * fed. Returns the bytes used: a header fed alone is not used (it stays
 * at the front of the held bytes); all of them once the session has
 * failed (the rest is dropped). */
static size_t feed_frames(usmp_gateway_session_t *c, const uint8_t *d, size_t n)
{
    usmp_gateway_t *gw = c->gw;
    size_t off = 0;
    while (n - off >= USMP_STREAM_HEADER_BYTES && !c->reply_pending && !usmp_gw_output_pending(c)) {
        const uint8_t *frame = d + off;
        size_t len = frame_length(frame), have = n - off;
        if (c->header_fed) {
            if (have < len) {
                break;
            }
            c->header_fed = 0;
            memcpy(gw->rx, frame, USMP_STREAM_HEADER_BYTES);
            if (feed_exactly(c, frame + USMP_STREAM_HEADER_BYTES, len - USMP_STREAM_HEADER_BYTES) !=
                0) {
                return n;
            }
            off += len;
        } else if (have >= len && len <= gw->rx_cap) {
            if (feed_exactly(c, frame, len) != 0) {
                return n;
            }
            off += len;
        } else {
            /* The header alone: the engine rejects it now, or keeps it and
             * waits for the body. A frame longer than the receive buffer
             * must be rejected from its length. */
            if (feed_exactly(c, frame, USMP_STREAM_HEADER_BYTES) != 0) {
                return n;
            }
            if (len > gw->rx_cap) {
                usmp_gw_transport_lost(c);
                return n;
            }
            c->header_fed = 1;
            break;
        }
    }
    return off;
}

void usmp_gw_tcp_feed_input(usmp_gateway_session_t *c)
{
    if (c->held.len > c->held.off) {
        usmp_gw_bytes_consume(
            &c->held, feed_frames(c, c->held.data + c->held.off, c->held.len - c->held.off));
    }
}

void usmp_gw_tcp_update_interest(usmp_gateway_session_t *c)
{
    unsigned want =
        (can_read(c) ? USMP_POLLER_IN : 0u) | (c->out.len > c->out.off ? USMP_POLLER_OUT : 0u);
    if (c->fd >= 0 && want != c->interest &&
        usmp_poller_modify(c->gw->poller, c->fd, want, c) == 0) {
        c->interest = want;
    }
}

/* Reads what one connection sent and feeds its whole frames; a partial
 * frame is held. While a frame is partly held, only the rest of that frame
 * is read, so the held bytes never exceed one frame. */
static void tcp_read(usmp_gateway_session_t *c)
{
    usmp_gateway_t *gw = c->gw;
    size_t want = gw->read_cap, have = c->held.len - c->held.off;
    ssize_t n;

    if (have > 0) {
        want = have < USMP_STREAM_HEADER_BYTES ? USMP_STREAM_HEADER_BYTES - have
                                               : frame_length(c->held.data + c->held.off) - have;
    }
    do {
        n = recv(c->fd, gw->read_buf, want, 0);
    } while (n < 0 && errno == EINTR);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        usmp_gw_transport_lost(c);
        return;
    }
    if (n < 0) {
        return;
    }
    if (have > 0) {
        if (usmp_gw_bytes_append(&c->held, gw->read_buf, (size_t)n) != 0) {
            usmp_gw_transport_lost(c);
            return;
        }
        usmp_gw_tcp_feed_input(c);
    } else {
        size_t used = feed_frames(c, gw->read_buf, (size_t)n);
        if (usmp_gw_bytes_append(&c->held, gw->read_buf + used, (size_t)n - used) != 0) {
            usmp_gw_transport_lost(c);
        }
    }
}

void usmp_gw_tcp_session_ready(usmp_gateway_session_t *c, unsigned events)
{
    if (!c->in_use || c->fd < 0) {
        return; /* an event for a session that ended earlier in this pass */
    }
    if ((events & USMP_POLLER_OUT) && usmp_gw_flush(c) != 0) {
        usmp_gw_transport_lost(c);
    }
    if (events & (USMP_POLLER_IN | USMP_POLLER_ERROR)) {
        if (can_read(c)) {
            tcp_read(c);
        } else if (events & USMP_POLLER_ERROR) {
            /* A hang-up or an error while output waits: nothing more can
             * be delivered, and reading is not allowed now. */
            usmp_gw_transport_lost(c);
        }
    }
    usmp_gw_mark_dirty(c);
}

/* ------------------------------------------------------------------------
 * Pending connections (accepted, no complete first frame yet), in accept
 * order: gw->oldest .. gw->newest.
 * ------------------------------------------------------------------------ */

static void pending_unlink(usmp_gateway_t *gw, pending_t *p)
{
    if (p->older != NULL) {
        p->older->newer = p->newer;
    } else {
        gw->oldest = p->newer;
    }
    if (p->newer != NULL) {
        p->newer->older = p->older;
    } else {
        gw->newest = p->older;
    }
    p->older = p->newer = NULL;
    p->fd = -1;
    p->len = 0;
    gw->pending_count--;
}

/* The free entries are the stack free_pending[0 .. max_pending -
 * pending_count). */
static void pending_release(usmp_gateway_t *gw, pending_t *p)
{
    pending_unlink(gw, p);
    gw->free_pending[gw->max_pending - gw->pending_count - 1] = p;
}

/* Logged like an engine's failure ("failed: CONDITION (...)"), with the
 * condition of state rows 52-53 or 48. */
static void pending_drop(usmp_gateway_t *gw, pending_t *p, const char *why)
{
    usmp_gw_say(gw, "connection from %s failed: %s", p->peer, why);
    (void)usmp_poller_remove(gw->poller, p->fd);
    close(p->fd);
    pending_release(gw, p);
}

/* A connection that has sent its first frame gets a slot and is fed that
 * frame; BUSY when no slot is free. */
static void tcp_session_open(usmp_gateway_t *gw, int fd, const char *peer, const uint8_t *first,
                             size_t first_len, uint32_t accepted_ms)
{
    usmp_gateway_session_t *c = usmp_gw_free_slot(gw);
    if (c == NULL) {
        (void)usmp_poller_remove(gw->poller, fd);
        usmp_gw_refuse_busy(gw, fd, peer, NULL, 0);
        return;
    }
    if (usmp_gw_session_start(gw, c, peer, accepted_ms) != 0) {
        (void)usmp_poller_remove(gw->poller, fd);
        close(fd);
        return;
    }
    c->fd = fd;
    c->interest = USMP_POLLER_IN;
    if (usmp_poller_modify(gw->poller, fd, c->interest, c) != 0) {
        usmp_gw_transport_lost(c);
        return;
    }
    /* The HELLO, or a header that is not a HELLO's (see pending_needed):
     * the engine rejects that from the header alone (spec 5.1). */
    if (feed_frames(c, first, first_len) != first_len &&
        usmp_gw_bytes_append(&c->held, first, first_len) != 0) {
        usmp_gw_transport_lost(c);
    }
}

/* A free entry for a new connection; at max_pending the oldest pending
 * connection is evicted to make room (a newcomer is never refused for it). */
static pending_t *pending_place(usmp_gateway_t *gw)
{
    pending_t *p;
    if (gw->pending_count == gw->max_pending) {
        pending_drop(gw, gw->oldest, "BUSY (evicted: no HELLO yet and the pending queue is full)");
    }
    p = gw->free_pending[gw->max_pending - gw->pending_count - 1];
    p->older = gw->newest;
    p->newer = NULL;
    if (gw->newest != NULL) {
        gw->newest->newer = p;
    } else {
        gw->oldest = p;
    }
    gw->newest = p;
    gw->pending_count++;
    return p;
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
    if (usmp_poller_add(gw->poller, fd, USMP_POLLER_IN, p) != 0) {
        usmp_gw_say(gw, "connection from %s refused: %s", peer, strerror(errno));
        close(fd);
        pending_release(gw, p);
        return 1;
    }
    p->fd = fd;
    p->accepted_ms = usmp_port_millis();
    p->len = 0;
    snprintf(p->peer, sizeof p->peer, "%s", peer);
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
void usmp_gw_tcp_pending_ready(usmp_gateway_t *gw, pending_t *p)
{
    size_t need;
    ssize_t n;

    if (p->fd < 0) {
        return; /* an event for a connection dropped earlier in this pass */
    }
    need = pending_needed(p);
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
        uint8_t first[PENDING_FRAME_MAX];
        char peer[64];
        int fd = p->fd;
        uint32_t accepted_ms = p->accepted_ms;
        memcpy(first, p->frame, need);
        memcpy(peer, p->peer, sizeof peer);
        pending_release(gw, p);
        tcp_session_open(gw, fd, peer, first, need, accepted_ms);
    }
}

int usmp_gw_pending_expire(usmp_gateway_t *gw, uint32_t now, int timeout)
{
    /* Spec section 13: a connection without a complete HELLO within
     * hello_timeout is closed without a word. Every pending connection has
     * the same timeout, so the oldest is the first due. */
    while (gw->oldest != NULL) {
        int32_t left = (int32_t)(gw->oldest->accepted_ms + gw->hello_timeout_ms - now);
        if (left > 0) {
            return left < timeout ? left : timeout;
        }
        pending_drop(gw, gw->oldest, "TIMEOUT (no HELLO in time)");
    }
    return timeout;
}

void usmp_gw_pending_close_all(usmp_gateway_t *gw)
{
    while (gw->oldest != NULL) {
        pending_t *p = gw->oldest;
        (void)usmp_poller_remove(gw->poller, p->fd);
        close(p->fd);
        pending_release(gw, p);
    }
}

/* New connections on the listener. A burst of them is taken in one pass,
 * so the listen backlog does not overflow while idle connections arrive. */
void usmp_gw_tcp_accept_ready(usmp_gateway_t *gw)
{
    size_t i;
    for (i = 0; i < 64 && accept_one(gw); i++) {
    }
}
