/*
 * usmp_loadgen.c - the loopback load generator of bench/loopback.py (issue
 * 12, figure 3; docs/performance.md): many client sessions at once on
 * non-blocking sockets and one epoll loop, either USMP (the engine's client
 * role in stream mode) or TLS 1.3 (OpenSSL's SSL API, X25519 only, no
 * tickets, the certificate not checked: only the handshake's cost counts).
 *
 *   usmp_loadgen handshake --port P [--tls] [--concurrency 32] [--seconds 3]
 *       connects, completes the handshake, closes (BYE or close_notify),
 *       and connects again, with --concurrency connections in flight;
 *   usmp_loadgen echo --port P [--tls] [--sessions 100] [--messages 20000]
 *       [--size 64]
 *       opens --sessions sessions (at most --concurrency handshakes at a
 *       time, as in idle), then each sends one --size byte message
 *       and waits for its echo before the next, until --messages in all;
 *   usmp_loadgen idle --port P [--tls] [--sessions 1000]
 *       opens --sessions sessions, prints "ready" and holds them idle until
 *       its standard input closes (the driver measures the server's RSS);
 *   usmp_loadgen sizes
 *       prints sizeof(struct usmp_engine), the part of a gateway's session
 *       that is the engine's.
 *
 * USMP uses the PSK of the USMP_PSK environment variable (hex; the server
 * runs with the same key for every device) and a distinct device id per
 * connection, since a gateway replaces an older session of the same id
 * (spec section 13). Each connection comes from its own 127.x.y.z address
 * (--same-source turns that off), so that a gateway's per-source handshake
 * rate limit (spec section 13) and the client's ephemeral ports do not
 * limit the benchmark.
 *
 * Prints one line of key=value figures, read by bench/loopback.py:
 * completed counts, the rate, p50/p99 round trips (echo), failures, and
 * cpu: this process's CPU time over the wall time (1.0 is one core busy),
 * which shows whether the load generator itself was the bottleneck.
 * Not a test: built only with -DUSMP_BENCH=ON (`make bench`).
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "usmp_engine.h"
#include "usmp_port.h"

/* What the load generator announces as a device: a record and a message of
 * at most 1 KiB, which is what a small device typically accepts. */
#define CLIENT_MAX_RECORD  1024u
#define CLIENT_MAX_MESSAGE 1024u
#define CLIENT_BUF_BYTES   USMP_RECORD_BUFFER_BYTES(CLIENT_MAX_RECORD)
#define MESSAGE_MAX        1024u
#define READ_CHUNK         4096u

typedef enum { MODE_HANDSHAKE, MODE_ECHO, MODE_IDLE } loadgen_mode_t;

typedef enum { CONN_FREE, CONN_CONNECTING, CONN_HANDSHAKE, CONN_READY } conn_state_t;

typedef struct {
    int fd;
    conn_state_t state;
    int want_out;     /* EPOLLOUT registered */
    uint64_t sent_ns; /* echo: when the message in flight was sent */
    size_t echo_got;  /* TLS echo: bytes of the echo received */
    usmp_engine_t engine;
    uint8_t rx[CLIENT_BUF_BYTES], tx[CLIENT_BUF_BYTES];
    SSL *ssl;
} conn_t;

static struct {
    loadgen_mode_t mode;
    int tls;
    const char *host;
    uint16_t port;
    size_t concurrency, sessions, messages, size;
    double seconds;
    int spread_sources;
    uint8_t psk[USMP_PSK_MAX_BYTES];
    size_t psk_len;
    uint8_t run_id[2]; /* device ids: run_id || counter */
    SSL_CTX *ssl_ctx;
    int ep;
    conn_t *conns;
    size_t nconns;
    uint64_t connections; /* started, for device ids and source addresses */
    uint64_t completed;   /* handshakes (handshake, idle) or echoes */
    uint64_t failures;
    uint64_t messages_sent; /* echo */
    uint64_t *rtt_ns;       /* echo: one per message */
    size_t ready;           /* echo, idle: sessions established */
    size_t opened;          /* echo, idle: sessions started */
    size_t handshaking;     /* echo, idle: started, neither established nor failed */
    uint8_t message[MESSAGE_MAX];
} g;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void loadgen_random(void *user, uint8_t *buf, size_t len)
{
    (void)user;
    usmp_port_random(buf, len);
}

