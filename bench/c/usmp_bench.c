/*
 * usmp_bench.c - the engine against the raw primitives of its own crypto
 * backend, in one process (issue 12, figures 1 and 2; docs/performance.md).
 *
 * Measures:
 *  - an in-memory handshake of a client/server pair in stream mode, the time
 *    each role spends inside the engine and both together, against 4 (and 2)
 *    raw X25519 operations of the same backend (a handshake needs 2 per
 *    side: one ephemeral key and one shared secret);
 *  - one record sealed by the client's engine and opened by the server's,
 *    against a raw AES-256-GCM seal and open of the same plaintext with the
 *    same 3-byte header as additional data, at 16 .. 65519 bytes.
 * "Raw" means the backend library called directly (OpenSSL EVP, mbedTLS
 * gcm/ecdh) with its key set up once, which is the best a caller can do.
 * Every figure is the time of one operation: the minimum and the median
 * over repetitions, each repetition the mean over a batch, in this
 * thread's CPU time (the per-role handshake figures: wall time of each
 * engine call), so that other processes on a shared machine do not count.
 *
 * Not a test: nothing here asserts a time. Built only with -DUSMP_BENCH=ON
 * (`make bench`).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "usmp_engine.h"
#include "usmp_port.h"

#if defined(USMP_BENCH_OPENSSL)
#include <openssl/evp.h>
#include <openssl/crypto.h>
#define BACKEND_NAME "openssl"
#elif defined(USMP_BENCH_MBEDTLS)
#include <mbedtls/ecdh.h>
#include <mbedtls/gcm.h>
#include <mbedtls/version.h>
#define BACKEND_NAME "mbedtls"
#else
#error "define USMP_BENCH_OPENSSL or USMP_BENCH_MBEDTLS (bench/c/CMakeLists.txt)"
#endif

#define LARGEST_RECORD 65519u
#define BUF_BYTES      USMP_RECORD_BUFFER_BYTES(LARGEST_RECORD)
#define MAX_REPS       101

static const uint8_t PSK[32] = "usmp-bench-psk-usmp-bench-psk-32";
static const uint8_t DEVICE_ID[USMP_DEVICE_ID_BYTES] = { 0xbe, 0x9c, 0x00, 0x00, 0x00, 0x01 };

static int repetitions = 15;

/* --- timing ---------------------------------------------------------------- */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The CPU time of this thread: what a batch cost, without the time other
 * processes of a shared machine held the core (wall time over a batch
 * counts that too, and on a busy machine it dwarfs the work). Read once
 * per batch: on some virtual machines it is a system call. */
static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double min, median;
} stat_t;

static stat_t summarize(double *samples, int n)
{
    stat_t s;
    qsort(samples, (size_t)n, sizeof *samples, compare_double);
    s.min = samples[0];
    s.median = n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2.0;
    return s;
}

static void fail(const char *what, int rc)
{
    fprintf(stderr, "usmp_bench: %s failed (%d)\n", what, rc);
    exit(1);
}

/* --- the engine pair ------------------------------------------------------- */

typedef struct {
    usmp_engine_t e;
    uint8_t rx[BUF_BYTES], tx[BUF_BYTES];
    double busy_ns; /* time spent inside this side's engine calls */
} end_t;

static end_t client, server;

static void engine_random(void *user, uint8_t *buf, size_t len)
{
    (void)user;
    usmp_port_random(buf, len);
}

static size_t lookup(void *user, const uint8_t id[USMP_DEVICE_ID_BYTES],
                     uint8_t psk[USMP_PSK_MAX_BYTES])
{
    (void)user;
    if (memcmp(id, DEVICE_ID, sizeof DEVICE_ID) != 0) {
        return 0;
    }
    memcpy(psk, PSK, sizeof PSK);
    return sizeof PSK;
}

/* Reads the clock only when a side's own share is wanted (the handshake):
 * a record's whole round is timed from outside, and clock reads inside it
 * (about 20 ns each, eight per record) would be charged to the engine. */
static double side_clock(int timed)
{
    return timed ? now_ns() : 0.0;
}

