/*
 * usmp_posix_server.c - see usmp_posix_server.h.
 *
 * Each connection owns one engine and its buffers. Input is only read while
 * the previous message's echo is fully handed to the engine, so a client
 * that does not read its echoes is slowed down, not buffered for; and output
 * that makes no progress for write_timeout ends the connection, so such a
 * client cannot hold its slot (spec section 13).
 *
 * A new connection first waits in the pending queue, with no engine and no
 * slot, until it has sent its first frame (the HELLO): at most max_pending
 * of them, each for at most hello_timeout, the oldest evicted when a new one
 * arrives at the bound. Idle connections therefore cannot fill the session
 * slots that honest devices need (spec section 13).
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
    int write_blocked;     /* output has been waiting since write_blocked_ms */
    uint32_t write_blocked_ms;
    char peer[64];
} session_t;

/* The first frame: a stream HELLO, 3-byte header and 44-byte body (spec 4.1, 5.1). */
#define HELLO_BODY_BYTES 44u
#define PENDING_FRAME_MAX (USMP_STREAM_HEADER_BYTES + HELLO_BODY_BYTES)

typedef struct {
    int fd;
    uint32_t accepted_ms;
    uint64_t order;        /* accept order: the smallest is the oldest */
    uint8_t frame[PENDING_FRAME_MAX];
    size_t len;
    char peer[64];
} pending_t;

typedef struct {
    const usmp_posix_server_config_t *cfg;
    session_t *sessions;
    size_t active;
    size_t rx_cap, tx_cap;
    pending_t *pending;
    size_t max_pending, pending_count;
    uint64_t accepted;
    uint32_t hello_timeout_ms, write_timeout_ms;
    usmp_rate_limiter_t *limiter;
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

/* Writes what the engine has queued; stops when the socket is full. Any
 * byte written restarts the write deadline. */
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
        if (n > 0) {
            c->write_blocked_ms = usmp_port_millis();
        }
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

/* ------------------------------------------------------------------------
 * Rate limiter (spec section 13): a token bucket per source prefix.
 * ------------------------------------------------------------------------ */

void usmp_rate_limiter_init(usmp_rate_limiter_t *rl, uint32_t rate_per_s, uint32_t burst, unsigned prefix_v4,
                            unsigned prefix_v6)
{
    memset(rl, 0, sizeof *rl);
    rl->rate_per_s = rate_per_s;
    rl->burst = burst;
    rl->prefix_v4 = prefix_v4 < 1u ? 1u : prefix_v4 > 32u ? 32u : prefix_v4;
    rl->prefix_v6 = prefix_v6 < 1u ? 1u : prefix_v6 > 128u ? 128u : prefix_v6;
}

/* The source's prefix: its address with the bits past prefix_v4/prefix_v6
 * cleared. 0 for a family that is not counted. */
static int source_prefix(const usmp_rate_limiter_t *rl, const struct sockaddr *source, uint8_t out[16])
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    unsigned bits, i;
    int family;

    memset(out, 0, 16);
    if (source->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)(const void *)source)->sin_addr, 4);
        family = 4;
    } else if (source->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)(const void *)source)->sin6_addr.s6_addr;
        if (memcmp(a, v4_mapped, sizeof v4_mapped) == 0) {
            memcpy(out, a + 12, 4); /* a dual-stack socket's view of an IPv4 peer */
            family = 4;
        } else {
            memcpy(out, a, 16);
            family = 6;
        }
    } else {
        return 0;
    }
    bits = family == 4 ? rl->prefix_v4 : rl->prefix_v6;
    for (i = 0; i < 16; i++) {
        if (i * 8u >= bits) {
            out[i] = 0;
        } else if (i * 8u + 8u > bits) {
            out[i] &= (uint8_t)(0xFFu << (8u - (bits - i * 8u)));
        }
    }
    return family;
}

