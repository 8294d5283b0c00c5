/*
 * STAND-IN for ESP-IDF's esp_wifi.h and the types it includes
 * (components/esp_wifi/include/esp_wifi.h, esp_wifi_types.h) -- host
 * tests only, not ESP-IDF code. The host has no radio: esp_wifi_start
 * posts WIFI_EVENT_STA_START and esp_wifi_connect posts IP_EVENT_STA_GOT_IP
 * with 127.0.0.1 (or WIFI_EVENT_STA_DISCONNECTED when no SSID is set),
 * synchronously, so the example's event handling runs and the gateway is
 * reached over loopback.
 */
#ifndef IDF_STANDIN_ESP_WIFI_H
#define IDF_STANDIN_ESP_WIFI_H

#include <stdint.h>

#include "esp_err.h"
#include "esp_event.h"
#include "esp_netif.h"
#include "esp_wifi_default.h"

ESP_EVENT_DECLARE_BASE(WIFI_EVENT);

#define ESP_ERR_WIFI_BASE      0x3000
#define ESP_ERR_WIFI_NOT_INIT  (ESP_ERR_WIFI_BASE + 1)

typedef enum {
    WIFI_EVENT_WIFI_READY = 0,
    WIFI_EVENT_SCAN_DONE,
    WIFI_EVENT_STA_START,
    WIFI_EVENT_STA_STOP,
    WIFI_EVENT_STA_CONNECTED,
    WIFI_EVENT_STA_DISCONNECTED
} wifi_event_t;

typedef enum { WIFI_MODE_NULL = 0, WIFI_MODE_STA, WIFI_MODE_AP, WIFI_MODE_APSTA } wifi_mode_t;
typedef enum { WIFI_IF_STA = 0, WIFI_IF_AP } wifi_interface_t;
typedef enum {
    WIFI_AUTH_OPEN = 0,
    WIFI_AUTH_WEP,
    WIFI_AUTH_WPA_PSK,
    WIFI_AUTH_WPA2_PSK,
    WIFI_AUTH_WPA_WPA2_PSK
} wifi_auth_mode_t;

typedef struct {
    int8_t rssi;
    wifi_auth_mode_t authmode;
} wifi_scan_threshold_t;

typedef struct {
    uint8_t ssid[32];
    uint8_t password[64];
    wifi_scan_threshold_t threshold;
} wifi_sta_config_t;

typedef union {
    wifi_sta_config_t sta;
} wifi_config_t;

typedef struct {
    uint8_t ssid[32];
    uint8_t ssid_len;
    uint8_t bssid[6];
    uint8_t reason;
    int8_t rssi;
} wifi_event_sta_disconnected_t;

typedef struct {
    int magic;
} wifi_init_config_t;
#define WIFI_INIT_CONFIG_DEFAULT() { 0x1F2F3F4F }

esp_err_t esp_wifi_init(const wifi_init_config_t *config);
esp_err_t esp_wifi_set_mode(wifi_mode_t mode);
esp_err_t esp_wifi_set_config(wifi_interface_t interface, wifi_config_t *conf);
esp_err_t esp_wifi_start(void);
esp_err_t esp_wifi_connect(void);
/* ESP_ERR_WIFI_NOT_INIT before esp_wifi_init, as in ESP-IDF. */
esp_err_t esp_wifi_get_mode(wifi_mode_t *mode);

#endif