static void end_init(end_t *x, usmp_role_t role, int timed)
{
    usmp_engine_config_t cfg;
    int rc;
    double t0 = side_clock(timed);
    memset(&cfg, 0, sizeof cfg);
    cfg.role = role;
    cfg.mode = USMP_MODE_STREAM;
    cfg.random = engine_random;
    cfg.max_record = LARGEST_RECORD;
    cfg.max_message = LARGEST_RECORD;
    cfg.rx_buf = x->rx;
    cfg.rx_cap = sizeof x->rx;
    cfg.tx_buf = x->tx;
    cfg.tx_cap = sizeof x->tx;
    if (role == USMP_ROLE_CLIENT) {
        cfg.psk = PSK;
        cfg.psk_len = sizeof PSK;
        memcpy(cfg.device_id, DEVICE_ID, sizeof DEVICE_ID);
    } else {
        cfg.psk_lookup = lookup;
    }
    rc = usmp_engine_init(&x->e, &cfg);
    if (rc == USMP_OK) {
        rc = usmp_engine_start(&x->e, 0);
    }
    if (rc != USMP_OK) {
        fail("usmp_engine_init/start", rc);
    }
    x->busy_ns = side_clock(timed) - t0;
}

/* Moves everything `from` has to send into `to`; with timed, each side's
 * calls are timed to that side. Returns the last event `to` reported. */
static usmp_event_type_t deliver(end_t *from, end_t *to, int timed)
{
    usmp_event_type_t last = USMP_EVENT_NONE;
    for (;;) {
        const uint8_t *data;
        size_t len, off = 0;
        double t0 = side_clock(timed);
        usmp_engine_output(&from->e, &data, &len);
        from->busy_ns += side_clock(timed) - t0;
        if (len == 0) {
            return last;
        }
        while (off < len) {
            usmp_event_t ev;
            size_t used = 0;
            int rc;
            t0 = side_clock(timed);
            rc = usmp_engine_feed(&to->e, data + off, len - off, 0, &used, &ev);
            to->busy_ns += side_clock(timed) - t0;
            if (rc != USMP_OK) {
                fail("usmp_engine_feed", rc);
            }
            if (ev.type != USMP_EVENT_NONE) {
                last = ev.type;
            }
            if (used == 0) {
                fail("usmp_engine_feed consumed nothing", 0);
            }
            off += used;
        }
        t0 = side_clock(timed);
        usmp_engine_output_done(&from->e, len);
        from->busy_ns += side_clock(timed) - t0;
    }
}

/* One handshake from init to ESTABLISHED on both sides; with timed, each
 * side's engine calls are timed to it (wall clock, per call). */
static void handshake(int timed)
{
    int round;
    /* The last session's record keys hold backend memory until wiped. */
    usmp_engine_wipe(&client.e);
    usmp_engine_wipe(&server.e);
    end_init(&client, USMP_ROLE_CLIENT, timed);
    end_init(&server, USMP_ROLE_SERVER, timed);
    for (round = 0; round < 8; round++) {
        deliver(&client, &server, timed);
        deliver(&server, &client, timed);
        if (usmp_engine_state(&client.e) == USMP_STATE_ESTABLISHED &&
            usmp_engine_state(&server.e) == USMP_STATE_ESTABLISHED) {
            return;
        }
    }
    fail("handshake (not established)", usmp_engine_error(&client.e));
}

/* --- raw primitives of the backend ----------------------------------------- */

#if defined(USMP_BENCH_OPENSSL)

static EVP_PKEY *x_ours, *x_peer;
static EVP_CIPHER_CTX *gcm_seal, *gcm_open;

static void raw_init(const uint8_t key[32])
{
    EVP_PKEY_CTX *kg = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
    if (kg == NULL || EVP_PKEY_keygen_init(kg) <= 0 || EVP_PKEY_keygen(kg, &x_ours) <= 0 ||
        EVP_PKEY_keygen(kg, &x_peer) <= 0) {
        fail("EVP X25519 keygen", 0);
    }
    EVP_PKEY_CTX_free(kg);
    gcm_seal = EVP_CIPHER_CTX_new();
    gcm_open = EVP_CIPHER_CTX_new();
    if (gcm_seal == NULL || gcm_open == NULL ||
        EVP_EncryptInit_ex(gcm_seal, EVP_aes_256_gcm(), NULL, key, NULL) != 1 ||
        EVP_DecryptInit_ex(gcm_open, EVP_aes_256_gcm(), NULL, key, NULL) != 1) {
        fail("EVP AES-256-GCM setup", 0);
    }
}

