/*
 * test_vectors.c - the C core against the JSON files in spec/vectors.
 *
 * Positive vectors are reproduced byte for byte from their fixed inputs,
 * through the engine (both roles, both modes) and through the record, COBS
 * and key-schedule functions; every negative vector is fed to an engine
 * brought to its start state, and must give the named condition, the
 * outcome (session open or closed) and the exact reply frame.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "usmp_cobs.h"
#include "usmp_crypto.h"
#include "usmp_engine.h"
#include "usmp_handshake.h"
#include "usmp_record.h"
#include "usmp_test.h"

#ifndef USMP_SPEC_VECTORS_DIR
#error "USMP_SPEC_VECTORS_DIR must name spec/vectors"
#endif

static json_value *load(const char *name)
{
    char path[1024];
    char err[256];
    json_value *doc;

    snprintf(path, sizeof path, "%s/%s", USMP_SPEC_VECTORS_DIR, name);
    doc = json_parse_file(path, err, sizeof err);
    if (doc == NULL) {
        FAIL("cannot read %s: %s", name, err);
    }
    return doc;
}

/* Hex field of a JSON object into a fixed buffer; returns its length. */
static size_t hex_field(const json_value *obj, const char *key, uint8_t *out, size_t cap)
{
    size_t len = 0;
    uint8_t *bytes = json_hex_bytes(json_get(obj, key), &len);

    if (bytes == NULL || len > cap) {
        FAIL("field %s missing, not hex, or longer than %zu", key, cap);
        free(bytes);
        return 0;
    }
    memcpy(out, bytes, len);
    free(bytes);
    return len;
}

static long long int_field(const json_value *obj, const char *key)
{
    long long v = -1;
    if (!json_int(json_get(obj, key), &v)) {
        FAIL("integer field %s missing", key);
    }
    return v;
}

/* ------------------------------------------------------------ test engines */

/* A random source that plays back a script, then a fixed filler (used for
 * the unknown-device stand-in PSK, whose value does not matter). */
typedef struct {
    uint8_t bytes[128];
    size_t len, pos;
} script_t;

static void script_random(void *user, uint8_t *buf, size_t len)
{
    script_t *s = user;
    size_t i;
    for (i = 0; i < len; i++) {
        buf[i] = s->pos < s->len ? s->bytes[s->pos++] : 0x5A;
    }
}

typedef struct {
    uint8_t psk[64];
    size_t psk_len;
    uint8_t device_id[6];
} psk_table_t;

static size_t table_lookup(void *user, const uint8_t device_id[6], uint8_t psk[64])
{
    const psk_table_t *t = user;
    if (memcmp(device_id, t->device_id, 6) != 0) {
        return 0;
    }
    memcpy(psk, t->psk, t->psk_len);
    return t->psk_len;
}

typedef struct {
    usmp_engine_t e;
    script_t rng;
    psk_table_t table;
    uint8_t psk[64];
    uint8_t rx[USMP_RECORD_BUFFER_BYTES(65519)];
    uint8_t tx[USMP_RECORD_BUFFER_BYTES(65519)];
    uint8_t reassembly[65535];
    uint8_t out[70000]; /* everything the engine sent since the last take */
    size_t out_len;
    uint8_t delivered[65535];
    size_t delivered_len;
    int delivered_any;
    /* The last CONTROL event (spec 6.7): never a delivered message. */
    uint8_t control_body[65535];
    size_t control_len;
    int control_channel; /* -1: none since the last reset */
} side_t;

