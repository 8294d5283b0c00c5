/*
 * usmp_ota_esp32.h - the OTA module's flash hooks (usmp_ota.h) on ESP-IDF's
 * app_update API: the next OTA app partition is the slot.
 *
 *     static usmp_ota_esp32_t slot;
 *     usmp_ota_esp32_open(&slot, MY_FIRMWARE_VERSION);
 *     oc.flash = &slot.hooks;  oc.slot_size = slot.slot_size;
 *     ...  usmp_connect(), usmp_ota_attach(&ctx, &ota, &oc)
 *     usmp_ota_esp32_confirm();   // once the new image has reached its gateway
 *     if (usmp_ota_restart_due(&ota)) { usmp_close(&ctx); esp_restart(); }
 *
 * Conventions
 *  - begin() of a new image is esp_ota_begin (which erases image_size
 *    bytes of the slot); writes are esp_ota_write, in order; finish() is
 *    esp_ota_end (ESP-IDF's own image check) and then SHA-256 of the slot
 *    read back through esp_partition_mmap; activate() is
 *    esp_ota_set_boot_partition. A transfer resumed after a reboot has no
 *    OTA handle (ESP-IDF's handle lives in RAM, and a second esp_ota_begin
 *    would erase what was written): its writes go to esp_partition_write
 *    into the range the first esp_ota_begin erased, and
 *    esp_ota_set_boot_partition, which verifies the image, is the check.
 *  - The progress record is an NVS blob (namespace "usmp_ota", key
 *    "progress": the manifest then next_offset), written every
 *    USMP_OTA_ESP32_SAVE_BYTES of image to spare the flash; NVS replaces a
 *    blob atomically. esp_partition_write returns once the bytes are in
 *    flash, so every saved offset is durable.
 *  - With CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE the bootloader runs a new
 *    image once in "pending verify": call usmp_ota_esp32_confirm when it
 *    has proved itself (its session reached the gateway), or it is rolled
 *    back at the next reset (spec/ota.md 4.3).
 *  - Needs the component's CONFIG_USMP_OTA (menuconfig > USMP), an OTA
 *    partition table (two app slots and otadata) and libsodium (the
 *    espressif/libsodium component) for Ed25519 (docs/ota-device.md).
 */
#ifndef USMP_OTA_ESP32_H
#define USMP_OTA_ESP32_H

#include <stdint.h>

#include "usmp_ota.h"

#if USMP_OTA

#define USMP_OTA_ESP32_SAVE_BYTES (16u * 1024u)

typedef struct {
    const void *slot;         /* the esp_partition_t the update goes to */
    uint32_t slot_size;       /* for usmp_ota_config_t.slot_size */
    uint32_t running_version; /* what running_version() reports */
    uint32_t handle;          /* esp_ota_handle_t of this boot's transfer; 0: none */
    uint32_t image_size, saved_offset;
    usmp_ota_flash_t hooks; /* user = this struct */
} usmp_ota_esp32_t;

/* Finds the slot (esp_ota_get_next_update_partition) and fills p->hooks.
 * running_version: this image's firmware version, as its manifest said.
 * Returns 0, or -1 when the partition table has no OTA slot. */
int usmp_ota_esp32_open(usmp_ota_esp32_t *p, uint32_t running_version);

/* esp_ota_mark_app_valid_cancel_rollback: the running image is good.
 * Returns 0 or -1. */
int usmp_ota_esp32_confirm(void);

#endif /* USMP_OTA */

#endif /* USMP_OTA_ESP32_H */
