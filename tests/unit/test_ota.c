/*
 * test_ota.c - the device's OTA module (ota/usmp_ota.c, spec/ota.md)
 * against an in-memory flash, with the manifests and messages of
 * spec/vectors/ota.json (signed with its fixed test key).
 *
 * Every refusal of ota.md 4.1 answers its RESULT and calls no flash hook;
 * a whole transfer writes the exact image and activates it; a corrupted
 * chunk is a HASH_MISMATCH and nothing is activated; a transfer resumes
 * from the persisted offset after a new session and after a reboot;
 * duplicated, out-of-order and unasked CHUNKs are ignored; malformed OTA
 * messages are dropped and counted; the REQUEST is resent with back-off.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "usmp_crypto.h"
#include "usmp_ota.h"
#include "usmp_test.h"
#include "usmp_wire.h"

#ifndef USMP_SPEC_VECTORS_DIR
#error "USMP_SPEC_VECTORS_DIR must name spec/vectors"
#endif

#define SLOT_BYTES 4096u
/* The device of ota.json announces max_chunk 1000: own max_record 1006. */
#define OWN_MAX_RECORD 1006u

/* ------------------------------------------------------- in-memory flash */

typedef struct {
    uint8_t slot[SLOT_BYTES];
    uint32_t image_size;
    uint32_t version;
    int begins, writes, finishes, activations;
    uint32_t activated_version;
    uint32_t last_resume_offset;
    int fail_write_at; /* the write call (1-based) that fails; 0: none */
    /* the persisted record */
    int saved;
    uint8_t saved_manifest[USMP_OTA_MANIFEST_BYTES];
    uint32_t saved_offset;
    int saves;
} flash_t;

static int f_begin(void *user, uint32_t image_size, uint32_t resume_offset)
{
    flash_t *f = user;
    f->begins++;
    f->image_size = image_size;
    f->last_resume_offset = resume_offset;
    if (resume_offset == 0) {
        memset(f->slot, 0xFF, sizeof f->slot); /* erased */
    }
    return 0;
}

static int f_write(void *user, uint32_t offset, const uint8_t *data, size_t len)
{
    flash_t *f = user;
    f->writes++;
    if (f->fail_write_at == f->writes || offset + len > sizeof f->slot) {
        return -1;
    }
    memcpy(f->slot + offset, data, len);
    return 0;
}

static int f_finish(void *user, uint8_t digest[USMP_OTA_DIGEST_BYTES])
{
    flash_t *f = user;
    usmp_slice_t part = { f->slot, f->image_size };
    f->finishes++;
    return usmp_crypto_sha256(digest, &part, 1) == USMP_CRYPTO_OK ? 0 : -1;
}

static int f_activate(void *user, uint32_t firmware_version)
{
    flash_t *f = user;
    f->activations++;
    f->activated_version = firmware_version;
    return 0;
}

static uint32_t f_version(void *user)
{
    return ((flash_t *)user)->version;
}

static int f_save(void *user, const uint8_t manifest[USMP_OTA_MANIFEST_BYTES], uint32_t offset)
{
    flash_t *f = user;
    f->saves++;
    f->saved = manifest != NULL;
    if (manifest != NULL) {
        memcpy(f->saved_manifest, manifest, USMP_OTA_MANIFEST_BYTES);
    }
    f->saved_offset = offset;
    return 0;
}

static int f_load(void *user, uint8_t manifest[USMP_OTA_MANIFEST_BYTES], uint32_t *offset)
{
    flash_t *f = user;
    if (!f->saved) {
        return 0;
    }
    memcpy(manifest, f->saved_manifest, USMP_OTA_MANIFEST_BYTES);
    *offset = f->saved_offset;
    return 1;
}

/* --------------------------------------------------------------- fixture */

static json_value *doc;
static uint8_t public_key[32];
static uint8_t hardware_id[16];
static uint8_t *image;
static size_t image_len;

static flash_t flash;
static usmp_ota_flash_t hooks;
static usmp_ota_config_t config;
static usmp_ota_t ota;

static uint8_t *hex(const json_value *v, size_t *len)
{
    size_t n = 0;
    uint8_t *b = json_hex_bytes(v, &n);
    if (len != NULL) {
        *len = n;
    }
    return b;
}