/* Builds one side of a handshake case with the case's fixed inputs. */
static int side_init(side_t *s, const json_value *hs, usmp_role_t role, uint32_t keepalive_ms)
{
    usmp_engine_config_t cfg;
    int datagram = json_string_is(json_get(hs, "mode"), "datagram");

    memset(&cfg, 0, sizeof cfg);
    memset(&s->rng, 0, sizeof s->rng);
    s->out_len = 0;
    s->delivered_any = 0;
    cfg.role = role;
    cfg.mode = datagram ? USMP_MODE_DATAGRAM : USMP_MODE_STREAM;
    cfg.random = script_random;
    cfg.random_user = &s->rng;
    cfg.rx_buf = s->rx;
    cfg.rx_cap = sizeof s->rx;
    cfg.tx_buf = s->tx;
    cfg.tx_cap = sizeof s->tx;
    cfg.reassembly_buf = s->reassembly;
    cfg.reassembly_cap = sizeof s->reassembly;
    cfg.keepalive_ms = keepalive_ms;
    if (role == USMP_ROLE_CLIENT) {
        cfg.max_record = (uint16_t)int_field(hs, "client_max_record");
        cfg.max_message = (uint16_t)int_field(hs, "client_max_message");
        cfg.psk_len = hex_field(hs, "psk", s->psk, sizeof s->psk);
        cfg.psk = s->psk;
        hex_field(hs, "device_id", cfg.device_id, 6);
        /* Spec 5.8: the client draws R and derives its key with the counters. */
        s->rng.len = hex_field(hs, "client_random", s->rng.bytes, 32);
        cfg.boot_counter = (uint64_t)int_field(hs, "client_boot_counter");
        cfg.connection_counter = (uint64_t)int_field(hs, "client_connection_counter");
    } else {
        cfg.max_record = (uint16_t)int_field(hs, "server_max_record");
        cfg.max_message = (uint16_t)int_field(hs, "server_max_message");
        s->table.psk_len = hex_field(hs, "psk", s->table.psk, sizeof s->table.psk);
        hex_field(hs, "device_id", s->table.device_id, 6);
        cfg.psk_lookup = table_lookup;
        cfg.psk_lookup_user = &s->table;
        /* The server draws, in order: ephemeral key, nonce, session id. */
        s->rng.len = hex_field(hs, "server_ephemeral_private", s->rng.bytes, 32);
        s->rng.len += hex_field(hs, "server_nonce", s->rng.bytes + 32, 16);
        s->rng.len += hex_field(hs, "session_id", s->rng.bytes + 48, 8);
    }
    /* The side may hold the last case's session: its record keys' contexts
     * hold the backend's memory until wiped (side_t is static, so a side
     * never used is all zero, which wipes to itself). */
    usmp_engine_wipe(&s->e);
    if (!CHECK_INT_EQ(usmp_engine_init(&s->e, &cfg), USMP_OK)) {
        return 0;
    }
    return CHECK_INT_EQ(usmp_engine_start(&s->e, 0), USMP_OK);
}

/* Moves everything the engine wants to send into s->out. */
static void side_drain(side_t *s)
{
    for (;;) {
        const uint8_t *data;
        size_t len;
        usmp_engine_output(&s->e, &data, &len);
        if (len == 0) {
            return;
        }
        if (len <= sizeof s->out - s->out_len) {
            memcpy(s->out + s->out_len, data, len);
            s->out_len += len;
        }
        usmp_engine_output_done(&s->e, len);
    }
}

/* Feeds one input (stream: bytes; datagram: one datagram; empty: end of
 * stream) and returns the first error, or USMP_OK. Messages delivered on
 * the way are kept in s->delivered. */
static int side_feed(side_t *s, const uint8_t *in, size_t len)
{
    size_t off = 0;
    int first_error = USMP_OK;

    if (len == 0) {
        return usmp_engine_transport_closed(&s->e);
    }
    while (off < len) {
        size_t used = 0;
        usmp_event_t ev;
        int rc = usmp_engine_feed(&s->e, in + off, len - off, 0, &used, &ev);
        if (ev.type == USMP_EVENT_MESSAGE) {
            memcpy(s->delivered, ev.data, ev.len);
            s->delivered_len = ev.len;
            s->delivered_any = 1;
        } else if (ev.type == USMP_EVENT_CONTROL) {
            memcpy(s->control_body, ev.data, ev.len);
            s->control_len = ev.len;
            s->control_channel = ev.channel;
        }
        if (rc != USMP_OK) {
            first_error = rc;
            break;
        }
        if (used == 0) {
            /* A PING waits while a PONG is unsent (row 31): send it, then
             * feed the rest, as a driver does. */
            size_t sent_before = s->out_len;
            side_drain(s);
            if (s->out_len == sent_before) {
                break;
            }
            continue;
        }
        off += used;
    }
    side_drain(s);
    return first_error;
}

static size_t frame_field(const json_value *hs, const char *key, uint8_t *out, size_t cap)
{
    return hex_field(json_get(hs, "frames"), key, out, cap);
}

/* ---------------------------------------------------------------- records */

