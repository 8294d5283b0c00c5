/*
 * STAND-IN host implementation of esp_timer_get_time -- host tests only,
 * not ESP-IDF code.
 */
#include <time.h>

#include "esp_timer.h"

int64_t esp_timer_get_time(void)
{
    static int64_t boot = -1;
    struct timespec ts;
    int64_t now;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    if (boot < 0) {
        boot = now;
    }
    return now - boot;
}
