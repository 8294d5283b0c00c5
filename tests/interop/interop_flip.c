/*
 * interop_flip.c - every bit of every stream handshake frame, flipped one at
 * a time, through the C engine's client and server wired in memory.
 *
 *   usmp_interop_flip [client_max_record client_max_message server_max_record server_max_message]
 *
 * Prints the untampered frames first ("frame <KIND> <hex>"), then one line
 * per flipped bit:
 *
 *   flip <KIND> <byte> <bit> server=<STATE>:<COND>:<peer code> client=<STATE>:<COND>:<peer code>
 *        established=<client ESTABLISHED events>/<server ESTABLISHED events> messages=<n>
 *
 * The random source is deterministic and restarted for every run, so every
 * run sends the same frames as the printed ones until the flip. The
 * Python test (test_attack_bitflip.py) computes the condition the spec's
 * check order gives for each flip and compares: this program judges
 * nothing itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usmp_engine.h"

#define BUF_BYTES USMP_RECORD_BUFFER_BYTES(4096)

static const uint8_t PSK[32] = { 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a,
                                 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25,
                                 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f };
static const uint8_t DEVICE_ID[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };

typedef struct {
    uint64_t state;
} rng_t;

typedef struct {
    usmp_engine_t e;
    rng_t rng;
    uint8_t rx[BUF_BYTES], tx[BUF_BYTES], reassembly[16384];
    int established, messages;
} end_t;

static end_t client, server;
static uint16_t limits[4] = { 512, 512, 4096, 16384 };

static const char *const KINDS[4] = { "HELLO", "CHALLENGE", "HELLO_ACK", "SESSION_OK" };

/* splitmix64: test-only, deterministic. */
static void test_random(void *user, uint8_t *buf, size_t len)
{
    rng_t *r = user;
    size_t i;
    for (i = 0; i < len; i++) {
        uint64_t z;
        r->state += 0x9E3779B97F4A7C15ull;
        z = r->state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        buf[i] = (uint8_t)(z ^ (z >> 31));
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

static const char *state_name(usmp_state_t s)
{
    static const char *const names[] = { "START",      "WAIT_CHALLENGE", "WAIT_SESSION_OK",
                                         "WAIT_HELLO", "WAIT_HELLO_ACK", "ESTABLISHED",
                                         "CLOSED",     "FAILED" };
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "UNKNOWN";
}

static int end_init(end_t *x, usmp_role_t role, uint64_t seed)
{
    usmp_engine_config_t cfg;
    /* The last run's session may still hold its record keys' contexts
     * (backend memory): released before the end is reset. */
    usmp_engine_wipe(&x->e);
    memset(x, 0, sizeof *x);
    memset(&cfg, 0, sizeof cfg);
    x->rng.state = seed;
    cfg.role = role;
    cfg.mode = USMP_MODE_STREAM;
    cfg.random = test_random;
    cfg.random_user = &x->rng;
    cfg.rx_buf = x->rx;
    cfg.rx_cap = sizeof x->rx;
    cfg.tx_buf = x->tx;
    cfg.tx_cap = sizeof x->tx;
    cfg.handshake_timeout_ms = 10000;
    if (role == USMP_ROLE_CLIENT) {
        cfg.psk = PSK;
        cfg.psk_len = sizeof PSK;
        memcpy(cfg.device_id, DEVICE_ID, 6);
        cfg.max_record = limits[0];
        cfg.max_message = limits[1];
    } else {
        cfg.psk_lookup = lookup;
        cfg.max_record = limits[2];
        cfg.max_message = limits[3];
    }
    if (cfg.max_message > cfg.max_record) {
        cfg.reassembly_buf = x->reassembly;
        cfg.reassembly_cap = cfg.max_message;
    }
    if (usmp_engine_init(&x->e, &cfg) != USMP_OK) {
        return -1;
    }
    return usmp_engine_start(&x->e, 1000);
}

/* Takes everything the engine has queued (stream: a byte string of frames). */
static size_t take_output(end_t *x, uint8_t *out, size_t cap)
{
    size_t total = 0;
    for (;;) {
        const uint8_t *d;
        size_t n;
        usmp_engine_output(&x->e, &d, &n);
        if (n == 0 || total + n > cap) {
            return total;
        }
        memcpy(out + total, d, n);
        total += n;
        usmp_engine_output_done(&x->e, n);
    }
}

static void feed(end_t *to, const uint8_t *d, size_t len)
{
    while (len > 0) {
        size_t used = 0;
        usmp_event_t ev;
        int rc = usmp_engine_feed(&to->e, d, len, 1000, &used, &ev);
        if (ev.type == USMP_EVENT_ESTABLISHED) {
            to->established++;
        } else if (ev.type == USMP_EVENT_MESSAGE) {
            to->messages++;
        }
        if (rc != USMP_OK || used == 0) {
            return;
        }
        d += used;
        len -= used;
    }
}

/* Frame `index` of the stream in `buf` (well-formed: the sender made it). */
static int frame_bounds(const uint8_t *buf, size_t len, size_t index, size_t *start, size_t *flen)
{
    size_t off = 0, i = 0;
    while (off + 3 <= len) {
        size_t n = 3u + (((size_t)buf[off + 1] << 8) | buf[off + 2]);
        if (i == index) {
            *start = off;
            *flen = n;
            return 0;
        }
        off += n;
        i++;
    }
    return -1;
}

/*
 * One handshake. kind: -1 none, else 0..3 (the frame to tamper with),
 * flipping bit `bit` of byte `byte`. record: when set, the untampered frame
 * of each kind is copied there.
 */
static void run(int kind, size_t byte, int bit, uint8_t record[4][64], size_t record_len[4])
{
    static uint8_t wire[65536];
    size_t c2s_count = 0, s2c_count = 0;
    int round;

    end_init(&client, USMP_ROLE_CLIENT, 0x1234);
    end_init(&server, USMP_ROLE_SERVER, 0x5678);
    for (round = 0; round < 16; round++) {
        int dir;
        size_t moved = 0;
        for (dir = 0; dir < 2; dir++) {
            end_t *from = dir == 0 ? &client : &server, *to = dir == 0 ? &server : &client;
            size_t *count = dir == 0 ? &c2s_count : &s2c_count;
            size_t len = take_output(from, wire, sizeof wire), i, start, flen;
            size_t starts[16], lens[16], frames_here = 0;
            moved += len;
            /* Bounds first, from the untampered bytes; then record and flip. */
            while (frames_here < 16 && frame_bounds(wire, len, frames_here, &start, &flen) == 0) {
                starts[frames_here] = start;
                lens[frames_here] = flen;
                frames_here++;
            }
            for (i = 0; i < frames_here; i++) {
                /* HELLO, HELLO_ACK are client frames 0, 1; CHALLENGE, SESSION_OK server frames 0, 1. */
                int this_kind = *count < 2 ? (int)(dir == 0 ? *count * 2 : *count * 2 + 1) : -1;
                if (record != NULL && this_kind >= 0 && lens[i] <= 64) {
                    memcpy(record[this_kind], wire + starts[i], lens[i]);
                    record_len[this_kind] = lens[i];
                }
                if (this_kind >= 0 && this_kind == kind && byte < lens[i]) {
                    wire[starts[i] + byte] ^= (uint8_t)(1u << bit);
                }
                (*count)++;
            }
            if (len > 0) {
                feed(to, wire, len);
            }
        }
        if (moved == 0) {
            break;
        }
    }
}

static void describe(const char *who, const end_t *x)
{
    usmp_state_t st = usmp_engine_state(&x->e);
    int err = usmp_engine_error(&x->e);
    printf(" %s=%s:%s:", who, state_name(st), st == USMP_STATE_FAILED ? usmp_error_name(err) : "-");
    if (st == USMP_STATE_FAILED && err == USMP_ERR_PEER_ERROR) {
        printf("%u", (unsigned)usmp_engine_peer_code(&x->e));
    } else {
        printf("-");
    }
}

int main(int argc, char **argv)
{
    static uint8_t frames[4][64];
    size_t frame_len[4] = { 0, 0, 0, 0 };
    int kind, i;

    if (argc == 5) {
        for (i = 0; i < 4; i++) {
            limits[i] = (uint16_t)strtoul(argv[i + 1], NULL, 10);
        }
    } else if (argc != 1) {
        fprintf(stderr, "usage: usmp_interop_flip [cmr cmm smr smm]\n");
        return 2;
    }
    run(-1, 0, 0, frames, frame_len);
    if (usmp_engine_state(&client.e) != USMP_STATE_ESTABLISHED ||
        usmp_engine_state(&server.e) != USMP_STATE_ESTABLISHED) {
        fprintf(stderr, "usmp_interop_flip: the untampered handshake failed\n");
        return 1;
    }
    for (kind = 0; kind < 4; kind++) {
        printf("frame %s ", KINDS[kind]);
        for (i = 0; i < (int)frame_len[kind]; i++) {
            printf("%02x", frames[kind][i]);
        }
        printf("\n");
    }
    for (kind = 0; kind < 4; kind++) {
        size_t byte;
        for (byte = 0; byte < frame_len[kind]; byte++) {
            int bit;
            for (bit = 0; bit < 8; bit++) {
                run(kind, byte, bit, NULL, NULL);
                printf("flip %s %zu %d", KINDS[kind], byte, bit);
                describe("server", &server);
                describe("client", &client);
                printf(" established=%d/%d messages=%d\n", client.established, server.established,
                       client.messages + server.messages);
            }
        }
    }
    usmp_engine_wipe(&client.e);
    usmp_engine_wipe(&server.e);
    return 0;
}
