/*
 * STAND-IN host implementation of mdns.h -- host tests only, not ESP-IDF
 * code. See include/mdns.h: the answer comes from $USMP_STANDIN_MDNS_ANSWER.
 */
#define _POSIX_C_SOURCE 200809L

#include "mdns.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

static int depth;

esp_err_t mdns_init(void)
{
    depth++;
    return ESP_OK;
}

void mdns_free(void)
{
    depth--;
}

int idf_standin_mdns_depth(void)
{
    return depth;
}

/* Splits "a;b;c" in place into at most n fields. Returns the count. */
static size_t split(char *text, char sep, char **fields, size_t n)
{
    size_t count = 0;
    while (count < n) {
        char *end = strchr(text, sep);
        fields[count++] = text;
        if (end == NULL) {
            break;
        }
        *end = '\0';
        text = end + 1;
    }
    return count;
}

static mdns_result_t *result_from(char *answer)
{
    char *fields[6], *items[8];
    size_t i, item_count;
    mdns_result_t *r;
    struct in_addr ip;
    long port;

    if (split(answer, ';', fields, 6) != 6 || inet_pton(AF_INET, fields[3], &ip) != 1) {
        return NULL;
    }
    port = strtol(fields[4], NULL, 10);
    r = calloc(1, sizeof *r);
    item_count = fields[5][0] != '\0' ? split(fields[5], ',', items, 8) : 0;
    if (r == NULL || port <= 0 || port > 65535 || (r->addr = calloc(1, sizeof *r->addr)) == NULL ||
        (item_count > 0 && (r->txt = calloc(item_count, sizeof *r->txt)) == NULL)) {
        mdns_query_results_free(r);
        return NULL;
    }
    r->instance_name = strdup(fields[0]);
    r->service_type = strdup(fields[1]);
    r->proto = strdup(fields[2]);
    r->hostname = strdup("gateway");
    r->port = (uint16_t)port;
    r->ip_protocol = MDNS_IP_PROTOCOL_V4;
    r->ttl = 120;
    r->addr->addr.type = ESP_IPADDR_TYPE_V4;
    r->addr->addr.u_addr.ip4.addr = ip.s_addr;
    for (i = 0; i < item_count; i++) {
        char *eq = strchr(items[i], '=');
        if (eq != NULL) {
            *eq = '\0';
        }
        r->txt[i].key = strdup(items[i]);
        r->txt[i].value = eq != NULL ? strdup(eq + 1) : NULL;
        r->txt_count++;
    }
    return r;
}

esp_err_t mdns_query_ptr(const char *service_type, const char *proto, uint32_t timeout,
                         size_t max_results, mdns_result_t **results)
{
    const char *env = getenv("USMP_STANDIN_MDNS_ANSWER");
    char *answer;
    mdns_result_t *r;
    (void)timeout;
    if (service_type == NULL || proto == NULL || results == NULL || max_results == 0) {
        return ESP_ERR_INVALID_ARG;
    }
    *results = NULL;
    if (env == NULL || (answer = strdup(env)) == NULL) {
        return ESP_OK;
    }
    r = result_from(answer);
    free(answer);
    if (r != NULL && (strcmp(r->service_type, service_type) != 0 || strcmp(r->proto, proto) != 0)) {
        mdns_query_results_free(r);
        r = NULL;
    }
    *results = r;
    return ESP_OK;
}

void mdns_query_results_free(mdns_result_t *results)
{
    while (results != NULL) {
        mdns_result_t *next = results->next;
        size_t i;
        for (i = 0; i < results->txt_count; i++) {
            free((void *)results->txt[i].key);
            free((void *)results->txt[i].value);
        }
        free(results->txt);
        free(results->txt_value_len);
        free(results->addr);
        free(results->instance_name);
        free(results->service_type);
        free(results->proto);
        free(results->hostname);
        free(results);
        results = next;
    }
}