int usmp_rate_limiter_allow(usmp_rate_limiter_t *rl, const struct sockaddr *source, uint32_t now_ms)
{
    uint8_t prefix[16];
    int family = source_prefix(rl, source, prefix);
    usmp_rate_bucket_t *b = NULL, *stalest = &rl->buckets[0];
    uint64_t tokens, cap = (uint64_t)rl->burst * 1000u;
    size_t i;

    if (family == 0) {
        return 1;
    }
    for (i = 0; i < USMP_RATE_LIMIT_SOURCES && b == NULL; i++) {
        usmp_rate_bucket_t *x = &rl->buckets[i];
        if (x->family == family && memcmp(x->prefix, prefix, sizeof prefix) == 0) {
            b = x;
        } else if (stalest->family != 0 &&
                   (x->family == 0 || (uint32_t)(now_ms - x->last_ms) > (uint32_t)(now_ms - stalest->last_ms))) {
            stalest = x;
        }
    }
    if (b == NULL) {
        /* A new source starts with a full bucket, in the slot of the source seen least recently. */
        b = stalest;
        memcpy(b->prefix, prefix, sizeof prefix);
        b->family = (uint8_t)family;
        b->millitokens = (uint32_t)(cap > UINT32_MAX ? UINT32_MAX : cap);
        b->last_ms = now_ms;
    }
    /* rate_per_s tokens per second are rate_per_s millitokens per millisecond. */
    tokens = (uint64_t)b->millitokens + (uint64_t)(uint32_t)(now_ms - b->last_ms) * rl->rate_per_s;
    if (tokens > cap) {
        tokens = cap;
    }
    b->last_ms = now_ms;
    if (tokens < 1000u) {
        b->millitokens = (uint32_t)tokens;
        return 0;
    }
    b->millitokens = (uint32_t)(tokens - 1000u);
    return 1;
}

/* ------------------------------------------------------------------------
 * Sessions: a slot with an engine, from the HELLO on.
 * ------------------------------------------------------------------------ */

/* At capacity: a throwaway engine says ERROR(BUSY) (spec section 13). */
static void refuse_busy(server_t *s, int fd, const char *peer)
{
    static uint8_t rx[USMP_HANDSHAKE_MAX_FRAME + USMP_DATAGRAM_OVERHEAD], tx[64];
    usmp_engine_config_t ec;
    usmp_engine_t busy;
    const uint8_t *data;
    size_t n;

    memset(&ec, 0, sizeof ec);
    ec.role = USMP_ROLE_SERVER;
    ec.mode = USMP_MODE_STREAM;
    ec.psk_lookup = s->cfg->psk_lookup;
    ec.psk_lookup_user = s->cfg->psk_lookup_user;
    ec.random = server_random;
    ec.rx_buf = rx;
    ec.rx_cap = sizeof rx;
    ec.tx_buf = tx;
    ec.tx_cap = sizeof tx;
    ec.max_record = 16;
    ec.max_message = 16;
    if (usmp_engine_init(&busy, &ec) == USMP_OK && usmp_engine_close(&busy, USMP_CODE_BUSY) == USMP_OK) {
        usmp_engine_output(&busy, &data, &n);
        (void)send(fd, data, n, MSG_NOSIGNAL);
    }
    say(s, "connection from %s refused: BUSY (%zu sessions)", peer, s->active);
    close(fd);
}

/* Starts an engine in a free slot for a connection that has sent its first
 * frame, and feeds it that frame. Refuses with BUSY when no slot is free. */
