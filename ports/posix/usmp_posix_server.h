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

#include "usmp_engine.h"

typedef void (*usmp_server_log_fn)(void *user, const char *line);

typedef struct {
    const char *host;              /* address to bind, e.g. "127.0.0.1" */
    uint16_t port;                 /* 0: any free port (reported in the log) */
    size_t max_sessions;           /* sessions and handshakes together; more get ERROR(BUSY) */
    uint32_t handshake_timeout_ms; /* 0: 10000 */
    uint32_t idle_timeout_ms;      /* 0: 90000 */
    uint16_t max_record;           /* 16 .. 65519 */
    uint16_t max_message;          /* max_record .. 65535 */
    int echo;                      /* 1: send every message back */
    usmp_psk_lookup_fn psk_lookup;
    void *psk_lookup_user;
    usmp_server_log_fn log;        /* status lines; never keys or payloads */
    void *log_user;
    volatile sig_atomic_t *stop;   /* set to nonzero to stop: BYE(SHUTDOWN) to all */
} usmp_posix_server_config_t;

/* Runs until *stop is set or an unrecoverable error. Returns 0 on a clean
 * stop, -1 when it cannot listen (with a log line saying why). */
int usmp_posix_server_run(const usmp_posix_server_config_t *cfg);

#endif /* USMP_POSIX_SERVER_H */
