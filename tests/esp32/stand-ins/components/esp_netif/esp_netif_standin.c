/*
 * STAND-IN host implementation of esp_netif.h -- host tests only, not
 * ESP-IDF code. The host's network stack needs no setting up.
 */
#include "esp_netif.h"

esp_event_base_t const IP_EVENT = "IP_EVENT";

esp_err_t esp_netif_init(void)
{
    return ESP_OK;
}
