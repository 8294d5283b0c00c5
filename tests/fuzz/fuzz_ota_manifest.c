/*
 * fuzz_ota_manifest.c - libFuzzer target for the OTA manifest checks
 * (ota/usmp_ota.c, spec/ota.md 4.1).
 *
 * The first byte picks where the manifest comes from: even, an OFFER of
 * the rest of the input (any length); odd, the persisted progress record
 * read at boot (the first 124 bytes, then a u32 next_offset). Nothing may
 * be erased or written unless the manifest passes the checks of ota.md 4.1
 * as the oracle fuzz_acceptable() computes them on its own
 * (ota_fuzz_flash.h aborts otherwise), and every answer is well formed.
 */
#include <stdint.h>
#include <string.h>

#include "ota_fuzz_flash.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static usmp_ota_t ota;
    static fuzz_flash_t flash;
    static usmp_ota_flash_t hooks;
    static usmp_ota_config_t cfg;
    uint8_t body[1 + 200];
    const uint8_t *manifest;
    size_t len;
    uint32_t image_size;

    if (size < 1 || size > 200) {
        return 0;
    }
    memset(&flash, 0, sizeof flash);
    manifest = data + 1;
    len = size - 1;
    image_size = len >= 8 ? (uint32_t)manifest[4] << 24 | (uint32_t)manifest[5] << 16 |
                                (uint32_t)manifest[6] << 8 | manifest[7]
                          : 0;
    /* Only an acceptable manifest may reach the flash. */
    flash.allow_begin = len == USMP_OTA_MANIFEST_BYTES && fuzz_acceptable(manifest);
    if (data[0] & 1u) {
        if (len < USMP_OTA_MANIFEST_BYTES + 4u) {
            return 0;
        }
        memcpy(flash.progress, manifest, USMP_OTA_MANIFEST_BYTES);
        flash.progress_offset = (uint32_t)manifest[124] << 24 | (uint32_t)manifest[125] << 16 |
                                (uint32_t)manifest[126] << 8 | manifest[127];
        flash.has_progress = 1;
        flash.allow_begin = fuzz_acceptable(manifest);
        fuzz_device(&ota, &flash, &hooks, &cfg);
        usmp_ota_session_opened(&ota, 1006);
        fuzz_drain(&ota, image_size, 1000);
        /* The gateway offers the manifest that was persisted. */
        body[0] = USMP_OTA_OP_OFFER;
        memcpy(body + 1, manifest, USMP_OTA_MANIFEST_BYTES);
        usmp_ota_input(&ota, body, 1 + USMP_OTA_MANIFEST_BYTES, 0);
        fuzz_drain(&ota, image_size, 1000);
        return 0;
    }
    fuzz_device(&ota, &flash, &hooks, &cfg);
    usmp_ota_session_opened(&ota, 1006);
    fuzz_drain(&ota, image_size, 1000);
    body[0] = USMP_OTA_OP_OFFER;
    memcpy(body + 1, manifest, len);
    usmp_ota_input(&ota, body, 1 + len, 0);
    fuzz_drain(&ota, image_size, 1000);
    return 0;
}