static void set_events(conn_t *c, int want_out)
{
    struct epoll_event ev;
    if (c->want_out == want_out) {
        return;
    }
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | (want_out ? EPOLLOUT : 0u);
    ev.data.ptr = c;
    (void)epoll_ctl(g.ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

static void conn_close(conn_t *c)
{
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd); /* also leaves the epoll set */
    }
    c->fd = -1;
    if (!g.tls) {
        usmp_engine_wipe(&c->engine);
    }
    c->state = CONN_FREE;
}

/* Starts a connection in slot c: a non-blocking connect from its own
 * loopback address. 0, or -1 when the socket could not be made. */
static int conn_open(conn_t *c)
{
    struct sockaddr_in to, from;
    struct epoll_event ev;
    uint64_t n = g.connections++;
    int one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
        return -1;
    }
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (g.spread_sources) {
        /* 127.1.0.1 .. 127.255.255.254, one per connection, in turn. */
        uint32_t host = (uint32_t)(n % (254u * 255u * 254u));
        memset(&from, 0, sizeof from);
        from.sin_family = AF_INET;
        from.sin_addr.s_addr = htonl((127u << 24) | ((1u + host / (255u * 254u)) << 16) |
                                     (((host / 254u) % 255u) << 8) | (1u + host % 254u));
        (void)bind(c->fd, (struct sockaddr *)&from, sizeof from);
    }
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons(g.port);
    inet_pton(AF_INET, g.host, &to.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&to, sizeof to) != 0 && errno != EINPROGRESS) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.ptr = c;
    if (epoll_ctl(g.ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->want_out = 1;
    c->state = CONN_CONNECTING;
    c->echo_got = 0;
    if (g.tls) {
        c->ssl = SSL_new(g.ssl_ctx);
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_connect_state(c->ssl);
    } else {
        usmp_engine_config_t ec;
        memset(&ec, 0, sizeof ec);
        ec.role = USMP_ROLE_CLIENT;
        ec.mode = USMP_MODE_STREAM;
        ec.psk = g.psk;
        ec.psk_len = g.psk_len;
        ec.device_id[0] = g.run_id[0];
        ec.device_id[1] = g.run_id[1];
        ec.device_id[2] = (uint8_t)(n >> 24);
        ec.device_id[3] = (uint8_t)(n >> 16);
        ec.device_id[4] = (uint8_t)(n >> 8);
        ec.device_id[5] = (uint8_t)n;
        ec.random = loadgen_random;
        ec.max_record = CLIENT_MAX_RECORD;
        ec.max_message = CLIENT_MAX_MESSAGE;
        ec.rx_buf = c->rx;
        ec.rx_cap = sizeof c->rx;
        ec.tx_buf = c->tx;
        ec.tx_cap = sizeof c->tx;
        ec.connection_counter = n;
        if (usmp_engine_init(&c->engine, &ec) != USMP_OK) {
            conn_close(c);
            return -1;
        }
    }
    return 0;
}

/* Echo, idle: one more session established. */
static void session_ready(void)
{
    g.ready++;
    g.handshaking--;
}

/* A connection failed or ended early: counted, and replaced in handshake
 * mode so the concurrency stays. */
static void conn_fail(conn_t *c)
{
    g.failures++;
    if (g.mode != MODE_HANDSHAKE && c->state != CONN_READY) {
        g.handshaking--;
    }
    conn_close(c);
    if (g.mode == MODE_HANDSHAKE) {
        (void)conn_open(c);
    }
}

/* --- USMP ---------------------------------------------------------------- */

/* Sends what the engine has queued; 0, or -1 when the connection failed. */
static int usmp_flush(conn_t *c)
{
    for (;;) {
        const uint8_t *data;
        size_t len;
        ssize_t n;
        usmp_engine_output(&c->engine, &data, &len);
        if (len == 0) {
            set_events(c, 0);
            return 0;
        }
        n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(c, 1);
            return 0;
        }
        if (n < 0) {
            return -1;
        }
        usmp_engine_output_done(&c->engine, (size_t)n);
    }
}