static void session_open(server_t *s, int fd, const char *peer, const uint8_t *first, size_t first_len,
                         uint32_t accepted_ms)
{
    session_t *c = NULL;
    usmp_engine_config_t ec;
    size_t i;

    for (i = 0; i < s->cfg->max_sessions && c == NULL; i++) {
        if (s->sessions[i].fd < 0) {
            c = &s->sessions[i];
        }
    }
    if (c == NULL) {
        refuse_busy(s, fd, peer);
        return;
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
    ec.rx_buf = c->rx;
    ec.rx_cap = s->rx_cap;
    ec.tx_buf = c->tx;
    ec.tx_cap = s->tx_cap;
    ec.reassembly_buf = c->reassembly;
    ec.reassembly_cap = s->cfg->max_message;
    /* The handshake timer runs from the accept (spec section 13), not from
     * the HELLO: the time spent pending counts. */
    if (usmp_engine_init(&c->engine, &ec) != USMP_OK || usmp_engine_start(&c->engine, accepted_ms) != USMP_OK) {
        close(fd);
        return;
    }
    c->fd = fd;
    c->established = 0;
    c->echo_pending = 0;
    c->write_blocked = 0;
    memcpy(c->in, first, first_len);
    c->in_len = first_len;
    c->in_off = 0;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    s->active++;
}

/* Spec section 13: a newly established session for a device id that
 * already has one replaces the older session, in every key mode, so two
 * sessions never claim one device. */
static void replace_older_session(server_t *s, const session_t *newer)
{
    const uint8_t *device = usmp_engine_device_id(&newer->engine);
    size_t i;

    for (i = 0; i < s->cfg->max_sessions; i++) {
        session_t *o = &s->sessions[i];
        char old_sid[17], new_sid[17], dev[13];
        if (o == newer || o->fd < 0 || usmp_engine_state(&o->engine) != USMP_STATE_ESTABLISHED ||
            memcmp(usmp_engine_device_id(&o->engine), device, USMP_DEVICE_ID_BYTES) != 0) {
            continue;
        }
        hex(old_sid, usmp_engine_session_id(&o->engine), 8);
        hex(new_sid, usmp_engine_session_id(&newer->engine), 8);
        hex(dev, device, USMP_DEVICE_ID_BYTES);
        say(s, "session %s replaced by session %s (device %s)", old_sid, new_sid, dev);
        o->echo_pending = 0; /* nothing more goes to the replaced session but its BYE */
        (void)usmp_engine_close(&o->engine, USMP_CODE_REPLACED);
        (void)flush(o);
    }
}

/* ------------------------------------------------------------------------
 * Pending connections: accepted, no complete first frame yet.
 * ------------------------------------------------------------------------ */

/* Logged like an engine's failure ("failed: CONDITION (...)"), with the
 * condition of state rows 52-53 or 48. */
static void pending_drop(server_t *s, pending_t *p, const char *why)
{
    say(s, "connection from %s failed: %s", p->peer, why);
    close(p->fd);
    p->fd = -1;
    p->len = 0;
    s->pending_count--;
}

/* A free place in the queue; at max_pending the oldest pending connection is
 * evicted to make room (a newcomer is never refused for it). */
static pending_t *pending_place(server_t *s)
{
    pending_t *oldest = NULL;
    size_t i;

    for (i = 0; i < s->max_pending; i++) {
        pending_t *p = &s->pending[i];
        if (p->fd < 0) {
            return p;
        }
        if (oldest == NULL || p->order < oldest->order) {
            oldest = p;
        }
    }
    pending_drop(s, oldest, "BUSY (evicted: no HELLO yet and the pending queue is full)");
    return oldest;
}

/* Accepts one connection into the pending queue (or refuses it at the rate
 * limit). Returns 0 when there was none to accept. */
static int accept_one(server_t *s, int listen_fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int one = 1;
    int fd = accept(listen_fd, (struct sockaddr *)&ss, &len);
    pending_t *p;
    char peer[64];

    if (fd < 0) {
        return 0;
    }
    describe_peer(&ss, peer, sizeof peer);
    if (!usmp_rate_limiter_allow(s->limiter, (const struct sockaddr *)&ss, usmp_port_millis())) {
        /* Spec section 13: excess connections are closed before any X25519 work. */
        say(s, "connection from %s refused: rate limit", peer);
        close(fd);
        return 1;
    }
    (void)set_nonblocking(fd);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    p = pending_place(s);
    p->fd = fd;
    p->accepted_ms = usmp_port_millis();
    p->order = s->accepted++;
    p->len = 0;
    snprintf(p->peer, sizeof p->peer, "%s", peer);
    s->pending_count++;
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
    return p->frame[0] == USMP_TYPE_HELLO && body == HELLO_BODY_BYTES ? USMP_STREAM_HEADER_BYTES + body
                                                                  : USMP_STREAM_HEADER_BYTES;
}

/* Reads what a pending connection sent; with its first frame complete it
 * moves to a session slot (or is refused with BUSY). */
static void pending_read(server_t *s, pending_t *p)
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
        pending_drop(s, p, "TRANSPORT_CLOSED (before its HELLO)");
        return;
    }
    p->len += (size_t)n;
    if (p->len == USMP_STREAM_HEADER_BYTES) {
        need = pending_needed(p);
    }
    if (p->len == need) {
        int fd = p->fd;
        p->fd = -1;
        s->pending_count--;
        session_open(s, fd, p->peer, p->frame, p->len, p->accepted_ms);
        p->len = 0;
    }
}

/* Spec section 13: a connection without a complete HELLO within
 * hello_timeout is closed without a word. Returns the ms until the next
 * pending deadline (or 'limit' if none is sooner). */
static int pending_expire(server_t *s, uint32_t now, int limit)
{
    size_t i;
    for (i = 0; i < s->max_pending; i++) {
        pending_t *p = &s->pending[i];
        int32_t left;
        if (p->fd < 0) {
            continue;
        }
        left = (int32_t)(p->accepted_ms + s->hello_timeout_ms - now);
        if (left <= 0) {
            pending_drop(s, p, "TIMEOUT (no HELLO in time)");
        } else if (left < limit) {
            limit = left;
        }
    }
    return limit;
}

