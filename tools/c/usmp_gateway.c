/*
 * usmp_gateway.c - see usmp_gateway.h.
 *
 * Each session slot owns one engine and its buffers. Input is only read
 * while the previous reply is fully handed to the engine, so a device that
 * does not read its replies is slowed down, not buffered for; and TCP or
 * serial output that makes no progress for write_timeout ends the session,
 * so such a device cannot hold its slot (spec section 13).
 *
 * TCP: a new connection first waits in the pending queue, with no engine
 * and no slot, until it has sent its first frame (the HELLO): at most
 * max_pending of them, each for at most hello_timeout, the oldest evicted
 * when a new one arrives at the bound. Idle connections therefore cannot
 * fill the session slots that honest devices need (spec section 13).
 *
 * UDP and serial: one descriptor carries every session. Datagrams are
 * routed as spec 8.4 says: records by session index (the slot number, so
 * indexes are unique among live sessions, spec 5.6), HELLO, HELLO_ACK and
 * ERROR by source address. A new HELLO on UDP passes the cookie check
 * (spec 8.3) before the handshake limit (8.4 rule 3); a serial line has no
 * cookie (rule 4).
 *
 * The event loop is poll(): build_poll_set, wait_for_events and the
 * dispatch in usmp_gateway_poll_once are the only places that know it.
 */
#define _POSIX_C_SOURCE 200809L

#include "usmp_gateway.h"

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
#include <termios.h>
#include <unistd.h>

#include "usmp_cobs.h"
#include "usmp_port.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

/* The first frame: a HELLO, 44-byte body (spec 4.1) after a 3-byte stream
 * header (5.1) or a 1-byte datagram type (5.2); a datagram HELLO may carry
 * a 16-byte cookie after it (8.3). */
#define HELLO_BODY_BYTES 44u
#define COOKIE_BYTES 16u
#define PENDING_FRAME_MAX (USMP_STREAM_HEADER_BYTES + HELLO_BODY_BYTES)
#define DATAGRAM_HELLO_BYTES (1u + HELLO_BODY_BYTES)
#define DATAGRAM_HELLO_COOKIE_BYTES (DATAGRAM_HELLO_BYTES + COOKIE_BYTES)
/* Spec 5.6: the session index is the first 3 bytes of the session id. */
#define SESSION_INDEX_BYTES 3u
#define SESSION_INDEX_LIMIT (1u << (8u * SESSION_INDEX_BYTES))
/* Spec 8.3: the cookie secret is replaced every 120 s. */
#define COOKIE_SECRET_LIFETIME_MS 120000u
/* The largest datagram a session can be sent or receive, and its COBS form. */
#define DATAGRAM_MAX USMP_RECORD_BUFFER_BYTES(USMP_DATAGRAM_MAX_RECORD)
#define COBS_FRAME_MAX (USMP_COBS_MAX_ENCODED(DATAGRAM_MAX) + 1u)
/* How long a serial line that reported a hang-up is left alone. */
#define SERIAL_HANGUP_RETRY_MS 200
/* Datagrams taken from the socket in one pass before the timers run. */
#define DATAGRAMS_PER_PASS 64

struct usmp_gateway_session {
    usmp_gateway_t *gw;
    size_t slot;
    int in_use;
    int fd;                   /* TCP: the connection; else -1 */
    usmp_engine_t engine;
    uint8_t *rx, *tx, *reassembly, *reply;
    uint8_t in[4096];         /* TCP: read from the socket, not yet fed */
    size_t in_len, in_off;
    size_t reply_len, reply_done;
    int reply_pending;
    int established;
    int write_blocked;        /* output has been waiting since write_blocked_ms */
    uint32_t write_blocked_ms;
    /* datagram transports */
    struct sockaddr_storage addr; /* UDP: the peer address (moves on rebinding, spec 6.5) */
    socklen_t addr_len;
    uint8_t hello[DATAGRAM_HELLO_BYTES]; /* the HELLO without its cookie (8.2, 8.4 rule 1) */
    uint64_t top;             /* highest seq of a record that passed (6.5) */
    int have_top;
    char peer[64];
};

typedef struct {
    int fd;
    uint32_t accepted_ms;
    uint64_t order;           /* accept order: the smallest is the oldest */
    uint8_t frame[PENDING_FRAME_MAX];
    size_t len;
    char peer[64];
} pending_t;

struct usmp_gateway {
    usmp_gateway_config_t cfg;
    usmp_gateway_session_t *sessions;
    size_t slots, active;
    size_t rx_cap, tx_cap;
    int fd;                   /* TCP listener, UDP socket or serial line; -1 without one */
    uint16_t port;
    /* TCP */
    pending_t *pending;
    size_t max_pending, pending_count;
    uint64_t accepted;
    uint32_t hello_timeout_ms, write_timeout_ms;
    usmp_rate_limiter_t limiter;
    /* the poll() set */
    struct pollfd *fds;
    size_t nfds;
    /* UDP cookies (spec 8.3) */
    size_t cookie_threshold;
    uint8_t cookie_secret[32], cookie_secret_previous[32];
    uint32_t cookie_secret_ms;
    /* serial: the COBS frame being collected, and output */
    uint8_t line[COBS_FRAME_MAX];
    size_t line_len;
    int line_overflow;        /* discarding up to the next delimiter */
    int line_hung_up;         /* the line reported a hang-up: not polled for a while */
    uint8_t line_out[COBS_FRAME_MAX];
    uint8_t datagram[DATAGRAM_MAX + 1]; /* one over: a longer datagram is seen as too long */
    usmp_gateway_stats_t stats;
};