static int usmp_send_message(conn_t *c)
{
    c->sent_ns = now_ns();
    g.messages_sent++;
    if (usmp_engine_send(&c->engine, g.message, g.size, 0) != (int)g.size) {
        return -1;
    }
    return usmp_flush(c);
}

/* The session is established (handshake, idle) or one echo came back. */
static void on_done(conn_t *c)
{
    g.completed++;
    if (g.mode == MODE_HANDSHAKE) {
        if (g.tls) {
            (void)SSL_shutdown(c->ssl); /* close_notify */
        } else {
            (void)usmp_engine_close(&c->engine, USMP_CODE_NONE);
            (void)usmp_flush(c);
        }
        conn_close(c);
        (void)conn_open(c);
    } else if (g.mode == MODE_IDLE) {
        c->state = CONN_READY;
        session_ready();
    }
}

static void usmp_readable(conn_t *c)
{
    uint8_t buf[READ_CHUNK];
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    size_t off = 0;

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    if (n <= 0) {
        conn_fail(c);
        return;
    }
    while (off < (size_t)n) {
        size_t used = 0;
        usmp_event_t ev;
        if (usmp_engine_feed(&c->engine, buf + off, (size_t)n - off, 0, &used, &ev) != USMP_OK) {
            conn_fail(c);
            return;
        }
        off += used;
        if (ev.type == USMP_EVENT_ESTABLISHED) {
            c->state = CONN_READY;
            if (g.mode == MODE_ECHO) {
                session_ready();
            } else {
                if (usmp_flush(c) != 0) {
                    conn_fail(c);
                    return;
                }
                on_done(c);
                return;
            }
        } else if (ev.type == USMP_EVENT_MESSAGE) {
            if (ev.len != g.size || memcmp(ev.data, g.message, g.size) != 0) {
                conn_fail(c);
                return;
            }
            g.rtt_ns[g.completed] = now_ns() - c->sent_ns;
            g.completed++;
            if (g.messages_sent < g.messages && usmp_send_message(c) != 0) {
                conn_fail(c);
                return;
            }
        }
        if (usmp_flush(c) != 0) {
            conn_fail(c);
            return;
        }
    }
}

/* --- TLS ------------------------------------------------------------------- */

static void tls_progress(conn_t *c)
{
    if (c->state == CONN_HANDSHAKE) {
        int rc = SSL_do_handshake(c->ssl);
        if (rc != 1) {
            int err = SSL_get_error(c->ssl, rc);
            if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
                set_events(c, err == SSL_ERROR_WANT_WRITE);
                return;
            }
            conn_fail(c);
            return;
        }
        set_events(c, 0);
        c->state = CONN_READY;
        if (g.mode != MODE_ECHO) {
            on_done(c);
        } else {
            session_ready();
        }
        return;
    }
    if (c->state == CONN_READY && g.mode == MODE_ECHO) {
        uint8_t buf[MESSAGE_MAX];
        for (;;) {
            int n = SSL_read(c->ssl, buf, (int)(g.size - c->echo_got));
            if (n <= 0) {
                int err = SSL_get_error(c->ssl, n);
                if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
                    conn_fail(c);
                }
                return;
            }
            c->echo_got += (size_t)n;
            if (c->echo_got == g.size) {
                c->echo_got = 0;
                g.rtt_ns[g.completed] = now_ns() - c->sent_ns;
                g.completed++;
                if (g.messages_sent < g.messages) {
                    c->sent_ns = now_ns();
                    g.messages_sent++;
                    if (SSL_write(c->ssl, g.message, (int)g.size) != (int)g.size) {
                        conn_fail(c);
                        return;
                    }
                }
            }
        }
    }
    if (c->state == CONN_READY) {
        /* idle: a close from the server is a failure; anything else is read and dropped */
        uint8_t buf[256];
        int n = SSL_read(c->ssl, buf, sizeof buf);
        if (n <= 0) {
            int err = SSL_get_error(c->ssl, n);
            if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
                conn_fail(c);
            }
        }
    }
}

