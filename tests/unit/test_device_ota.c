/*
 * test_device_ota.c - firmware updates through the blocking device API
 * (usmp_ota_attach) and the POSIX slot files (ports/posix/usmp_ota_posix.c),
 * against a gateway engine in the same process that runs an OTA job the
 * way spec/ota.md 6 describes: OFFER on STATUS, a CHUNK for each REQUEST.
 *
 * The device reports STATUS as its session opens; the OTA messages never
 * reach usmp_recv while the application's messages still do; the image is
 * written to the other slot and the boot record switched, and a device
 * opened again on the directory runs the new version; a device "killed"
 * mid-transfer (its context abandoned without a close) resumes from the
 * persisted offset; a refused manifest writes nothing.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "usmp.h"
#include "usmp_ota.h"
#include "usmp_ota_posix.h"
#include "usmp_port_posix.h"
#include "usmp_test.h"
#include "usmp_wire.h"

#ifndef USMP_SPEC_VECTORS_DIR
#error "USMP_SPEC_VECTORS_DIR must name spec/vectors"
#endif

static const uint8_t PSK[] = "a-test-psk-of-32-bytes-exactly!!";

/* The gateway: an engine, the bytes it owes the device, and its OTA job. */
typedef struct {
    usmp_engine_t gw;
    uint8_t rx[USMP_RECORD_BUFFER_BYTES(4096)], tx[USMP_RECORD_BUFFER_BYTES(4096)];
    uint8_t reassembly[8192];
    uint8_t pending[65536];
    size_t pending_len;
    int connected, started;
    /* the job */
    const uint8_t *manifest; /* NULL: none */
    const uint8_t *image;
    size_t image_len;
    int chunks_sent, chunk_limit; /* stop answering after chunk_limit (0: never) */
    /* what the device said */
    int statuses, last_state, result;
    int first_state; /* of the session's first STATUS */
    uint32_t first_offset;
    uint32_t last_version, last_offset;
    uint16_t last_max_chunk;
    int messages;
} gateway_t;

static gateway_t gw;

static size_t gateway_lookup(void *user, const uint8_t id[6], uint8_t psk[64])
{
    (void)user;
    (void)id;
    memcpy(psk, PSK, 32);
    return 32;
}

static void gateway_random(void *user, uint8_t *buf, size_t len)
{
    (void)user;
    usmp_port_random(buf, len);
}

static void gateway_collect(void)
{
    for (;;) {
        const uint8_t *d;
        size_t n;
        usmp_engine_output(&gw.gw, &d, &n);
        if (n == 0) {
            return;
        }
        if (n <= sizeof gw.pending - gw.pending_len) {
            memcpy(gw.pending + gw.pending_len, d, n);
            gw.pending_len += n;
        }
        usmp_engine_output_done(&gw.gw, n);
    }
}

static void gateway_send_control(const uint8_t *body, size_t len)
{
    gateway_collect();
    CHECK_INT_EQ(usmp_engine_send_control(&gw.gw, USMP_CONTROL_CHANNEL_OTA, body, len, 0), USMP_OK);
    gateway_collect();
}

static void gateway_offer(void)
{
    uint8_t body[1 + USMP_OTA_MANIFEST_BYTES];
    body[0] = USMP_OTA_OP_OFFER;
    memcpy(body + 1, gw.manifest, USMP_OTA_MANIFEST_BYTES);
    gateway_send_control(body, sizeof body);
}

/* ota.md 6: the job's side of one OTA message from the device. */
static void gateway_ota(const uint8_t *body, size_t len)
{
    static uint8_t chunk[5 + 4096];
    if (len == USMP_OTA_STATUS_BYTES && body[0] == USMP_OTA_OP_STATUS) {
        gw.statuses++;
        gw.last_version = (uint32_t)usmp_get_be(body + 1, 4);
        gw.last_state = body[21];
        gw.last_offset = (uint32_t)usmp_get_be(body + 54, 4);
        gw.last_max_chunk = usmp_get_u16(body + 58);
        if (gw.statuses == 1) {
            gw.first_state = gw.last_state;
            gw.first_offset = gw.last_offset;
        }
        if (gw.manifest != NULL && gw.result < 0 &&
            gw.last_version < usmp_get_be(gw.manifest + 8, 4)) {
            gateway_offer();
        }
    } else if (len == 7 && body[0] == USMP_OTA_OP_REQUEST) {
        uint32_t offset = (uint32_t)usmp_get_be(body + 1, 4);
        size_t n = usmp_get_u16(body + 5);
        if (gw.chunk_limit != 0 && gw.chunks_sent >= gw.chunk_limit) {
            return;
        }
        if (offset + n > gw.image_len) {
            n = gw.image_len - offset;
        }
        chunk[0] = USMP_OTA_OP_CHUNK;
        usmp_put_be(chunk + 1, offset, 4);
        memcpy(chunk + 5, gw.image + offset, n);
        gw.chunks_sent++;
        gateway_send_control(chunk, 5 + n);
    } else if (len == 6 && body[0] == USMP_OTA_OP_RESULT) {
        gw.result = body[1];
    }
}

