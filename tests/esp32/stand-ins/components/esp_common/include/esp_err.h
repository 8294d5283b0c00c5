/*
 * STAND-IN for ESP-IDF's esp_err.h (components/esp_common/include/esp_err.h)
 * -- host tests only, not ESP-IDF code. It declares only what USMP's ESP32
 * port and example use; esp_err_standin.c implements it on the host.
 */
#ifndef IDF_STANDIN_ESP_ERR_H
#define IDF_STANDIN_ESP_ERR_H

typedef int esp_err_t;

#define ESP_OK                0
#define ESP_FAIL              (-1)
#define ESP_ERR_NO_MEM        0x101
#define ESP_ERR_INVALID_ARG   0x102
#define ESP_ERR_INVALID_STATE 0x103
#define ESP_ERR_INVALID_SIZE  0x104
#define ESP_ERR_NOT_FOUND     0x105

const char *esp_err_to_name(esp_err_t code);

/* As in ESP-IDF: abort with a message when x is not ESP_OK. */
void idf_standin_error_check_failed(esp_err_t rc, const char *file, int line,
                                    const char *expression) __attribute__((noreturn));
#define ESP_ERROR_CHECK(x)                                                    \
    do {                                                                      \
        esp_err_t idf_standin_rc_ = (x);                                      \
        if (idf_standin_rc_ != ESP_OK) {                                      \
            idf_standin_error_check_failed(idf_standin_rc_, __FILE__, __LINE__, #x); \
        }                                                                     \
    } while (0)

#endif
