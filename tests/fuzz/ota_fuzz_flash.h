/*
 * ota_fuzz_flash.h - the in-memory flash and the fixed device of the OTA
 * fuzz targets (fuzz_ota_manifest.c, fuzz_ota_message.c): the device of
 * spec/vectors/ota.json (its test public key, hardware id "usmp-posix",
 * running version 7, a 4096-byte slot). The hooks abort() on anything the
 * module must never do: write before an OFFER passed its checks, write
 * outside the image or out of order, activate an image whose SHA-256 is
 * not the manifest's.
 */
#ifndef OTA_FUZZ_FLASH_H
#define OTA_FUZZ_FLASH_H

#include <stdlib.h>
#include <string.h>

#include "usmp_crypto.h"
#include "usmp_ota.h"

#define FUZZ_SLOT_BYTES 4096u

/* spec/vectors/ota.json: device.public_key, and the "valid" manifest. */
static const uint8_t FUZZ_PUBLIC_KEY[32] = { 0xee, 0xa0, 0x19, 0xae, 0xe3, 0x42, 0xaf, 0x7e,
                                             0x00, 0x6b, 0x76, 0xab, 0xa0, 0x43, 0x32, 0xad,
                                             0x4d, 0x66, 0x0c, 0x5f, 0x4c, 0x29, 0x0c, 0x0d,
                                             0x65, 0xc3, 0x4d, 0xc6, 0xa1, 0xeb, 0xd5, 0x3e };
static const char FUZZ_VALID_MANIFEST_HEX[] =
    "0100000000000bb80000000875736d702d706f7369780000000000008a015b2adf5c9e95e736714e7600b2aa"
    "aee72591e8681a02f0fd7b4ae6e1104d9629a58afd3a310ccb99aad5eaddd18f489b66615f8094757fb65513"
    "d8d2e48f89694d88571bce70131a3b2db7d125ddf4ebc3c71c7314143a13d6fb39f4210b";

typedef struct {
    uint8_t slot[FUZZ_SLOT_BYTES];
    uint32_t image_size, written_to; /* writes continue here */
    int begun, allow_begin;
    uint8_t expected_hash[32];
    uint8_t progress[USMP_OTA_MANIFEST_BYTES];
    uint32_t progress_offset;
    int has_progress;
} fuzz_flash_t;

static int fuzz_begin(void *user, uint32_t image_size, uint32_t resume_offset)
{
    fuzz_flash_t *f = user;
    if (!f->allow_begin || image_size == 0 || image_size > FUZZ_SLOT_BYTES ||
        resume_offset >= image_size) {
        abort();
    }
    f->begun = 1;
    f->image_size = image_size;
    f->written_to = resume_offset;
    return 0;
}

static int fuzz_write(void *user, uint32_t offset, const uint8_t *data, size_t len)
{
    fuzz_flash_t *f = user;
    if (!f->begun || len == 0 || offset != f->written_to || offset + len > f->image_size) {
        abort();
    }
    memcpy(f->slot + offset, data, len);
    f->written_to = offset + (uint32_t)len;
    return 0;
}

static int fuzz_finish(void *user, uint8_t digest[32])
{
    fuzz_flash_t *f = user;
    usmp_slice_t part;
    if (!f->begun || f->written_to != f->image_size) {
        abort(); /* finished before every byte was written */
    }
    part.ptr = f->slot;
    part.len = f->image_size;
    return usmp_crypto_sha256(digest, &part, 1) == USMP_CRYPTO_OK ? 0 : -1;
}

static int fuzz_activate(void *user, uint32_t version)
{
    fuzz_flash_t *f = user;
    uint8_t digest[32];
    usmp_slice_t part;
    (void)version;
    part.ptr = f->slot;
    part.len = f->image_size;
    if (usmp_crypto_sha256(digest, &part, 1) != USMP_CRYPTO_OK ||
        memcmp(digest, f->expected_hash, 32) != 0) {
        abort(); /* an unverified image activated */
    }
    return 0;
}

static uint32_t fuzz_version(void *user)
{
    (void)user;
    return 7;
}

static int fuzz_save(void *user, const uint8_t manifest[USMP_OTA_MANIFEST_BYTES], uint32_t offset)
{
    fuzz_flash_t *f = user;
    f->has_progress = manifest != NULL;
    if (manifest != NULL) {
        memcpy(f->progress, manifest, USMP_OTA_MANIFEST_BYTES);
    }
    f->progress_offset = offset;
    return 0;
}