static void copy_hex(const json_value *v, uint8_t *out, size_t want)
{
    size_t n = 0;
    uint8_t *b = hex(v, &n);
    if (CHECK(b != NULL && n == want)) {
        memcpy(out, b, want);
    }
    free(b);
}

static const json_value *find_named(const char *list, const char *name)
{
    const json_value *items = json_get(doc, list);
    size_t i;
    for (i = 0; i < json_count(items); i++) {
        if (json_string_is(json_get(json_at(items, i), "name"), name)) {
            return json_at(items, i);
        }
    }
    FAIL("ota.json has no %s named %s", list, name);
    return NULL;
}

/* The body of ota.json's message `name`. */
static uint8_t *message(const char *name, size_t *len)
{
    const json_value *m = find_named("messages", name);
    return m != NULL ? hex(json_get(m, "body"), len) : NULL;
}

static void manifest_named(const char *name, uint8_t out[USMP_OTA_MANIFEST_BYTES])
{
    const json_value *m = find_named("manifests", name);
    if (m != NULL) {
        copy_hex(json_get(m, "manifest"), out, USMP_OTA_MANIFEST_BYTES);
    }
}

/* A fresh device: flash state kept or not (a reboot keeps it). */
static void boot(int keep_flash)
{
    long long version = 0;
    if (!keep_flash) {
        memset(&flash, 0, sizeof flash);
    }
    flash.begins = flash.writes = flash.finishes = flash.activations = flash.saves = 0;
    (void)json_int(json_get(json_get(doc, "device"), "running_version"), &version);
    flash.version = (uint32_t)version;
    memset(&hooks, 0, sizeof hooks);
    hooks.user = &flash;
    hooks.begin = f_begin;
    hooks.write = f_write;
    hooks.finish = f_finish;
    hooks.activate = f_activate;
    hooks.running_version = f_version;
    hooks.save_progress = f_save;
    hooks.load_progress = f_load;
    memset(&config, 0, sizeof config);
    config.public_key = public_key;
    memcpy(config.hardware_id, hardware_id, sizeof hardware_id);
    config.slot_size = SLOT_BYTES;
    config.flash = &hooks;
    config.retry_ms = 100;
    CHECK_INT_EQ(usmp_ota_init(&ota, &config), USMP_OK);
    usmp_ota_session_opened(&ota, OWN_MAX_RECORD);
}

/* Takes the next output; returns its length (0: none). */
static size_t take(uint8_t out[64], uint32_t now)
{
    size_t n = usmp_ota_next_output(&ota, out);
    if (n > 0) {
        usmp_ota_sent(&ota, now);
    }
    return n;
}

/* Drains the output; returns the last REQUEST seen (offset, length) or
 * -1, and the RESULT code seen or -1. */
static void drain(long *req_offset, long *req_len, int *result, uint32_t now)
{
    uint8_t out[64];
    size_t n;
    *req_offset = *req_len = -1;
    *result = -1;
    while ((n = take(out, now)) > 0) {
        if (out[0] == USMP_OTA_OP_REQUEST && n == 7) {
            *req_offset = (long)usmp_get_be(out + 1, 4);
            *req_len = (long)usmp_get_u16(out + 5);
        } else if (out[0] == USMP_OTA_OP_RESULT && n == 6) {
            *result = out[1];
        }
    }
}

static void offer(const uint8_t manifest[USMP_OTA_MANIFEST_BYTES], uint32_t now)
{
    uint8_t body[1 + USMP_OTA_MANIFEST_BYTES];
    body[0] = USMP_OTA_OP_OFFER;
    memcpy(body + 1, manifest, USMP_OTA_MANIFEST_BYTES);
    usmp_ota_input(&ota, body, sizeof body, now);
}

static void chunk(uint32_t offset, const uint8_t *data, size_t len, uint32_t now)
{
    uint8_t body[5 + 1100];
    body[0] = USMP_OTA_OP_CHUNK;
    usmp_put_be(body + 1, offset, 4);
    memcpy(body + 5, data, len);
    usmp_ota_input(&ota, body, 5 + len, now);
}