/* Spec section 13: output that makes no progress for write_timeout ends
 * the connection (no BYE: none could be written). Returns 1 if it is time. */
static int write_stalled(server_t *s, session_t *c, uint32_t now, int *timeout)
{
    int32_t left;
    if (!output_pending(c)) {
        c->write_blocked = 0;
        return 0;
    }
    if (!c->write_blocked) {
        c->write_blocked = 1;
        c->write_blocked_ms = now;
    }
    left = (int32_t)(c->write_blocked_ms + s->write_timeout_ms - now);
    if (left <= 0) {
        return 1;
    }
    if (left < *timeout) {
        *timeout = left;
    }
    return 0;
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
            if (s->cfg->shared_psk) {
                /* spec/security.md: with one key for every device the id is only a claim. */
                say(s, "session %s: device id %s is not authenticated (one key for every device)", sid, dev);
            }
            replace_older_session(s, c);
        } else if (ev.type == USMP_EVENT_MESSAGE && s->cfg->echo) {
            memcpy(c->echo, ev.data, ev.len);
            c->echo_len = ev.len;
            c->echo_done = 0;
            c->echo_pending = 1;
            pump_echo(c);
        }
        if (rc != USMP_OK) {
            c->in_off = c->in_len; /* the session has ended: drop the rest */
            break;
        }
        if (used == 0) {
            /* The engine takes no more input until its output is sent (one
             * PONG per PING, spec 6.3): send it now and feed the rest, or
             * wait for the socket to take it (POLLOUT brings us back). */
            if (flush(c) != 0 || output_pending(c)) {
                break;
            }
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

/* One pass over a session after poll(): input, timers, output, the end. */
static void serve_session(server_t *s, session_t *c, short revents)
{
    char why[96];
    int timeout = 0;

    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        serve_input(s, c);
    }
    /* The timers run whatever the back-pressure (spec 11, 13). */
    (void)usmp_engine_tick(&c->engine, usmp_port_millis());
    if (flush(c) != 0) {
        (void)usmp_engine_transport_closed(&c->engine);
    }
    pump_echo(c);
    feed_input(s, c);
    if (write_stalled(s, c, usmp_port_millis(), &timeout)) {
        snprintf(why, sizeof why, "no write progress for %lu ms: dropped",
                 (unsigned long)s->write_timeout_ms);
        end_session(s, c, why);
    } else if ((usmp_engine_state(&c->engine) == USMP_STATE_FAILED ||
                usmp_engine_state(&c->engine) == USMP_STATE_CLOSED) && !output_pending(c)) {
        end_session(s, c, end_reason(c, why, sizeof why));
    }
}

/* The poll() set: the listener, the sessions, the pending connections. Returns
 * the poll timeout (ms) that the nearest deadline allows. */
static int build_poll_set(server_t *s, struct pollfd *fds, int listen_fd)
{
    uint32_t now = usmp_port_millis(), deadline;
    int timeout = 1000;
    size_t i, slots = s->cfg->max_sessions;

    fds[0].fd = listen_fd;
    fds[0].events = POLLIN;
    fds[0].revents = 0;
    for (i = 0; i < slots; i++) {
        session_t *c = &s->sessions[i];
        fds[i + 1].fd = c->fd;
        fds[i + 1].events = 0;
        fds[i + 1].revents = 0;
        if (c->fd < 0) {
            continue;
        }
        if (!c->echo_pending && c->in_off == c->in_len) {
            fds[i + 1].events |= POLLIN;
        }
        if (output_pending(c)) {
            fds[i + 1].events |= POLLOUT;
        }
        (void)write_stalled(s, c, now, &timeout);
        if (usmp_engine_next_deadline(&c->engine, &deadline)) {
            int32_t left = (int32_t)(deadline - now);
            if (left < timeout) {
                timeout = left < 0 ? 0 : left;
            }
        }
    }
    /* Expire first, so that no closed descriptor is polled. */
    timeout = pending_expire(s, now, timeout);
    for (i = 0; i < s->max_pending; i++) {
        fds[slots + 1 + i].fd = s->pending[i].fd;
        fds[slots + 1 + i].events = POLLIN;
        fds[slots + 1 + i].revents = 0;
    }
    return timeout;
}

