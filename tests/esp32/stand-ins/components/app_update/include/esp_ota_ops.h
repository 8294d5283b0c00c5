/*
 * STAND-IN for ESP-IDF's esp_ota_ops.h (components/app_update/include/
 * esp_ota_ops.h) -- host cross-compile checks only, not ESP-IDF code. It
 * declares only what USMP's OTA port (ports/esp32/usmp/usmp_ota_esp32.c)
 * uses, with ESP-IDF 5's signatures; nothing implements it here.
 */
#ifndef IDF_STANDIN_ESP_OTA_OPS_H
#define IDF_STANDIN_ESP_OTA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"
#include "esp_partition.h"

typedef uint32_t esp_ota_handle_t;

const esp_partition_t *esp_ota_get_running_partition(void);
const esp_partition_t *esp_ota_get_next_update_partition(const esp_partition_t *start_from);
esp_err_t esp_ota_begin(const esp_partition_t *partition, size_t image_size,
                        esp_ota_handle_t *out_handle);
esp_err_t esp_ota_write(esp_ota_handle_t handle, const void *data, size_t size);
esp_err_t esp_ota_end(esp_ota_handle_t handle);
esp_err_t esp_ota_abort(esp_ota_handle_t handle);
esp_err_t esp_ota_set_boot_partition(const esp_partition_t *partition);
esp_err_t esp_ota_mark_app_valid_cancel_rollback(void);

#endif
