/*
 * fuzz_engine.c - libFuzzer target for the engine, both roles, both modes.
 *
 * The first input byte picks the mode and the scenario:
 *   0: a fresh server fed raw bytes (HELLO parsing and everything after);
 *   1: a client that sent HELLO, fed raw bytes (CHALLENGE parsing, COOKIE);
 *   2: an established server driven by operations: raw bytes, records
 *      sealed with the genuine client key (so the payload checks, fragment
 *      reassembly and PING/BYE handling are reached), timer ticks, and
 *      sends of its own.
 * Invariants, checked on every input: no crash or sanitizer report; no
 * session is established without the PSK (scenarios 0 and 1); a datagram
 * input that is dropped leaves the engine byte for byte unchanged, except
 * that an out-of-order fragment may discard a partial message (spec 6.2).
 *
 * Built with clang -fsanitize=fuzzer for fuzzing, or with
 * tests/fuzz/standalone_main.c as a program that runs the files named on
 * its command line once each (the regression run in ctest).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usmp_engine.h"
#include "usmp_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t PSK[32] = "fuzz-psk-fuzz-psk-fuzz-psk-fuzz";
static const uint8_t DEVICE_ID[6] = { 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01 };

/* Deterministic: every run of an input must behave the same. */
static uint8_t random_counter;
static void fuzz_random(void *user, uint8_t *buf, size_t len)
{
    (void)user;
    while (len-- > 0) {
        *buf++ = (uint8_t)(random_counter++ * 37u + 11u);
    }
}

static size_t lookup(void *user, const uint8_t id[6], uint8_t psk[64])
{
    (void)user;
    if (memcmp(id, DEVICE_ID, 6) != 0) {
        return 0;
    }
    memcpy(psk, PSK, sizeof PSK);
    return sizeof PSK;
}

#define REC 1207
static uint8_t c_rx[USMP_RECORD_BUFFER_BYTES(REC)], c_tx[USMP_RECORD_BUFFER_BYTES(REC)];
static uint8_t s_rx[USMP_RECORD_BUFFER_BYTES(REC)], s_tx[USMP_RECORD_BUFFER_BYTES(REC)];
static uint8_t s_reassembly[4096];
static usmp_engine_t client, server, snapshot;

static void init(usmp_engine_t *e, usmp_role_t role, usmp_mode_t mode)
{
    usmp_engine_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.role = role;
    cfg.mode = mode;
    cfg.random = fuzz_random;
    cfg.max_record = REC;
    cfg.max_message = role == USMP_ROLE_SERVER ? 4096 : REC;
    cfg.keepalive_ms = 1000;
    if (role == USMP_ROLE_CLIENT) {
        cfg.psk = PSK;
        cfg.psk_len = sizeof PSK;
        memcpy(cfg.device_id, DEVICE_ID, 6);
        cfg.rx_buf = c_rx;
        cfg.rx_cap = sizeof c_rx;
        cfg.tx_buf = c_tx;
        cfg.tx_cap = sizeof c_tx;
    } else {
        cfg.psk_lookup = lookup;
        cfg.rx_buf = s_rx;
        cfg.rx_cap = sizeof s_rx;
        cfg.tx_buf = s_tx;
        cfg.tx_cap = sizeof s_tx;
        cfg.reassembly_buf = s_reassembly;
        cfg.reassembly_cap = sizeof s_reassembly;
    }
    if (usmp_engine_init(e, &cfg) != USMP_OK || usmp_engine_start(e, 0) != USMP_OK) {
        abort();
    }
}

/* Moves one side's whole output into the other. */
static void pass(usmp_engine_t *from, usmp_engine_t *to)
{
    for (;;) {
        const uint8_t *d;
        size_t n, used;
        usmp_event_t ev;
        usmp_engine_output(from, &d, &n);
        if (n == 0) {
            return;
        }
        (void)usmp_engine_feed(to, d, n, 0, &used, &ev);
        usmp_engine_output_done(from, n);
    }
}

static void drain(usmp_engine_t *e)
{
    const uint8_t *d;
    size_t n;
    do {
        usmp_engine_output(e, &d, &n);
        usmp_engine_output_done(e, n);
    } while (n > 0);
}

static int is_drop(int rc, const usmp_engine_t *e)
{
    return rc != USMP_OK && usmp_engine_state(e) != USMP_STATE_FAILED &&
           usmp_engine_state(e) != USMP_STATE_CLOSED;
}