static int fuzz_load(void *user, uint8_t manifest[USMP_OTA_MANIFEST_BYTES], uint32_t *offset)
{
    fuzz_flash_t *f = user;
    if (!f->has_progress) {
        return 0;
    }
    memcpy(manifest, f->progress, USMP_OTA_MANIFEST_BYTES);
    *offset = f->progress_offset;
    return 1;
}

/* ota.md 4.1 steps 2-6 written out again, as the oracle: whether this
 * device may accept the manifest (the signature with the test key, format
 * 1 with zero reserved bytes and a non-empty image, a version above 7, its
 * hardware id or none, and a size within the slot). */
static inline int fuzz_acceptable(const uint8_t m[USMP_OTA_MANIFEST_BYTES])
{
    static const uint8_t own_id[16] = "usmp-posix";
    static const uint8_t zero_id[16] = { 0 };
    uint8_t signed_message[20 + 60];
    uint32_t size = (uint32_t)m[4] << 24 | (uint32_t)m[5] << 16 | (uint32_t)m[6] << 8 | m[7];
    uint32_t version = (uint32_t)m[8] << 24 | (uint32_t)m[9] << 16 | (uint32_t)m[10] << 8 | m[11];

    memcpy(signed_message, "usmp-v1 ota manifest", 20);
    memcpy(signed_message + 20, m, 60);
    return usmp_crypto_ed25519_verify(FUZZ_PUBLIC_KEY, signed_message, sizeof signed_message,
                                      m + 60) == USMP_CRYPTO_OK &&
           m[0] == 1 && m[1] == 0 && m[2] == 0 && m[3] == 0 && size >= 1 && version > 7 &&
           (memcmp(m + 12, zero_id, 16) == 0 || memcmp(m + 12, own_id, 16) == 0) &&
           size <= FUZZ_SLOT_BYTES;
}

static inline void fuzz_hex(uint8_t *out, const char *hex, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        char pair[3] = { hex[2 * i], hex[2 * i + 1], 0 };
        out[i] = (uint8_t)strtoul(pair, NULL, 16);
    }
}

/* A device on f: the hooks, the configuration, the module initialised. */
static void fuzz_device(usmp_ota_t *ota, fuzz_flash_t *f, usmp_ota_flash_t *hooks,
                        usmp_ota_config_t *cfg)
{
    memset(hooks, 0, sizeof *hooks);
    hooks->user = f;
    hooks->begin = fuzz_begin;
    hooks->write = fuzz_write;
    hooks->finish = fuzz_finish;
    hooks->activate = fuzz_activate;
    hooks->running_version = fuzz_version;
    hooks->save_progress = fuzz_save;
    hooks->load_progress = fuzz_load;
    memset(cfg, 0, sizeof *cfg);
    cfg->public_key = FUZZ_PUBLIC_KEY;
    memcpy(cfg->hardware_id, "usmp-posix", 10);
    cfg->slot_size = FUZZ_SLOT_BYTES;
    cfg->flash = hooks;
    if (usmp_ota_init(ota, cfg) != USMP_OK) {
        abort();
    }
}

/* Every message the module has to send must be one of its own, well formed. */
static void fuzz_drain(usmp_ota_t *ota, uint32_t image_size, uint16_t max_chunk)
{
    uint8_t out[64];
    size_t n;
    int guard = 0;
    while ((n = usmp_ota_next_output(ota, out)) > 0) {
        if (out[0] == USMP_OTA_OP_REQUEST) {
            uint32_t offset =
                (uint32_t)out[1] << 24 | (uint32_t)out[2] << 16 | (uint32_t)out[3] << 8 | out[4];
            uint16_t len = (uint16_t)(out[5] << 8 | out[6]);
            if (n != 7 || len == 0 || len > max_chunk || offset + len > image_size) {
                abort();
            }
        } else if (!(out[0] == USMP_OTA_OP_STATUS && n == USMP_OTA_STATUS_BYTES) &&
                   !(out[0] == USMP_OTA_OP_RESULT && n == 6 && out[1] <= USMP_OTA_MALFORMED)) {
            abort();
        }
        usmp_ota_sent(ota, 0);
        if (++guard > 8) {
            abort(); /* one input cannot queue more than RESULT, STATUS, REQUEST */
        }
    }
}

#endif /* OTA_FUZZ_FLASH_H */
