/*
 * usmp_gateway.c - see usmp_gateway.h; the shared core of the gateway
 * (usmp_gateway_internal.h lists its parts).
 *
 * Each session slot owns one engine and its buffers. Input is only read
 * while the previous reply is fully handed to the engine, so a device that
 * does not read its replies is slowed down, not buffered for; and TCP or
 * serial output that makes no progress for write_timeout ends the session,
 * so such a device cannot hold its slot (spec section 13).
 *
 * The event loop waits on usmp_poller.h (epoll on Linux, poll()
 * elsewhere) and a heap of deadlines; usmp_gateway_internal.h says why no
 * step of it visits every session, and how the sessions share buffers.
 */
#define _DEFAULT_SOURCE /* madvise, MAP_ANONYMOUS */
#define _POSIX_C_SOURCE 200809L

#include "usmp_gateway_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "usmp_port.h"

void usmp_gw_say(const usmp_gateway_t *gw, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    if (gw->cfg.log == NULL) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    gw->cfg.log(gw->cfg.log_user, line);
}

void usmp_gw_hex(char *out, const uint8_t *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15u];
    }
    out[2 * n] = '\0';
}

int usmp_gw_is_datagram(const usmp_gateway_t *gw)
{
    return gw->cfg.transport != USMP_GATEWAY_TCP;
}

static void gateway_random(void *user, uint8_t *buf, size_t len)
{
    (void)user;
    usmp_port_random(buf, len);
}

int usmp_gw_set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL, 0);
    return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* Binds the TCP listener or the UDP socket. */
