/*
 * usmp_port_esp32.c - the five port hooks of usmp_port.h on ESP-IDF (5.0 or
 * later; ESP32, ESP32-S3, ESP32-C3, ESP32-C6).
 *
 * Only this file and the component's CMakeLists.txt know about ESP-IDF: the
 * core is built from the same sources as on every other platform, and the
 * Kconfig options reach it as -D definitions (see CMakeLists.txt).
 */
#include <stdint.h>
#include <string.h>

#include "esp_err.h"
#include "esp_log.h"
#include "esp_mac.h"
#include "esp_random.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"

#include "usmp_port.h"

static const char *TAG = "usmp";

/* The Wi-Fi station MAC: unique per chip (burnt into eFuse), so it is the
 * natural device id. It is sent in the clear in HELLO and is no secret; the
 * gateway picks the device's PSK by it. esp_read_mac does not need Wi-Fi to
 * be started. */
void usmp_port_get_device_id(uint8_t out[6])
{
    esp_err_t err = esp_read_mac(out, ESP_MAC_WIFI_STA);
    if (err != ESP_OK) {
        /* Not a security problem (the gateway will not know the id and
         * refuses the handshake), but say why it happens. */
        ESP_LOGE(TAG, "esp_read_mac failed (%s): device id set to 00:00:00:00:00:00",
                 esp_err_to_name(err));
        memset(out, 0, 6);
    }
}

/* esp_fill_random reads the hardware RNG. Its output is true randomness
 * only while the RF subsystem (Wi-Fi or Bluetooth) runs, or after
 * bootloader_random_enable(); without either it is a pseudo-random
 * sequence (ESP-IDF Programming Guide, "Random Number Generation"). The
 * ephemeral X25519 keys come from here, so connect only after Wi-Fi has
 * started, as the example does. There is no API to check this at run time. */
void usmp_port_random(uint8_t *buf, size_t len)
{
    esp_fill_random(buf, len);
}

/* vTaskDelay blocks this task and lets others run. pdMS_TO_TICKS rounds
 * down, and with the default 100 Hz tick a delay under 10 ms would become 0
 * ticks: a bare yield, which lets a stalled send loop in the core spin at
 * full speed and starve the idle task (task watchdog). So round up. */
void usmp_port_delay_ms(uint32_t ms)
{
    TickType_t ticks = pdMS_TO_TICKS(ms);
    if ((uint64_t)ticks * portTICK_PERIOD_MS < ms) {
        ticks++;
    }
    vTaskDelay(ticks);
}

/* esp_timer counts microseconds since boot in 64 bits. The millisecond
 * value is truncated to 32 bits: it wraps after 49.7 days, which the core
 * handles (it compares times with wrap-safe arithmetic). */
uint32_t usmp_port_millis(void)
{
    return (uint32_t)((uint64_t)esp_timer_get_time() / 1000u);
}

/* The core formats its lines itself and never logs key material. Its lines
 * start with "usmp: ", which ESP_LOGI's tag already says. */
void usmp_port_log(const char *msg)
{
    if (strncmp(msg, "usmp: ", 6) == 0) {
        msg += 6;
    }
    ESP_LOGI(TAG, "%s", msg);
}
