/*
 * STAND-IN host implementation of esp_log.h -- host tests only, not
 * ESP-IDF code. One line per call on stdout, flushed at once so that a test
 * reading the output through a pipe sees each line when it is written.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "esp_log.h"
#include "esp_timer.h"

void idf_standin_log(char level, const char *tag, const char *format, ...)
{
    va_list ap;

    printf("%c (%lu) %s: ", level, (unsigned long)(esp_timer_get_time() / 1000), tag);
    va_start(ap, format);
    vprintf(format, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}