static int bind_socket(usmp_gateway_t *gw)
{
    struct addrinfo hints, *list = NULL, *ai;
    char port[8];
    int fd = -1, one = 1, tcp = gw->cfg.transport == USMP_GATEWAY_TCP;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = tcp ? SOCK_STREAM : SOCK_DGRAM;
    hints.ai_flags = AI_PASSIVE;
    snprintf(port, sizeof port, "%u", (unsigned)gw->cfg.port);
    if (getaddrinfo(gw->cfg.host, port, &hints, &list) != 0) {
        usmp_gw_say(gw, "cannot resolve %s", gw->cfg.host);
        return -1;
    }
    for (ai = list; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || (tcp && listen(fd, 64) != 0) ||
            usmp_gw_set_nonblocking(fd) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(list);
    if (fd < 0) {
        usmp_gw_say(gw, "cannot %s on %s:%u: %s", tcp ? "listen" : "bind", gw->cfg.host,
                    (unsigned)gw->cfg.port, strerror(errno));
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

void usmp_gw_describe_peer(const struct sockaddr_storage *ss, char *out, size_t cap)
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

/* ------------------------------------------------------------------------
 * Rate limiter (spec section 13): a token bucket per source prefix.
 * ------------------------------------------------------------------------ */

void usmp_rate_limiter_init(usmp_rate_limiter_t *rl, uint32_t rate_per_s, uint32_t burst,
                            unsigned prefix_v4, unsigned prefix_v6)
{
    memset(rl, 0, sizeof *rl);
    rl->rate_per_s = rate_per_s;
    rl->burst = burst;
    rl->prefix_v4 = prefix_v4 < 1u ? 1u : prefix_v4 > 32u ? 32u : prefix_v4;
    rl->prefix_v6 = prefix_v6 < 1u ? 1u : prefix_v6 > 128u ? 128u : prefix_v6;
}

/* The source's prefix: its address with the bits past prefix_v4/prefix_v6
 * cleared. 0 for a family that is not counted. */
static int source_prefix(const usmp_rate_limiter_t *rl, const struct sockaddr *source,
                         uint8_t out[16])
{
    static const uint8_t v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
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
                   (x->family == 0 ||
                    (uint32_t)(now_ms - x->last_ms) > (uint32_t)(now_ms - stalest->last_ms))) {
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
 * Byte buffers of a session: allocated at their size, freed when empty.
 * ------------------------------------------------------------------------ */

int usmp_gw_bytes_append(usmp_gw_bytes_t *b, const uint8_t *data, size_t n)
{
    uint8_t *grown;
    if (n == 0) {
        return 0;
    }
    if (b->off > 0) {
        /* Move the unused part to the front first, so the buffer never
         * holds more than what is still to be used. */
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    grown = realloc(b->data, b->len + n);
    if (grown == NULL) {
        return -1;
    }
    memcpy(grown + b->len, data, n);
    b->data = grown;
    b->len += n;
    return 0;
}

void usmp_gw_bytes_consume(usmp_gw_bytes_t *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len) {
        usmp_gw_bytes_free(b);
    }
}

void usmp_gw_bytes_free(usmp_gw_bytes_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->off = 0;
}

/* ------------------------------------------------------------------------
 * Output: what the engine has queued goes to the session's transport.
 * ------------------------------------------------------------------------ */

int usmp_gw_output_pending(usmp_gateway_session_t *c)
{
    const uint8_t *data;
    size_t len;
    if (c->out.len > c->out.off) {
        return 1;
    }
    usmp_engine_output(&c->engine, &data, &len);
    return len > 0;
}

/* TCP: sends what c->out holds; 0 (all sent or the socket is full), or -1
 * when the connection failed. Any byte written restarts the write deadline. */
static int send_held_output(usmp_gateway_session_t *c)
{
    while (c->out.len > c->out.off) {
        ssize_t n = send(c->fd, c->out.data + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        }
        usmp_gw_bytes_consume(&c->out, (size_t)n);
        c->write_blocked_ms = usmp_port_millis();
    }
    return 0;
}

/* Sends what the engine has queued. Datagrams go out whole. TCP sends
 * what c->out holds first (order), then the engine's output; what the
 * socket does not take is moved to c->out, so that the engine's tx, which
 * every engine shares, is empty when this returns (see
 * usmp_gateway_internal.h). */
int usmp_gw_flush(usmp_gateway_session_t *c)
{
    usmp_gateway_t *gw = c->gw;
    int failed = 0;
    if (!usmp_gw_is_datagram(gw)) {
        failed = c->fd < 0 || send_held_output(c) != 0;
    }
    for (;;) {
        const uint8_t *data;
        size_t len;
        ssize_t n;
        usmp_engine_output(&c->engine, &data, &len);
        if (len == 0) {
            return failed ? -1 : 0;
        }
        if (usmp_gw_is_datagram(gw)) {
            int rc = usmp_gw_send_datagram(gw, data, len, (const struct sockaddr *)&c->addr,
                                           c->addr_len);
            usmp_engine_output_done(&c->engine, len);
            failed |= rc != 0;
            continue;
        }
        n = 0;
        if (!failed && c->out.len == c->out.off) {
            n = send(c->fd, data, len, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                failed = 1;
            }
            if (n > 0) {
                c->write_blocked_ms = usmp_port_millis();
            } else {
                n = 0;
            }
        }
        if (failed) {
            /* Nothing more can be sent: the output is dropped. */
            usmp_engine_output_done(&c->engine, len);
            continue;
        }
        if ((size_t)n < len && usmp_gw_bytes_append(&c->out, data + n, len - (size_t)n) != 0) {
            failed = 1;
        }
        usmp_engine_output_done(&c->engine, len);
    }
}

void usmp_gw_transport_lost(usmp_gateway_session_t *c)
{
    (void)usmp_engine_transport_closed(&c->engine);
    usmp_gw_bytes_free(&c->out);
    usmp_gw_bytes_free(&c->held);
    c->header_fed = 0;
    c->reply_pending = 0;
    free(c->reply);
    c->reply = NULL;
}

/* Hands the pending reply to the engine record by record while the
 * transport takes it. */
static void pump_reply(usmp_gateway_session_t *c)
{
    while (c->reply_pending && !usmp_gw_output_pending(c)) {
        int n = usmp_engine_send(&c->engine, c->reply + c->reply_done, c->reply_len - c->reply_done,
                                 usmp_port_millis());
        if (n >= 0) {
            c->reply_done += (size_t)n;
        }
        if (n < 0 || c->reply_done == c->reply_len) {
            c->reply_pending = 0;
            free(c->reply);
            c->reply = NULL;
        }
        if (usmp_gw_flush(c) != 0) {
            return;
        }
    }
}

int usmp_gateway_reply(usmp_gateway_session_t *c, const uint8_t *msg, size_t len)
{
    size_t done = 0;
    if (c == NULL || (msg == NULL && len > 0)) {
        return USMP_ERR_ARG;
    }
    if (!c->in_use || usmp_engine_state(&c->engine) != USMP_STATE_ESTABLISHED) {
        return USMP_ERR_STATE;
    }
    if (c->reply_pending) {
        return USMP_ERR_WOULD_BLOCK;
    }
    if (len > c->gw->cfg.max_message) {
        return USMP_ERR_MESSAGE_TOO_LARGE;
    }
    c->gw->stats.messages_out++;
    /* As much as the transport takes now straight from msg (usually all of
     * it: an echo of a message that fits one record costs no copy); only
     * the rest is copied, for pump_reply. */
    while (!usmp_gw_output_pending(c)) {
        int n = usmp_engine_send(&c->engine, msg + done, len - done, usmp_port_millis());
        if (n >= 0) {
            done += (size_t)n;
        }
        if (usmp_gw_flush(c) != 0 || n < 0 || done == len) {
            usmp_gw_mark_dirty(c);
            return USMP_OK;
        }
    }
    c->reply = malloc(len - done);
    if (c->reply == NULL) {
        /* The message was partly sent: the session cannot go on. */
        usmp_gw_transport_lost(c);
        usmp_gw_mark_dirty(c);
        return USMP_OK;
    }
    memcpy(c->reply, msg + done, len - done);
    c->reply_len = len - done;
    c->reply_done = 0;
    c->reply_pending = 1;
    usmp_gw_mark_dirty(c);
    return USMP_OK;
}

const uint8_t *usmp_gateway_session_device_id(const usmp_gateway_session_t *c)
{
    return c != NULL ? usmp_engine_device_id(&c->engine) : NULL;
}

const uint8_t *usmp_gateway_session_id(const usmp_gateway_session_t *c)
{
    return c != NULL ? usmp_engine_session_id(&c->engine) : NULL;
}

/* ------------------------------------------------------------------------
 * Deadlines: a binary min-heap of the sessions that have one, so that the
 * next deadline is read, and a changed one moved, in O(log sessions).
 * ------------------------------------------------------------------------ */

#define NOT_IN_HEAP ((size_t)-1)

/* 1 when a is before b (wrap-safe: deadlines are within 2^31 ms of now). */
static int deadline_before(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}

static void heap_place(usmp_gateway_t *gw, size_t i, usmp_gateway_session_t *c)
{
    gw->heap[i] = c;
    c->heap_pos = i;
}

static void heap_up(usmp_gateway_t *gw, size_t i)
{
    usmp_gateway_session_t *c = gw->heap[i];
    while (i > 0 && deadline_before(c->deadline, gw->heap[(i - 1) / 2]->deadline)) {
        heap_place(gw, i, gw->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_place(gw, i, c);
}

static void heap_down(usmp_gateway_t *gw, size_t i)
{
    usmp_gateway_session_t *c = gw->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= gw->heap_len) {
            break;
        }
        if (child + 1 < gw->heap_len &&
            deadline_before(gw->heap[child + 1]->deadline, gw->heap[child]->deadline)) {
            child++;
        }
        if (!deadline_before(gw->heap[child]->deadline, c->deadline)) {
            break;
        }
        heap_place(gw, i, gw->heap[child]);
        i = child;
    }
    heap_place(gw, i, c);
}

static void heap_remove(usmp_gateway_t *gw, usmp_gateway_session_t *c)
{
    size_t i = c->heap_pos;
    usmp_gateway_session_t *last;
    if (i == NOT_IN_HEAP) {
        return;
    }
    c->heap_pos = NOT_IN_HEAP;
    last = gw->heap[--gw->heap_len];
    if (last == c) {
        return;
    }
    heap_place(gw, i, last);
    heap_up(gw, i);
    heap_down(gw, last->heap_pos);
}

/* Puts c in the heap at its nearest deadline (engine timers, spec 11, or
 * the write deadline, spec 13), or takes it out when it has none. */
static void heap_update(usmp_gateway_t *gw, usmp_gateway_session_t *c, uint32_t now)
{
    uint32_t deadline = 0, write_deadline = 0;
    int has = usmp_engine_next_deadline(&c->engine, &deadline), has_write = 0;

    (void)usmp_gw_write_stalled(gw, c, now, &has_write, &write_deadline);
    if (has_write && (!has || deadline_before(write_deadline, deadline))) {
        deadline = write_deadline;
        has = 1;
    }
    if (!has) {
        heap_remove(gw, c);
        return;
    }
    if (c->heap_pos == NOT_IN_HEAP) {
        c->deadline = deadline;
        c->heap_pos = gw->heap_len++;
        gw->heap[c->heap_pos] = c;
        heap_up(gw, c->heap_pos);
    } else if (deadline != c->deadline) {
        c->deadline = deadline;
        heap_up(gw, c->heap_pos);
        heap_down(gw, c->heap_pos);
    }
}

/* ------------------------------------------------------------------------
 * Established sessions by device id (spec section 13: a newer session of a
 * device replaces the older one): chained hashing, keyed with a secret
 * drawn at setup so that chosen ids cannot pile into one chain.
 * ------------------------------------------------------------------------ */

static size_t device_bucket(const usmp_gateway_t *gw, const uint8_t *id)
{
    /* FNV-1a over the key and the id: cheap, and the key varies it per gateway. */
    uint64_t h = 1469598103934665603ull;
    size_t i;
    for (i = 0; i < sizeof gw->device_key; i++) {
        h = (h ^ gw->device_key[i]) * 1099511628211ull;
    }
    for (i = 0; i < USMP_DEVICE_ID_BYTES; i++) {
        h = (h ^ id[i]) * 1099511628211ull;
    }
    return (size_t)(h ^ (h >> 29)) & gw->device_mask;
}

static void device_table_remove(usmp_gateway_session_t *c)
{
    usmp_gateway_t *gw = c->gw;
    usmp_gateway_session_t **link;
    if (!c->in_device_table) {
        return;
    }
    link = &gw->device_table[device_bucket(gw, usmp_engine_device_id(&c->engine))];
    while (*link != NULL && *link != c) {
        link = &(*link)->device_next;
    }
    if (*link == c) {
        *link = c->device_next;
    }
    c->device_next = NULL;
    c->in_device_table = 0;
}

/* ------------------------------------------------------------------------
 * Sessions: a slot with an engine, from the HELLO on.
 * ------------------------------------------------------------------------ */

void usmp_gw_mark_dirty(usmp_gateway_session_t *c)
{
    if (!c->dirty) {
        c->dirty = 1;
        c->dirty_next = c->gw->dirty;
        c->gw->dirty = c;
    }
}

void usmp_gw_end_session(usmp_gateway_session_t *c, const char *why)
{
    usmp_gateway_t *gw = c->gw;
    char sid[17];
    usmp_gw_hex(sid, usmp_engine_session_id(&c->engine), 8);
    if (c->established) {
        usmp_gw_say(gw, "session %s closed: %s", sid, why);
    } else {
        usmp_gw_say(gw, "connection from %s failed: %s", c->peer, why);
    }
    if (c->fd >= 0) {
        (void)usmp_poller_remove(gw->poller, c->fd);
        close(c->fd);
    }
    c->fd = -1;
    c->in_use = 0;
    c->reply_pending = 0;
    free(c->reply);
    c->reply = NULL;
    usmp_gw_bytes_free(&c->held);
    usmp_gw_bytes_free(&c->out);
    device_table_remove(c);
    heap_remove(gw, c);
    if (gw->reassembly != NULL) {
        /* Give back the pages of its reassembly slice, if it used any, and
         * drop the plaintext they held with them. */
        (void)madvise(gw->reassembly + c->slot * gw->cfg.max_message, gw->cfg.max_message,
                      MADV_DONTNEED);
    }
    usmp_engine_wipe(&c->engine);
    gw->free_slots[gw->free_count++] = c->slot;
    gw->active--;
}

static const char *end_reason(const usmp_gateway_session_t *c, char *buf, size_t cap)
{
    usmp_state_t st = usmp_engine_state(&c->engine);
    if (st == USMP_STATE_CLOSED) {
        if (usmp_engine_close_code(&c->engine) != USMP_CODE_NONE &&
            usmp_engine_error(&c->engine) != USMP_ERR_PEER_CLOSED) {
            snprintf(buf, cap, "closed by the gateway (code %u)",
                     usmp_engine_close_code(&c->engine));
        } else {
            snprintf(buf, cap, "BYE from the device (code %u)", usmp_engine_peer_code(&c->engine));
        }
        return buf;
    }
    snprintf(buf, cap, "%s", usmp_error_name(usmp_engine_error(&c->engine)));
    return buf;
}

/* At capacity: a throwaway engine says ERROR(BUSY) (spec section 13). */
void usmp_gw_refuse_busy(usmp_gateway_t *gw, int fd, const char *peer, const struct sockaddr *to,
                         socklen_t to_len)
{
    static uint8_t rx[USMP_HANDSHAKE_MAX_FRAME + USMP_DATAGRAM_OVERHEAD], tx[64];
    usmp_engine_config_t ec;
    usmp_engine_t busy;
    const uint8_t *data;
    size_t n;

    memset(&ec, 0, sizeof ec);
    ec.role = USMP_ROLE_SERVER;
    ec.mode = usmp_gw_is_datagram(gw) ? USMP_MODE_DATAGRAM : USMP_MODE_STREAM;
    ec.psk_lookup = gw->cfg.psk_lookup;
    ec.psk_lookup_user = gw->cfg.psk_lookup_user;
    ec.random = gateway_random;
    ec.rx_buf = rx;
    ec.rx_cap = sizeof rx;
    ec.tx_buf = tx;
    ec.tx_cap = sizeof tx;
    ec.max_record = 16;
    ec.max_message = 16;
    if (usmp_engine_init(&busy, &ec) == USMP_OK &&
        usmp_engine_close(&busy, USMP_CODE_BUSY) == USMP_OK) {
        usmp_engine_output(&busy, &data, &n);
        if (usmp_gw_is_datagram(gw)) {
            (void)usmp_gw_send_datagram(gw, data, n, to, to_len);
        } else {
            (void)send(fd, data, n, MSG_NOSIGNAL);
        }
    }
    usmp_engine_wipe(&busy);
    gw->stats.busy_sent++;
    usmp_gw_say(gw, "connection from %s refused: BUSY (%zu sessions)", peer, gw->active);
    if (fd >= 0) {
        close(fd);
    }
}

usmp_gateway_session_t *usmp_gw_free_slot(usmp_gateway_t *gw)
{
    if (gw->free_count > 0) {
        return &gw->sessions[gw->free_slots[gw->free_count - 1]];
    }
    return gw->used_slots < gw->slots ? &gw->sessions[gw->used_slots] : NULL;
}

/* Starts an engine in slot c. The handshake timer runs from started_ms
 * (TCP: the accept, spec section 13: the time spent pending counts). The
 * engine gets the shared rx and tx (see usmp_gateway_internal.h) and its
 * slice of the reassembly mapping. */
int usmp_gw_session_start(usmp_gateway_t *gw, usmp_gateway_session_t *c, const char *peer,
                          uint32_t started_ms)
{
    usmp_engine_config_t ec;
    int fragmented = gw->cfg.max_message > gw->cfg.max_record;

    /* A slot's first use writes it: slots never used cost no memory. */
    c->gw = gw;
    c->slot = (size_t)(c - gw->sessions);
    memset(&ec, 0, sizeof ec);
    ec.role = USMP_ROLE_SERVER;
    ec.mode = usmp_gw_is_datagram(gw) ? USMP_MODE_DATAGRAM : USMP_MODE_STREAM;
    ec.psk_lookup = gw->cfg.psk_lookup;
    ec.psk_lookup_user = gw->cfg.psk_lookup_user;
    ec.random = usmp_gw_is_datagram(gw) ? usmp_gw_datagram_session_random : gateway_random;
    ec.random_user = c;
    ec.max_record = gw->cfg.max_record;
    ec.max_message = gw->cfg.max_message;
    ec.handshake_timeout_ms = gw->cfg.handshake_timeout_ms;
    ec.idle_timeout_ms = gw->cfg.idle_timeout_ms;
    ec.rx_buf = gw->rx;
    ec.rx_cap = gw->rx_cap;
    ec.tx_buf = gw->tx;
    ec.tx_cap = gw->tx_cap;
    ec.reassembly_buf = fragmented ? gw->reassembly + c->slot * gw->cfg.max_message : NULL;
    ec.reassembly_cap = fragmented ? gw->cfg.max_message : 0;
    if (c != usmp_gw_free_slot(gw) || usmp_engine_init(&c->engine, &ec) != USMP_OK ||
        usmp_engine_start(&c->engine, started_ms) != USMP_OK) {
        return -1;
    }
    if (gw->free_count > 0) {
        gw->free_count--;
    } else {
        gw->used_slots++; /* a slot used for the first time */
    }
    c->in_use = 1;
    c->fd = -1;
    c->established = 0;
    c->reply_pending = 0;
    c->reply = NULL;
    c->header_fed = 0;
    c->write_blocked = 0;
    c->interest = 0;
    c->heap_pos = NOT_IN_HEAP;
    c->dirty = 0;
    c->in_device_table = 0;
    c->device_next = NULL;
    c->addr_len = 0;
    c->have_top = 0;
    c->top = 0;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    gw->active++;
    usmp_gw_mark_dirty(c); /* its handshake deadline goes into the heap */
    return 0;
}

static void replace(usmp_gateway_t *gw, usmp_gateway_session_t *o,
                    const usmp_gateway_session_t *newer)
{
    char old_sid[17], new_sid[17], dev[13];
    usmp_gw_hex(old_sid, usmp_engine_session_id(&o->engine), 8);
    usmp_gw_hex(new_sid, usmp_engine_session_id(&newer->engine), 8);
    usmp_gw_hex(dev, usmp_engine_device_id(&newer->engine), USMP_DEVICE_ID_BYTES);
    usmp_gw_say(gw, "session %s replaced by session %s (device %s)", old_sid, new_sid, dev);
    o->reply_pending = 0; /* nothing more goes to the replaced session but its BYE */
    free(o->reply);
    o->reply = NULL;
    (void)usmp_engine_close(&o->engine, USMP_CODE_REPLACED);
    (void)usmp_gw_flush(o);
    usmp_gw_mark_dirty(o);
}

/* Spec section 13: a newly established session for a device id that
 * already has one replaces the older session, in every key mode, so two
 * sessions never claim one device; the newer one takes its place in the
 * table. On a serial line (one peer, spec 8.4 rule 4) the new session
 * replaces any other (there are at most a few slots to look at). */
static void replace_older_session(usmp_gateway_t *gw, usmp_gateway_session_t *newer)
{
    const uint8_t *device = usmp_engine_device_id(&newer->engine);
    usmp_gateway_session_t **link;
    size_t i;

    if (gw->cfg.transport == USMP_GATEWAY_SERIAL) {
        for (i = 0; i < gw->used_slots; i++) {
            usmp_gateway_session_t *o = &gw->sessions[i];
            if (o != newer && o->in_use &&
                usmp_engine_state(&o->engine) == USMP_STATE_ESTABLISHED) {
                replace(gw, o, newer);
            }
        }
        return;
    }
    link = &gw->device_table[device_bucket(gw, device)];
    while (*link != NULL) {
        usmp_gateway_session_t *o = *link;
        if (memcmp(usmp_engine_device_id(&o->engine), device, USMP_DEVICE_ID_BYTES) == 0) {
            *link = o->device_next; /* out of the table: the newer one is the device's now */
            o->device_next = NULL;
            o->in_device_table = 0;
            if (usmp_engine_state(&o->engine) == USMP_STATE_ESTABLISHED) {
                replace(gw, o, newer);
            }
            continue;
        }
        link = &o->device_next;
    }
    newer->device_next = gw->device_table[device_bucket(gw, device)];
    gw->device_table[device_bucket(gw, device)] = newer;
    newer->in_device_table = 1;
}

/* An event from a session's engine: logs the new session, or gives a
 * message to the application. */
void usmp_gw_handle_event(usmp_gateway_session_t *c, const usmp_event_t *ev)
{
    usmp_gateway_t *gw = c->gw;
    if (ev->type == USMP_EVENT_ESTABLISHED) {
        char sid[17], dev[13];
        c->established = 1;
        usmp_gw_hex(sid, usmp_engine_session_id(&c->engine), 8);
        usmp_gw_hex(dev, usmp_engine_device_id(&c->engine), 6);
        usmp_gw_say(gw, "session %s open: device %s from %s", sid, dev, c->peer);
        if (gw->cfg.shared_psk) {
            /* spec/security.md: with one key for every device the id is only a claim. */
            usmp_gw_say(gw,
                        "session %s: device id %s is not authenticated (one key for every device)",
                        sid, dev);
        }
        replace_older_session(gw, c);
    } else if (ev->type == USMP_EVENT_MESSAGE) {
        gw->stats.messages_in++;
        if (gw->cfg.on_message != NULL) {
            gw->cfg.on_message(gw->cfg.on_message_user, c, ev->data, ev->len);
        }
    } else if (ev->type == USMP_EVENT_CONTROL) {
        /* Spec 6.7: this gateway handles no channel; discarded, counted. */
        gw->stats.control_discarded++;
    }
}

/* One pass over a session: timers, output, the reply, held input, the
 * end; then its deadline and what its descriptor is watched for. */
void usmp_gw_service_session(usmp_gateway_session_t *c)
{
    usmp_gateway_t *gw = c->gw;
    char why[96];
    int has_write = 0;
    uint32_t now, write_deadline;

    if (!c->in_use) {
        return;
    }
    /* The timers run whatever the back-pressure (spec 11, 13). */
    (void)usmp_engine_tick(&c->engine, usmp_port_millis());
    if (usmp_gw_flush(c) != 0) {
        usmp_gw_transport_lost(c);
    }
    pump_reply(c);
    if (!usmp_gw_is_datagram(gw)) {
        usmp_gw_tcp_feed_input(c);
    }
    now = usmp_port_millis();
    if (usmp_gw_write_stalled(gw, c, now, &has_write, &write_deadline)) {
        snprintf(why, sizeof why, "no write progress for %lu ms: dropped",
                 (unsigned long)gw->write_timeout_ms);
        usmp_gw_end_session(c, why);
        return;
    }
    if ((usmp_engine_state(&c->engine) == USMP_STATE_FAILED ||
         usmp_engine_state(&c->engine) == USMP_STATE_CLOSED) &&
        !usmp_gw_output_pending(c)) {
        usmp_gw_end_session(c, end_reason(c, why, sizeof why));
        return;
    }
    heap_update(gw, c, now);
    if (!usmp_gw_is_datagram(gw)) {
        usmp_gw_tcp_update_interest(c);
    }
}

/* ------------------------------------------------------------------------
 * The event loop: usmp_poller.h for descriptors, the heap for deadlines.
 * ------------------------------------------------------------------------ */

/* Serves the sessions on the dirty list, including those that serving
 * others puts on it. */
static void serve_dirty(usmp_gateway_t *gw)
{
    while (gw->dirty != NULL) {
        usmp_gateway_session_t *c = gw->dirty;
        gw->dirty = c->dirty_next;
        c->dirty_next = NULL;
        c->dirty = 0;
        usmp_gw_service_session(c);
    }
}

/* Serves every session whose deadline has come, nearest first. */
static void run_due_timers(usmp_gateway_t *gw)
{
    uint32_t now = usmp_port_millis();
    while (gw->heap_len > 0 && !deadline_before(now, gw->heap[0]->deadline)) {
        usmp_gateway_session_t *c = gw->heap[0];
        heap_remove(gw, c); /* serving puts it back at its next deadline, if any */
        usmp_gw_service_session(c);
    }
}

/* The poll timeout (ms) the nearest deadline allows, at most 1000. */
static int next_timeout(usmp_gateway_t *gw, uint32_t now)
{
    int timeout = 1000;
    if (gw->heap_len > 0) {
        int32_t left = (int32_t)(gw->heap[0]->deadline - now);
        if (left < timeout) {
            timeout = left < 0 ? 0 : left;
        }
    }
    if (usmp_gw_is_datagram(gw)) {
        return usmp_gw_cookie_secret_timeout(gw, now, timeout);
    }
    return usmp_gw_pending_expire(gw, now, timeout);
}

void usmp_gateway_tick(usmp_gateway_t *gw)
{
    if (gw == NULL) {
        return;
    }
    if (usmp_gw_is_datagram(gw)) {
        usmp_gw_rotate_cookie_secret(gw);
    } else {
        (void)usmp_gw_pending_expire(gw, usmp_port_millis(), 0);
    }
    serve_dirty(gw);
    run_due_timers(gw);
    serve_dirty(gw);
}

/* The most events taken per wait. */
#define EVENTS_PER_WAIT 128

int usmp_gateway_poll_once(usmp_gateway_t *gw, int max_wait_ms)
{
    usmp_poller_event_t events[EVENTS_PER_WAIT];
    uint32_t now = usmp_port_millis();
    int i, n, timeout;

    serve_dirty(gw);
    timeout = next_timeout(gw, now);
    if (usmp_gw_is_datagram(gw)) {
        timeout = usmp_gw_datagram_read_ready(gw, 0, now, timeout); /* a hung-up line's retry */
    }
    if (max_wait_ms >= 0 && max_wait_ms < timeout) {
        timeout = max_wait_ms;
    }
    n = usmp_poller_wait(gw->poller, events, EVENTS_PER_WAIT, timeout);
    if (n < 0 && errno != EINTR) {
        usmp_gw_say(gw, "%s failed: %s", usmp_poller_name(), strerror(errno));
        return USMP_ERR_TRANSPORT;
    }
    for (i = 0; i < n; i++) {
        void *ptr = events[i].ptr;
        if (ptr == &gw->fd_tag) {
            if (usmp_gw_is_datagram(gw)) {
                (void)usmp_gw_datagram_read_ready(gw, events[i].events, usmp_port_millis(), 0);
            } else {
                usmp_gw_tcp_accept_ready(gw);
            }
        } else if ((uint8_t *)ptr >= (uint8_t *)gw->sessions &&
                   (uint8_t *)ptr < (uint8_t *)(gw->sessions + gw->slots)) {
            usmp_gw_tcp_session_ready((usmp_gateway_session_t *)ptr, events[i].events);
        } else {
            usmp_gw_tcp_pending_ready(gw, (pending_t *)ptr);
        }
        serve_dirty(gw);
    }
    usmp_gateway_tick(gw);
    return USMP_OK;
}

/* ------------------------------------------------------------------------
 * Setup and shutdown.
 * ------------------------------------------------------------------------ */

static void free_gateway(usmp_gateway_t *gw)
{
    size_t i;
    if (gw->sessions != NULL) {
        for (i = 0; i < gw->used_slots; i++) {
            free(gw->sessions[i].reply);
            usmp_gw_bytes_free(&gw->sessions[i].held);
            usmp_gw_bytes_free(&gw->sessions[i].out);
        }
    }
    if (gw->reassembly != NULL) {
        munmap(gw->reassembly, gw->reassembly_bytes);
    }
    if (gw->poller != NULL) {
        usmp_poller_destroy(gw->poller);
    }
    free(gw->sessions);
    free(gw->free_slots);
    free(gw->pending);
    free(gw->free_pending);
    free(gw->heap);
    free(gw->device_table);
    free(gw->rx);
    free(gw->tx);
    free(gw->read_buf);
    memset(gw->cookie_secret, 0, sizeof gw->cookie_secret);
    memset(gw->cookie_secret_previous, 0, sizeof gw->cookie_secret_previous);
    memset(gw->device_key, 0, sizeof gw->device_key);
    free(gw);
}

static int config_valid(const usmp_gateway_t *gw)
{
    const usmp_gateway_config_t *cfg = &gw->cfg;
    if (cfg->max_sessions == 0 || cfg->psk_lookup == NULL) {
        usmp_gw_say(gw, "gateway configuration needs max_sessions > 0 and a PSK lookup");
        return 0;
    }
    if (cfg->max_record < USMP_MIN_RECORD || cfg->max_message < cfg->max_record ||
        (cfg->transport != USMP_GATEWAY_TCP && cfg->max_record > USMP_DATAGRAM_MAX_RECORD)) {
        usmp_gw_say(gw, "max_record must be 16 .. %u and max_message at least max_record",
                    cfg->transport != USMP_GATEWAY_TCP ? USMP_DATAGRAM_MAX_RECORD
                                                       : USMP_STREAM_MAX_RECORD);
        return 0;
    }
    if (cfg->transport != USMP_GATEWAY_TCP && cfg->max_sessions >= SESSION_INDEX_LIMIT) {
        usmp_gw_say(gw, "a datagram gateway has at most %u session slots (spec 5.6)",
                    SESSION_INDEX_LIMIT - 1u);
        return 0;
    }
    if (cfg->transport == USMP_GATEWAY_SERIAL && cfg->serial_path == NULL) {
        usmp_gw_say(gw, "a serial gateway needs the path of its line");
        return 0;
    }
    return 1;
}

static int open_transport(usmp_gateway_t *gw)
{
    const usmp_gateway_config_t *cfg = &gw->cfg;
    if (cfg->transport == USMP_GATEWAY_SERIAL) {
        gw->fd = usmp_gw_open_serial(gw);
        if (gw->fd < 0) {
            return -1;
        }
        usmp_gw_say(gw, "serving %s at %lu baud (one session, max record %u, max message %u)",
                    cfg->serial_path, (unsigned long)(cfg->baud != 0 ? cfg->baud : 115200u),
                    (unsigned)cfg->max_record, (unsigned)cfg->max_message);
    } else if (cfg->transport == USMP_GATEWAY_UDP && cfg->datagram_send != NULL) {
        return 0; /* the embedding owns the socket */
    } else {
        gw->fd = bind_socket(gw);
        if (gw->fd < 0) {
            return -1;
        }
        gw->port = bound_port(gw->fd);
        usmp_gw_say(gw, "%s on %s:%u (max %zu sessions, max record %u, max message %u)",
                    cfg->transport == USMP_GATEWAY_UDP ? "udp" : "listening", cfg->host,
                    (unsigned)gw->port, cfg->max_sessions, (unsigned)cfg->max_record,
                    (unsigned)cfg->max_message);
    }
    if (usmp_poller_add(gw->poller, gw->fd, USMP_POLLER_IN, &gw->fd_tag) != 0) {
        usmp_gw_say(gw, "%s cannot watch the descriptor: %s", usmp_poller_name(), strerror(errno));
        return -1;
    }
    return 0;
}

/* The shared buffers, the reassembly mapping, and the tables whose size
 * is the number of slots. 0, or -1 when out of memory. */
static int allocate(usmp_gateway_t *gw)
{
    const usmp_gateway_config_t *cfg = &gw->cfg;
    size_t i, buckets = 16;

    gw->rx_cap = USMP_RECORD_BUFFER_BYTES(cfg->max_record);
    gw->tx_cap = cfg->transport == USMP_GATEWAY_TCP
                     ? USMP_RECORD_BUFFER_BYTES(USMP_STREAM_MAX_RECORD)
                     : USMP_RECORD_BUFFER_BYTES(USMP_DATAGRAM_MAX_RECORD);
    gw->read_cap = 16384;
    while (buckets < gw->slots) {
        buckets *= 2;
    }
    gw->device_mask = buckets - 1;
    /* calloc of a large array maps fresh zero pages: slots never used
     * cost no memory. */
    gw->sessions = calloc(gw->slots, sizeof *gw->sessions);
    gw->free_slots = calloc(gw->slots, sizeof *gw->free_slots);
    gw->heap = calloc(gw->slots, sizeof *gw->heap);
    gw->device_table = calloc(buckets, sizeof *gw->device_table);
    gw->pending = calloc(gw->max_pending + 1, sizeof *gw->pending);
    gw->free_pending = calloc(gw->max_pending + 1, sizeof *gw->free_pending);
    gw->rx = malloc(gw->rx_cap);
    gw->tx = malloc(gw->tx_cap);
    gw->read_buf = malloc(gw->read_cap);
    gw->poller = usmp_poller_create(gw->slots + gw->max_pending + 1);
    if (gw->sessions == NULL || gw->free_slots == NULL || gw->heap == NULL ||
        gw->device_table == NULL || gw->pending == NULL || gw->free_pending == NULL ||
        gw->rx == NULL || gw->tx == NULL || gw->read_buf == NULL || gw->poller == NULL) {
        return -1;
    }
    if (cfg->max_message > cfg->max_record) {
        /* One reservation for every slot's reassembly buffer: pages are
         * only backed once a fragment is written to them. */
        gw->reassembly_bytes = gw->slots * (size_t)cfg->max_message;
        gw->reassembly = mmap(NULL, gw->reassembly_bytes, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (gw->reassembly == MAP_FAILED) {
            gw->reassembly = NULL;
            return -1;
        }
    }
    for (i = 0; i < gw->max_pending; i++) {
        gw->pending[i].fd = -1;
        gw->free_pending[gw->max_pending - 1 - i] = &gw->pending[i];
    }
    /* The slots are not written here: usmp_gw_free_slot hands out slot
     * used_slots, then used_slots + 1, ..., and ended ones again first
     * (the free_slots stack), so an idle gateway for 10,000 sessions has
     * touched none of their pages. */
    gw->free_count = 0;
    gw->used_slots = 0;
    return 0;
}

usmp_gateway_t *usmp_gateway_setup(const usmp_gateway_config_t *cfg)
{
    usmp_gateway_t *gw;
    uint32_t handshake_timeout_ms;

    if (cfg == NULL || (gw = calloc(1, sizeof *gw)) == NULL) {
        return NULL;
    }
    gw->cfg = *cfg;
    gw->fd = -1;
    if (!config_valid(gw)) {
        free_gateway(gw);
        return NULL;
    }
    gw->slots = cfg->max_sessions;
    gw->max_pending =
        cfg->transport == USMP_GATEWAY_TCP ? (cfg->max_pending != 0 ? cfg->max_pending : 256) : 0;
    gw->cookie_threshold =
        cfg->cookie_threshold != 0 ? cfg->cookie_threshold : (cfg->max_sessions + 1) / 2;
    handshake_timeout_ms = cfg->handshake_timeout_ms != 0 ? cfg->handshake_timeout_ms : 10000;
    gw->hello_timeout_ms = cfg->hello_timeout_ms != 0 ? cfg->hello_timeout_ms : 2000;
    /* The handshake timer runs from the accept too (spec 13): a pending
     * connection also ends when it expires. */
    if (gw->hello_timeout_ms > handshake_timeout_ms) {
        gw->hello_timeout_ms = handshake_timeout_ms;
    }
    gw->write_timeout_ms = cfg->write_timeout_ms != 0 ? cfg->write_timeout_ms : 10000;
    if (allocate(gw) != 0) {
        usmp_gw_say(gw, "out of memory for %zu sessions", cfg->max_sessions);
        free_gateway(gw);
        return NULL;
    }
    usmp_rate_limiter_init(&gw->limiter, cfg->handshake_rate != 0 ? cfg->handshake_rate : 10,
                           cfg->handshake_burst != 0 ? cfg->handshake_burst : 20,
                           cfg->rate_prefix_v4 != 0 ? cfg->rate_prefix_v4 : 32,
                           cfg->rate_prefix_v6 != 0 ? cfg->rate_prefix_v6 : 64);
    usmp_port_random(gw->device_key, sizeof gw->device_key);
    usmp_port_random(gw->cookie_secret, sizeof gw->cookie_secret);
    usmp_port_random(gw->cookie_secret_previous, sizeof gw->cookie_secret_previous);
    gw->cookie_secret_ms = usmp_port_millis();
    if (open_transport(gw) != 0) {
        if (gw->fd >= 0) {
            close(gw->fd);
        }
        free_gateway(gw);
        return NULL;
    }
    return gw;
}

uint16_t usmp_gateway_port(const usmp_gateway_t *gw)
{
    return gw != NULL ? gw->port : 0;
}

void usmp_gateway_stats(const usmp_gateway_t *gw, usmp_gateway_stats_t *out)
{
    if (gw != NULL && out != NULL) {
        *out = gw->stats;
    }
}

void usmp_gateway_shutdown(usmp_gateway_t *gw)
{
    size_t i;
    if (gw == NULL) {
        return;
    }
    /* BYE(SHUTDOWN) to every session, best effort. */
    for (i = 0; i < gw->used_slots; i++) {
        usmp_gateway_session_t *c = &gw->sessions[i];
        if (c->in_use) {
            (void)usmp_engine_close(&c->engine, USMP_CODE_SHUTDOWN);
            (void)usmp_gw_flush(c);
            usmp_gw_end_session(c, "gateway shutting down");
        }
    }
    if (!usmp_gw_is_datagram(gw)) {
        usmp_gw_pending_close_all(gw);
    }
    if (usmp_gw_is_datagram(gw)) {
        usmp_gw_say(gw, "messages: %llu in, %llu out", (unsigned long long)gw->stats.messages_in,
                    (unsigned long long)gw->stats.messages_out);
        usmp_gw_say(
            gw,
            "dropped: %llu corrupt frames, %llu records, %llu for no session, %llu handshake "
            "frames; "
            "%llu cookies, %llu BUSY, %llu rebinds, %llu datagrams in",
            (unsigned long long)gw->stats.cobs_errors,
            (unsigned long long)gw->stats.records_dropped,
            (unsigned long long)gw->stats.unknown_session,
            (unsigned long long)gw->stats.handshake_dropped,
            (unsigned long long)gw->stats.cookies_sent, (unsigned long long)gw->stats.busy_sent,
            (unsigned long long)gw->stats.rebinds, (unsigned long long)gw->stats.datagrams_in);
    }
    if (gw->fd >= 0) {
        close(gw->fd);
    }
    usmp_gw_say(gw, "stopped");
    free_gateway(gw);
}

int usmp_gateway_run(const usmp_gateway_config_t *cfg)
{
    usmp_gateway_t *gw = usmp_gateway_setup(cfg);
    if (gw == NULL) {
        return -1;
    }
    while (cfg->stop == NULL || !*cfg->stop) {
        if (usmp_gateway_poll_once(gw, -1) != USMP_OK) {
            break;
        }
    }
    usmp_gateway_shutdown(gw);
    return 0;
}