/* --- the loop ------------------------------------------------------------- */

static void on_event(conn_t *c, uint32_t events)
{
    if (c->state == CONN_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0 ||
            (events & (EPOLLERR | EPOLLHUP))) {
            conn_fail(c);
            return;
        }
        c->state = CONN_HANDSHAKE;
        if (!g.tls) {
            if (usmp_engine_start(&c->engine, 0) != USMP_OK || usmp_flush(c) != 0) {
                conn_fail(c);
            }
            return;
        }
    }
    if (g.tls) {
        tls_progress(c);
        return;
    }
    if (events & EPOLLOUT) {
        if (usmp_flush(c) != 0) {
            conn_fail(c);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        usmp_readable(c);
    }
}

/* Echo, idle: starts sessions until --sessions are started, with at most
 * --concurrency handshakes in progress at once, as devices that do not
 * all connect in the same instant (a gateway's pending queue, spec
 * section 13, is not what is measured). */
static void open_more(void)
{
    while (g.opened < g.sessions && g.handshaking < g.concurrency) {
        g.handshaking++;
        if (conn_open(&g.conns[g.opened++]) != 0) {
            g.handshaking--;
            g.failures++;
        }
    }
}

static void run_loop(int (*done)(void), double deadline_s)
{
    struct epoll_event events[256];
    uint64_t deadline = deadline_s > 0 ? now_ns() + (uint64_t)(deadline_s * 1e9) : 0;
    while (!done()) {
        int i, n = epoll_wait(g.ep, events, 256, 100);
        if (n < 0 && errno != EINTR) {
            perror("usmp_loadgen: epoll_wait");
            exit(1);
        }
        for (i = 0; i < n; i++) {
            on_event(events[i].data.ptr, events[i].events);
        }
        if (g.mode != MODE_HANDSHAKE) {
            open_more();
        }
        if (deadline != 0 && now_ns() >= deadline) {
            break;
        }
    }
}

static int handshakes_never_done(void)
{
    return 0;
}

static int echo_done(void)
{
    return g.completed >= g.messages;
}

static int all_ready(void)
{
    return g.ready + g.failures >= g.sessions;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* --- options --------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: usmp_loadgen sizes\n"
            "       usmp_loadgen (handshake|echo|idle) --port P [--host 127.0.0.1] [--tls]\n"
            "         [--concurrency N] [--seconds S] [--sessions N] [--messages N] [--size B]\n"
            "         [--same-source]\n"
            "USMP: the PSK (hex) comes from the USMP_PSK environment variable.\n");
    exit(2);
}

static int hex_value(char ch)
{
    return ch >= '0' && ch <= '9'   ? ch - '0'
           : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                    : -1;
}

