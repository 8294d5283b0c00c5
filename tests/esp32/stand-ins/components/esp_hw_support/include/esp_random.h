/*
 * STAND-IN for ESP-IDF's esp_random.h (components/esp_hw_support/include/
 * esp_random.h) -- host tests only, not ESP-IDF code. The host
 * implementation (hw_support_standin.c) reads the kernel's CSPRNG.
 */
#ifndef IDF_STANDIN_ESP_RANDOM_H
#define IDF_STANDIN_ESP_RANDOM_H

#include <stddef.h>
#include <stdint.h>

uint32_t esp_random(void);
void esp_fill_random(void *buf, size_t len);

#endif