static int loop_send(void *ctx, const uint8_t *data, size_t len)
{
    size_t off = 0;
    (void)ctx;
    if (!gw.connected) {
        return USMP_ERR_TRANSPORT;
    }
    while (off < len) {
        size_t used = 0;
        usmp_event_t ev;
        int rc = usmp_engine_feed(&gw.gw, data + off, len - off, usmp_port_millis(), &used, &ev);
        off += used;
        gateway_collect();
        if (ev.type == USMP_EVENT_MESSAGE) {
            gw.messages++;
            gateway_collect();
            CHECK(usmp_engine_send(&gw.gw, ev.data, ev.len, 0) >= 0); /* echo */
            gateway_collect();
        } else if (ev.type == USMP_EVENT_CONTROL) {
            CHECK_INT_EQ(ev.channel, USMP_CONTROL_CHANNEL_OTA);
            gateway_ota(ev.data, ev.len);
        }
        if (rc != USMP_OK || used == 0) {
            break;
        }
    }
    return (int)len;
}

static int loop_recv(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    size_t n;
    (void)ctx;
    if (!gw.connected) {
        return USMP_ERR_TRANSPORT;
    }
    gateway_collect();
    if (gw.pending_len == 0) {
        usmp_port_delay_ms(timeout_ms < 2 ? timeout_ms : 2);
        return 0;
    }
    n = gw.pending_len < cap ? gw.pending_len : cap;
    memcpy(buf, gw.pending, n);
    memmove(gw.pending, gw.pending + n, gw.pending_len - n);
    gw.pending_len -= n;
    return (int)n;
}

static void loop_close(void *ctx)
{
    (void)ctx;
    gw.connected = 0;
}

static int loop_reconnect(void *ctx)
{
    usmp_engine_config_t cfg;
    (void)ctx;
    memset(&cfg, 0, sizeof cfg);
    cfg.role = USMP_ROLE_SERVER;
    cfg.mode = USMP_MODE_STREAM;
    cfg.psk_lookup = gateway_lookup;
    cfg.random = gateway_random;
    cfg.max_record = 4096;
    cfg.max_message = 8192;
    cfg.rx_buf = gw.rx;
    cfg.rx_cap = sizeof gw.rx;
    cfg.tx_buf = gw.tx;
    cfg.tx_cap = sizeof gw.tx;
    cfg.reassembly_buf = gw.reassembly;
    cfg.reassembly_cap = sizeof gw.reassembly;
    if (usmp_engine_init(&gw.gw, &cfg) != USMP_OK ||
        usmp_engine_start(&gw.gw, usmp_port_millis()) != USMP_OK) {
        return USMP_ERR_TRANSPORT;
    }
    gw.pending_len = 0;
    gw.connected = 1;
    gw.started = 1;
    return USMP_OK;
}

static usmp_transport_t transport;

/* A fresh gateway with the job, and the transport to it. */
static void gateway_reset(const uint8_t *manifest, const uint8_t *image, size_t image_len)
{
    if (gw.started) {
        usmp_engine_wipe(&gw.gw); /* the last session's keys and whatever holds them */
    }
    memset(&gw, 0, sizeof gw);
    gw.manifest = manifest;
    gw.image = image;
    gw.image_len = image_len;
    gw.result = -1;
    memset(&transport, 0, sizeof transport);
    transport.send = loop_send;
    transport.recv = loop_recv;
    transport.close = loop_close;
    transport.reconnect = loop_reconnect;
    transport.ctx = &gw;
}

/* ------------------------------------------------------------- fixture */

static json_value *doc;
static uint8_t public_key[32], hardware_id[16];
static uint8_t valid[USMP_OTA_MANIFEST_BYTES], bad_signature[USMP_OTA_MANIFEST_BYTES];
static uint8_t *image;
static size_t image_len;
static char dir[64];