static void parse_options(int argc, char **argv)
{
    int i;
    if (argc < 2) {
        usage();
    }
    if (strcmp(argv[1], "sizes") == 0) {
        /* What each session of a gateway holds at least (bench/loopback.py). */
        printf("engine=%zu\n", sizeof(usmp_engine_t));
        exit(0);
    }
    g.mode = strcmp(argv[1], "handshake") == 0 ? MODE_HANDSHAKE
             : strcmp(argv[1], "echo") == 0    ? MODE_ECHO
             : strcmp(argv[1], "idle") == 0    ? MODE_IDLE
                                               : (usage(), MODE_IDLE);
    g.host = "127.0.0.1";
    g.concurrency = 32;
    g.seconds = 3.0;
    g.sessions = g.mode == MODE_IDLE ? 1000 : 100;
    g.messages = 20000;
    g.size = 64;
    g.spread_sources = 1;
    for (i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--tls") == 0) {
            g.tls = 1;
            continue;
        }
        if (strcmp(a, "--same-source") == 0) {
            g.spread_sources = 0;
            continue;
        }
        if (v == NULL) {
            usage();
        }
        i++;
        if (strcmp(a, "--port") == 0) {
            g.port = (uint16_t)atoi(v);
        } else if (strcmp(a, "--host") == 0) {
            g.host = v;
        } else if (strcmp(a, "--concurrency") == 0) {
            g.concurrency = (size_t)atol(v);
        } else if (strcmp(a, "--seconds") == 0) {
            g.seconds = atof(v);
        } else if (strcmp(a, "--sessions") == 0) {
            g.sessions = (size_t)atol(v);
        } else if (strcmp(a, "--messages") == 0) {
            g.messages = (size_t)atol(v);
        } else if (strcmp(a, "--size") == 0) {
            g.size = (size_t)atol(v);
        } else {
            usage();
        }
    }
    if (g.port == 0 || g.concurrency == 0 || g.sessions == 0 || g.messages == 0 || g.size == 0 ||
        g.size > MESSAGE_MAX) {
        usage();
    }
    if (!g.tls) {
        const char *hex = getenv("USMP_PSK");
        size_t n = hex != NULL ? strlen(hex) : 0;
        if (n < 2 * USMP_PSK_MIN_BYTES || n > 2 * USMP_PSK_MAX_BYTES || n % 2 != 0) {
            fprintf(stderr, "usmp_loadgen: USMP_PSK must hold a 16 .. 64 byte PSK in hex\n");
            exit(2);
        }
        for (g.psk_len = 0; g.psk_len < n / 2; g.psk_len++) {
            int hi = hex_value(hex[2 * g.psk_len]), lo = hex_value(hex[2 * g.psk_len + 1]);
            if (hi < 0 || lo < 0) {
                fprintf(stderr, "usmp_loadgen: USMP_PSK is not hex\n");
                exit(2);
            }
            g.psk[g.psk_len] = (uint8_t)(hi << 4 | lo);
        }
    }
}

