/*
 * STAND-IN for the mdns component's mdns.h (ESP-IDF 4.x components/mdns;
 * espressif/mdns of the component registry since ESP-IDF 5.0) -- host tests
 * only, not ESP-IDF code. Only what examples/esp32_echo uses: mdns_init,
 * mdns_free, mdns_query_ptr and mdns_query_results_free, with the result
 * fields it reads.
 *
 * Host behaviour: no mDNS traffic. mdns_query_ptr answers from the
 * environment variable USMP_STANDIN_MDNS_ANSWER,
 * "instance;type;proto;ipv4;port;txt key=value,key=value": one result when
 * its type and proto match the query, none otherwise (ESP_OK with *results
 * NULL, as ESP-IDF reports an empty answer). The real component sends the
 * PTR query and collects SRV, TXT and A answers for `timeout` ms.
 */
#ifndef IDF_STANDIN_MDNS_H
#define IDF_STANDIN_MDNS_H

#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"
#include "esp_netif.h"

typedef enum {
    MDNS_IP_PROTOCOL_V4,
    MDNS_IP_PROTOCOL_V6,
    MDNS_IP_PROTOCOL_MAX
} mdns_ip_protocol_t;

#define ESP_IPADDR_TYPE_V4 0
#define ESP_IPADDR_TYPE_V6 6

typedef struct {
    union {
        esp_ip4_addr_t ip4;
        uint32_t ip6[4];
    } u_addr;
    uint8_t type;
} esp_ip_addr_t;

typedef struct mdns_ip_addr_s {
    esp_ip_addr_t addr;
    struct mdns_ip_addr_s *next;
} mdns_ip_addr_t;

typedef struct {
    const char *key;
    const char *value;
} mdns_txt_item_t;

typedef struct mdns_result_s {
    struct mdns_result_s *next;
    esp_netif_t *esp_netif;
    uint32_t ttl;
    mdns_ip_protocol_t ip_protocol;
    char *instance_name;
    char *service_type;
    char *proto;
    char *hostname;
    uint16_t port;
    mdns_txt_item_t *txt;
    uint8_t *txt_value_len;
    size_t txt_count;
    mdns_ip_addr_t *addr;
} mdns_result_t;

esp_err_t mdns_init(void);
void mdns_free(void);
esp_err_t mdns_query_ptr(const char *service_type, const char *proto, uint32_t timeout,
                         size_t max_results, mdns_result_t **results);
void mdns_query_results_free(mdns_result_t *results);

/* Stand-in only: mdns_init calls minus mdns_free calls, for the tests. */
int idf_standin_mdns_depth(void);

#endif
