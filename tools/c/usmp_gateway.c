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
 * The event loop is poll(): build_poll_set, wait_for_events and the
 * dispatch in usmp_gateway_poll_once are the only places that know it.
 */
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
 * Output: what the engine has queued goes to the session's transport.
 * ------------------------------------------------------------------------ */

int usmp_gw_output_pending(usmp_gateway_session_t *c)
{
    const uint8_t *data;
    size_t len;
    usmp_engine_output(&c->engine, &data, &len);
    return len > 0;
}

/* Sends what the engine has queued. TCP stops when the socket is full (any
 * byte written restarts the write deadline); datagrams go out whole. */
int usmp_gw_flush(usmp_gateway_session_t *c)
{
    usmp_gateway_t *gw = c->gw;
    for (;;) {
        const uint8_t *data;
        size_t len;
        ssize_t n;
        usmp_engine_output(&c->engine, &data, &len);
        if (len == 0) {
            return 0;
        }
        if (usmp_gw_is_datagram(gw)) {
            int rc = usmp_gw_send_datagram(gw, data, len, (const struct sockaddr *)&c->addr,
                                           c->addr_len);
            usmp_engine_output_done(&c->engine, len);
            if (rc != 0) {
                return -1;
            }
            continue;
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

/* Hands the pending reply to the engine record by record while the
 * transport takes it. */
static void pump_reply(usmp_gateway_session_t *c)
{
    while (c->reply_pending && !usmp_gw_output_pending(c)) {
        int n = usmp_engine_send(&c->engine, c->reply + c->reply_done, c->reply_len - c->reply_done,
                                 usmp_port_millis());
        if (n < 0) {
            c->reply_pending = 0;
            return;
        }
        c->reply_done += (size_t)n;
        if (c->reply_done == c->reply_len) {
            c->reply_pending = 0;
        }
        if (usmp_gw_flush(c) != 0) {
            return;
        }
    }
}

int usmp_gateway_reply(usmp_gateway_session_t *c, const uint8_t *msg, size_t len)
{
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
    if (len > 0) {
        memcpy(c->reply, msg, len);
    }
    c->reply_len = len;
    c->reply_done = 0;
    c->reply_pending = 1;
    c->gw->stats.messages_out++;
    pump_reply(c);
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
        close(c->fd);
    }
    c->fd = -1;
    c->in_use = 0;
    c->reply_pending = 0;
    usmp_engine_wipe(&c->engine);
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

/* ------------------------------------------------------------------------
 * Sessions: a slot with an engine, from the HELLO on.
 * ------------------------------------------------------------------------ */

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
    size_t i;
    for (i = 0; i < gw->slots; i++) {
        if (!gw->sessions[i].in_use) {
            return &gw->sessions[i];
        }
    }
    return NULL;
}

/* Starts an engine in slot c. The handshake timer runs from started_ms
 * (TCP: the accept, spec section 13: the time spent pending counts). */
int usmp_gw_session_start(usmp_gateway_t *gw, usmp_gateway_session_t *c, const char *peer,
                          uint32_t started_ms)
{
    usmp_engine_config_t ec;

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
    ec.rx_buf = c->rx;
    ec.rx_cap = gw->rx_cap;
    ec.tx_buf = c->tx;
    ec.tx_cap = gw->tx_cap;
    ec.reassembly_buf = gw->cfg.max_message > gw->cfg.max_record ? c->reassembly : NULL;
    ec.reassembly_cap = gw->cfg.max_message > gw->cfg.max_record ? gw->cfg.max_message : 0;
    if (usmp_engine_init(&c->engine, &ec) != USMP_OK ||
        usmp_engine_start(&c->engine, started_ms) != USMP_OK) {
        return -1;
    }
    c->in_use = 1;
    c->fd = -1;
    c->established = 0;
    c->reply_pending = 0;
    c->write_blocked = 0;
    c->in_len = 0;
    c->in_off = 0;
    c->addr_len = 0;
    c->have_top = 0;
    c->top = 0;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    gw->active++;
    return 0;
}

/* Spec section 13: a newly established session for a device id that
 * already has one replaces the older session, in every key mode, so two
 * sessions never claim one device. On a serial line (one peer, spec 8.4
 * rule 4) the new session replaces any other. */
static void replace_older_session(usmp_gateway_t *gw, const usmp_gateway_session_t *newer)
{
    const uint8_t *device = usmp_engine_device_id(&newer->engine);
    size_t i;

    for (i = 0; i < gw->slots; i++) {
        usmp_gateway_session_t *o = &gw->sessions[i];
        char old_sid[17], new_sid[17], dev[13];
        if (o == newer || !o->in_use || usmp_engine_state(&o->engine) != USMP_STATE_ESTABLISHED ||
            (gw->cfg.transport != USMP_GATEWAY_SERIAL &&
             memcmp(usmp_engine_device_id(&o->engine), device, USMP_DEVICE_ID_BYTES) != 0)) {
            continue;
        }
        usmp_gw_hex(old_sid, usmp_engine_session_id(&o->engine), 8);
        usmp_gw_hex(new_sid, usmp_engine_session_id(&newer->engine), 8);
        usmp_gw_hex(dev, device, USMP_DEVICE_ID_BYTES);
        usmp_gw_say(gw, "session %s replaced by session %s (device %s)", old_sid, new_sid, dev);
        o->reply_pending = 0; /* nothing more goes to the replaced session but its BYE */
        (void)usmp_engine_close(&o->engine, USMP_CODE_REPLACED);
        (void)usmp_gw_flush(o);
    }
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

/* One pass over a session after input: timers, output, the reply, the end. */
void usmp_gw_service_session(usmp_gateway_session_t *c)
{
    usmp_gateway_t *gw = c->gw;
    char why[96];
    int timeout = 0;

    /* The timers run whatever the back-pressure (spec 11, 13). */
    (void)usmp_engine_tick(&c->engine, usmp_port_millis());
    if (usmp_gw_flush(c) != 0) {
        (void)usmp_engine_transport_closed(&c->engine);
    }
    pump_reply(c);
    if (usmp_gw_write_stalled(gw, c, usmp_port_millis(), &timeout)) {
        snprintf(why, sizeof why, "no write progress for %lu ms: dropped",
                 (unsigned long)gw->write_timeout_ms);
        usmp_gw_end_session(c, why);
    } else if ((usmp_engine_state(&c->engine) == USMP_STATE_FAILED ||
                usmp_engine_state(&c->engine) == USMP_STATE_CLOSED) &&
               !usmp_gw_output_pending(c)) {
        usmp_gw_end_session(c, end_reason(c, why, sizeof why));
    }
}

/* The nearest engine deadline or write deadline of a session, into *timeout. */
static void session_timeout(usmp_gateway_t *gw, usmp_gateway_session_t *c, uint32_t now,
                            int *timeout)
{
    uint32_t deadline;
    (void)usmp_gw_write_stalled(gw, c, now, timeout);
    if (usmp_engine_next_deadline(&c->engine, &deadline)) {
        int32_t left = (int32_t)(deadline - now);
        if (left < *timeout) {
            *timeout = left < 0 ? 0 : left;
        }
    }
}

/* ------------------------------------------------------------------------
 * The event loop: poll() behind build_poll_set and wait_for_events.
 * ------------------------------------------------------------------------ */

/* TCP: the listener, the sessions, the pending connections; datagram
 * transports: the one descriptor. Returns the poll timeout (ms) that the
 * nearest deadline allows. */
static int build_poll_set(usmp_gateway_t *gw)
{
    uint32_t now = usmp_port_millis();
    int timeout = 1000;
    size_t i;

    gw->fds[0].fd = gw->fd;
    gw->fds[0].events = POLLIN;
    gw->fds[0].revents = 0;
    if (gw->line_hung_up) {
        gw->fds[0].fd = -1; /* poll() skips it; the line is read again after the timeout */
        timeout = SERIAL_HANGUP_RETRY_MS;
    }
    for (i = 0; i < gw->slots; i++) {
        usmp_gateway_session_t *c = &gw->sessions[i];
        struct pollfd *p = &gw->fds[i + 1];
        p->fd = -1;
        p->events = 0;
        p->revents = 0;
        if (!c->in_use) {
            continue;
        }
        if (!usmp_gw_is_datagram(gw)) {
            p->fd = c->fd;
            if (!c->reply_pending && c->in_off == c->in_len) {
                p->events |= POLLIN;
            }
            if (usmp_gw_output_pending(c)) {
                p->events |= POLLOUT;
            }
        }
        session_timeout(gw, c, now, &timeout);
    }
    if (usmp_gw_is_datagram(gw)) {
        return usmp_gw_cookie_secret_timeout(gw, now, timeout);
    }
    return usmp_gw_pending_poll_set(gw, now, timeout);
}

static int wait_for_events(usmp_gateway_t *gw, int timeout)
{
    return poll(gw->fds, (nfds_t)gw->nfds, timeout);
}

void usmp_gateway_tick(usmp_gateway_t *gw)
{
    size_t i;
    if (gw == NULL) {
        return;
    }
    if (usmp_gw_is_datagram(gw)) {
        usmp_gw_rotate_cookie_secret(gw);
    }
    for (i = 0; i < gw->slots; i++) {
        usmp_gateway_session_t *c = &gw->sessions[i];
        if (!c->in_use) {
            continue;
        }
        if (!usmp_gw_is_datagram(gw)) {
            usmp_gw_tcp_feed_input(c);
        }
        usmp_gw_service_session(c);
    }
}

int usmp_gateway_poll_once(usmp_gateway_t *gw, int max_wait_ms)
{
    int timeout = build_poll_set(gw);

    if (max_wait_ms >= 0 && max_wait_ms < timeout) {
        timeout = max_wait_ms;
    }
    if (wait_for_events(gw, timeout) < 0 && errno != EINTR) {
        usmp_gw_say(gw, "poll failed: %s", strerror(errno));
        return USMP_ERR_TRANSPORT;
    }
    if (usmp_gw_is_datagram(gw)) {
        usmp_gw_datagram_read_ready(gw);
        usmp_gateway_tick(gw);
        return USMP_OK;
    }
    usmp_gw_tcp_read_ready(gw);
    usmp_gateway_tick(gw);
    usmp_gw_tcp_accept_ready(gw);
    return USMP_OK;
}

/* ------------------------------------------------------------------------
 * Setup and shutdown.
 * ------------------------------------------------------------------------ */

static void free_gateway(usmp_gateway_t *gw)
{
    size_t i;
    if (gw->sessions != NULL) {
        for (i = 0; i < gw->slots; i++) {
            free(gw->sessions[i].rx);
            free(gw->sessions[i].tx);
            free(gw->sessions[i].reassembly);
            free(gw->sessions[i].reply);
        }
    }
    free(gw->sessions);
    free(gw->pending);
    free(gw->fds);
    memset(gw->cookie_secret, 0, sizeof gw->cookie_secret);
    memset(gw->cookie_secret_previous, 0, sizeof gw->cookie_secret_previous);
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
        return 0;
    }
    if (cfg->transport == USMP_GATEWAY_UDP && cfg->datagram_send != NULL) {
        return 0; /* the embedding owns the socket */
    }
    gw->fd = bind_socket(gw);
    if (gw->fd < 0) {
        return -1;
    }
    gw->port = bound_port(gw->fd);
    usmp_gw_say(gw, "%s on %s:%u (max %zu sessions, max record %u, max message %u)",
                cfg->transport == USMP_GATEWAY_UDP ? "udp" : "listening", cfg->host,
                (unsigned)gw->port, cfg->max_sessions, (unsigned)cfg->max_record,
                (unsigned)cfg->max_message);
    return 0;
}

usmp_gateway_t *usmp_gateway_setup(const usmp_gateway_config_t *cfg)
{
    usmp_gateway_t *gw;
    size_t i;
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
    gw->rx_cap = USMP_RECORD_BUFFER_BYTES(cfg->max_record);
    gw->tx_cap = cfg->transport == USMP_GATEWAY_TCP
                     ? USMP_RECORD_BUFFER_BYTES(USMP_STREAM_MAX_RECORD)
                     : USMP_RECORD_BUFFER_BYTES(USMP_DATAGRAM_MAX_RECORD);
    gw->nfds = gw->slots + gw->max_pending + 1;
    gw->sessions = calloc(gw->slots, sizeof *gw->sessions);
    gw->pending = calloc(gw->max_pending + 1, sizeof *gw->pending);
    gw->fds = calloc(gw->nfds, sizeof *gw->fds);
    if (gw->sessions == NULL || gw->pending == NULL || gw->fds == NULL) {
        usmp_gw_say(gw, "out of memory for %zu sessions", cfg->max_sessions);
        free_gateway(gw);
        return NULL;
    }
    usmp_rate_limiter_init(&gw->limiter, cfg->handshake_rate != 0 ? cfg->handshake_rate : 10,
                           cfg->handshake_burst != 0 ? cfg->handshake_burst : 20,
                           cfg->rate_prefix_v4 != 0 ? cfg->rate_prefix_v4 : 32,
                           cfg->rate_prefix_v6 != 0 ? cfg->rate_prefix_v6 : 64);
    for (i = 0; i < gw->max_pending; i++) {
        gw->pending[i].fd = -1;
    }
    for (i = 0; i < gw->slots; i++) {
        usmp_gateway_session_t *c = &gw->sessions[i];
        c->gw = gw;
        c->slot = i;
        c->fd = -1;
        c->rx = malloc(gw->rx_cap);
        c->tx = malloc(gw->tx_cap);
        c->reassembly = malloc(cfg->max_message);
        c->reply = malloc(cfg->max_message);
        if (c->rx == NULL || c->tx == NULL || c->reassembly == NULL || c->reply == NULL) {
            usmp_gw_say(gw, "out of memory for %zu sessions", cfg->max_sessions);
            free_gateway(gw);
            return NULL;
        }
    }
    usmp_port_random(gw->cookie_secret, sizeof gw->cookie_secret);
    usmp_port_random(gw->cookie_secret_previous, sizeof gw->cookie_secret_previous);
    gw->cookie_secret_ms = usmp_port_millis();
    if (open_transport(gw) != 0) {
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
    for (i = 0; i < gw->slots; i++) {
        usmp_gateway_session_t *c = &gw->sessions[i];
        if (c->in_use) {
            (void)usmp_engine_close(&c->engine, USMP_CODE_SHUTDOWN);
            (void)usmp_gw_flush(c);
            usmp_gw_end_session(c, "gateway shutting down");
        }
    }
    for (i = 0; i < gw->max_pending; i++) {
        if (gw->pending[i].fd >= 0) {
            close(gw->pending[i].fd);
        }
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
