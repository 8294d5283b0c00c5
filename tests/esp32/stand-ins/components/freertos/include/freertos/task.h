/*
 * STAND-IN for FreeRTOS task.h (ESP-IDF: "freertos/task.h") -- host tests
 * only, not FreeRTOS code. vTaskDelay sleeps the host thread for the ticks'
 * worth of time; a delay of 0 ticks returns at once, like a bare yield.
 */
#ifndef IDF_STANDIN_FREERTOS_TASK_H
#define IDF_STANDIN_FREERTOS_TASK_H

#include "freertos/FreeRTOS.h"

void vTaskDelay(const TickType_t xTicksToDelay);

#endif