static SSL_CTX *tls_context(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set1_groups_list(ctx, "X25519") != 1) {
        ERR_print_errors_fp(stderr);
        exit(1);
    }
    /* Each connection a full handshake: no session to resume. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    return ctx;
}

int main(int argc, char **argv)
{
    double wall0, cpu0, wall, cpu;
    size_t i;

    parse_options(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    usmp_port_random(g.run_id, sizeof g.run_id);
    memset(g.message, 0x5a, sizeof g.message);
    if (g.tls) {
        g.ssl_ctx = tls_context();
    }
    g.ep = epoll_create1(0);
    g.nconns = g.mode == MODE_HANDSHAKE ? g.concurrency : g.sessions;
    g.conns = calloc(g.nconns, sizeof *g.conns);
    g.rtt_ns = calloc(g.mode == MODE_ECHO ? g.messages + g.sessions : 1, sizeof *g.rtt_ns);
    if (g.ep < 0 || g.conns == NULL || g.rtt_ns == NULL) {
        fprintf(stderr, "usmp_loadgen: out of memory or descriptors\n");
        return 1;
    }
    for (i = 0; i < g.nconns; i++) {
        g.conns[i].fd = -1;
    }
    wall0 = (double)now_ns() / 1e9;
    cpu0 = cpu_seconds();

    if (g.mode == MODE_HANDSHAKE) {
        for (i = 0; i < g.concurrency; i++) {
            if (conn_open(&g.conns[i]) != 0) {
                g.failures++;
            }
        }
        run_loop(handshakes_never_done, g.seconds);
        wall = (double)now_ns() / 1e9 - wall0;
        cpu = cpu_seconds() - cpu0;
        printf("mode=handshake protocol=%s handshakes=%llu seconds=%.3f rate=%.1f failures=%llu "
               "cpu=%.3f\n",
               g.tls ? "tls" : "usmp", (unsigned long long)g.completed, wall,
               (double)g.completed / wall, (unsigned long long)g.failures, cpu / wall);
    } else if (g.mode == MODE_ECHO) {
        double t0;
        uint64_t p50, p99;
        open_more();
        run_loop(all_ready, 120.0);
        if (g.ready == 0) {
            fprintf(stderr, "usmp_loadgen: no session established\n");
            return 1;
        }
        /* The measured part: every session sends its first message now. */
        t0 = (double)now_ns() / 1e9;
        cpu0 = cpu_seconds();
        for (i = 0; i < g.nconns && g.messages_sent < g.messages; i++) {
            conn_t *c = &g.conns[i];
            if (c->state != CONN_READY) {
                continue;
            }
            if (g.tls) {
                c->sent_ns = now_ns();
                g.messages_sent++;
                if (SSL_write(c->ssl, g.message, (int)g.size) != (int)g.size) {
                    conn_fail(c);
                }
            } else if (usmp_send_message(c) != 0) {
                conn_fail(c);
            }
        }
        run_loop(echo_done, 120.0);
        wall = (double)now_ns() / 1e9 - t0;
        cpu = cpu_seconds() - cpu0;
        qsort(g.rtt_ns, (size_t)g.completed, sizeof *g.rtt_ns, compare_u64);
        p50 = g.completed ? g.rtt_ns[g.completed / 2] : 0;
        p99 = g.completed ? g.rtt_ns[(size_t)((double)g.completed * 0.99)] : 0;
        printf("mode=echo protocol=%s sessions=%zu messages=%llu seconds=%.3f rate=%.1f "
               "p50_us=%.1f p99_us=%.1f failures=%llu cpu=%.3f\n",
               g.tls ? "tls" : "usmp", g.ready, (unsigned long long)g.completed, wall,
               (double)g.completed / wall, (double)p50 / 1e3, (double)p99 / 1e3,
               (unsigned long long)g.failures, cpu / wall);
    } else {
        struct pollfd in = { 0, POLLIN, 0 };
        open_more();
        run_loop(all_ready, 300.0);
        wall = (double)now_ns() / 1e9 - wall0;
        printf("ready sessions=%zu failures=%llu seconds=%.3f\n", g.ready,
               (unsigned long long)g.failures, wall);
        fflush(stdout);
        /* Held idle; the sockets are still read so that a server's close is seen. */
        for (;;) {
            struct epoll_event events[64];
            int n, k;
            if (poll(&in, 1, 0) > 0) {
                char b[64];
                if (read(0, b, sizeof b) <= 0) {
                    break;
                }
            }
            n = epoll_wait(g.ep, events, 64, 200);
            for (k = 0; k < n; k++) {
                on_event(events[k].data.ptr, events[k].events);
            }
        }
        printf("closed sessions=%zu failures=%llu\n", g.ready, (unsigned long long)g.failures);
    }
    for (i = 0; i < g.nconns; i++) {
        if (g.conns[i].state != CONN_FREE) {
            conn_close(&g.conns[i]);
        }
    }
    free(g.conns);
    free(g.rtt_ns);
    if (g.ssl_ctx != NULL) {
        SSL_CTX_free(g.ssl_ctx);
    }
    close(g.ep);
    return 0;
}