static void test_records(void)
{
    json_value *doc = load("records.json");
    const json_value *records = json_get(doc, "records");
    size_t i, n = json_count(records);

    for (i = 0; i < n; i++) {
        const json_value *r = json_at(records, i);
        uint8_t key[32], plain[64], want[128], frame[128], index[3] = { 0 }, opened[64];
        usmp_mode_t mode =
            json_string_is(json_get(r, "mode"), "datagram") ? USMP_MODE_DATAGRAM : USMP_MODE_STREAM;
        size_t h = usmp_record_header_len(mode);
        size_t plain_len, want_len;
        uint64_t counter = (uint64_t)int_field(r, "counter");
        int len;

        hex_field(r, "key", key, sizeof key);
        plain_len = hex_field(r, "plaintext", plain, sizeof plain);
        want_len = hex_field(r, "frame", want, sizeof want);
        if (mode == USMP_MODE_DATAGRAM) {
            hex_field(r, "session_index", index, sizeof index);
        }
        memcpy(frame + h, plain, plain_len);
        len = usmp_record_seal(frame, mode, (uint8_t)int_field(r, "type"), index, counter, key,
                               plain_len);
        CHECK_MSG(len == (int)want_len && memcmp(frame, want, want_len) == 0,
                  "records.json #%zu (%s, counter %llu) sealed differently", i,
                  mode == USMP_MODE_STREAM ? "stream" : "datagram", (unsigned long long)counter);
        CHECK_INT_EQ(usmp_record_open(opened, mode, want, want_len, counter, key), USMP_OK);
        CHECK_MEM_EQ(opened, plain, plain_len);
        /* The wrong counter must not open it: the nonce is bound. */
        CHECK_INT_EQ(usmp_record_open(opened, mode, want, want_len, counter + 1u, key),
                     USMP_ERR_BAD_RECORD);
    }
    usmp_test_note("records.json: %zu records sealed and opened", n);
    json_free(doc);
}

/* ------------------------------------------------------------------- COBS */

static void test_cobs(void)
{
    json_value *doc = load("cobs.json");
    const json_value *cases = json_get(doc, "cases");
    const json_value *invalid = json_get(doc, "invalid");
    size_t i;

    for (i = 0; i < json_count(cases); i++) {
        const json_value *c = json_at(cases, i);
        uint8_t decoded[600], encoded[600], out[600];
        size_t dlen = hex_field(c, "decoded", decoded, sizeof decoded);
        size_t elen = hex_field(c, "encoded", encoded, sizeof encoded);
        int n = usmp_cobs_encode(out, sizeof out, decoded, dlen);
        CHECK_MSG(n == (int)elen && memcmp(out, encoded, elen) == 0, "cobs encode '%s'",
                  json_string(json_get(c, "name")));
        n = usmp_cobs_decode(out, sizeof out, encoded, elen);
        CHECK_MSG(n == (int)dlen && memcmp(out, decoded, dlen) == 0, "cobs decode '%s'",
                  json_string(json_get(c, "name")));
        /* In place, as the UART transport decodes. */
        n = usmp_cobs_decode(encoded, elen, encoded, elen);
        CHECK_MSG(n == (int)dlen && memcmp(encoded, decoded, dlen) == 0,
                  "cobs decode in place '%s'", json_string(json_get(c, "name")));
    }
    for (i = 0; i < json_count(invalid); i++) {
        const json_value *c = json_at(invalid, i);
        uint8_t encoded[64], out[64];
        size_t elen = hex_field(c, "encoded", encoded, sizeof encoded);
        CHECK_MSG(usmp_cobs_decode(out, sizeof out, encoded, elen) == USMP_ERR_MALFORMED,
                  "invalid cobs '%s' accepted", json_string(json_get(c, "name")));
    }
    usmp_test_note("cobs.json: %zu cases, %zu invalid", json_count(cases), json_count(invalid));
    json_free(doc);
}

/* -------------------------------------------------------------- handshakes */

static side_t client_side, server_side;