/* Answers REQUESTs from `from` with the image (corrupting byte `corrupt`
 * when it is in range) until no REQUEST comes. Returns the RESULT code. */
static int serve(long req_offset, long req_len, long corrupt, uint32_t now)
{
    int result = -1;
    static uint8_t data[1100];
    while (req_offset >= 0) {
        memcpy(data, image + req_offset, (size_t)req_len);
        if (corrupt >= req_offset && corrupt < req_offset + req_len) {
            data[corrupt - req_offset] ^= 0x01;
        }
        chunk((uint32_t)req_offset, data, (size_t)req_len, now);
        drain(&req_offset, &req_len, &result, now);
    }
    return result;
}

/* ----------------------------------------------------------------- tests */

static void test_every_manifest_of_the_vectors_gets_its_answer_and_no_write_before_it_verifies(void)
{
    const json_value *manifests = json_get(doc, "manifests");
    size_t i;

    for (i = 0; i < json_count(manifests); i++) {
        const json_value *m = json_at(manifests, i);
        const char *name = json_string(json_get(m, "name"));
        const char *expect = json_string(json_get(m, "expect"));
        uint8_t manifest[USMP_OTA_MANIFEST_BYTES];
        long offset, len;
        int result;

        boot(0);
        drain(&offset, &len, &result, 0); /* the STATUS of the session */
        copy_hex(json_get(m, "manifest"), manifest, sizeof manifest);
        offer(manifest, 0);
        drain(&offset, &len, &result, 0);
        if (strcmp(expect, "ACCEPT") == 0) {
            CHECK_MSG(result == -1 && offset == 0 && len == 1000, "%s: REQUEST(0, 1000) expected",
                      name);
            CHECK_MSG(flash.begins == 1 && flash.last_resume_offset == 0, "%s: begin", name);
            CHECK_MSG(flash.saved && flash.saved_offset == 0, "%s: progress persisted", name);
        } else {
            long long code = -1;
            (void)json_int(json_get(json_get(doc, "result_codes"), expect), &code);
            CHECK_MSG(result == code, "%s: RESULT %d, expected %s", name, result, expect);
            CHECK_MSG(offset == -1, "%s: refused, yet a REQUEST", name);
            /* No write, no erase, nothing persisted before every check passed. */
            CHECK_MSG(flash.begins == 0 && flash.writes == 0 && flash.saves == 0 &&
                          flash.activations == 0,
                      "%s: a flash hook ran for a refused manifest", name);
        }
    }
}

static void test_status_request_and_result_bodies_are_the_vectors(void)
{
    uint8_t out[64], manifest[USMP_OTA_MANIFEST_BYTES];
    size_t want_len, n;
    uint8_t *want;
    long offset, len;
    int result;
    const char *codes[] = { "result-bad-signature", "result-not-newer" };
    const char *names[] = { "bad-signature", "same-version" };
    size_t i;

    boot(0);
    n = take(out, 0);
    want = message("status-idle", &want_len);
    CHECK(want != NULL && n == want_len && memcmp(out, want, n) == 0);
    free(want);

    /* Receiving, persisted at 2048 (the vector's STATUS), then a reboot. */
    manifest_named("valid", manifest);
    flash.saved = 1;
    memcpy(flash.saved_manifest, manifest, sizeof manifest);
    flash.saved_offset = 2048;
    boot(1);
    n = take(out, 0);
    want = message("status-receiving", &want_len);
    CHECK(want != NULL && n == want_len && memcmp(out, want, n) == 0);
    free(want);

    /* Resumed at 1024: the vector's REQUEST. */
    flash.saved_offset = 1024;
    boot(1);
    drain(&offset, &len, &result, 0);
    offer(manifest, 0);
    n = take(out, 0);
    want = message("request", &want_len);
    CHECK(want != NULL && n == want_len && memcmp(out, want, n) == 0);
    free(want);
    CHECK_INT_EQ(flash.last_resume_offset, 1024);

    for (i = 0; i < 2; i++) {
        boot(0);
        drain(&offset, &len, &result, 0);
        manifest_named(names[i], manifest);
        offer(manifest, 0);
        n = take(out, 0);
        want = message(codes[i], &want_len);
        CHECK_MSG(want != NULL && n == want_len && memcmp(out, want, n) == 0, "%s", codes[i]);
        free(want);
        /* STATUS follows every RESULT (ota.md 3.1). */
        CHECK(take(out, 0) == USMP_OTA_STATUS_BYTES && out[0] == USMP_OTA_OP_STATUS);
    }
}

