/*
 * usmp_gateway_datagram.c - the C gateway's datagram transports, UDP and
 * a serial line (see usmp_gateway_internal.h).
 *
 * One descriptor carries every session. Datagrams are routed as spec 8.4
 * says: records by session index (the slot number, so indexes are unique
 * among live sessions, spec 5.6), HELLO, HELLO_ACK and ERROR by source
 * address. A new HELLO on UDP passes the cookie check (spec 8.3) before
 * the handshake limit (8.4 rule 3); a serial line has no cookie (rule 4).
 */
#define _POSIX_C_SOURCE 200809L

#include "usmp_gateway_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "usmp_port.h"

/* Spec 8.3: the cookie secret is replaced every 120 s. */
#define COOKIE_SECRET_LIFETIME_MS 120000u
/* Datagrams taken from the socket in one pass before the timers run. */
#define DATAGRAMS_PER_PASS 64

/* A datagram session's random source. The engine draws the session id as
 * one 8-byte request (its other draws are 16, 32 bytes); its first 3 bytes,
 * the session index, become the slot number, which no other live session
 * has (spec 5.6), and the other 5 stay random (40 bits). */
void usmp_gw_datagram_session_random(void *user, uint8_t *buf, size_t len)
{
    const usmp_gateway_session_t *c = user;
    usmp_port_random(buf, len);
    if (len == USMP_SESSION_ID_BYTES) {
        buf[0] = (uint8_t)(c->slot >> 16);
        buf[1] = (uint8_t)(c->slot >> 8);
        buf[2] = (uint8_t)c->slot;
    }
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
int usmp_gw_open_serial(usmp_gateway_t *gw)
{
    struct termios tio;
    speed_t speed = baud_constant(gw->cfg.baud != 0 ? gw->cfg.baud : 115200u);
    int fd;

    if (speed == B0) {
        usmp_gw_say(gw, "unsupported baud rate %lu", (unsigned long)gw->cfg.baud);
        return -1;
    }
    fd = open(gw->cfg.serial_path, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        usmp_gw_say(gw, "cannot open %s: %s", gw->cfg.serial_path, strerror(errno));
        return -1;
    }
    if (tcgetattr(fd, &tio) == 0) {
        tio.c_iflag &=
            ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON | IXOFF);
        tio.c_oflag &= ~(tcflag_t)OPOST;
        tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
        tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | CSTOPB);
        tio.c_cflag |= CS8 | CREAD | CLOCAL;
        tio.c_cc[VMIN] = 0;
        tio.c_cc[VTIME] = 0;
        (void)cfsetispeed(&tio, speed);
        (void)cfsetospeed(&tio, speed);
        if (tcsetattr(fd, TCSANOW, &tio) != 0) {
            usmp_gw_say(gw, "cannot configure %s: %s", gw->cfg.serial_path, strerror(errno));
            close(fd);
            return -1;
        }
    }
    return fd;
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
static int same_address(const usmp_gateway_session_t *c, const struct sockaddr *from,
                        socklen_t from_len)
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
int usmp_gw_send_datagram(usmp_gateway_t *gw, const uint8_t *data, size_t len,
                          const struct sockaddr *to, socklen_t to_len)
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
static usmp_gateway_session_t *find_by_address(usmp_gateway_t *gw, const struct sockaddr *from,
                                               socklen_t from_len, int handshake)
{
    size_t i;
    for (i = 0; i < gw->used_slots; i++) {
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
    for (i = 0; i < gw->used_slots; i++) {
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
    usmp_gw_handle_event(c, &ev);
    usmp_gw_service_session(c);
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
    usmp_gw_describe_peer(&c->addr, c->peer, sizeof c->peer);
    usmp_gw_hex(sid, usmp_engine_session_id(&c->engine), 8);
    gw->stats.rebinds++;
    usmp_gw_say(gw, "session %s moved to %s", sid, c->peer);
}

/* Spec 8.4: a record goes by its session index alone, whatever its source.
 * The session moves (if it does) before its answer is sent, so that the
 * answer goes to the new address. */
static void record_input(usmp_gateway_t *gw, const uint8_t *d, size_t len,
                         const struct sockaddr *from, socklen_t from_len)
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
    usmp_gw_handle_event(c, &ev);
    usmp_gw_service_session(c);
}

/* Spec 8.3: a cookie made with the current or the previous secret. */
static int cookie_valid(const usmp_gateway_t *gw, const uint8_t *hello, size_t len,
                        const struct sockaddr *from)
{
#if USMP_SERVER && USMP_DATAGRAM
    uint8_t address[18], expected[COOKIE_BYTES];
    size_t address_len = cookie_address(from, address);
    int ok = 0;

    if (len != DATAGRAM_HELLO_COOKIE_BYTES || address_len == 0) {
        return 0;
    }
    if (usmp_cookie_compute(expected, gw->cookie_secret, address, address_len, hello,
                            DATAGRAM_HELLO_BYTES) == USMP_OK) {
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
static void send_cookie(usmp_gateway_t *gw, const uint8_t *hello, const struct sockaddr *from,
                        socklen_t from_len)
{
#if USMP_SERVER && USMP_DATAGRAM
    uint8_t address[18], frame[1 + COOKIE_BYTES];
    size_t address_len = cookie_address(from, address);

    if (address_len == 0 || usmp_cookie_compute(frame + 1, gw->cookie_secret, address, address_len,
                                                hello, DATAGRAM_HELLO_BYTES) != USMP_OK) {
        return;
    }
    frame[0] = USMP_TYPE_COOKIE;
    (void)usmp_gw_send_datagram(gw, frame, sizeof frame, from, from_len);
    gw->stats.cookies_sent++;
#else
    (void)gw, (void)hello, (void)from, (void)from_len;
#endif
}

/* A HELLO that belongs to no handshake: spec 4.5 step 5 (the cookie, UDP
 * only) before the limits (8.4 rule 3), then a slot and an engine. */
static void new_handshake(usmp_gateway_t *gw, const uint8_t *d, size_t len,
                          const struct sockaddr *from, socklen_t from_len)
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
        usmp_gw_describe_peer(&peer_addr, peer, sizeof peer);
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
            usmp_gw_say(gw, "HELLO from %s dropped: rate limit", peer);
            return;
        }
    }
    c = usmp_gw_free_slot(gw);
    if (c == NULL) {
        usmp_gw_refuse_busy(gw, -1, peer, from, from_len);
        return;
    }
    if (usmp_gw_session_start(gw, c, peer, usmp_port_millis()) != 0) {
        return;
    }
    memcpy(&c->addr, &peer_addr, sizeof peer_addr);
    c->addr_len = from_len;
    memcpy(c->hello, d, DATAGRAM_HELLO_BYTES);
    (void)datagram_feed(c, d, len);
}