static void check_key_schedule(const json_value *hs)
{
    uint8_t hello[80], challenge[80], th[32], want[128], dh[32], psk[64], nonce[16], mac[16];
    uint8_t c_priv[32], s_pub[32], hello_ack[32], session_id[8];
    size_t hello_len = frame_field(hs, "hello", hello, sizeof hello);
    size_t challenge_len = frame_field(hs, "challenge", challenge, sizeof challenge);
    size_t psk_len = hex_field(hs, "psk", psk, sizeof psk);
    size_t ack_len = frame_field(hs, "hello_ack", hello_ack, sizeof hello_ack);
    usmp_mode_t mode =
        json_string_is(json_get(hs, "mode"), "datagram") ? USMP_MODE_DATAGRAM : USMP_MODE_STREAM;
    usmp_hs_keys_t keys;
    usmp_slice_t ikm[2];

    CHECK_INT_EQ(usmp_hs_transcript(th, mode, hello, hello_len, challenge, challenge_len), USMP_OK);
    hex_field(hs, "transcript_hash", want, 32);
    CHECK_MEM_EQ(th, want, 32);

    {
        uint8_t random32[32];
        hex_field(hs, "client_random", random32, 32);
        CHECK_INT_EQ(usmp_hs_client_ephemeral(
                         c_priv, psk, psk_len, (uint64_t)int_field(hs, "client_boot_counter"),
                         (uint64_t)int_field(hs, "client_connection_counter"), random32),
                     USMP_OK);
        hex_field(hs, "client_ephemeral_private", want, 32);
        CHECK_MSG(memcmp(c_priv, want, 32) == 0,
                  "%s: client_ephemeral_private is not the "
                  "spec 5.8 derivation",
                  json_string(json_get(hs, "name")));
    }
    hex_field(hs, "server_ephemeral_public", s_pub, 32);
    CHECK_INT_EQ(usmp_crypto_x25519_shared(dh, c_priv, s_pub), USMP_CRYPTO_OK);
    hex_field(hs, "shared_secret", want, 32);
    CHECK_MEM_EQ(dh, want, 32);

    hex_field(hs, "server_nonce", nonce, 16);
    ikm[0].ptr = dh;
    ikm[0].len = 32;
    ikm[1].ptr = psk;
    ikm[1].len = psk_len;
    {
        uint8_t prk[32];
        CHECK_INT_EQ(usmp_crypto_hkdf_extract(prk, nonce, 16, ikm, 2), USMP_CRYPTO_OK);
        hex_field(hs, "prk", want, 32);
        CHECK_MEM_EQ(prk, want, 32);
    }
    CHECK_INT_EQ(usmp_hs_derive_keys(&keys, dh, psk, psk_len, nonce, th), USMP_OK);
    hex_field(hs, "okm", want, 128);
    CHECK_MEM_EQ(&keys, want, 128);
    hex_field(hs, "key_c2s", want, 32);
    CHECK_MEM_EQ(keys.c2s, want, 32);
    hex_field(hs, "key_confirm_server", want, 32);
    CHECK_MEM_EQ(keys.confirm_server, want, 32);

    CHECK_INT_EQ(usmp_hs_client_mac(mac, keys.confirm_client, th), USMP_OK);
    hex_field(hs, "hello_ack_mac", want, 16);
    CHECK_MEM_EQ(mac, want, 16);
    hex_field(hs, "session_id", session_id, 8);
    CHECK_INT_EQ(usmp_hs_server_mac(mac, keys.confirm_server, th, hello_ack, ack_len, session_id),
                 USMP_OK);
    hex_field(hs, "session_ok_mac", want, 16);
    CHECK_MEM_EQ(mac, want, 16);
}

/* Feeds `frame` to `to`, expecting no error, and checks that `to` answers
 * with exactly the vector frame `answer_key` (NULL: nothing). */
static void exchange(const json_value *hs, side_t *to, const uint8_t *frame, size_t len,
                     const char *answer_key, const char *what)
{
    uint8_t want[128];
    size_t want_len = answer_key != NULL ? frame_field(hs, answer_key, want, sizeof want) : 0;

    to->out_len = 0;
    CHECK_MSG(side_feed(to, frame, len) == USMP_OK, "%s: %s rejected",
              json_string(json_get(hs, "name")), what);
    CHECK_MSG(to->out_len == want_len && memcmp(to->out, want, want_len) == 0,
              "%s: answer to %s is not the vector's %s", json_string(json_get(hs, "name")), what,
              answer_key != NULL ? answer_key : "(nothing)");
}

/* The engine keeps a record key only inside its AEAD context (the key
 * schedule, no key bytes), so a key is checked by what it seals: the same
 * record sealed under the vector's key must come out byte for byte. */
