/*
 * STAND-IN for ESP-IDF's esp_wifi_default.h (components/esp_wifi/include/
 * esp_wifi_default.h) -- host tests only, not ESP-IDF code. Only
 * esp_netif_create_default_wifi_sta; esp_wifi_standin.c implements it.
 */
#ifndef IDF_STANDIN_ESP_WIFI_DEFAULT_H
#define IDF_STANDIN_ESP_WIFI_DEFAULT_H

#include "esp_netif.h"

esp_netif_t *esp_netif_create_default_wifi_sta(void);

#endif