/* One boot of the device: its files, its OTA module, its session. */
typedef struct {
    usmp_ctx_t ctx;
    usmp_ota_t ota;
    usmp_ota_posix_t files;
    usmp_ota_config_t config;
} device_t;

static device_t device;

static int boot_device(uint32_t sync_bytes)
{
    usmp_config_t cfg;

    memset(&device, 0, sizeof device);
    if (!CHECK_INT_EQ(usmp_ota_posix_open(&device.files, dir, 7), 0)) {
        return 0;
    }
    device.files.sync_bytes = sync_bytes;
    device.config.public_key = public_key;
    memcpy(device.config.hardware_id, hardware_id, sizeof hardware_id);
    device.config.slot_size = 4096;
    device.config.flash = &device.files.hooks;
    memset(&cfg, 0, sizeof cfg);
    cfg.psk = PSK;
    cfg.psk_len = sizeof PSK - 1;
    if (!CHECK_INT_EQ(usmp_connect(&device.ctx, &transport, &cfg), USMP_OK)) {
        return 0;
    }
    return CHECK_INT_EQ(usmp_ota_attach(&device.ctx, &device.ota, &device.config), USMP_OK);
}

/* Pumps the device (usmp_recv) until the gateway saw a RESULT, or the
 * time runs out. Returns what usmp_recv delivered last. */
static int run_until_result(int budget_ms)
{
    uint8_t buf[USMP_MAX_MESSAGE];
    uint32_t start = usmp_port_millis();
    int n = 0;
    while (gw.result < 0 && (int)(usmp_port_millis() - start) < budget_ms) {
        int got = usmp_recv(&device.ctx, buf, sizeof buf, 20);
        if (got != 0) {
            n = got;
        }
    }
    /* The STATUS after the RESULT. */
    (void)usmp_recv(&device.ctx, buf, sizeof buf, 20);
    return n;
}