int usmp_posix_server_run(const usmp_posix_server_config_t *cfg)
{
    server_t s;
    struct pollfd *fds;
    size_t i, rx_cap, tx_cap, slots;
    int listen_fd;

    memset(&s, 0, sizeof s);
    s.cfg = cfg;
    if (cfg->max_sessions == 0 || cfg->psk_lookup == NULL) {
        say(&s, "server configuration needs max_sessions > 0 and a PSK lookup");
        return -1;
    }
    slots = cfg->max_sessions;
    s.max_pending = cfg->max_pending != 0 ? cfg->max_pending : 256;
    s.hello_timeout_ms = cfg->hello_timeout_ms != 0 ? cfg->hello_timeout_ms : 2000;
    /* The handshake timer runs from the accept too (spec 13): a pending
     * connection also ends when it expires. */
    if (s.hello_timeout_ms > (cfg->handshake_timeout_ms != 0 ? cfg->handshake_timeout_ms : 10000)) {
        s.hello_timeout_ms = cfg->handshake_timeout_ms != 0 ? cfg->handshake_timeout_ms : 10000;
    }
    s.write_timeout_ms = cfg->write_timeout_ms != 0 ? cfg->write_timeout_ms : 10000;
    rx_cap = USMP_RECORD_BUFFER_BYTES(cfg->max_record);
    tx_cap = USMP_RECORD_BUFFER_BYTES(USMP_STREAM_MAX_RECORD);
    s.rx_cap = rx_cap;
    s.tx_cap = tx_cap;
    s.sessions = calloc(slots, sizeof *s.sessions);
    s.pending = calloc(s.max_pending, sizeof *s.pending);
    s.limiter = malloc(sizeof *s.limiter);
    fds = calloc(slots + s.max_pending + 1, sizeof *fds);
    if (s.sessions == NULL || s.pending == NULL || s.limiter == NULL || fds == NULL) {
        say(&s, "out of memory for %zu sessions", cfg->max_sessions);
        free(s.sessions);
        free(s.pending);
        free(s.limiter);
        free(fds);
        return -1;
    }
    usmp_rate_limiter_init(s.limiter, cfg->handshake_rate != 0 ? cfg->handshake_rate : 10,
                           cfg->handshake_burst != 0 ? cfg->handshake_burst : 20,
                           cfg->rate_prefix_v4 != 0 ? cfg->rate_prefix_v4 : 32,
                           cfg->rate_prefix_v6 != 0 ? cfg->rate_prefix_v6 : 64);
    for (i = 0; i < s.max_pending; i++) {
        s.pending[i].fd = -1;
    }
    for (i = 0; i < slots; i++) {
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
        int timeout = build_poll_set(&s, fds, listen_fd);

        if (poll(fds, (nfds_t)(slots + s.max_pending + 1), timeout) < 0 && errno != EINTR) {
            say(&s, "poll failed: %s", strerror(errno));
            break;
        }
        /* Pending connections first: a HELLO that has arrived moves to a slot
         * before a new connection could evict it. */
        for (i = 0; i < s.max_pending; i++) {
            pending_t *p = &s.pending[i];
            if (p->fd >= 0 && fds[slots + 1 + i].fd == p->fd &&
                (fds[slots + 1 + i].revents & (POLLIN | POLLHUP | POLLERR))) {
                pending_read(&s, p);
            }
        }
        for (i = 0; i < slots; i++) {
            session_t *c = &s.sessions[i];
            if (c->fd >= 0) {
                serve_session(&s, c, fds[i + 1].fd == c->fd ? fds[i + 1].revents : 0);
            }
        }
        if (fds[0].revents & POLLIN) {
            /* A burst of connections is taken in one pass, so the listen
             * backlog does not overflow while idle connections arrive. */
            for (i = 0; i < 64 && accept_one(&s, listen_fd); i++) {
            }
        }
    }

    /* Stop: BYE(SHUTDOWN) to every session, best effort. */
    for (i = 0; i < slots; i++) {
        session_t *c = &s.sessions[i];
        if (c->fd >= 0) {
            (void)usmp_engine_close(&c->engine, USMP_CODE_SHUTDOWN);
            (void)flush(c);
            end_session(&s, c, "gateway shutting down");
        }
    }
    for (i = 0; i < s.max_pending; i++) {
        if (s.pending[i].fd >= 0) {
            close(s.pending[i].fd);
        }
    }
    close(listen_fd);
    listen_fd = 0;
    say(&s, "stopped");
done:
    for (i = 0; i < slots; i++) {
        free(s.sessions[i].rx);
        free(s.sessions[i].tx);
        free(s.sessions[i].reassembly);
        free(s.sessions[i].echo);
    }
    free(s.sessions);
    free(s.pending);
    free(s.limiter);
    free(fds);
    return listen_fd < 0 ? -1 : 0;
}
