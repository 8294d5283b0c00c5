/*
 * STAND-IN for FreeRTOS.h as ESP-IDF ships it (components/freertos/...,
 * included as "freertos/FreeRTOS.h") -- host tests only, not FreeRTOS code.
 * The types and tick macros USMP's port and example use, with ESP-IDF's
 * default tick rate (CONFIG_FREERTOS_HZ = 100).
 */
#ifndef IDF_STANDIN_FREERTOS_H
#define IDF_STANDIN_FREERTOS_H

#include <stdint.h>

typedef uint32_t TickType_t;
typedef int BaseType_t;
typedef unsigned int UBaseType_t;

#define pdFALSE ((BaseType_t)0)
#define pdTRUE  ((BaseType_t)1)
#define pdPASS  pdTRUE
#define pdFAIL  pdFALSE

#define configTICK_RATE_HZ 100
#define portTICK_PERIOD_MS ((TickType_t)1000 / configTICK_RATE_HZ)
#define portMAX_DELAY      ((TickType_t)0xffffffffUL)
/* Rounds down, like the real macro: 5 ms is 0 ticks at 100 Hz. */
#define pdMS_TO_TICKS(ms)  ((TickType_t)(((TickType_t)(ms) * (TickType_t)configTICK_RATE_HZ) / (TickType_t)1000U))

#endif
