/*
 * STAND-IN host implementation of esp_event.h -- host tests only, not
 * ESP-IDF code.
 */
#include <string.h>

#include "esp_event.h"

#define MAX_HANDLERS 8

static struct {
    esp_event_base_t base;
    int32_t id;
    esp_event_handler_t handler;
    void *arg;
} handlers[MAX_HANDLERS];
static size_t handler_count;
static int loop_created;

esp_err_t esp_event_loop_create_default(void)
{
    if (loop_created) {
        return ESP_ERR_INVALID_STATE; /* as ESP-IDF answers a second call */
    }
    loop_created = 1;
    return ESP_OK;
}

esp_err_t esp_event_handler_instance_register(esp_event_base_t event_base, int32_t event_id,
                                              esp_event_handler_t event_handler,
                                              void *event_handler_arg,
                                              esp_event_handler_instance_t *instance)
{
    if (!loop_created) {
        return ESP_ERR_INVALID_STATE;
    }
    if (event_base == NULL || event_handler == NULL) {
        return ESP_ERR_INVALID_ARG;
    }
    if (handler_count == MAX_HANDLERS) {
        return ESP_ERR_NO_MEM;
    }
    handlers[handler_count].base = event_base;
    handlers[handler_count].id = event_id;
    handlers[handler_count].handler = event_handler;
    handlers[handler_count].arg = event_handler_arg;
    if (instance != NULL) {
        *instance = &handlers[handler_count];
    }
    handler_count++;
    return ESP_OK;
}

void idf_standin_event_post(esp_event_base_t event_base, int32_t event_id, void *event_data)
{
    size_t i;
    for (i = 0; i < handler_count; i++) {
        if (strcmp(handlers[i].base, event_base) == 0 &&
            (handlers[i].id == ESP_EVENT_ANY_ID || handlers[i].id == event_id)) {
            handlers[i].handler(handlers[i].arg, event_base, event_id, event_data);
        }
    }
}
