/*
 * usmp_posix_server.h - a small TCP gateway on POSIX built on the engine's
 * server role: one thread, poll(), a fixed number of session slots. It is
 * what tools/c/usmp_server.c runs, and what the interop tests use as the C
 * counterpart of the Python gateway.
 */
#ifndef USMP_POSIX_SERVER_H
#define USMP_POSIX_SERVER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "usmp_engine.h"

/*
 * Conventions: times are milliseconds of usmp_port_millis() (wrap-safe
 * 32-bit arithmetic); a 0 in a config field means its default. A connection
 * is "pending" until it has sent a complete first frame (its HELLO); pending
 * connections hold no session slot and no engine (spec section 13).
 */

typedef void (*usmp_server_log_fn)(void *user, const char *line);

typedef struct {
    const char *host;              /* address to bind, e.g. "127.0.0.1" */
    uint16_t port;                 /* 0: any free port (reported in the log) */
    size_t max_sessions;           /* sessions and handshakes past their HELLO together; more get ERROR(BUSY) */
    size_t max_pending;            /* connections without a complete HELLO; 0: 256. One more evicts the oldest */
    uint32_t hello_timeout_ms;     /* 0: 2000; a pending connection is closed without a word after it */
    uint32_t handshake_timeout_ms; /* 0: 10000 */
    uint32_t idle_timeout_ms;      /* 0: 90000 */
    uint32_t write_timeout_ms;     /* 0: 10000; output without progress this long drops the connection */
    uint32_t handshake_rate;       /* new connections per second per source prefix; 0: 10 */
    uint32_t handshake_burst;      /* ... with bursts up to this; 0: 20 */
    uint8_t rate_prefix_v4;        /* the prefix a source counts under: 0: /32 */
    uint8_t rate_prefix_v6;        /* 0: /64 (one host usually owns a /64) */
    uint16_t max_record;           /* 16 .. 65519 */
    uint16_t max_message;          /* max_record .. 65535 */
    int echo;                      /* 1: send every message back */
    int shared_psk;                /* 1: one key serves every device, so device ids are only claims */
    usmp_psk_lookup_fn psk_lookup;
    void *psk_lookup_user;
    usmp_server_log_fn log;        /* status lines; never keys or payloads */
    void *log_user;
    volatile sig_atomic_t *stop;   /* set to nonzero to stop: BYE(SHUTDOWN) to all */
} usmp_posix_server_config_t;

/* Runs until *stop is set or an unrecoverable error. Returns 0 on a clean
 * stop, -1 when it cannot listen (with a log line saying why). */
int usmp_posix_server_run(const usmp_posix_server_config_t *cfg);

/* ------------------------------------------------------------------------
 * Per-source handshake rate limit (spec section 13): a token bucket per
 * source prefix. IPv4 addresses count per /prefix_v4, IPv6 per /prefix_v6
 * (an IPv4-mapped IPv6 address counts as its IPv4 address). At most
 * USMP_RATE_LIMIT_SOURCES buckets are kept; the least recently used one is
 * reused first, which only ever makes the limiter more lenient.
 * ------------------------------------------------------------------------ */

#define USMP_RATE_LIMIT_SOURCES 1024u

typedef struct {
    uint8_t prefix[16];   /* the source address with the bits past the prefix cleared */
    uint8_t family;       /* 4 or 6; 0: unused */
    uint32_t last_ms;
    uint32_t millitokens; /* 1000 per connection allowed */
} usmp_rate_bucket_t;

typedef struct {
    uint32_t rate_per_s;
    uint32_t burst;
    unsigned prefix_v4, prefix_v6;
    usmp_rate_bucket_t buckets[USMP_RATE_LIMIT_SOURCES];
} usmp_rate_limiter_t;

/* Buckets start full (burst) and refill at rate_per_s. Prefix lengths are
 * clamped to 1..32 and 1..128. */
void usmp_rate_limiter_init(usmp_rate_limiter_t *rl, uint32_t rate_per_s, uint32_t burst, unsigned prefix_v4,
                            unsigned prefix_v6);

/* 1: a connection from source may go on (a token is taken); 0: refuse it.
 * A source that is neither AF_INET nor AF_INET6 is always allowed. */
int usmp_rate_limiter_allow(usmp_rate_limiter_t *rl, const struct sockaddr *source, uint32_t now_ms);

#endif /* USMP_POSIX_SERVER_H */