/* Feeds one input and checks the no-state-change rule for drops. */
static void feed_checked(usmp_engine_t *e, const uint8_t *d, size_t n, uint32_t now)
{
    size_t off = 0;
    do {
        size_t used = 0;
        usmp_event_t ev;
        int rc;
        memcpy(&snapshot, e, sizeof snapshot);
        rc = usmp_engine_feed(e, d + off, n - off, now, &used, &ev);
        if (e->mode == USMP_MODE_DATAGRAM && is_drop(rc, e)) {
            if (rc == USMP_ERR_UNEXPECTED) {
                /* allowed: the partial message went */
                snapshot.reassembly = e->reassembly;
            }
            if (rc == USMP_ERR_PEER_ERROR) {
                /* allowed: a datagram ERROR's code is recorded for the
                 * handshake timeout (spec 9.2) */
                snapshot.flags = e->flags;
                snapshot.peer_code = e->peer_code;
            }
            if (memcmp(&snapshot, e, sizeof snapshot) != 0) {
                fprintf(stderr, "a dropped datagram changed the engine (%s)\n",
                        usmp_error_name(rc));
                abort();
            }
        }
        if (rc != USMP_OK || used == 0) {
            return;
        }
        off += used;
        drain(e);
    } while (off < n);
}

static void run_established(usmp_mode_t mode, const uint8_t *data, size_t size)
{
    uint64_t counter = 0;
    uint32_t now = 0;
    size_t i = 0;

    init(&client, USMP_ROLE_CLIENT, mode);
    init(&server, USMP_ROLE_SERVER, mode);
    pass(&client, &server);
    pass(&server, &client);
    pass(&client, &server);
    pass(&server, &client);
    if (usmp_engine_state(&server) != USMP_STATE_ESTABLISHED) {
        abort(); /* the harness itself is broken */
    }
    while (i + 2 <= size && usmp_engine_state(&server) == USMP_STATE_ESTABLISHED) {
        uint8_t op = data[i], len = data[i + 1];
        const uint8_t *arg = data + i + 2;
        size_t n = size - i - 2 < len ? size - i - 2 : len;
        i += 2 + n;
        switch (op & 3u) {
        case 0: feed_checked(&server, arg, n, now); break;
        case 1: {
            /* A genuine record of any type with fuzzed payload. */
            static uint8_t frame[USMP_RECORD_BUFFER_BYTES(REC)];
            size_t h = usmp_record_header_len(mode);
            uint8_t type = (uint8_t)(USMP_TYPE_DATA + (n > 0 ? arg[0] % 5u : 0u));
            size_t plen = n > 0 ? n - 1 : 0;
            int flen;
            if (op & 4u) {
                counter += op >> 3; /* gaps and repeats for the replay window */
            }
            memcpy(frame + h, arg + (n > 0 ? 1 : 0), plen);
            /* Under the client's send key once it has one (its context);
             * before that under an all-zero key, as a record from nowhere. */
            if (client.aead_send.ready) {
                flen = usmp_record_seal_aead(frame, mode, type, usmp_engine_session_id(&server),
                                             counter, &client.aead_send, plen);
            } else {
                static const uint8_t no_key[32];
                flen = usmp_record_seal(frame, mode, type, usmp_engine_session_id(&server), counter,
                                        no_key, plen);
            }
            if (flen > 0) {
                feed_checked(&server, frame, (size_t)flen, now);
            }
            counter++;
            break;
        }
        case 2:
            now += (uint32_t)(n > 0 ? arg[0] : 1) * 97u;
            (void)usmp_engine_tick(&server, now);
            drain(&server);
            break;
        default: {
            int rc = usmp_engine_send(&server, arg, n, now);
            (void)rc;
            drain(&server);
            break;
        }
        }
    }
    /* The record keys' contexts hold the backend's memory (OpenSSL). */
    usmp_engine_wipe(&client);
    usmp_engine_wipe(&server);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    usmp_mode_t mode;
    unsigned scenario;

    if (size < 1) {
        return 0;
    }
    random_counter = 0;
    mode = (data[0] & 1u) ? USMP_MODE_DATAGRAM : USMP_MODE_STREAM;
    scenario = (data[0] >> 1) % 3u;
    data++;
    size--;
    if (scenario == 2) {
        run_established(mode, data, size);
        return 0;
    }
    if (scenario == 0) {
        init(&server, USMP_ROLE_SERVER, mode);
        if (mode == USMP_MODE_DATAGRAM) {
            /* Each 0xA5 0x5A pair splits the input into datagrams. */
            size_t start = 0, k;
            for (k = 0; k + 1 <= size; k++) {
                if (k + 1 == size || (data[k] == 0xA5 && data[k + 1] == 0x5A)) {
                    size_t end = k + 1 == size ? size : k;
                    feed_checked(&server, data + start, end - start, 0);
                    drain(&server);
                    start = k + 2;
                    k++;
                }
            }
        } else {
            feed_checked(&server, data, size, 0);
        }
        if (usmp_engine_state(&server) == USMP_STATE_ESTABLISHED) {
            fprintf(stderr, "server established without the PSK\n");
            abort();
        }
        usmp_engine_wipe(&server);
    } else {
        init(&client, USMP_ROLE_CLIENT, mode);
        drain(&client);
        feed_checked(&client, data, size, 0);
        drain(&client);
        if (usmp_engine_state(&client) == USMP_STATE_ESTABLISHED) {
            fprintf(stderr, "client established without the PSK\n");
            abort();
        }
        usmp_engine_wipe(&client);
    }
    return 0;
}
