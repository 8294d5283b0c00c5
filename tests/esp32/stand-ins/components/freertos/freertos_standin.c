/*
 * STAND-IN host implementation of the FreeRTOS calls in
 * include/freertos/ (FreeRTOS.h, task.h, event_groups.h) -- host tests
 * only, not FreeRTOS code.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "freertos/task.h"

void vTaskDelay(const TickType_t xTicksToDelay)
{
    uint64_t ms = (uint64_t)xTicksToDelay * portTICK_PERIOD_MS;
    struct timespec ts;

    ts.tv_sec = (time_t)(ms / 1000u);
    ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

struct idf_standin_event_group {
    EventBits_t bits;
};

EventGroupHandle_t xEventGroupCreate(void)
{
    return calloc(1, sizeof(struct idf_standin_event_group));
}

EventBits_t xEventGroupSetBits(EventGroupHandle_t xEventGroup, const EventBits_t uxBitsToSet)
{
    xEventGroup->bits |= uxBitsToSet;
    return xEventGroup->bits;
}

EventBits_t xEventGroupClearBits(EventGroupHandle_t xEventGroup, const EventBits_t uxBitsToClear)
{
    EventBits_t before = xEventGroup->bits;
    xEventGroup->bits &= ~uxBitsToClear;
    return before;
}

EventBits_t xEventGroupWaitBits(EventGroupHandle_t xEventGroup, const EventBits_t uxBitsToWaitFor,
                                const BaseType_t xClearOnExit, const BaseType_t xWaitForAllBits,
                                TickType_t xTicksToWait)
{
    for (;;) {
        EventBits_t bits = xEventGroup->bits;
        EventBits_t hit = bits & uxBitsToWaitFor;
        if (xWaitForAllBits ? hit == uxBitsToWaitFor : hit != 0) {
            if (xClearOnExit) {
                xEventGroup->bits &= ~uxBitsToWaitFor;
            }
            return bits;
        }
        if (xTicksToWait == 0) {
            return bits;
        }
        vTaskDelay(1);
        if (xTicksToWait != portMAX_DELAY) {
            xTicksToWait--;
        }
    }
}