static void test_a_whole_transfer_writes_the_image_and_activates_it(void)
{
    uint8_t manifest[USMP_OTA_MANIFEST_BYTES], out[64];
    long offset, len;
    int result;
    size_t want_len, n;
    uint8_t *want;

    boot(0);
    drain(&offset, &len, &result, 0);
    manifest_named("valid", manifest);
    offer(manifest, 0);
    drain(&offset, &len, &result, 0);
    CHECK_INT_EQ(offset, 0);
    /* Serve all but the last chunk, then check the RESULT bytes. */
    while (offset >= 0 && (size_t)(offset + len) < image_len) {
        chunk((uint32_t)offset, image + offset, (size_t)len, 0);
        drain(&offset, &len, &result, 0);
    }
    CHECK(flash.activations == 0);
    chunk((uint32_t)offset, image + offset, (size_t)len, 0);
    n = take(out, 0);
    want = message("result-activated", &want_len);
    CHECK(want != NULL && n == want_len && memcmp(out, want, n) == 0);
    free(want);
    CHECK_INT_EQ(usmp_ota_restart_due(&ota), 1);
    CHECK(take(out, 0) == USMP_OTA_STATUS_BYTES && out[21] == 0);
    CHECK_INT_EQ(flash.activations, 1);
    CHECK_INT_EQ(flash.activated_version, 8); /* the valid manifest's */
    CHECK_INT_EQ(flash.finishes, 1);
    CHECK_MEM_EQ(flash.slot, image, image_len);
    CHECK_INT_EQ(ota.stats.chunks_written, 3);
    CHECK(!flash.saved); /* the persisted transfer is cleared */
    /* Nothing more until the restart. */
    offer(manifest, 0);
    CHECK_INT_EQ(take(out, 0), 0);
}

static void test_a_corrupted_chunk_is_a_hash_mismatch_and_nothing_is_activated(void)
{
    uint8_t manifest[USMP_OTA_MANIFEST_BYTES];
    long offset, len;
    int result;

    boot(0);
    drain(&offset, &len, &result, 0);
    manifest_named("valid", manifest);
    offer(manifest, 0);
    drain(&offset, &len, &result, 0);
    result = serve(offset, len, 1500, 0);
    CHECK_INT_EQ(result, USMP_OTA_HASH_MISMATCH);
    CHECK_INT_EQ(flash.finishes, 1);
    CHECK_INT_EQ(flash.activations, 0);
    CHECK_INT_EQ(usmp_ota_restart_due(&ota), 0);
    CHECK(!flash.saved);
}

static void test_a_failing_write_is_a_flash_error_and_the_transfer_is_dropped(void)
{
    uint8_t manifest[USMP_OTA_MANIFEST_BYTES];
    long offset, len;
    int result;

    boot(0);
    flash.fail_write_at = 2;
    drain(&offset, &len, &result, 0);
    manifest_named("valid", manifest);
    offer(manifest, 0);
    drain(&offset, &len, &result, 0);
    CHECK_INT_EQ(serve(offset, len, -1, 0), USMP_OTA_FLASH_ERROR);
    CHECK_INT_EQ(flash.activations, 0);
    CHECK(!flash.saved);
}

