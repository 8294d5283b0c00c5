/*
 * STAND-IN host implementation of esp_err.h (see include/esp_err.h) --
 * host tests only, not ESP-IDF code.
 */
#include <stdio.h>
#include <stdlib.h>

#include "esp_err.h"

/* The codes the stand-ins return; ESP-IDF's own table is much longer. */
const char *esp_err_to_name(esp_err_t code)
{
    switch (code) {
    case ESP_OK: return "ESP_OK";
    case ESP_FAIL: return "ESP_FAIL";
    case ESP_ERR_NO_MEM: return "ESP_ERR_NO_MEM";
    case ESP_ERR_INVALID_ARG: return "ESP_ERR_INVALID_ARG";
    case ESP_ERR_INVALID_STATE: return "ESP_ERR_INVALID_STATE";
    case ESP_ERR_INVALID_SIZE: return "ESP_ERR_INVALID_SIZE";
    case ESP_ERR_NOT_FOUND: return "ESP_ERR_NOT_FOUND";
    case 0x1102: return "ESP_ERR_NVS_NOT_FOUND";
    case 0x1103: return "ESP_ERR_NVS_TYPE_MISMATCH";
    case 0x110c: return "ESP_ERR_NVS_INVALID_LENGTH";
    default: return "UNKNOWN ERROR";
    }
}

void idf_standin_error_check_failed(esp_err_t rc, const char *file, int line, const char *expression)
{
    fprintf(stderr, "ESP_ERROR_CHECK failed: esp_err_t 0x%x (%s) at %s:%d\nexpression: %s\n",
            (unsigned)rc, esp_err_to_name(rc), file, line, expression);
    abort();
}
