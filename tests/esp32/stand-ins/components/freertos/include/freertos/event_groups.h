/*
 * STAND-IN for FreeRTOS event_groups.h (ESP-IDF: "freertos/event_groups.h")
 * -- host tests only, not FreeRTOS code. There is one thread on the host:
 * xEventGroupWaitBits polls the bits once per tick until they are set or
 * the timeout passes (the stand-in Wi-Fi sets them from inside
 * esp_wifi_start, so in practice it returns at once).
 */
#ifndef IDF_STANDIN_FREERTOS_EVENT_GROUPS_H
#define IDF_STANDIN_FREERTOS_EVENT_GROUPS_H

#include "freertos/FreeRTOS.h"

typedef struct idf_standin_event_group *EventGroupHandle_t;
typedef TickType_t EventBits_t;

EventGroupHandle_t xEventGroupCreate(void);
EventBits_t xEventGroupSetBits(EventGroupHandle_t xEventGroup, const EventBits_t uxBitsToSet);
EventBits_t xEventGroupClearBits(EventGroupHandle_t xEventGroup, const EventBits_t uxBitsToClear);
EventBits_t xEventGroupWaitBits(EventGroupHandle_t xEventGroup, const EventBits_t uxBitsToWaitFor,
                                const BaseType_t xClearOnExit, const BaseType_t xWaitForAllBits,
                                TickType_t xTicksToWait);

#endif