static void test_a_transfer_resumes_after_a_new_session_and_after_a_reboot(void)
{
    uint8_t manifest[USMP_OTA_MANIFEST_BYTES], out[64];
    long offset, len;
    int result;

    boot(0);
    drain(&offset, &len, &result, 0);
    manifest_named("valid", manifest);
    offer(manifest, 0);
    drain(&offset, &len, &result, 0);
    chunk(0, image, 1000, 0);
    drain(&offset, &len, &result, 0);
    CHECK_INT_EQ(offset, 1000);
    CHECK(flash.saved && flash.saved_offset == 1000);

    /* The session drops; a new one opens: STATUS says receiving at 1000,
     * no REQUEST until the gateway OFFERs the same manifest again. */
    usmp_ota_session_opened(&ota, OWN_MAX_RECORD);
    CHECK(take(out, 0) == USMP_OTA_STATUS_BYTES && out[21] == 1 &&
          usmp_get_be(out + 54, 4) == 1000);
    CHECK_INT_EQ(take(out, 0), 0);
    offer(manifest, 0);
    drain(&offset, &len, &result, 0);
    CHECK_INT_EQ(offset, 1000);
    CHECK_INT_EQ(flash.begins, 1); /* not erased again in this boot */
    chunk(1000, image + 1000, 1000, 0);
    drain(&offset, &len, &result, 0);
    CHECK_INT_EQ(offset, 2000);

    /* A reboot: the slot and the record stay; begin(resume 2000), no erase. */
    boot(1);
    drain(&offset, &len, &result, 0);
    CHECK_INT_EQ(offset, -1);
    offer(manifest, 0);
    drain(&offset, &len, &result, 0);
    CHECK_INT_EQ(offset, 2000);
    CHECK_INT_EQ(flash.begins, 1);
    CHECK_INT_EQ(flash.last_resume_offset, 2000);
    CHECK_INT_EQ(serve(offset, len, -1, 0), USMP_OTA_ACTIVATED);
    CHECK_MEM_EQ(flash.slot, image, image_len);
    CHECK_INT_EQ(flash.activations, 1);
}

static void test_a_persisted_transfer_that_no_longer_verifies_is_dropped_at_boot(void)
{
    uint8_t manifest[USMP_OTA_MANIFEST_BYTES], out[64];

    manifest_named("valid", manifest);
    memset(&flash, 0, sizeof flash);
    flash.saved = 1;
    memcpy(flash.saved_manifest, manifest, sizeof manifest);
    flash.saved_manifest[9] ^= 0x01; /* storage changed under it */
    flash.saved_offset = 1000;
    boot(1);
    CHECK(!flash.saved);
    CHECK(take(out, 0) == USMP_OTA_STATUS_BYTES && out[21] == 0);
}

static void test_duplicated_out_of_order_and_unasked_chunks_are_ignored(void)
{
    uint8_t manifest[USMP_OTA_MANIFEST_BYTES];
    long offset, len;
    int result;

    boot(0);
    drain(&offset, &len, &result, 0);
    /* Before any OFFER: not asked for. */
    chunk(0, image, 1000, 0);
    CHECK_INT_EQ(flash.writes, 0);
    manifest_named("valid", manifest);
    offer(manifest, 0);
    drain(&offset, &len, &result, 0);
    chunk(1000, image + 1000, 1000, 0); /* ahead of the one asked for */
    chunk(0, image, 999, 0);            /* the right offset, the wrong length */
    CHECK_INT_EQ(flash.writes, 0);
    chunk(0, image, 1000, 0);
    chunk(0, image, 1000, 0); /* a duplicate of the one just written */
    CHECK_INT_EQ(flash.writes, 1);
    CHECK_INT_EQ(ota.stats.chunks_ignored, 4);
    drain(&offset, &len, &result, 0);
    CHECK_INT_EQ(offset, 1000);
    /* A duplicate OFFER is answered with the REQUEST at the current offset. */
    offer(manifest, 0);
    drain(&offset, &len, &result, 0);
    CHECK_INT_EQ(offset, 1000);
    CHECK_INT_EQ(flash.begins, 1);
    CHECK_INT_EQ(serve(offset, len, -1, 0), USMP_OTA_ACTIVATED);
    CHECK_MEM_EQ(flash.slot, image, image_len);
}

static void test_malformed_messages_are_dropped_and_counted(void)
{
    const json_value *malformed = json_get(doc, "malformed");
    uint8_t manifest[USMP_OTA_MANIFEST_BYTES], out[64], status[] = { USMP_OTA_OP_STATUS };
    long offset, len;
    int result;
    size_t i, body_len;

    boot(0);
    drain(&offset, &len, &result, 0);
    manifest_named("valid", manifest);
    offer(manifest, 0);
    drain(&offset, &len, &result, 0);
    for (i = 0; i < json_count(malformed); i++) {
        uint8_t *body = hex(json_get(json_at(malformed, i), "body"), &body_len);
        usmp_ota_input(&ota, body, body_len, 0);
        free(body);
    }
    /* A device-to-gateway message arriving at the device is dropped too. */
    usmp_ota_input(&ota, status, sizeof status, 0);
    CHECK_INT_EQ(ota.stats.malformed, json_count(malformed) + 1u);
    CHECK_INT_EQ(take(out, 0), 0);
    CHECK_INT_EQ(flash.writes, 0);
    CHECK_INT_EQ(serve(0, 1000, -1, 0), USMP_OTA_ACTIVATED);
}

