/*
 * STAND-IN host implementation of esp_wifi.h -- host tests only, not
 * ESP-IDF code. See include/esp_wifi.h for what it simulates.
 */
#include <string.h>

#include "esp_wifi.h"

esp_event_base_t const WIFI_EVENT = "WIFI_EVENT";

static struct idf_standin_netif {
    int unused;
} sta_netif;
static int initialised, started;
static wifi_mode_t mode;
static wifi_config_t sta_config;

esp_netif_t *esp_netif_create_default_wifi_sta(void)
{
    return &sta_netif;
}

esp_err_t esp_wifi_init(const wifi_init_config_t *config)
{
    if (config == NULL || config->magic != 0x1F2F3F4F) {
        return ESP_ERR_INVALID_ARG;
    }
    initialised = 1;
    return ESP_OK;
}

esp_err_t esp_wifi_set_mode(wifi_mode_t new_mode)
{
    if (!initialised) {
        return ESP_ERR_INVALID_STATE;
    }
    mode = new_mode;
    return ESP_OK;
}

esp_err_t esp_wifi_get_mode(wifi_mode_t *out)
{
    if (!initialised) {
        return ESP_ERR_WIFI_NOT_INIT;
    }
    if (out == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    *out = mode;
    return ESP_OK;
}

esp_err_t esp_wifi_set_config(wifi_interface_t interface, wifi_config_t *conf)
{
    if (!initialised) {
        return ESP_ERR_INVALID_STATE;
    }
    if (interface != WIFI_IF_STA || conf == NULL || mode != WIFI_MODE_STA) {
        return ESP_ERR_INVALID_ARG;
    }
    sta_config = *conf;
    return ESP_OK;
}

esp_err_t esp_wifi_start(void)
{
    if (!initialised || mode != WIFI_MODE_STA) {
        return ESP_ERR_INVALID_STATE;
    }
    started = 1;
    idf_standin_event_post(WIFI_EVENT, WIFI_EVENT_STA_START, NULL);
    return ESP_OK;
}

esp_err_t esp_wifi_connect(void)
{
    if (!started) {
        return ESP_ERR_INVALID_STATE;
    }
    if (sta_config.sta.ssid[0] == 0) {
        wifi_event_sta_disconnected_t lost;
        memset(&lost, 0, sizeof lost);
        lost.reason = 201; /* ESP-IDF's WIFI_REASON_NO_AP_FOUND */
        idf_standin_event_post(WIFI_EVENT, WIFI_EVENT_STA_DISCONNECTED, &lost);
    } else {
        static const uint8_t loopback[4] = { 127, 0, 0, 1 };
        ip_event_got_ip_t got;
        memset(&got, 0, sizeof got);
        got.esp_netif = &sta_netif;
        memcpy(&got.ip_info.ip.addr, loopback, 4);
        idf_standin_event_post(IP_EVENT, IP_EVENT_STA_GOT_IP, &got);
    }
    return ESP_OK;
}
