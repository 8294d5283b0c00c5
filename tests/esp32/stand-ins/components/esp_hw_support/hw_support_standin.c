/*
 * STAND-IN host implementation of esp_random.h and esp_mac.h -- host tests
 * only, not ESP-IDF code.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "esp_mac.h"
#include "esp_random.h"

void esp_fill_random(void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EINTR) {
            /* The real one cannot fail; a stand-in that could must stop. */
            perror("esp_fill_random stand-in: getrandom");
            abort();
        }
    }
}

uint32_t esp_random(void)
{
    uint32_t v;
    esp_fill_random(&v, sizeof v);
    return v;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

esp_err_t esp_read_mac(uint8_t *mac, esp_mac_type_t type)
{
    static const uint8_t fallback[6] = { 0x02, 0x00, 0x00, 0xe5, 0x32, 0x01 };
    const char *env = getenv("USMP_STANDIN_ESP_MAC");
    size_t i;

    if (mac == NULL || type != ESP_MAC_WIFI_STA) {
        return ESP_ERR_INVALID_ARG;
    }
    if (env == NULL) {
        memcpy(mac, fallback, 6);
        return ESP_OK;
    }
    if (strlen(env) != 12) {
        return ESP_ERR_INVALID_ARG;
    }
    for (i = 0; i < 6; i++) {
        int hi = hex_digit(env[2 * i]), lo = hex_digit(env[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return ESP_ERR_INVALID_ARG;
        }
        mac[i] = (uint8_t)(hi * 16 + lo);
    }
    return ESP_OK;
}
