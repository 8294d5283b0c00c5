/*
 * STAND-IN for ESP-IDF's nvs_flash.h (components/nvs_flash/include/
 * nvs_flash.h) -- host tests only, not ESP-IDF code. See nvs.h.
 */
#ifndef IDF_STANDIN_NVS_FLASH_H
#define IDF_STANDIN_NVS_FLASH_H

#include "esp_err.h"
#include "nvs.h"

esp_err_t nvs_flash_init(void);

#endif