static void check_record_key(usmp_aead_t *aead, const uint8_t want_key[32], const char *name,
                             const char *which)
{
    uint8_t got[USMP_STREAM_OVERHEAD + 8];
    uint8_t expected[sizeof got];
    int got_len;
    int expected_len;

    memset(got, 0x5a, sizeof got);
    memcpy(expected, got, sizeof expected);
    got_len = usmp_record_seal_aead(got, USMP_MODE_STREAM, USMP_TYPE_DATA, NULL, 0, aead, 8);
    expected_len =
        usmp_record_seal(expected, USMP_MODE_STREAM, USMP_TYPE_DATA, NULL, 0, want_key, 8);
    CHECK_MSG(got_len == (int)sizeof got && expected_len == got_len &&
                  memcmp(got, expected, sizeof got) == 0,
              "%s: the %s differs from the vector's", name, which);
}

static void test_handshake_case(const json_value *hs)
{
    side_t *c = &client_side, *s = &server_side;
    const char *name = json_string(json_get(hs, "name"));
    const json_value *frames = json_get(hs, "frames");
    const json_value *records = json_get(hs, "records");
    uint8_t buf[128], want[128];
    size_t len, i;

    check_key_schedule(hs);
    /* keepalive 42 ms: the client's first PING goes out at t = 42, whose
     * payload (the send time) is the vector's 0000002a. */
    if (!side_init(c, hs, USMP_ROLE_CLIENT, 42) || !side_init(s, hs, USMP_ROLE_SERVER, 0)) {
        return;
    }
    side_drain(c);
    len = frame_field(hs, "hello", want, sizeof want);
    CHECK_MSG(c->out_len == len && memcmp(c->out, want, len) == 0, "%s: HELLO differs", name);

    if (json_get(frames, "cookie") != NULL) {
        uint8_t secret[32], address[32], cookie[16];
        size_t address_len = hex_field(hs, "client_address", address, sizeof address);
        hex_field(hs, "cookie_secret", secret, sizeof secret);
        CHECK_INT_EQ(usmp_cookie_compute(cookie, secret, address, address_len, want, len), USMP_OK);
        len = frame_field(hs, "cookie", buf, sizeof buf);
        CHECK_MSG(len == 17 && memcmp(cookie, buf + 1, 16) == 0, "%s: cookie differs", name);
        exchange(hs, c, buf, len, "hello_with_cookie", "COOKIE");
        len = frame_field(hs, "hello_with_cookie", buf, sizeof buf);
    } else {
        len = frame_field(hs, "hello", buf, sizeof buf);
    }
    exchange(hs, s, buf, len, "challenge", "HELLO");
    len = frame_field(hs, "challenge", buf, sizeof buf);
    exchange(hs, c, buf, len, "hello_ack", "CHALLENGE");
    len = frame_field(hs, "hello_ack", buf, sizeof buf);
    exchange(hs, s, buf, len, "session_ok", "HELLO_ACK");
    len = frame_field(hs, "session_ok", buf, sizeof buf);
    exchange(hs, c, buf, len, NULL, "SESSION_OK");
    CHECK_INT_EQ(usmp_engine_state(&c->e), USMP_STATE_ESTABLISHED);
    CHECK_INT_EQ(usmp_engine_state(&s->e), USMP_STATE_ESTABLISHED);
    hex_field(hs, "session_id", want, 8);
    CHECK_MEM_EQ(usmp_engine_session_id(&c->e), want, 8);
    hex_field(hs, "key_c2s", want, 32);
    check_record_key(&c->e.aead_send, want, name, "client's send key");
    check_record_key(&s->e.aead_recv, want, name, "server's receive key");
    hex_field(hs, "key_s2c", want, 32);
    check_record_key(&s->e.aead_send, want, name, "server's send key");
    check_record_key(&c->e.aead_recv, want, name, "client's receive key");

    /* The session's first records, produced by the engines' own actions:
     * DATA by usmp_engine_send, PING by the keepalive timer, PONG as the
     * answer to it, BYE by usmp_engine_close. */
    for (i = 0; i < json_count(records); i++) {
        const json_value *r = json_at(records, i);
        int c2s = json_string_is(json_get(r, "direction"), "c2s");
        side_t *from = c2s ? c : s, *to = c2s ? s : c;
        uint8_t plain[64];
        size_t plain_len = hex_field(r, "plaintext", plain, sizeof plain);
        long long type = int_field(r, "type");
        size_t want_len = hex_field(r, "frame", want, sizeof want);

        if (type != USMP_TYPE_PONG) {
            from->out_len = 0; /* a PONG was sent when the PING was fed */
        }
        if (type == USMP_TYPE_DATA) {
            CHECK_INT_EQ(usmp_engine_send(&from->e, plain, plain_len, 0), (int)plain_len);
        } else if (type == USMP_TYPE_PING) {
            CHECK_INT_EQ(usmp_engine_tick(&from->e, 42), USMP_OK);
        } else if (type == USMP_TYPE_BYE) {
            CHECK_INT_EQ(usmp_engine_close(&from->e, plain[0]), USMP_OK);
        }
        /* PONG: already pending since the PING was fed. */
        side_drain(from);
        CHECK_MSG(from->out_len == want_len && memcmp(from->out, want, want_len) == 0,
                  "%s: record %zu (type %lld) differs", name, i, type);
        to->delivered_any = 0;
        to->out_len = 0;
        CHECK_MSG(side_feed(to, want, want_len) == USMP_OK, "%s: record %zu rejected", name, i);
        if (type == USMP_TYPE_DATA) {
            CHECK(to->delivered_any && to->delivered_len == plain_len &&
                  memcmp(to->delivered, plain, plain_len) == 0);
        }
        if (type == USMP_TYPE_BYE) {
            CHECK_INT_EQ(usmp_engine_state(&to->e), USMP_STATE_CLOSED);
            CHECK_INT_EQ(usmp_engine_peer_code(&to->e), plain[0]);
        }
    }
    CHECK_MSG(int_field(hs, "handshake_wire_bytes") ==
                  (long long)(json_string_len(json_get(frames, "hello")) +
                              json_string_len(json_get(frames, "challenge")) +
                              json_string_len(json_get(frames, "hello_ack")) +
                              json_string_len(json_get(frames, "session_ok"))) /
                      2,
              "%s: handshake_wire_bytes", name);
}

