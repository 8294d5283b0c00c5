/*
 * usmp_port_esp32.c - the five port hooks of usmp_port.h on ESP-IDF (5.0 or
 * later; ESP32, ESP32-S3, ESP32-C3, ESP32-C6).
 *
 * Only this file and the component's CMakeLists.txt know about ESP-IDF: the
 * core is built from the same sources as on every other platform, and the
 * Kconfig options reach it as -D definitions (see CMakeLists.txt).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "esp_err.h"
#include "esp_log.h"
#include "esp_mac.h"
#include "esp_random.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"

/* CONFIG_USMP_ESP32_RNG_NO_RF, passed on by CMakeLists.txt as 0 or 1. */
#ifndef USMP_ESP32_RNG_NO_RF
#define USMP_ESP32_RNG_NO_RF 0
#endif
#if USMP_ESP32_RNG_NO_RF
#include "bootloader_random.h"
#else
#include "esp_wifi.h"
#endif

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

/*
 * The hardware RNG (esp_fill_random) gives true random numbers only while a
 * noise source feeds it: the RF subsystem (Wi-Fi or Bluetooth enabled), or
 * the internal SAR ADC source between bootloader_random_enable() and
 * bootloader_random_disable(), or while the second-stage bootloader runs.
 * Otherwise its output is pseudo-random only (ESP-IDF 5 Programming Guide,
 * "Random Number Generation"); after the app starts that is the case until
 * Wi-Fi or Bluetooth is initialised. The random bytes drawn here go into
 * the ephemeral X25519 keys (through the hedge of spec 5.8), so:
 *
 *  - Default (Wi-Fi): the RF subsystem is the source. The port checks the
 *    one thing ESP-IDF lets it check, that Wi-Fi is initialised
 *    (esp_wifi_get_mode does not answer ESP_ERR_WIFI_NOT_INIT), and stops
 *    the program otherwise rather than return pseudo-random bytes (the
 *    usmp_port.h contract). It cannot tell whether Wi-Fi is also started:
 *    the application must start it before connecting, as the example does
 *    (it connects after IP_EVENT_STA_GOT_IP).
 *  - CONFIG_USMP_ESP32_RNG_NO_RF (an application with neither Wi-Fi nor
 *    Bluetooth, e.g. on Ethernet): each draw switches the internal source
 *    on around it with bootloader_random_enable()/_disable(). ESP-IDF
 *    forbids that while the RF subsystem, the ADC or (ESP32) I2S is in use,
 *    so this option is for applications that use none of them.
 *
 * Either way, an application that keeps a boot counter in NVS and passes it
 * as usmp_config_t.boot_counter stays safe from replayed sessions even if
 * the source was not there (spec/security.md section 6).
 */
void usmp_port_random(uint8_t *buf, size_t len)
{
#if USMP_ESP32_RNG_NO_RF
    bootloader_random_enable();
    esp_fill_random(buf, len);
    bootloader_random_disable();
#else
    wifi_mode_t mode;
    if (esp_wifi_get_mode(&mode) == ESP_ERR_WIFI_NOT_INIT) {
        ESP_LOGE(TAG, "random bytes requested before Wi-Fi is initialised: the hardware RNG "
                      "has no entropy source; start Wi-Fi before connecting, or set "
                      "CONFIG_USMP_ESP32_RNG_NO_RF for an application without radio");
        abort();
    }
    esp_fill_random(buf, len);
#endif
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
