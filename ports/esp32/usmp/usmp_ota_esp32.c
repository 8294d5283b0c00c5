/*
 * usmp_ota_esp32.c - the OTA flash hooks on ESP-IDF's app_update and
 * esp_partition APIs, and the progress record in NVS (usmp_ota_esp32.h).
 */
#include "usmp_ota_esp32.h"

#if USMP_OTA

#include <string.h>

#include "esp_ota_ops.h"
#include "esp_partition.h"
#include "nvs.h"
#include "usmp_crypto.h"
#include "usmp_wire.h"

#define NVS_NAMESPACE  "usmp_ota"
#define NVS_KEY        "progress"
#define PROGRESS_BYTES (USMP_OTA_MANIFEST_BYTES + 4u)

static const esp_partition_t *slot_of(const usmp_ota_esp32_t *p)
{
    return (const esp_partition_t *)p->slot;
}

static int hook_begin(void *user, uint32_t image_size, uint32_t resume_offset)
{
    usmp_ota_esp32_t *p = user;
    esp_ota_handle_t handle = 0;

    if (p->handle != 0) {
        (void)esp_ota_abort((esp_ota_handle_t)p->handle); /* a transfer replaced */
        p->handle = 0;
    }
    p->image_size = image_size;
    p->saved_offset = resume_offset;
    if (resume_offset > 0) {
        return 0; /* written after the erase of an earlier boot: no new begin */
    }
    if (esp_ota_begin(slot_of(p), image_size, &handle) != ESP_OK) {
        return -1;
    }
    p->handle = handle;
    return 0;
}

static int hook_write(void *user, uint32_t offset, const uint8_t *data, size_t len)
{
    usmp_ota_esp32_t *p = user;

    if (p->handle != 0) {
        /* The module writes in order, so esp_ota_write's cursor is offset. */
        return esp_ota_write((esp_ota_handle_t)p->handle, data, len) == ESP_OK ? 0 : -1;
    }
    return esp_partition_write(slot_of(p), offset, data, len) == ESP_OK ? 0 : -1;
}

static int hook_finish(void *user, uint8_t digest[USMP_OTA_DIGEST_BYTES])
{
    usmp_ota_esp32_t *p = user;
    esp_partition_mmap_handle_t map;
    const void *bytes = NULL;
    usmp_slice_t part;
    int rc;

    if (p->handle != 0) {
        esp_err_t end = esp_ota_end((esp_ota_handle_t)p->handle);
        p->handle = 0;
        if (end != ESP_OK) {
            return -1; /* not an image ESP-IDF would boot */
        }
    }
    /* The slot read back through the flash cache (usmp_ota.h). */
    if (esp_partition_mmap(slot_of(p), 0, p->image_size, ESP_PARTITION_MMAP_DATA, &bytes, &map) !=
        ESP_OK) {
        return -1;
    }
    part.ptr = bytes;
    part.len = p->image_size;
    rc = usmp_crypto_sha256(digest, &part, 1) == USMP_CRYPTO_OK ? 0 : -1;
    esp_partition_munmap(map);
    return rc;
}

static int hook_activate(void *user, uint32_t firmware_version)
{
    usmp_ota_esp32_t *p = user;
    (void)firmware_version; /* the image carries its own (esp_app_desc_t) */
    return esp_ota_set_boot_partition(slot_of(p)) == ESP_OK ? 0 : -1;
}

static uint32_t hook_running_version(void *user)
{
    return ((usmp_ota_esp32_t *)user)->running_version;
}

static int hook_save_progress(void *user, const uint8_t manifest[USMP_OTA_MANIFEST_BYTES],
                              uint32_t next_offset)
{
    usmp_ota_esp32_t *p = user;
    uint8_t record[PROGRESS_BYTES];
    nvs_handle_t nvs;
    esp_err_t rc;

    if (manifest != NULL && next_offset != 0 &&
        next_offset - p->saved_offset < USMP_OTA_ESP32_SAVE_BYTES) {
        return 0; /* the record stays at an earlier, also durable, offset */
    }
    if (nvs_open(NVS_NAMESPACE, NVS_READWRITE, &nvs) != ESP_OK) {
        return -1;
    }
    if (manifest == NULL) {
        rc = nvs_erase_key(nvs, NVS_KEY);
        rc = rc == ESP_ERR_NVS_NOT_FOUND ? ESP_OK : rc;
    } else {
        memcpy(record, manifest, USMP_OTA_MANIFEST_BYTES);
        usmp_put_be(record + USMP_OTA_MANIFEST_BYTES, next_offset, 4);
        rc = nvs_set_blob(nvs, NVS_KEY, record, sizeof record);
    }
    if (rc == ESP_OK) {
        rc = nvs_commit(nvs);
    }
    nvs_close(nvs);
    if (rc == ESP_OK && manifest != NULL) {
        p->saved_offset = next_offset;
    }
    return rc == ESP_OK ? 0 : -1;
}

static int hook_load_progress(void *user, uint8_t manifest[USMP_OTA_MANIFEST_BYTES],
                              uint32_t *next_offset)
{
    uint8_t record[PROGRESS_BYTES];
    size_t len = sizeof record;
    nvs_handle_t nvs;
    esp_err_t rc;

    (void)user;
    if (nvs_open(NVS_NAMESPACE, NVS_READONLY, &nvs) != ESP_OK) {
        return 0; /* no namespace yet: no transfer */
    }
    rc = nvs_get_blob(nvs, NVS_KEY, record, &len);
    nvs_close(nvs);
    if (rc != ESP_OK || len != sizeof record) {
        return 0;
    }
    memcpy(manifest, record, USMP_OTA_MANIFEST_BYTES);
    *next_offset = (uint32_t)usmp_get_be(record + USMP_OTA_MANIFEST_BYTES, 4);
    return 1;
}

int usmp_ota_esp32_open(usmp_ota_esp32_t *p, uint32_t running_version)
{
    const esp_partition_t *slot;

    if (p == NULL) {
        return -1;
    }
    memset(p, 0, sizeof *p);
    slot = esp_ota_get_next_update_partition(NULL);
    if (slot == NULL) {
        return -1; /* the partition table has no second app slot */
    }
    p->slot = slot;
    p->slot_size = slot->size;
    p->running_version = running_version;
    p->hooks.user = p;
    p->hooks.begin = hook_begin;
    p->hooks.write = hook_write;
    p->hooks.finish = hook_finish;
    p->hooks.activate = hook_activate;
    p->hooks.running_version = hook_running_version;
    p->hooks.save_progress = hook_save_progress;
    p->hooks.load_progress = hook_load_progress;
    return 0;
}

int usmp_ota_esp32_confirm(void)
{
    return esp_ota_mark_app_valid_cancel_rollback() == ESP_OK ? 0 : -1;
}

#endif /* USMP_OTA */
