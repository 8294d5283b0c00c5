/*
 * STAND-IN for ESP-IDF's esp_mac.h (components/esp_hw_support/include/
 * esp_mac.h) -- host tests only, not ESP-IDF code. The host implementation
 * (hw_support_standin.c) returns the MAC in $USMP_STANDIN_ESP_MAC (12 hex
 * digits), else the locally administered 02:00:00:e5:32:01.
 */
#ifndef IDF_STANDIN_ESP_MAC_H
#define IDF_STANDIN_ESP_MAC_H

#include <stdint.h>

#include "esp_err.h"

typedef enum {
    ESP_MAC_WIFI_STA,
    ESP_MAC_WIFI_SOFTAP,
    ESP_MAC_BT,
    ESP_MAC_ETH
} esp_mac_type_t;

esp_err_t esp_read_mac(uint8_t *mac, esp_mac_type_t type);

#endif