static void handshake_input(usmp_gateway_t *gw, const uint8_t *d, size_t len,
                            const struct sockaddr *from, socklen_t from_len)
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
        usmp_gw_end_session(pending, "replaced by a new HELLO from the same address");
    } else if (session != NULL && memcmp(session->hello, d, DATAGRAM_HELLO_BYTES) == 0) {
        gw->stats.handshake_dropped++; /* 8.4 rule 1: a late duplicate, dropped */
        return;
    }
    new_handshake(gw, d, len, from, from_len);
}

/* Spec 8.4: one datagram, routed by its first byte. */
static void datagram_input(usmp_gateway_t *gw, const uint8_t *d, size_t len,
                           const struct sockaddr *from, socklen_t from_len)
{
    gw->stats.datagrams_in++;
    if (len == 0) {
        gw->stats.handshake_dropped++;
    } else if ((d[0] >= USMP_TYPE_DATA && d[0] <= USMP_TYPE_DATA_FRAGMENT) ||
               d[0] == USMP_TYPE_CONTROL) {
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
    if (gw == NULL || gw->cfg.transport != USMP_GATEWAY_UDP || (datagram == NULL && len > 0) ||
        from == NULL) {
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
        ssize_t n = recvfrom(gw->fd, gw->datagram, sizeof gw->datagram, MSG_TRUNC,
                             (struct sockaddr *)&from, &from_len);
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
            usmp_gw_say(gw, "%s: no peer on the line", gw->cfg.serial_path);
        }
        gw->line_hung_up = 1;
        return;
    }
    if (gw->line_hung_up) {
        usmp_gw_say(gw, "%s: the line is back", gw->cfg.serial_path);
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

void usmp_gw_rotate_cookie_secret(usmp_gateway_t *gw)
{
    uint32_t now = usmp_port_millis();
    if ((uint32_t)(now - gw->cookie_secret_ms) >= COOKIE_SECRET_LIFETIME_MS) {
        memcpy(gw->cookie_secret_previous, gw->cookie_secret, sizeof gw->cookie_secret);
        usmp_port_random(gw->cookie_secret, sizeof gw->cookie_secret);
        gw->cookie_secret_ms = now;
    }
}

/* Spec 8.3: the cookie secret is replaced every 120 s. */
int usmp_gw_cookie_secret_timeout(const usmp_gateway_t *gw, uint32_t now, int timeout)
{
    int32_t left = (int32_t)(gw->cookie_secret_ms + COOKIE_SECRET_LIFETIME_MS - now);
    if (left < timeout) {
        timeout = left < 0 ? 0 : left;
    }
    return timeout;
}

/* What the poller reported on the one descriptor: the datagrams waiting
 * on the UDP socket, or the bytes on the serial line. A line that reports
 * a hang-up is not watched for SERIAL_HANGUP_RETRY_MS (it would be
 * reported again at once, again and again), then read again. */
int usmp_gw_datagram_read_ready(usmp_gateway_t *gw, unsigned events, uint32_t now, int timeout)
{
    int32_t left;
    if (gw->cfg.transport == USMP_GATEWAY_UDP) {
        if (events & USMP_POLLER_IN) {
            udp_read(gw);
        }
        return timeout;
    }
    if (gw->cfg.transport != USMP_GATEWAY_SERIAL) {
        return timeout;
    }
    if (!gw->line_hung_up) {
        if (events & (USMP_POLLER_IN | USMP_POLLER_ERROR)) {
            serial_read(gw);
            if (gw->line_hung_up) {
                (void)usmp_poller_remove(gw->poller, gw->fd);
                gw->line_hung_up_ms = now;
                return timeout < SERIAL_HANGUP_RETRY_MS ? timeout : SERIAL_HANGUP_RETRY_MS;
            }
        }
        return timeout;
    }
    left = (int32_t)(gw->line_hung_up_ms + SERIAL_HANGUP_RETRY_MS - now);
    if (left <= 0) {
        serial_read(gw);
        if (!gw->line_hung_up) {
            (void)usmp_poller_add(gw->poller, gw->fd, USMP_POLLER_IN, &gw->fd_tag);
            return timeout;
        }
        gw->line_hung_up_ms = now;
        left = SERIAL_HANGUP_RETRY_MS;
    }
    return left < timeout ? left : timeout;
}
