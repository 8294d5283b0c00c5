/*
 * STAND-IN for ESP-IDF's esp_timer.h (components/esp_timer/include/
 * esp_timer.h) -- host tests only, not ESP-IDF code. Only
 * esp_timer_get_time; esp_timer_standin.c implements it with the host's
 * monotonic clock, counted from the first call ("boot").
 */
#ifndef IDF_STANDIN_ESP_TIMER_H
#define IDF_STANDIN_ESP_TIMER_H

#include <stdint.h>

#include "esp_err.h"

/* Microseconds since boot. */
int64_t esp_timer_get_time(void);

#endif
