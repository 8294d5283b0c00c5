/*
 * STAND-IN for ESP-IDF's nvs.h (components/nvs_flash/include/nvs.h) --
 * host tests only, not ESP-IDF code. nvs_standin.c reads the key/value
 * CSV that ESP-IDF's nvs_partition_gen.py takes as input, from the file
 * named by $USMP_STANDIN_NVS_CSV (no variable: an empty NVS). Only
 * "namespace" rows and "data" rows with hex2bin (a blob), string or u64
 * encoding are understood. Writes (nvs_set_u64, nvs_commit) change the
 * copy in memory only: the CSV file is never written.
 */
#ifndef IDF_STANDIN_NVS_H
#define IDF_STANDIN_NVS_H

#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

typedef uint32_t nvs_handle_t;
typedef enum { NVS_READONLY, NVS_READWRITE } nvs_open_mode_t;

#define ESP_ERR_NVS_BASE              0x1100
#define ESP_ERR_NVS_NOT_INITIALIZED   (ESP_ERR_NVS_BASE + 0x01)
#define ESP_ERR_NVS_NOT_FOUND         (ESP_ERR_NVS_BASE + 0x02)
#define ESP_ERR_NVS_TYPE_MISMATCH     (ESP_ERR_NVS_BASE + 0x03)
#define ESP_ERR_NVS_INVALID_HANDLE    (ESP_ERR_NVS_BASE + 0x07)
#define ESP_ERR_NVS_INVALID_LENGTH    (ESP_ERR_NVS_BASE + 0x0c)
#define ESP_ERR_NVS_NO_FREE_PAGES     (ESP_ERR_NVS_BASE + 0x0d)
#define ESP_ERR_NVS_NEW_VERSION_FOUND (ESP_ERR_NVS_BASE + 0x10)

esp_err_t nvs_open(const char *namespace_name, nvs_open_mode_t open_mode, nvs_handle_t *out_handle);
esp_err_t nvs_get_blob(nvs_handle_t handle, const char *key, void *out_value, size_t *length);
void nvs_close(nvs_handle_t handle);
esp_err_t nvs_get_u64(nvs_handle_t handle, const char *key, uint64_t *out_value);
esp_err_t nvs_set_u64(nvs_handle_t handle, const char *key, uint64_t value);
esp_err_t nvs_commit(nvs_handle_t handle);
/* Used by the OTA port (ports/esp32/usmp/usmp_ota_esp32.c), which only the
 * cross-compile check builds: declared, not implemented by nvs_standin.c. */
esp_err_t nvs_set_blob(nvs_handle_t handle, const char *key, const void *value, size_t length);
esp_err_t nvs_erase_key(nvs_handle_t handle, const char *key);

#endif
