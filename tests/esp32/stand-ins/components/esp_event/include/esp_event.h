/*
 * STAND-IN for ESP-IDF's esp_event.h (components/esp_event/include/
 * esp_event.h) -- host tests only, not ESP-IDF code. The default event
 * loop only: handlers are kept in a small table and called synchronously,
 * in the posting thread, by idf_standin_event_post (which the stand-in
 * Wi-Fi uses; ESP-IDF runs them in its event task).
 */
#ifndef IDF_STANDIN_ESP_EVENT_H
#define IDF_STANDIN_ESP_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"

typedef const char *esp_event_base_t;
typedef void *esp_event_handler_instance_t;
typedef void (*esp_event_handler_t)(void *event_handler_arg, esp_event_base_t event_base,
                                    int32_t event_id, void *event_data);

#define ESP_EVENT_ANY_ID (-1)
#define ESP_EVENT_DECLARE_BASE(id) extern esp_event_base_t const id

esp_err_t esp_event_loop_create_default(void);
esp_err_t esp_event_handler_instance_register(esp_event_base_t event_base, int32_t event_id,
                                              esp_event_handler_t event_handler,
                                              void *event_handler_arg,
                                              esp_event_handler_instance_t *instance);

/* Stand-in only: calls the handlers registered for (base, id). */
void idf_standin_event_post(esp_event_base_t event_base, int32_t event_id, void *event_data);

#endif