static const char *raw_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

/* One X25519 scalar multiplication: a shared secret from kept keys. */
static void raw_x25519(uint8_t out[32])
{
    size_t len = 32;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(x_ours, NULL);
    if (ctx == NULL || EVP_PKEY_derive_init(ctx) <= 0 ||
        EVP_PKEY_derive_set_peer(ctx, x_peer) <= 0 || EVP_PKEY_derive(ctx, out, &len) <= 0) {
        fail("EVP X25519 derive", 0);
    }
    EVP_PKEY_CTX_free(ctx);
}

static void raw_seal_open(const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                          const uint8_t *in, uint8_t *sealed, uint8_t *opened, size_t n)
{
    uint8_t tag[16];
    int len = 0;
    if (EVP_EncryptInit_ex(gcm_seal, NULL, NULL, NULL, nonce) != 1 ||
        EVP_EncryptUpdate(gcm_seal, NULL, &len, aad, (int)aad_len) != 1 ||
        EVP_EncryptUpdate(gcm_seal, sealed, &len, in, (int)n) != 1 ||
        EVP_EncryptFinal_ex(gcm_seal, sealed + len, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(gcm_seal, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1) {
        fail("EVP AES-256-GCM seal", 0);
    }
    if (EVP_DecryptInit_ex(gcm_open, NULL, NULL, NULL, nonce) != 1 ||
        EVP_DecryptUpdate(gcm_open, NULL, &len, aad, (int)aad_len) != 1 ||
        EVP_DecryptUpdate(gcm_open, opened, &len, sealed, (int)n) != 1 ||
        EVP_CIPHER_CTX_ctrl(gcm_open, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1 ||
        EVP_DecryptFinal_ex(gcm_open, opened + len, &len) != 1) {
        fail("EVP AES-256-GCM open", 0);
    }
}

#else /* USMP_BENCH_MBEDTLS */

static mbedtls_ecp_group grp;
static mbedtls_mpi x_ours, x_shared;
static mbedtls_ecp_point x_ours_public, x_peer;
static mbedtls_gcm_context gcm_seal, gcm_open;

static int mbedtls_random(void *user, unsigned char *buf, size_t len)
{
    (void)user;
    usmp_port_random(buf, len);
    return 0;
}

static void raw_init(const uint8_t key[32])
{
    mbedtls_mpi peer_private;
    mbedtls_ecp_group_init(&grp);
    mbedtls_mpi_init(&x_ours);
    mbedtls_mpi_init(&x_shared);
    mbedtls_mpi_init(&peer_private);
    mbedtls_ecp_point_init(&x_ours_public);
    mbedtls_ecp_point_init(&x_peer);
    if (mbedtls_ecp_group_load(&grp, MBEDTLS_ECP_DP_CURVE25519) != 0 ||
        mbedtls_ecdh_gen_public(&grp, &x_ours, &x_ours_public, mbedtls_random, NULL) != 0 ||
        mbedtls_ecdh_gen_public(&grp, &peer_private, &x_peer, mbedtls_random, NULL) != 0) {
        fail("mbedtls X25519 keygen", 0);
    }
    mbedtls_mpi_free(&peer_private);
    mbedtls_gcm_init(&gcm_seal);
    mbedtls_gcm_init(&gcm_open);
    if (mbedtls_gcm_setkey(&gcm_seal, MBEDTLS_CIPHER_ID_AES, key, 256) != 0 ||
        mbedtls_gcm_setkey(&gcm_open, MBEDTLS_CIPHER_ID_AES, key, 256) != 0) {
        fail("mbedtls AES-256-GCM setup", 0);
    }
}

static const char *raw_version(void)
{
    return "mbed TLS " MBEDTLS_VERSION_STRING;
}

static void raw_x25519(uint8_t out[32])
{
    if (mbedtls_ecdh_compute_shared(&grp, &x_shared, &x_peer, &x_ours, mbedtls_random, NULL) != 0 ||
        mbedtls_mpi_write_binary_le(&x_shared, out, 32) != 0) {
        fail("mbedtls X25519", 0);
    }
}

static void raw_seal_open(const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                          const uint8_t *in, uint8_t *sealed, uint8_t *opened, size_t n)
{
    uint8_t tag[16];
    if (mbedtls_gcm_crypt_and_tag(&gcm_seal, MBEDTLS_GCM_ENCRYPT, n, nonce, 12, aad, aad_len, in,
                                  sealed, sizeof tag, tag) != 0) {
        fail("mbedtls AES-256-GCM seal", 0);
    }
    if (mbedtls_gcm_auth_decrypt(&gcm_open, n, nonce, 12, aad, aad_len, tag, sizeof tag, sealed,
                                 opened) != 0) {
        fail("mbedtls AES-256-GCM open", 0);
    }
}

#endif

/* --- the measurements ------------------------------------------------------ */

static stat_t measure_x25519(void)
{
    double samples[MAX_REPS];
    uint8_t out[32];
    const int batch = 200;
    int r, i;
    for (r = 0; r < repetitions; r++) {
        double t0 = cpu_ns();
        for (i = 0; i < batch; i++) {
            raw_x25519(out);
        }
        samples[r] = (cpu_ns() - t0) / batch;
    }
    return summarize(samples, repetitions);
}

/* Handshake time per role and for both, in ns. Both roles: a batch of
 * whole handshakes in CPU time (engine init to ESTABLISHED on both sides,
 * and the bench's own moving of bytes). Each role: the wall time of that
 * side's engine calls, clock read around each call, so more exposed to a
 * busy machine. */
static void measure_handshake(stat_t *both, stat_t *client_only, stat_t *server_only)
{
    double s_both[MAX_REPS], s_client[MAX_REPS], s_server[MAX_REPS];
    const int batch = 50;
    int r, i;
    handshake(1); /* warm-up */
    for (r = 0; r < repetitions; r++) {
        double c = 0, s = 0;
        double t0 = cpu_ns();
        for (i = 0; i < batch; i++) {
            handshake(0);
        }
        s_both[r] = (cpu_ns() - t0) / batch;
        for (i = 0; i < batch; i++) {
            handshake(1);
            c += client.busy_ns;
            s += server.busy_ns;
        }
        s_client[r] = c / batch;
        s_server[r] = s / batch;
    }
    *both = summarize(s_both, repetitions);
    *client_only = summarize(s_client, repetitions);
    *server_only = summarize(s_server, repetitions);
}

static uint8_t message[LARGEST_RECORD], sealed[LARGEST_RECORD], opened[LARGEST_RECORD];

/* Enough operations per repetition for about 2 MB of plaintext (at least 20). */
static int batch_for(size_t n)
{
    size_t b = (size_t)2000000 / n;
    return b < 20 ? 20 : (int)b;
}

static stat_t measure_engine_record(size_t n)
{
    double samples[MAX_REPS];
    int batch = batch_for(n), r, i;
    for (r = 0; r < repetitions; r++) {
        double t0 = cpu_ns();
        for (i = 0; i < batch; i++) {
            /* The bytes taken: the whole message, as it fits one record. */
            int rc = usmp_engine_send(&client.e, message, n, 0);
            if (rc != (int)n) {
                fail("usmp_engine_send", rc);
            }
            if (deliver(&client, &server, 0) != USMP_EVENT_MESSAGE) {
                fail("record not delivered", usmp_engine_error(&server.e));
            }
        }
        samples[r] = (cpu_ns() - t0) / batch;
    }
    return summarize(samples, repetitions);
}

static stat_t measure_raw_record(size_t n)
{
    double samples[MAX_REPS];
    uint8_t nonce[12] = { 0 }, aad[USMP_STREAM_HEADER_BYTES] = { 0 };
    uint32_t counter = 0;
    int batch = batch_for(n), r, i;
    for (r = 0; r < repetitions; r++) {
        double t0 = cpu_ns();
        for (i = 0; i < batch; i++) {
            counter++;
            memcpy(nonce + 8, &counter, sizeof counter);
            raw_seal_open(nonce, aad, sizeof aad, message, sealed, opened, n);
        }
        samples[r] = (cpu_ns() - t0) / batch;
    }
    return summarize(samples, repetitions);
}

static void print_ratio_row(const char *key, const char *figure, stat_t v, stat_t ref, double ref_n)
{
    printf("| %-22s | %-40s | %10.2f | %10.2f | %6.2f | %6.2f |\n", key, figure, v.min / 1e3,
           v.median / 1e3, v.min / (ref.min * ref_n), v.median / (ref.median * ref_n));
}

int main(int argc, char **argv)
{
    static const size_t sizes[] = { 16, 64, 256, 1024, 4096, 16384, LARGEST_RECORD };
    uint8_t key[32];
    stat_t x25519, both, c_only, s_only;
    size_t i, largest;

    if (argc > 1) {
        repetitions = atoi(argv[1]);
        if (repetitions < 1 || repetitions > MAX_REPS) {
            fprintf(stderr, "usage: %s [repetitions 1..%d]\n", argv[0], MAX_REPS);
            return 2;
        }
    }
    usmp_port_random(key, sizeof key);
    memset(message, 0x5a, sizeof message);
    raw_init(key);

    printf("## C engine vs raw %s (%s)\n\n", BACKEND_NAME, raw_version());
    printf("reproduce: %s %d\n", argv[0], repetitions);
    printf("min and median over %d repetitions; times in microseconds per operation (CPU time;\n"
           "per role: wall time of its engine calls)\n\n",
           repetitions);

    x25519 = measure_x25519();
    measure_handshake(&both, &c_only, &s_only);
    printf("| %-22s | %-40s | %10s | %10s | %6s | %6s |\n", "key", "figure", "min us", "median us",
           "ratio", "ratio");
    printf("|%s|%s|%s|%s|%s|%s|\n", "------------------------",
           "------------------------------------------",
           "-----------:", "-----------:", "-------:", "-------:");
    printf("| %-22s | %-40s | %10.2f | %10.2f | %6s | %6s |\n", "x25519.raw",
           "raw X25519 (one scalar multiplication)", x25519.min / 1e3, x25519.median / 1e3, "", "");
    print_ratio_row("handshake.both", "handshake, both roles / (4 x X25519)", both, x25519, 4);
    print_ratio_row("handshake.client", "handshake, client / (2 x X25519)", c_only, x25519, 2);
    print_ratio_row("handshake.server", "handshake, server / (2 x X25519)", s_only, x25519, 2);

    /* The records: one session with the largest limits both ways. */
    handshake(0);
    largest = usmp_engine_max_single_record(&client.e);
    printf("\nrecord seal+open, engine (client send -> server feed) vs raw AES-256-GCM;\n"
           "ratio = engine throughput / raw throughput (min: best of each, median: median of "
           "each)\n\n");
    printf("| %-14s | %5s | %10s | %10s | %10s | %10s | %11s | %11s | %6s | %6s |\n", "key",
           "bytes", "engine min", "engine med", "raw min", "raw med", "engine MB/s", "raw MB/s",
           "ratio", "ratio");
    printf("| %-14s | %5s | %10s | %10s | %10s | %10s | %11s | %11s | %6s | %6s |\n", "", "", "us",
           "us", "us", "us", "(median)", "(median)", "min", "median");
    printf("|----------------|------:|-----------:|-----------:|-----------:|-----------:|"
           "------------:|------------:|-------:|-------:|\n");
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i] > largest ? largest : sizes[i];
        stat_t eng = measure_engine_record(n);
        stat_t raw = measure_raw_record(n);
        char key_name[32];
        snprintf(key_name, sizeof key_name, "record.%zu", n);
        printf("| %-14s | %5zu | %10.2f | %10.2f | %10.2f | %10.2f | %11.1f | %11.1f | %6.2f | "
               "%6.2f |\n",
               key_name, n, eng.min / 1e3, eng.median / 1e3, raw.min / 1e3, raw.median / 1e3,
               (double)n / eng.median * 1e3, (double)n / raw.median * 1e3, raw.min / eng.min,
               raw.median / eng.median);
    }
    printf("\n");
    usmp_engine_wipe(&client.e);
    usmp_engine_wipe(&server.e);
    return 0;
}