static void test_handshakes(void)
{
    json_value *doc = load("handshake.json");
    const json_value *cases = json_get(doc, "cases");
    size_t i;
    for (i = 0; i < json_count(cases); i++) {
        test_handshake_case(json_at(cases, i));
    }
    usmp_test_note("handshake.json: %zu handshakes reproduced through the engines",
                   json_count(cases));
    json_free(doc);
}

/* ---------------------------------------------------------------- negative */

static const json_value *find_handshake(const json_value *doc, const char *name)
{
    const json_value *cases = json_get(doc, "cases");
    size_t i;
    for (i = 0; i < json_count(cases); i++) {
        if (json_string_is(json_get(json_at(cases, i), "name"), name)) {
            return json_at(cases, i);
        }
    }
    return NULL;
}

/* Brings a fresh engine of `role` to `start` with the genuine frames. */
static side_t *reach(const json_value *hs, const char *role, const char *start)
{
    uint8_t buf[128];
    size_t len;
    int server = strcmp(role, "server") == 0;
    side_t *s = server ? &server_side : &client_side;

    if (!side_init(s, hs, server ? USMP_ROLE_SERVER : USMP_ROLE_CLIENT, 0)) {
        return NULL;
    }
    side_drain(s);
    if (server && strcmp(start, "WAIT_HELLO") != 0) {
        len = frame_field(hs, "hello", buf, sizeof buf);
        CHECK(side_feed(s, buf, len) == USMP_OK);
        if (strcmp(start, "ESTABLISHED") == 0) {
            len = frame_field(hs, "hello_ack", buf, sizeof buf);
            CHECK(side_feed(s, buf, len) == USMP_OK);
        }
    }
    if (!server && strcmp(start, "WAIT_CHALLENGE") != 0) {
        len = frame_field(hs, "challenge", buf, sizeof buf);
        CHECK(side_feed(s, buf, len) == USMP_OK);
        if (strcmp(start, "ESTABLISHED") == 0) {
            len = frame_field(hs, "session_ok", buf, sizeof buf);
            CHECK(side_feed(s, buf, len) == USMP_OK);
        }
    }
    s->out_len = 0;
    return s;
}