static int file_exists(const char *name)
{
    char path[128];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

static int slot_holds_image(const char *name)
{
    char path[128];
    static uint8_t got[8192];
    size_t n;
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (f == NULL) {
        return 0;
    }
    n = fread(got, 1, sizeof got, f);
    fclose(f);
    return n == image_len && memcmp(got, image, image_len) == 0;
}

static void clear_dir(void)
{
    static const char *const names[] = { "slot-a.bin", "slot-b.bin", "boot", "progress" };
    char path[128];
    size_t i;
    for (i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
}

/* ---------------------------------------------------------------- tests */

static void test_an_update_through_the_device_api_activates_the_new_version(void)
{
    uint8_t buf[64];

    clear_dir();
    gateway_reset(valid, image, image_len);
    if (!boot_device(USMP_OTA_POSIX_SYNC_BYTES)) {
        return;
    }
    /* The application's messages still flow; OTA messages never reach them. */
    CHECK_INT_EQ(usmp_send(&device.ctx, (const uint8_t *)"app", 3), USMP_OK);
    CHECK_INT_EQ(run_until_result(5000), 3);
    CHECK_INT_EQ(gw.messages, 1);
    CHECK_INT_EQ(gw.result, USMP_OTA_ACTIVATED);
    CHECK_INT_EQ(gw.last_max_chunk, USMP_MAX_RECORD - 6);
    CHECK_INT_EQ(usmp_ota_restart_due(&device.ota), 1);
    CHECK(slot_holds_image("slot-b.bin"));
    CHECK(!file_exists("progress"));
    CHECK_INT_EQ(usmp_stats(&device.ctx)->control_discarded, 0);
    usmp_close(&device.ctx);
    usmp_ota_posix_close(&device.files);

    /* The restart: slot b runs version 8, and the STATUS says so. */
    gateway_reset(valid, image, image_len);
    if (!boot_device(USMP_OTA_POSIX_SYNC_BYTES)) {
        return;
    }
    CHECK_INT_EQ(device.files.running_slot, 'b');
    CHECK_INT_EQ(usmp_recv(&device.ctx, buf, sizeof buf, 50), 0);
    CHECK_INT_EQ(gw.statuses, 1);
    CHECK_INT_EQ(gw.last_version, 8);
    CHECK_INT_EQ(gw.last_state, 0);
    CHECK_INT_EQ(gw.result, -1); /* no OFFER for a version it runs */
    usmp_close(&device.ctx);
    usmp_ota_posix_close(&device.files);
}

static void test_a_device_killed_mid_transfer_resumes_from_the_persisted_offset(void)
{
    clear_dir();
    gateway_reset(valid, image, image_len);
    gw.chunk_limit = 3; /* the gateway goes quiet after three chunks */
    if (!boot_device(2u * (USMP_MAX_RECORD - 6u))) {
        return;
    }
    (void)run_until_result(300);
    CHECK_INT_EQ(gw.chunks_sent, 3);
    CHECK_INT_EQ(gw.result, -1);
    CHECK(file_exists("progress"));
    /* Killed: no close, no BYE; the files are all that survive (the
     * process's memory goes with it: wiped here, nothing sent). */
    usmp_engine_wipe(&device.ctx.engine);
    usmp_ota_posix_close(&device.files);

    gateway_reset(valid, image, image_len);
    if (!boot_device(2u * (USMP_MAX_RECORD - 6u))) {
        return;
    }
    (void)run_until_result(5000);
    /* The first STATUS: receiving, at the last offset persisted (two
     * chunks, not the third, which was written but not yet persisted). */
    CHECK_INT_EQ(gw.first_state, 1);
    CHECK_INT_EQ(gw.first_offset, 2u * (USMP_MAX_RECORD - 6u));
    CHECK_INT_EQ(gw.result, USMP_OTA_ACTIVATED);
    /* Only the chunks from the persisted offset on were sent again. */
    CHECK_INT_EQ((size_t)gw.chunks_sent,
                 (image_len - gw.first_offset + USMP_MAX_RECORD - 7u) / (USMP_MAX_RECORD - 6u));
    CHECK(slot_holds_image("slot-b.bin"));
    usmp_close(&device.ctx);
    usmp_ota_posix_close(&device.files);
}

static void test_a_refused_manifest_writes_nothing(void)
{
    clear_dir();
    gateway_reset(bad_signature, image, image_len);
    if (!boot_device(USMP_OTA_POSIX_SYNC_BYTES)) {
        return;
    }
    (void)run_until_result(2000);
    CHECK_INT_EQ(gw.result, USMP_OTA_BAD_SIGNATURE);
    CHECK_INT_EQ(gw.chunks_sent, 0);
    CHECK(!file_exists("slot-b.bin") && !file_exists("progress") && !file_exists("boot"));
    CHECK_INT_EQ(usmp_ota_restart_due(&device.ota), 0);
    usmp_close(&device.ctx);
    usmp_ota_posix_close(&device.files);
}

static void load_manifest(const char *name, uint8_t out[USMP_OTA_MANIFEST_BYTES])
{
    const json_value *list = json_get(doc, "manifests");
    size_t i, n = 0;
    for (i = 0; i < json_count(list); i++) {
        if (json_string_is(json_get(json_at(list, i), "name"), name)) {
            uint8_t *b = json_hex_bytes(json_get(json_at(list, i), "manifest"), &n);
            if (CHECK(b != NULL && n == USMP_OTA_MANIFEST_BYTES)) {
                memcpy(out, b, n);
            }
            free(b);
        }
    }
}

int main(void)
{
    char err[128];
    size_t n = 0;
    uint8_t *b;

    usmp_posix_set_log_enabled(0);
    doc = json_parse_file(USMP_SPEC_VECTORS_DIR "/ota.json", err, sizeof err);
    if (!CHECK_MSG(doc != NULL, "ota.json: %s", err)) {
        return usmp_test_finish("test_device_ota");
    }
    b = json_hex_bytes(json_get(json_get(doc, "device"), "public_key"), &n);
    CHECK(b != NULL && n == 32);
    memcpy(public_key, b, 32);
    free(b);
    b = json_hex_bytes(json_get(json_get(doc, "device"), "hardware_id"), &n);
    CHECK(b != NULL && n == 16);
    memcpy(hardware_id, b, 16);
    free(b);
    image = json_hex_bytes(json_get(doc, "image"), &image_len);
    load_manifest("valid", valid);
    load_manifest("bad-signature", bad_signature);
    snprintf(dir, sizeof dir, "%s/usmp-ota-test-XXXXXX",
             getenv("TMPDIR") != NULL && strlen(getenv("TMPDIR")) < 40 ? getenv("TMPDIR") : "/tmp");
    if (!CHECK(image != NULL && mkdtemp(dir) != NULL)) {
        return usmp_test_finish("test_device_ota");
    }

    test_an_update_through_the_device_api_activates_the_new_version();
    test_a_device_killed_mid_transfer_resumes_from_the_persisted_offset();
    test_a_refused_manifest_writes_nothing();

    gateway_reset(NULL, NULL, 0);
    clear_dir();
    rmdir(dir);
    free(image);
    json_free(doc);
    return usmp_test_finish("test_device_ota");
}