static void test_the_request_is_resent_with_a_doubling_interval(void)
{
    uint8_t manifest[USMP_OTA_MANIFEST_BYTES], out[64];
    long offset, len;
    int result;
    uint32_t deadline = 0;

    boot(0);
    drain(&offset, &len, &result, 0);
    manifest_named("valid", manifest);
    offer(manifest, 0);
    drain(&offset, &len, &result, 1000);
    CHECK(usmp_ota_next_deadline(&ota, &deadline) && deadline == 1100);
    usmp_ota_tick(&ota, 1099);
    CHECK_INT_EQ(take(out, 1099), 0);
    usmp_ota_tick(&ota, 1100);
    CHECK(take(out, 1100) == 7 && out[0] == USMP_OTA_OP_REQUEST && usmp_get_be(out + 1, 4) == 0);
    CHECK(usmp_ota_next_deadline(&ota, &deadline) && deadline == 1300);
    usmp_ota_tick(&ota, 1300);
    CHECK(take(out, 1300) == 7);
    CHECK(usmp_ota_next_deadline(&ota, &deadline) && deadline == 1700);
    CHECK_INT_EQ(ota.stats.requests_resent, 2);
    /* The CHUNK stops the timer for that offset and restarts it at 100 ms. */
    chunk(0, image, 1000, 1500);
    CHECK(take(out, 1500) == 7 && usmp_get_be(out + 1, 4) == 1000);
    CHECK(usmp_ota_next_deadline(&ota, &deadline) && deadline == 1600);
}

static void test_configuration_is_checked(void)
{
    usmp_ota_config_t bad;
    boot(0);
    bad = config;
    bad.public_key = NULL;
    CHECK_INT_EQ(usmp_ota_init(&ota, &bad), USMP_ERR_ARG);
    bad = config;
    bad.slot_size = 0;
    CHECK_INT_EQ(usmp_ota_init(&ota, &bad), USMP_ERR_ARG);
    bad = config;
    bad.flash = NULL;
    CHECK_INT_EQ(usmp_ota_init(&ota, &bad), USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_ota_init(NULL, &config), USMP_ERR_ARG);
}

int main(void)
{
    char err[128];
    const json_value *device;

    doc = json_parse_file(USMP_SPEC_VECTORS_DIR "/ota.json", err, sizeof err);
    if (!CHECK_MSG(doc != NULL, "ota.json: %s", err)) {
        return usmp_test_finish("test_ota");
    }
    device = json_get(doc, "device");
    copy_hex(json_get(device, "public_key"), public_key, sizeof public_key);
    copy_hex(json_get(device, "hardware_id"), hardware_id, sizeof hardware_id);
    image = hex(json_get(doc, "image"), &image_len);
    CHECK(image != NULL && image_len == 3000);

    test_every_manifest_of_the_vectors_gets_its_answer_and_no_write_before_it_verifies();
    test_status_request_and_result_bodies_are_the_vectors();
    test_a_whole_transfer_writes_the_image_and_activates_it();
    test_a_corrupted_chunk_is_a_hash_mismatch_and_nothing_is_activated();
    test_a_failing_write_is_a_flash_error_and_the_transfer_is_dropped();
    test_a_transfer_resumes_after_a_new_session_and_after_a_reboot();
    test_a_persisted_transfer_that_no_longer_verifies_is_dropped_at_boot();
    test_duplicated_out_of_order_and_unasked_chunks_are_ignored();
    test_malformed_messages_are_dropped_and_counted();
    test_the_request_is_resent_with_a_doubling_interval();
    test_configuration_is_checked();

    free(image);
    json_free(doc);
    return usmp_test_finish("test_ota");
}