static void test_negative(void)
{
    json_value *handshakes = load("handshake.json");
    json_value *doc = load("negative.json");
    const json_value *cases = json_get(doc, "cases");
    size_t i, j, steps_run = 0;

    for (i = 0; i < json_count(cases); i++) {
        const json_value *c = json_at(cases, i);
        const char *name = json_string(json_get(c, "name"));
        const json_value *hs = find_handshake(handshakes, json_string(json_get(c, "handshake")));
        const json_value *steps = json_get(c, "steps");
        side_t *s =
            reach(hs, json_string(json_get(c, "receiver")), json_string(json_get(c, "start")));
        if (s == NULL) {
            FAIL("%s: cannot reach the start state", name);
            continue;
        }
        if (strstr(name, "unknown-device") != NULL) {
            /* The server knows only deadbeef0001; the HELLO says 0099. */
            CHECK(memcmp(s->table.device_id, "\xde\xad\xbe\xef\x00\x01", 6) == 0);
        }
        for (j = 0; j < json_count(steps); j++) {
            const json_value *st = json_at(steps, j);
            uint8_t *input;
            size_t input_len = 0, reply_len = 0, deliver_len = 0;
            uint8_t *reply = json_hex_bytes(json_get(st, "reply"), &reply_len);
            uint8_t *deliver = json_hex_bytes(json_get(st, "delivers"), &deliver_len);
            const char *expect = json_string(json_get(st, "expect"));
            const char *outcome = json_string(json_get(st, "outcome"));
            int rc, closed;

            const json_value *peer_code = json_get(st, "peer_code");
            const json_value *control = json_get(st, "control");
            input = json_hex_bytes(json_get(st, "input"), &input_len);
            s->out_len = 0;
            s->delivered_any = 0;
            s->control_channel = -1;
            if (json_string_is(json_get(st, "timer"), "handshake")) {
                /* Not an input: the clock passes handshake_timeout (10 s). */
                rc = usmp_engine_tick(&s->e, 20000u);
                side_drain(s);
            } else {
                CHECK_MSG(input != NULL, "%s step %zu: no input", name, j);
                rc = side_feed(s, input, input_len);
            }
            if (peer_code != NULL) {
                CHECK_MSG(usmp_engine_peer_code(&s->e) == (uint8_t)int_field(st, "peer_code"),
                          "%s step %zu: peer code %u, expected %lld", name, j,
                          (unsigned)usmp_engine_peer_code(&s->e), int_field(st, "peer_code"));
            }
            closed = usmp_engine_state(&s->e) == USMP_STATE_FAILED ||
                     usmp_engine_state(&s->e) == USMP_STATE_CLOSED;
            CHECK_MSG(strcmp(expect, rc == USMP_OK ? "ok" : usmp_error_name(rc)) == 0,
                      "%s step %zu: expected %s, got %s", name, j, expect,
                      rc == USMP_OK ? "ok" : usmp_error_name(rc));
            if (outcome != NULL) {
                CHECK_MSG(closed == (strcmp(outcome, "closed") == 0),
                          "%s step %zu: session should be %s", name, j, outcome);
            }
            CHECK_MSG(s->out_len == reply_len &&
                          (reply_len == 0 || memcmp(s->out, reply, reply_len) == 0),
                      "%s step %zu: reply differs (%zu bytes sent, %zu expected)", name, j,
                      s->out_len, reply_len);
            if (deliver != NULL) {
                CHECK_MSG(s->delivered_any && s->delivered_len == deliver_len &&
                              memcmp(s->delivered, deliver, deliver_len) == 0,
                          "%s step %zu: message not delivered", name, j);
            } else {
                CHECK_MSG(!s->delivered_any, "%s step %zu: delivered a message it should not", name,
                          j);
            }
            if (control != NULL) {
                size_t body_len = 0;
                uint8_t *body = json_hex_bytes(json_get(control, "body"), &body_len);
                CHECK_MSG(s->control_channel == (int)int_field(control, "channel") &&
                              s->control_len == body_len &&
                              (body_len == 0 || memcmp(s->control_body, body, body_len) == 0),
                          "%s step %zu: control event differs (channel %d)", name, j,
                          s->control_channel);
                free(body);
            } else {
                CHECK_MSG(s->control_channel < 0, "%s step %zu: a control event it should not",
                          name, j);
            }
            free(input);
            free(reply);
            free(deliver);
            steps_run++;
        }
    }
    usmp_test_note("negative.json: %zu cases, %zu steps", json_count(cases), steps_run);
    json_free(doc);
    json_free(handshakes);
}

int main(void)
{
    test_records();
    test_cobs();
    test_handshakes();
    test_negative();
    return usmp_test_finish("test_vectors");
}
