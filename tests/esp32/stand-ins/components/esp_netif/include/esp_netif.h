/*
 * STAND-IN for ESP-IDF's esp_netif.h and the types it includes
 * (components/esp_netif/include/) -- host tests only, not ESP-IDF code.
 */
#ifndef IDF_STANDIN_ESP_NETIF_H
#define IDF_STANDIN_ESP_NETIF_H

#include <stdbool.h>
#include <stdint.h>

#include "esp_err.h"
#include "esp_event.h"

typedef struct idf_standin_netif esp_netif_t;

typedef struct {
    uint32_t addr; /* network byte order */
} esp_ip4_addr_t;

typedef struct {
    esp_ip4_addr_t ip;
    esp_ip4_addr_t netmask;
    esp_ip4_addr_t gw;
} esp_netif_ip_info_t;

ESP_EVENT_DECLARE_BASE(IP_EVENT);

typedef enum {
    IP_EVENT_STA_GOT_IP,
    IP_EVENT_STA_LOST_IP
} ip_event_t;

typedef struct {
    esp_netif_t *esp_netif;
    esp_netif_ip_info_t ip_info;
    bool ip_changed;
} ip_event_got_ip_t;

/* Printing an esp_ip4_addr_t: printf(IPSTR, IP2STR(&addr)). */
#define IPSTR "%d.%d.%d.%d"
#define IDF_STANDIN_IP_BYTE(ipaddr, i) ((int)((const uint8_t *)&(ipaddr)->addr)[i])
#define IP2STR(ipaddr) IDF_STANDIN_IP_BYTE(ipaddr, 0), IDF_STANDIN_IP_BYTE(ipaddr, 1), \
                       IDF_STANDIN_IP_BYTE(ipaddr, 2), IDF_STANDIN_IP_BYTE(ipaddr, 3)

esp_err_t esp_netif_init(void);

#endif