static void say(const usmp_gateway_t *gw, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void say(const usmp_gateway_t *gw, const char *fmt, ...)
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

static int is_datagram(const usmp_gateway_t *gw)
{
    return gw->cfg.transport != USMP_GATEWAY_TCP;
}

static void gateway_random(void *user, uint8_t *buf, size_t len)
{
    (void)user;
    usmp_port_random(buf, len);
}

/* A datagram session's random source. The engine draws the session id as
 * one 8-byte request (its other draws are 16, 32 bytes); its first 3 bytes,
 * the session index, become the slot number, which no other live session
 * has (spec 5.6), and the other 5 stay random (40 bits). */
static void datagram_session_random(void *user, uint8_t *buf, size_t len)
{
    const usmp_gateway_session_t *c = user;
    usmp_port_random(buf, len);
    if (len == USMP_SESSION_ID_BYTES) {
        buf[0] = (uint8_t)(c->slot >> 16);
        buf[1] = (uint8_t)(c->slot >> 8);
        buf[2] = (uint8_t)c->slot;
    }
}

static int set_nonblocking(int fd)
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
        say(gw, "cannot resolve %s", gw->cfg.host);
        return -1;
    }
    for (ai = list; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || (tcp && listen(fd, 64) != 0) ||
            set_nonblocking(fd) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(list);
    if (fd < 0) {
        say(gw, "cannot %s on %s:%u: %s", tcp ? "listen" : "bind", gw->cfg.host, (unsigned)gw->cfg.port,
            strerror(errno));
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

static speed_t baud_constant(uint32_t baud)
{
    switch (baud) {
    case 9600: return B9600;
    case 19200: return B19200;
    case 38400: return B38400;
    case 57600: return B57600;
    case 115200: return B115200;
    case 230400: return B230400;
    default: return B0;
    }
}

/* Opens the serial line raw: 8N1, no echo, no flow control, no line
 * discipline, non-blocking reads. */
static int open_serial(usmp_gateway_t *gw)
{
    struct termios tio;
    speed_t speed = baud_constant(gw->cfg.baud != 0 ? gw->cfg.baud : 115200u);
    int fd;

    if (speed == B0) {
        say(gw, "unsupported baud rate %lu", (unsigned long)gw->cfg.baud);
        return -1;
    }
    fd = open(gw->cfg.serial_path, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        say(gw, "cannot open %s: %s", gw->cfg.serial_path, strerror(errno));
        return -1;
    }
    if (tcgetattr(fd, &tio) == 0) {
        tio.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF);
        tio.c_oflag &= ~(tcflag_t)OPOST;
        tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
        tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | CSTOPB);
        tio.c_cflag |= CS8 | CREAD | CLOCAL;
        tio.c_cc[VMIN] = 0;
        tio.c_cc[VTIME] = 0;
        (void)cfsetispeed(&tio, speed);
        (void)cfsetospeed(&tio, speed);
        if (tcsetattr(fd, TCSANOW, &tio) != 0) {
            say(gw, "cannot configure %s: %s", gw->cfg.serial_path, strerror(errno));
            close(fd);
            return -1;
        }
    }
    return fd;
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

/* Spec 8.3: client_address is the address (4 or 16 bytes) then the port
 * (u16). Returns its length, 0 for a family without one. */
static size_t cookie_address(const struct sockaddr *from, uint8_t out[18])
{
    if (from->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)from;
        memcpy(out, &a->sin_addr, 4);
        memcpy(out + 4, &a->sin_port, 2); /* already big-endian */
        return 6;
    }
    if (from->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)from;
        memcpy(out, &a->sin6_addr, 16);
        memcpy(out + 16, &a->sin6_port, 2);
        return 18;
    }
    return 0;
}

/* The same peer: family, address and port. A serial line has one peer. */
static int same_address(const usmp_gateway_session_t *c, const struct sockaddr *from, socklen_t from_len)
{
    uint8_t a[18], b[18];
    size_t na, nb;
    if (from_len == 0 || c->addr_len == 0) {
        return from_len == c->addr_len;
    }
    na = cookie_address((const struct sockaddr *)&c->addr, a);
    nb = cookie_address(from, b);
    return na == nb && na > 0 && memcmp(a, b, na) == 0;
}

#if USMP_SERVER && USMP_DATAGRAM
/* Constant time: a cookie check must not tell how many bytes matched. */
static int equal_bytes(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint8_t diff = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        diff |= (uint8_t)(a[i] ^ b[i]);
    }
    return diff == 0;
}
#endif

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
 * Output: what the engine has queued goes to the session's transport.
 * ------------------------------------------------------------------------ */

static int output_pending(usmp_gateway_session_t *c)
{
    const uint8_t *data;
    size_t len;
    usmp_engine_output(&c->engine, &data, &len);
    return len > 0;
}

/* Serial: writes one whole COBS frame, waiting for the line at most
 * write_timeout (spec section 13). */
static int write_frame(usmp_gateway_t *gw, const uint8_t *frame, size_t len)
{
    size_t done = 0;
    uint32_t since = usmp_port_millis();
    while (done < len) {
        ssize_t n = write(gw->fd, frame + done, len - done);
        if (n > 0) {
            done += (size_t)n;
            since = usmp_port_millis();
        } else if (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
            return -1;
        } else {
            struct pollfd p;
            int32_t left = (int32_t)(since + gw->write_timeout_ms - usmp_port_millis());
            if (left <= 0) {
                return -1;
            }
            p.fd = gw->fd;
            p.events = POLLOUT;
            p.revents = 0;
            (void)poll(&p, 1, (int)left);
        }
    }
    return 0;
}

