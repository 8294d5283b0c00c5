/*
 * fuzz_ota_message.c - libFuzzer target for the OTA message parser and the
 * transfer (ota/usmp_ota.c, spec/ota.md 3 and 4).
 *
 * The input is a sequence of OTA messages, each a u16 length then that
 * many bytes, fed to a device that was OFFERed the valid manifest of
 * spec/vectors/ota.json (a 3000-byte image) and asked for offset 0; a
 * message whose first byte is 0xFE stands for "the next CHUNK the device
 * asks for, with the right data", so that inputs reach the end of the
 * image. The hooks abort on a write out of order or past the image, and
 * on activating an image whose SHA-256 is not the manifest's
 * (ota_fuzz_flash.h); every output must be well formed.
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
    static uint8_t body[1 + USMP_OTA_MANIFEST_BYTES], chunk[5 + 1000];
    size_t at = 0;
    uint32_t now = 0;

    if (size > 16384) {
        return 0;
    }
    memset(&flash, 0, sizeof flash);
    flash.allow_begin = 1;
    body[0] = USMP_OTA_OP_OFFER;
    fuzz_hex(body + 1, FUZZ_VALID_MANIFEST_HEX, USMP_OTA_MANIFEST_BYTES);
    memcpy(flash.expected_hash, body + 1 + 28, 32);
    fuzz_device(&ota, &flash, &hooks, &cfg);
    usmp_ota_session_opened(&ota, 1006);
    fuzz_drain(&ota, 3000, 1000);
    usmp_ota_input(&ota, body, sizeof body, now);
    fuzz_drain(&ota, 3000, 1000);

    while (at + 2 <= size) {
        size_t len = (size_t)data[at] << 8 | data[at + 1];
        at += 2;
        if (len > size - at) {
            len = size - at;
        }
        if (len >= 1 && data[at] == 0xFE) {
            /* The chunk asked for, all zero bytes: the image's hash
             * differs, so this must end in HASH_MISMATCH, never in an
             * activation. (The seeds carry the real chunks too.) */
            uint32_t offset = flash.written_to;
            uint32_t n = 3000u - offset < 1000u ? 3000u - offset : 1000u;
            if (offset < 3000u) {
                chunk[0] = USMP_OTA_OP_CHUNK;
                chunk[1] = (uint8_t)(offset >> 24);
                chunk[2] = (uint8_t)(offset >> 16);
                chunk[3] = (uint8_t)(offset >> 8);
                chunk[4] = (uint8_t)offset;
                memset(chunk + 5, 0, n);
                usmp_ota_input(&ota, chunk, 5 + n, now);
            }
        } else if (len >= 1 && data[at] == 0xFD) {
            usmp_ota_session_opened(&ota, 1006); /* a new session */
        } else {
            usmp_ota_input(&ota, data + at, len, now);
        }
        at += len;
        now += 700;
        usmp_ota_tick(&ota, now);
        fuzz_drain(&ota, 3000, 1000);
    }
    return 0;
}