/* One datagram of a session to its peer. A UDP datagram the socket cannot
 * take now is lost like any other (the client retransmits its handshake,
 * spec 8.1; records are not resent, 8.5). */
static int send_datagram(usmp_gateway_t *gw, const uint8_t *data, size_t len, const struct sockaddr *to,
                         socklen_t to_len)
{
    int n;
    if (gw->cfg.transport == USMP_GATEWAY_SERIAL) {
        n = usmp_cobs_encode(gw->line_out, sizeof gw->line_out - 1u, data, len);
        if (n < 0) {
            return -1;
        }
        gw->line_out[n] = 0x00; /* the delimiter (spec section 10) */
        return write_frame(gw, gw->line_out, (size_t)n + 1u);
    }
    if (gw->cfg.datagram_send != NULL) {
        gw->cfg.datagram_send(gw->cfg.datagram_send_user, data, len, to, to_len);
        return 0;
    }
    (void)sendto(gw->fd, data, len, MSG_NOSIGNAL, to, to_len);
    return 0;
}

/* Sends what the engine has queued. TCP stops when the socket is full (any
 * byte written restarts the write deadline); datagrams go out whole. */
static int flush(usmp_gateway_session_t *c)
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
        if (is_datagram(gw)) {
            int rc = send_datagram(gw, data, len, (const struct sockaddr *)&c->addr, c->addr_len);
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
    while (c->reply_pending && !output_pending(c)) {
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
        if (flush(c) != 0) {
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

static void end_session(usmp_gateway_session_t *c, const char *why)
{
    usmp_gateway_t *gw = c->gw;
    char sid[17];
    hex(sid, usmp_engine_session_id(&c->engine), 8);
    if (c->established) {
        say(gw, "session %s closed: %s", sid, why);
    } else {
        say(gw, "connection from %s failed: %s", c->peer, why);
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
            snprintf(buf, cap, "closed by the gateway (code %u)", usmp_engine_close_code(&c->engine));
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
static void refuse_busy(usmp_gateway_t *gw, int fd, const char *peer, const struct sockaddr *to,
                        socklen_t to_len)
{
    static uint8_t rx[USMP_HANDSHAKE_MAX_FRAME + USMP_DATAGRAM_OVERHEAD], tx[64];
    usmp_engine_config_t ec;
    usmp_engine_t busy;
    const uint8_t *data;
    size_t n;

    memset(&ec, 0, sizeof ec);
    ec.role = USMP_ROLE_SERVER;
    ec.mode = is_datagram(gw) ? USMP_MODE_DATAGRAM : USMP_MODE_STREAM;
    ec.psk_lookup = gw->cfg.psk_lookup;
    ec.psk_lookup_user = gw->cfg.psk_lookup_user;
    ec.random = gateway_random;
    ec.rx_buf = rx;
    ec.rx_cap = sizeof rx;
    ec.tx_buf = tx;
    ec.tx_cap = sizeof tx;
    ec.max_record = 16;
    ec.max_message = 16;
    if (usmp_engine_init(&busy, &ec) == USMP_OK && usmp_engine_close(&busy, USMP_CODE_BUSY) == USMP_OK) {
        usmp_engine_output(&busy, &data, &n);
        if (is_datagram(gw)) {
            (void)send_datagram(gw, data, n, to, to_len);
        } else {
            (void)send(fd, data, n, MSG_NOSIGNAL);
        }
    }
    usmp_engine_wipe(&busy);
    gw->stats.busy_sent++;
    say(gw, "connection from %s refused: BUSY (%zu sessions)", peer, gw->active);
    if (fd >= 0) {
        close(fd);
    }
}

static usmp_gateway_session_t *free_slot(usmp_gateway_t *gw)
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
static int session_start(usmp_gateway_t *gw, usmp_gateway_session_t *c, const char *peer, uint32_t started_ms)
{
    usmp_engine_config_t ec;

    memset(&ec, 0, sizeof ec);
    ec.role = USMP_ROLE_SERVER;
    ec.mode = is_datagram(gw) ? USMP_MODE_DATAGRAM : USMP_MODE_STREAM;
    ec.psk_lookup = gw->cfg.psk_lookup;
    ec.psk_lookup_user = gw->cfg.psk_lookup_user;
    ec.random = is_datagram(gw) ? datagram_session_random : gateway_random;
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
    if (usmp_engine_init(&c->engine, &ec) != USMP_OK || usmp_engine_start(&c->engine, started_ms) != USMP_OK) {
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
        hex(old_sid, usmp_engine_session_id(&o->engine), 8);
        hex(new_sid, usmp_engine_session_id(&newer->engine), 8);
        hex(dev, device, USMP_DEVICE_ID_BYTES);
        say(gw, "session %s replaced by session %s (device %s)", old_sid, new_sid, dev);
        o->reply_pending = 0; /* nothing more goes to the replaced session but its BYE */
        (void)usmp_engine_close(&o->engine, USMP_CODE_REPLACED);
        (void)flush(o);
    }
}

/* An event from a session's engine: logs the new session, or gives a
 * message to the application. */
static void handle_event(usmp_gateway_session_t *c, const usmp_event_t *ev)
{
    usmp_gateway_t *gw = c->gw;
    if (ev->type == USMP_EVENT_ESTABLISHED) {
        char sid[17], dev[13];
        c->established = 1;
        hex(sid, usmp_engine_session_id(&c->engine), 8);
        hex(dev, usmp_engine_device_id(&c->engine), 6);
        say(gw, "session %s open: device %s from %s", sid, dev, c->peer);
        if (gw->cfg.shared_psk) {
            /* spec/security.md: with one key for every device the id is only a claim. */
            say(gw, "session %s: device id %s is not authenticated (one key for every device)", sid, dev);
        }
        replace_older_session(gw, c);
    } else if (ev->type == USMP_EVENT_MESSAGE) {
        gw->stats.messages_in++;
        if (gw->cfg.on_message != NULL) {
            gw->cfg.on_message(gw->cfg.on_message_user, c, ev->data, ev->len);
        }
    }
}

/* Spec section 13: TCP or serial output that makes no progress for
 * write_timeout ends the session (no BYE: none could be written). Returns
 * 1 if it is time. */
static int write_stalled(usmp_gateway_t *gw, usmp_gateway_session_t *c, uint32_t now, int *timeout)
{
    int32_t left;
    if (is_datagram(gw) || !output_pending(c)) {
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

/* One pass over a session after input: timers, output, the reply, the end. */
static void service_session(usmp_gateway_session_t *c)
{
    usmp_gateway_t *gw = c->gw;
    char why[96];
    int timeout = 0;

    /* The timers run whatever the back-pressure (spec 11, 13). */
    (void)usmp_engine_tick(&c->engine, usmp_port_millis());
    if (flush(c) != 0) {
        (void)usmp_engine_transport_closed(&c->engine);
    }
    pump_reply(c);
    if (write_stalled(gw, c, usmp_port_millis(), &timeout)) {
        snprintf(why, sizeof why, "no write progress for %lu ms: dropped", (unsigned long)gw->write_timeout_ms);
        end_session(c, why);
    } else if ((usmp_engine_state(&c->engine) == USMP_STATE_FAILED ||
                usmp_engine_state(&c->engine) == USMP_STATE_CLOSED) && !output_pending(c)) {
        end_session(c, end_reason(c, why, sizeof why));
    }
}

/* The nearest engine deadline or write deadline of a session, into *timeout. */
static void session_timeout(usmp_gateway_t *gw, usmp_gateway_session_t *c, uint32_t now, int *timeout)
{
    uint32_t deadline;
    (void)write_stalled(gw, c, now, timeout);
    if (usmp_engine_next_deadline(&c->engine, &deadline)) {
        int32_t left = (int32_t)(deadline - now);
        if (left < *timeout) {
            *timeout = left < 0 ? 0 : left;
        }
    }
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
    usmp_gateway_session_t *c = free_slot(gw);
    if (c == NULL) {
        refuse_busy(gw, fd, peer, NULL, 0);
        return;
    }
    if (session_start(gw, c, peer, accepted_ms) != 0) {
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
    say(gw, "connection from %s failed: %s", p->peer, why);
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
    describe_peer(&ss, peer, sizeof peer);
    if (!usmp_rate_limiter_allow(&gw->limiter, (const struct sockaddr *)&ss, usmp_port_millis())) {
        /* Spec section 13: excess connections are closed before any X25519 work. */
        say(gw, "connection from %s refused: rate limit", peer);
        close(fd);
        return 1;
    }
    (void)set_nonblocking(fd);
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
    return p->frame[0] == USMP_TYPE_HELLO && body == HELLO_BODY_BYTES ? USMP_STREAM_HEADER_BYTES + body
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
static void tcp_feed_input(usmp_gateway_session_t *c)
{
    while (!c->reply_pending && c->in_off < c->in_len) {
        size_t used = 0;
        usmp_event_t ev;
        int rc = usmp_engine_feed(&c->engine, c->in + c->in_off, c->in_len - c->in_off, usmp_port_millis(),
                                  &used, &ev);
        c->in_off += used;
        handle_event(c, &ev);
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
        tcp_feed_input(c);
    }
}

/* ------------------------------------------------------------------------
 * Datagram transports: the demultiplexer of spec 8.4.
 * ------------------------------------------------------------------------ */

static int in_handshake(const usmp_gateway_session_t *c)
{
    usmp_state_t st = usmp_engine_state(&c->engine);
    return st == USMP_STATE_WAIT_HELLO || st == USMP_STATE_WAIT_HELLO_ACK;
}

/* Spec 8.4: a handshake frame goes to the handshake in progress from its
 * source address if there is one (handshake = 1), else to the established
 * session whose peer address it is (handshake = 0). */
static usmp_gateway_session_t *find_by_address(usmp_gateway_t *gw, const struct sockaddr *from, socklen_t from_len,
                                               int handshake)
{
    size_t i;
    for (i = 0; i < gw->slots; i++) {
        usmp_gateway_session_t *c = &gw->sessions[i];
        if (c->in_use && in_handshake(c) == handshake && same_address(c, from, from_len)) {
            return c;
        }
    }
    return NULL;
}

static size_t handshakes_in_progress(const usmp_gateway_t *gw)
{
    size_t i, n = 0;
    for (i = 0; i < gw->slots; i++) {
        if (gw->sessions[i].in_use && in_handshake(&gw->sessions[i])) {
            n++;
        }
    }
    return n;
}

/* Feeds one datagram to a session's engine and serves what it produced. */
static int datagram_feed(usmp_gateway_session_t *c, const uint8_t *d, size_t len)
{
    usmp_event_t ev;
    size_t used = 0;
    int rc = usmp_engine_feed(&c->engine, d, len, usmp_port_millis(), &used, &ev);
    handle_event(c, &ev);
    service_session(c);
    return rc;
}

/* Spec 6.5, 8.4 rule 5: a record that passed check 7 with seq > top moves
 * its session to the record's source address, even while a handshake from
 * that address is in progress. */
static void note_record_passed(usmp_gateway_session_t *c, uint64_t seq, const struct sockaddr *from,
                               socklen_t from_len)
{
    usmp_gateway_t *gw = c->gw;
    char sid[17];

    if (c->have_top && seq <= c->top) {
        return;
    }
    c->top = seq;
    c->have_top = 1;
    if (gw->cfg.transport != USMP_GATEWAY_UDP || same_address(c, from, from_len) ||
        from_len > (socklen_t)sizeof c->addr) {
        return;
    }
    memcpy(&c->addr, from, from_len);
    c->addr_len = from_len;
    describe_peer(&c->addr, c->peer, sizeof c->peer);
    hex(sid, usmp_engine_session_id(&c->engine), 8);
    gw->stats.rebinds++;
    say(gw, "session %s moved to %s", sid, c->peer);
}

/* Spec 8.4: a record goes by its session index alone, whatever its source.
 * The session moves (if it does) before its answer is sent, so that the
 * answer goes to the new address. */
static void record_input(usmp_gateway_t *gw, const uint8_t *d, size_t len, const struct sockaddr *from,
                         socklen_t from_len)
{
    usmp_gateway_session_t *c;
    usmp_event_t ev;
    uint32_t index;
    uint64_t seq;
    size_t used = 0, i;
    int was_established, rc;

    if (len < USMP_DATAGRAM_HEADER_BYTES) {
        gw->stats.records_dropped++;
        return;
    }
    index = ((uint32_t)d[1] << 16) | ((uint32_t)d[2] << 8) | d[3];
    c = index < gw->slots ? &gw->sessions[index] : NULL;
    if (c == NULL || !c->in_use) {
        gw->stats.unknown_session++;
        return;
    }
    for (seq = 0, i = 4; i < USMP_DATAGRAM_HEADER_BYTES; i++) {
        seq = (seq << 8) | d[i];
    }
    was_established = usmp_engine_state(&c->engine) == USMP_STATE_ESTABLISHED;
    rc = usmp_engine_feed(&c->engine, d, len, usmp_port_millis(), &used, &ev);
    if (rc == USMP_OK && was_established) {
        note_record_passed(c, seq, from, from_len);
    } else if (rc != USMP_OK) {
        gw->stats.records_dropped++;
    }
    handle_event(c, &ev);
    service_session(c);
}

/* Spec 8.3: a cookie made with the current or the previous secret. */
static int cookie_valid(const usmp_gateway_t *gw, const uint8_t *hello, size_t len, const struct sockaddr *from)
{
#if USMP_SERVER && USMP_DATAGRAM
    uint8_t address[18], expected[COOKIE_BYTES];
    size_t address_len = cookie_address(from, address);
    int ok = 0;

    if (len != DATAGRAM_HELLO_COOKIE_BYTES || address_len == 0) {
        return 0;
    }
    if (usmp_cookie_compute(expected, gw->cookie_secret, address, address_len, hello, DATAGRAM_HELLO_BYTES) ==
        USMP_OK) {
        ok |= equal_bytes(expected, hello + DATAGRAM_HELLO_BYTES, COOKIE_BYTES);
    }
    if (usmp_cookie_compute(expected, gw->cookie_secret_previous, address, address_len, hello,
                            DATAGRAM_HELLO_BYTES) == USMP_OK) {
        ok |= equal_bytes(expected, hello + DATAGRAM_HELLO_BYTES, COOKIE_BYTES);
    }
    return ok;
#else
    (void)gw, (void)hello, (void)len, (void)from;
    return 0; /* a build without the server role or datagram mode serves no UDP */
#endif
}

/* Spec 8.3: COOKIE = 0x0A || cookie(16); no state is kept. */
static void send_cookie(usmp_gateway_t *gw, const uint8_t *hello, const struct sockaddr *from, socklen_t from_len)
{
#if USMP_SERVER && USMP_DATAGRAM
    uint8_t address[18], frame[1 + COOKIE_BYTES];
    size_t address_len = cookie_address(from, address);

    if (address_len == 0 || usmp_cookie_compute(frame + 1, gw->cookie_secret, address, address_len, hello,
                                                 DATAGRAM_HELLO_BYTES) != USMP_OK) {
        return;
    }
    frame[0] = USMP_TYPE_COOKIE;
    (void)send_datagram(gw, frame, sizeof frame, from, from_len);
    gw->stats.cookies_sent++;
#else
    (void)gw, (void)hello, (void)from, (void)from_len;
#endif
}

/* A HELLO that belongs to no handshake: spec 4.5 step 5 (the cookie, UDP
 * only) before the limits (8.4 rule 3), then a slot and an engine. */
static void new_handshake(usmp_gateway_t *gw, const uint8_t *d, size_t len, const struct sockaddr *from,
                          socklen_t from_len)
{
    usmp_gateway_session_t *c;
    struct sockaddr_storage peer_addr;
    char peer[64] = "serial line";

    if (from_len > (socklen_t)sizeof peer_addr) {
        return;
    }
    memset(&peer_addr, 0, sizeof peer_addr);
    memcpy(&peer_addr, from, from_len);
    if (gw->cfg.transport == USMP_GATEWAY_UDP) {
        describe_peer(&peer_addr, peer, sizeof peer);
        /* Under load a HELLO without a valid cookie gets a COOKIE and costs
         * no state (spec 8.3); the limits come after this check (8.4 rule
         * 3), so a spoofed source never takes a token or a slot. */
        if (handshakes_in_progress(gw) > gw->cookie_threshold && !cookie_valid(gw, d, len, from)) {
            send_cookie(gw, d, from, from_len);
            return;
        }
        /* Spec 13: past its source prefix's rate a HELLO is dropped before
         * any X25519 work. */
        if (!usmp_rate_limiter_allow(&gw->limiter, from, usmp_port_millis())) {
            gw->stats.handshake_dropped++;
            say(gw, "HELLO from %s dropped: rate limit", peer);
            return;
        }
    }
    c = free_slot(gw);
    if (c == NULL) {
        refuse_busy(gw, -1, peer, from, from_len);
        return;
    }
    if (session_start(gw, c, peer, usmp_port_millis()) != 0) {
        return;
    }
    memcpy(&c->addr, &peer_addr, sizeof peer_addr);
    c->addr_len = from_len;
    memcpy(c->hello, d, DATAGRAM_HELLO_BYTES);
    (void)datagram_feed(c, d, len);
}

static void handshake_input(usmp_gateway_t *gw, const uint8_t *d, size_t len, const struct sockaddr *from,
                            socklen_t from_len)
{
    usmp_gateway_session_t *pending = find_by_address(gw, from, from_len, 1);
    usmp_gateway_session_t *session = find_by_address(gw, from, from_len, 0);

    if (d[0] != USMP_TYPE_HELLO) {
        /* HELLO_ACK, ERROR: to the handshake, else to the session (a
         * resent HELLO_ACK gets the stored SESSION_OK again, 8.2). */
        usmp_gateway_session_t *c = pending != NULL ? pending : session;
        if (c == NULL) {
            gw->stats.handshake_dropped++;
            return;
        }
        if (datagram_feed(c, d, len) != USMP_OK) {
            gw->stats.handshake_dropped++;
        }
        return;
    }
    if (len != DATAGRAM_HELLO_BYTES && len != DATAGRAM_HELLO_COOKIE_BYTES) {
        gw->stats.handshake_dropped++; /* MALFORMED: never answered (9.2) */
        return;
    }
    if (pending != NULL) {
        if (memcmp(pending->hello, d, DATAGRAM_HELLO_BYTES) == 0) {
            (void)datagram_feed(pending, d, len); /* a duplicate: the CHALLENGE again (8.2) */
            return;
        }
        /* A different HELLO from the same address replaces that handshake (8.2). */
        end_session(pending, "replaced by a new HELLO from the same address");
    } else if (session != NULL && memcmp(session->hello, d, DATAGRAM_HELLO_BYTES) == 0) {
        gw->stats.handshake_dropped++; /* 8.4 rule 1: a late duplicate, dropped */
        return;
    }
    new_handshake(gw, d, len, from, from_len);
}

/* Spec 8.4: one datagram, routed by its first byte. */
static void datagram_input(usmp_gateway_t *gw, const uint8_t *d, size_t len, const struct sockaddr *from,
                           socklen_t from_len)
{
    gw->stats.datagrams_in++;
    if (len == 0) {
        gw->stats.handshake_dropped++;
    } else if (d[0] >= USMP_TYPE_DATA && d[0] <= USMP_TYPE_DATA_FRAGMENT) {
        record_input(gw, d, len, from, from_len);
    } else if (d[0] == USMP_TYPE_HELLO || d[0] == USMP_TYPE_HELLO_ACK || d[0] == USMP_TYPE_ERROR) {
        handshake_input(gw, d, len, from, from_len);
    } else {
        gw->stats.handshake_dropped++; /* anything else: dropped, never answered (9.2) */
    }
}

void usmp_gateway_datagram_input(usmp_gateway_t *gw, const uint8_t *datagram, size_t len,
                                 const struct sockaddr *from, socklen_t from_len)
{
    if (gw == NULL || gw->cfg.transport != USMP_GATEWAY_UDP || (datagram == NULL && len > 0) || from == NULL) {
        return;
    }
    datagram_input(gw, datagram, len, from, from_len);
}

/* UDP: the datagrams waiting on the socket. */
static void udp_read(usmp_gateway_t *gw)
{
    int i;
    for (i = 0; i < DATAGRAMS_PER_PASS; i++) {
        struct sockaddr_storage from;
        socklen_t from_len = sizeof from;
        ssize_t n = recvfrom(gw->fd, gw->datagram, sizeof gw->datagram, MSG_TRUNC, (struct sockaddr *)&from,
                             &from_len);
        if (n < 0) {
            return;
        }
        if ((size_t)n > DATAGRAM_MAX) {
            gw->stats.datagrams_in++;
            gw->stats.records_dropped++; /* longer than any frame: MALFORMED */
            continue;
        }
        datagram_input(gw, gw->datagram, (size_t)n, (const struct sockaddr *)&from, from_len);
    }
}

/* Serial: bytes up to each 0x00 are one COBS frame (spec section 10); an
 * empty frame is ignored, an overlong or corrupt one dropped and counted. */
static void serial_read(usmp_gateway_t *gw)
{
    uint8_t chunk[512];
    struct sockaddr_storage none;
    ssize_t n, i;

    memset(&none, 0, sizeof none);
    do {
        n = read(gw->fd, chunk, sizeof chunk);
    } while (n < 0 && errno == EINTR);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        /* No peer on the line (a pseudo-terminal whose other end is
         * closed reports a hang-up at once, again and again): look again
         * later instead of spinning; the sessions' timers run on. */
        if (!gw->line_hung_up) {
            say(gw, "%s: no peer on the line", gw->cfg.serial_path);
        }
        gw->line_hung_up = 1;
        return;
    }
    if (gw->line_hung_up) {
        say(gw, "%s: the line is back", gw->cfg.serial_path);
        gw->line_hung_up = 0;
    }
    for (i = 0; i < n; i++) {
        if (chunk[i] != 0x00) {
            if (gw->line_len < sizeof gw->line) {
                gw->line[gw->line_len++] = chunk[i];
            } else {
                gw->line_overflow = 1;
            }
            continue;
        }
        if (gw->line_overflow) {
            gw->stats.cobs_errors++;
        } else if (gw->line_len > 0) {
            int len = usmp_cobs_decode(gw->datagram, sizeof gw->datagram, gw->line, gw->line_len);
            if (len < 0 || (size_t)len > DATAGRAM_MAX) {
                gw->stats.cobs_errors++;
            } else {
                datagram_input(gw, gw->datagram, (size_t)len, (const struct sockaddr *)&none, 0);
            }
        }
        gw->line_len = 0;
        gw->line_overflow = 0;
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
        if (!is_datagram(gw)) {
            p->fd = c->fd;
            if (!c->reply_pending && c->in_off == c->in_len) {
                p->events |= POLLIN;
            }
            if (output_pending(c)) {
                p->events |= POLLOUT;
            }
        }
        session_timeout(gw, c, now, &timeout);
    }
    if (is_datagram(gw)) {
        /* Spec 8.3: the cookie secret is replaced every 120 s. */
        int32_t left = (int32_t)(gw->cookie_secret_ms + COOKIE_SECRET_LIFETIME_MS - now);
        if (left < timeout) {
            timeout = left < 0 ? 0 : left;
        }
        return timeout;
    }
    /* Expire first, so that no closed descriptor is polled. */
    timeout = pending_expire(gw, now, timeout);
    for (i = 0; i < gw->max_pending; i++) {
        gw->fds[gw->slots + 1 + i].fd = gw->pending[i].fd;
        gw->fds[gw->slots + 1 + i].events = POLLIN;
        gw->fds[gw->slots + 1 + i].revents = 0;
    }
    return timeout;
}

static int wait_for_events(usmp_gateway_t *gw, int timeout)
{
    return poll(gw->fds, (nfds_t)gw->nfds, timeout);
}

static void rotate_cookie_secret(usmp_gateway_t *gw)
{
    uint32_t now = usmp_port_millis();
    if ((uint32_t)(now - gw->cookie_secret_ms) >= COOKIE_SECRET_LIFETIME_MS) {
        memcpy(gw->cookie_secret_previous, gw->cookie_secret, sizeof gw->cookie_secret);
        usmp_port_random(gw->cookie_secret, sizeof gw->cookie_secret);
        gw->cookie_secret_ms = now;
    }
}

void usmp_gateway_tick(usmp_gateway_t *gw)
{
    size_t i;
    if (gw == NULL) {
        return;
    }
    if (is_datagram(gw)) {
        rotate_cookie_secret(gw);
    }
    for (i = 0; i < gw->slots; i++) {
        usmp_gateway_session_t *c = &gw->sessions[i];
        if (!c->in_use) {
            continue;
        }
        if (!is_datagram(gw)) {
            tcp_feed_input(c);
        }
        service_session(c);
    }
}

int usmp_gateway_poll_once(usmp_gateway_t *gw, int max_wait_ms)
{
    int timeout = build_poll_set(gw);
    size_t i;

    if (max_wait_ms >= 0 && max_wait_ms < timeout) {
        timeout = max_wait_ms;
    }
    if (wait_for_events(gw, timeout) < 0 && errno != EINTR) {
        say(gw, "poll failed: %s", strerror(errno));
        return USMP_ERR_TRANSPORT;
    }
    if (gw->cfg.transport == USMP_GATEWAY_UDP && (gw->fds[0].revents & POLLIN)) {
        udp_read(gw);
    } else if (gw->cfg.transport == USMP_GATEWAY_SERIAL &&
               (gw->line_hung_up || (gw->fds[0].revents & (POLLIN | POLLHUP | POLLERR)))) {
        serial_read(gw);
    }
    if (is_datagram(gw)) {
        usmp_gateway_tick(gw);
        return USMP_OK;
    }
    /* TCP. Pending connections first: a HELLO that has arrived moves to a
     * slot before a new connection could evict it. */
    for (i = 0; i < gw->max_pending; i++) {
        pending_t *p = &gw->pending[i];
        struct pollfd *f = &gw->fds[gw->slots + 1 + i];
        if (p->fd >= 0 && f->fd == p->fd && (f->revents & (POLLIN | POLLHUP | POLLERR))) {
            pending_read(gw, p);
        }
    }
    for (i = 0; i < gw->slots; i++) {
        usmp_gateway_session_t *c = &gw->sessions[i];
        if (c->in_use && gw->fds[i + 1].fd == c->fd && (gw->fds[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) {
            tcp_read(c);
        }
    }
    usmp_gateway_tick(gw);
    if (gw->fds[0].revents & POLLIN) {
        /* A burst of connections is taken in one pass, so the listen
         * backlog does not overflow while idle connections arrive. */
        for (i = 0; i < 64 && accept_one(gw); i++) {
        }
    }
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
        say(gw, "gateway configuration needs max_sessions > 0 and a PSK lookup");
        return 0;
    }
    if (cfg->max_record < USMP_MIN_RECORD || cfg->max_message < cfg->max_record ||
        (cfg->transport != USMP_GATEWAY_TCP && cfg->max_record > USMP_DATAGRAM_MAX_RECORD)) {
        say(gw, "max_record must be 16 .. %u and max_message at least max_record",
            cfg->transport != USMP_GATEWAY_TCP ? USMP_DATAGRAM_MAX_RECORD : USMP_STREAM_MAX_RECORD);
        return 0;
    }
    if (cfg->transport != USMP_GATEWAY_TCP && cfg->max_sessions >= SESSION_INDEX_LIMIT) {
        say(gw, "a datagram gateway has at most %u session slots (spec 5.6)", SESSION_INDEX_LIMIT - 1u);
        return 0;
    }
    if (cfg->transport == USMP_GATEWAY_SERIAL && cfg->serial_path == NULL) {
        say(gw, "a serial gateway needs the path of its line");
        return 0;
    }
    return 1;
}

static int open_transport(usmp_gateway_t *gw)
{
    const usmp_gateway_config_t *cfg = &gw->cfg;
    if (cfg->transport == USMP_GATEWAY_SERIAL) {
        gw->fd = open_serial(gw);
        if (gw->fd < 0) {
            return -1;
        }
        say(gw, "serving %s at %lu baud (one session, max record %u, max message %u)", cfg->serial_path,
            (unsigned long)(cfg->baud != 0 ? cfg->baud : 115200u), (unsigned)cfg->max_record,
            (unsigned)cfg->max_message);
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
    say(gw, "%s on %s:%u (max %zu sessions, max record %u, max message %u)",
        cfg->transport == USMP_GATEWAY_UDP ? "udp" : "listening", cfg->host, (unsigned)gw->port,
        cfg->max_sessions, (unsigned)cfg->max_record, (unsigned)cfg->max_message);
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
    gw->max_pending = cfg->transport == USMP_GATEWAY_TCP ? (cfg->max_pending != 0 ? cfg->max_pending : 256) : 0;
    gw->cookie_threshold = cfg->cookie_threshold != 0 ? cfg->cookie_threshold : (cfg->max_sessions + 1) / 2;
    handshake_timeout_ms = cfg->handshake_timeout_ms != 0 ? cfg->handshake_timeout_ms : 10000;
    gw->hello_timeout_ms = cfg->hello_timeout_ms != 0 ? cfg->hello_timeout_ms : 2000;
    /* The handshake timer runs from the accept too (spec 13): a pending
     * connection also ends when it expires. */
    if (gw->hello_timeout_ms > handshake_timeout_ms) {
        gw->hello_timeout_ms = handshake_timeout_ms;
    }
    gw->write_timeout_ms = cfg->write_timeout_ms != 0 ? cfg->write_timeout_ms : 10000;
    gw->rx_cap = USMP_RECORD_BUFFER_BYTES(cfg->max_record);
    gw->tx_cap = cfg->transport == USMP_GATEWAY_TCP ? USMP_RECORD_BUFFER_BYTES(USMP_STREAM_MAX_RECORD)
                                                    : USMP_RECORD_BUFFER_BYTES(USMP_DATAGRAM_MAX_RECORD);
    gw->nfds = gw->slots + gw->max_pending + 1;
    gw->sessions = calloc(gw->slots, sizeof *gw->sessions);
    gw->pending = calloc(gw->max_pending + 1, sizeof *gw->pending);
    gw->fds = calloc(gw->nfds, sizeof *gw->fds);
    if (gw->sessions == NULL || gw->pending == NULL || gw->fds == NULL) {
        say(gw, "out of memory for %zu sessions", cfg->max_sessions);
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
            say(gw, "out of memory for %zu sessions", cfg->max_sessions);
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
            (void)flush(c);
            end_session(c, "gateway shutting down");
        }
    }
    for (i = 0; i < gw->max_pending; i++) {
        if (gw->pending[i].fd >= 0) {
            close(gw->pending[i].fd);
        }
    }
    if (is_datagram(gw)) {
        say(gw, "messages: %llu in, %llu out", (unsigned long long)gw->stats.messages_in,
            (unsigned long long)gw->stats.messages_out);
        say(gw, "dropped: %llu corrupt frames, %llu records, %llu for no session, %llu handshake frames; "
                "%llu cookies, %llu BUSY, %llu rebinds, %llu datagrams in",
            (unsigned long long)gw->stats.cobs_errors, (unsigned long long)gw->stats.records_dropped,
            (unsigned long long)gw->stats.unknown_session, (unsigned long long)gw->stats.handshake_dropped,
            (unsigned long long)gw->stats.cookies_sent, (unsigned long long)gw->stats.busy_sent,
            (unsigned long long)gw->stats.rebinds, (unsigned long long)gw->stats.datagrams_in);
    }
    if (gw->fd >= 0) {
        close(gw->fd);
    }
    say(gw, "stopped");
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
