/*
 * main.c - the USMP echo example on ESP-IDF: joins the Wi-Fi network, loads
 * this device's PSK, then runs examples/common/echo_app.c, the device
 * application the POSIX simulated device runs too: connect, send a few
 * messages, check each echo, close.
 *
 * Settings: idf.py menuconfig > "USMP echo example" (Wi-Fi, gateway, an
 * optional PSK) and > "USMP" (the library's options). The PSK comes from
 * NVS (namespace "usmp", key "psk": a 16 to 64 byte blob), or, only when
 * NVS holds none, from menuconfig. There is no default PSK: without one the
 * example logs how to provision it and stops. See README.md.
 *
 * A boot counter in NVS (namespace "usmp", key "boot_count", u64) is
 * advanced and stored at every boot before the first connect, and passed
 * as usmp_config_t.boot_counter: it keeps every ephemeral key new even if
 * the random source repeated itself (spec 5.8, spec/security.md section 6).
 *
 * With no gateway host in menuconfig, the gateway is found on mDNS
 * (_usmp._tcp, docs/bring-up.md) through the mdns component once Wi-Fi is
 * up: the first answer whose TXT "v" is protocol version 1.
 *
 * Every CONFIG_* value is used inside a function, never in #if: the host
 * test (tests/esp32) builds this file against stand-in headers.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "esp_err.h"
#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_wifi.h"
#include "esp_wifi_default.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "mdns.h"
#include "nvs.h"
#include "nvs_flash.h"
#include "sdkconfig.h"

#include "echo_app.h"
#include "usmp.h"

static const char *TAG = "usmp_echo";

#define PSK_NVS_NAMESPACE    "usmp"
#define PSK_NVS_KEY          "psk"
#define BOOT_COUNTER_NVS_KEY "boot_count"

#define WIFI_CONNECTED_BIT      (1u << 0)
#define WIFI_FAILED_BIT         (1u << 1)
#define WIFI_MAX_RETRIES        5
#define WIFI_CONNECT_TIMEOUT_MS 30000u

/* ---------------------------------------------------------------- the PSK */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Logs how to give the device a PSK: the example has none to fall back on. */
static void explain_psk_provisioning(const char *device_id)
{
    ESP_LOGE(TAG, "no PSK: this device has no key, and there is no default one");
    ESP_LOGE(TAG, "1. make a key and register this device with the gateway, either");
    ESP_LOGE(TAG, "   a) in its device registry (prints the key, writes the CSV of 2a):");
    ESP_LOGE(TAG, "     usmp device add --id %s --nvs-csv nvs_psk.csv", device_id);
    ESP_LOGE(TAG, "   b) or: usmp keygen                (64 hex digits)");
    ESP_LOGE(TAG, "     add the line '%s <key>' to the gateway's PSK file", device_id);
    ESP_LOGE(TAG, "2. give the key to the device, either");
    ESP_LOGE(TAG, "   a) in NVS (namespace \"%s\", key \"%s\", 16..64 byte blob): write a CSV",
             PSK_NVS_NAMESPACE, PSK_NVS_KEY);
    ESP_LOGE(TAG, "      'key,type,encoding,value' / '%s,namespace,,' / '%s,data,hex2bin,<key>',",
             PSK_NVS_NAMESPACE, PSK_NVS_KEY);
    ESP_LOGE(TAG, "      turn it into a partition with nvs_partition_gen.py generate and flash it");
    ESP_LOGE(TAG, "      to the nvs partition (parttool.py write_partition --partition-name=nvs)");
    ESP_LOGE(TAG, "   b) or: idf.py menuconfig > USMP echo example > Device PSK in hex");
    ESP_LOGE(TAG, "see examples/esp32_echo/README.md");
}

/* Reads the PSK into psk[]. Returns its length (16..64), 0 when none is
 * configured anywhere, -1 when the configured one is unusable (logged). */
static int load_psk(uint8_t psk[USMP_PSK_MAX_BYTES], const char **source)
{
    const char *hex = CONFIG_USMP_ECHO_PSK_HEX;
    size_t len = USMP_PSK_MAX_BYTES, digits, i;
    nvs_handle_t nvs;
    esp_err_t err;

    err = nvs_open(PSK_NVS_NAMESPACE, NVS_READONLY, &nvs);
    if (err == ESP_OK) {
        err = nvs_get_blob(nvs, PSK_NVS_KEY, psk, &len);
        nvs_close(nvs);
    }
    if (err == ESP_OK) {
        *source = "NVS";
        if (len < USMP_PSK_MIN_BYTES) {
            ESP_LOGE(TAG, "the PSK in NVS is %u bytes: USMP needs 16 to 64 (32 from usmp keygen)",
                     (unsigned)len);
            return -1;
        }
        return (int)len;
    }
    if (err == ESP_ERR_NVS_INVALID_LENGTH) {
        ESP_LOGE(TAG, "the PSK in NVS is longer than 64 bytes: USMP needs 16 to 64");
        return -1;
    }
    if (err == ESP_ERR_NVS_TYPE_MISMATCH) {
        ESP_LOGE(TAG, "NVS %s/%s is not a blob: write it with encoding hex2bin", PSK_NVS_NAMESPACE,
                 PSK_NVS_KEY);
        return -1;
    }
    if (err != ESP_ERR_NVS_NOT_FOUND) {
        ESP_LOGE(TAG, "cannot read the PSK from NVS: %s", esp_err_to_name(err));
        return -1;
    }

    /* Not in NVS: menuconfig, if set there. */
    digits = strlen(hex);
    if (digits == 0) {
        return 0;
    }
    *source = "menuconfig (sdkconfig)";
    if (digits % 2 != 0 || digits / 2 < USMP_PSK_MIN_BYTES || digits / 2 > USMP_PSK_MAX_BYTES) {
        ESP_LOGE(TAG, "the menuconfig PSK has %u hex digits: USMP needs 32 to 128 (an even number)",
                 (unsigned)digits);
        return -1;
    }
    for (i = 0; i < digits / 2; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            ESP_LOGE(TAG, "the menuconfig PSK is not hex (character %u)", (unsigned)(2 * i + 1));
            memset(psk, 0, USMP_PSK_MAX_BYTES);
            return -1;
        }
        psk[i] = (uint8_t)(hi * 16 + lo);
    }
    return (int)(digits / 2);
}

/* ----------------------------------------------------------- boot counter */

/* Reads the boot counter from NVS, advances it and commits it, and returns
 * the new value (1 at the first boot). It is stored before it is used, so a
 * reset at any point never makes a later boot use it again. Returns 0 (the
 * library's "no counter") when NVS cannot keep it: the device still has
 * its RAM connection counter, which protects within one boot only. */
static uint64_t advance_boot_counter(void)
{
    nvs_handle_t nvs;
    uint64_t previous = 0;
    esp_err_t err = nvs_open(PSK_NVS_NAMESPACE, NVS_READWRITE, &nvs);

    if (err != ESP_OK) {
        ESP_LOGW(TAG, "boot counter: cannot open NVS (%s); connecting without one",
                 esp_err_to_name(err));
        return 0;
    }
    err = nvs_get_u64(nvs, BOOT_COUNTER_NVS_KEY, &previous);
    if (err == ESP_ERR_NVS_NOT_FOUND) {
        previous = 0;
        err = ESP_OK;
    }
    if (err == ESP_OK && previous == UINT64_MAX) {
        err = ESP_ERR_INVALID_STATE; /* never wraps back to a used value */
    }
    if (err == ESP_OK) {
        err = nvs_set_u64(nvs, BOOT_COUNTER_NVS_KEY, previous + 1u);
    }
    if (err == ESP_OK) {
        err = nvs_commit(nvs);
    }
    nvs_close(nvs);
    if (err != ESP_OK) {
        ESP_LOGW(TAG, "boot counter: cannot advance it in NVS (%s); connecting without one",
                 esp_err_to_name(err));
        return 0;
    }
    return previous + 1u;
}

/* ------------------------------------------------------------------ Wi-Fi */

static EventGroupHandle_t wifi_events;
static int wifi_retries;

static void on_network_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    if (base == WIFI_EVENT && id == WIFI_EVENT_STA_START) {
        (void)esp_wifi_connect();
    } else if (base == WIFI_EVENT && id == WIFI_EVENT_STA_DISCONNECTED) {
        const wifi_event_sta_disconnected_t *lost = data;
        if (wifi_retries < WIFI_MAX_RETRIES) {
            wifi_retries++;
            ESP_LOGW(TAG, "Wi-Fi: not connected (reason %u), retry %d of %d",
                     lost != NULL ? (unsigned)lost->reason : 0u, wifi_retries, WIFI_MAX_RETRIES);
            (void)esp_wifi_connect();
        } else {
            xEventGroupSetBits(wifi_events, WIFI_FAILED_BIT);
        }
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        const ip_event_got_ip_t *got = data;
        ESP_LOGI(TAG, "Wi-Fi: connected, address " IPSTR, IP2STR(&got->ip_info.ip));
        wifi_retries = 0;
        xEventGroupSetBits(wifi_events, WIFI_CONNECTED_BIT);
    }
}

/* Copies a NUL-terminated string into a fixed Wi-Fi field (which need not
 * end in NUL when full, as ESP-IDF specifies for ssid and password). */
static void copy_field(uint8_t *field, size_t size, const char *text)
{
    size_t n = strlen(text);
    memset(field, 0, size);
    memcpy(field, text, n < size ? n : size);
}

/* Joins the configured network as a station. ESP_OK once an address is
 * assigned; ESP_FAIL after WIFI_MAX_RETRIES failures or the timeout. */
static esp_err_t wifi_connect(const char *ssid, const char *password)
{
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    wifi_config_t config;
    EventBits_t bits;

    wifi_events = xEventGroupCreate();
    ESP_ERROR_CHECK(esp_netif_init());
    ESP_ERROR_CHECK(esp_event_loop_create_default());
    (void)esp_netif_create_default_wifi_sta();
    ESP_ERROR_CHECK(esp_wifi_init(&init));
    ESP_ERROR_CHECK(esp_event_handler_instance_register(WIFI_EVENT, ESP_EVENT_ANY_ID,
                                                        on_network_event, NULL, NULL));
    ESP_ERROR_CHECK(esp_event_handler_instance_register(IP_EVENT, IP_EVENT_STA_GOT_IP,
                                                        on_network_event, NULL, NULL));
    memset(&config, 0, sizeof config);
    copy_field(config.sta.ssid, sizeof config.sta.ssid, ssid);
    copy_field(config.sta.password, sizeof config.sta.password, password);
    /* With a password, refuse to join anything weaker than WPA2. */
    config.sta.threshold.authmode = password[0] != '\0' ? WIFI_AUTH_WPA2_PSK : WIFI_AUTH_OPEN;
    ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
    ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_STA, &config));
    ESP_ERROR_CHECK(esp_wifi_start());

    bits = xEventGroupWaitBits(wifi_events, WIFI_CONNECTED_BIT | WIFI_FAILED_BIT, pdFALSE, pdFALSE,
                               pdMS_TO_TICKS(WIFI_CONNECT_TIMEOUT_MS));
    return (bits & WIFI_CONNECTED_BIT) ? ESP_OK : ESP_FAIL;
}

/* ------------------------------------------------------------ the example */

void app_main(void); /* called by ESP-IDF's startup code in the main task */

/* ===================================================================== */
/* Finding the gateway on mDNS                                            */
/* ===================================================================== */

/* How long the PTR query collects answers: a responder answers within
 * about 120 ms (RFC 6762 section 6); 3 s leaves room for a busy LAN. */
#define DISCOVERY_TIMEOUT_MS  3000u
#define DISCOVERY_MAX_RESULTS 8u

/* 1 when the service's TXT "v" names protocol version 1 (spec 4). */
static int speaks_version_1(const mdns_result_t *r)
{
    size_t i;
    for (i = 0; i < r->txt_count; i++) {
        if (r->txt[i].key != NULL && strcmp(r->txt[i].key, "v") == 0 && r->txt[i].value != NULL &&
            strcmp(r->txt[i].value, "1") == 0) {
            return 1;
        }
    }
    return 0;
}

/* Resolves _usmp._tcp and fills host (dotted IPv4) and *port from the
 * first usable answer. Discovery is not trust: whoever answers, the
 * handshake that follows proves the gateway holds this device's key.
 * Returns 0, or -1 after logging why. */
static int discover_gateway(char *host, size_t host_len, int *port)
{
    mdns_result_t *results = NULL;
    const mdns_result_t *r;
    const mdns_ip_addr_t *a;
    int found = -1;
    esp_err_t err = mdns_init();
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "mDNS: cannot start (%s)", esp_err_to_name(err));
        return -1;
    }
    ESP_LOGI(TAG, "no gateway host in menuconfig: looking for _usmp._tcp on mDNS");
    err = mdns_query_ptr("_usmp", "_tcp", DISCOVERY_TIMEOUT_MS, DISCOVERY_MAX_RESULTS, &results);
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "mDNS: query failed (%s)", esp_err_to_name(err));
    }
    for (r = results; err == ESP_OK && r != NULL && found != 0; r = r->next) {
        if (!speaks_version_1(r) || r->port == 0) {
            continue;
        }
        for (a = r->addr; a != NULL; a = a->next) {
            if (a->addr.type == ESP_IPADDR_TYPE_V4) {
                snprintf(host, host_len, IPSTR, IP2STR(&a->addr.u_addr.ip4));
                *port = r->port;
                ESP_LOGI(TAG, "gateway found on mDNS: %s at %s:%d",
                         r->instance_name != NULL ? r->instance_name : "(no name)", host, *port);
                found = 0;
                break;
            }
        }
    }
    mdns_query_results_free(results);
    mdns_free();
    if (err == ESP_OK && found != 0) {
        ESP_LOGE(TAG,
                 "no gateway answered on mDNS within %u ms: is `usmp gateway` running on this "
                 "network (without --no-mdns)? Or set idf.py menuconfig > USMP echo example > "
                 "Gateway host",
                 DISCOVERY_TIMEOUT_MS);
    }
    return found;
}

static void report(void *user, const char *line)
{
    (void)user;
    ESP_LOGI(TAG, "%s", line);
}

void app_main(void)
{
    /* Static, not on the main task's stack: the context holds both record
     * buffers (1544 bytes in all at the component's defaults, the device
     * profile: docs/footprint.md), and the library keeps pointers to the
     * PSK and the transport while the session lives. */
    static usmp_ctx_t ctx;
    static usmp_transport_t transport;
    static uint8_t psk[USMP_PSK_MAX_BYTES];
    static const char *const messages[] = { "hello from an ESP32", "temperature=21.5C", "" };
    static char found_host[16]; /* dotted IPv4 of a gateway found on mDNS */
    const char *host = CONFIG_USMP_ECHO_GATEWAY_HOST, *ssid = CONFIG_USMP_ECHO_WIFI_SSID;
    const char *psk_source = "";
    int port = CONFIG_USMP_ECHO_GATEWAY_PORT;
    static const char hex[] = "0123456789abcdef";
    usmp_config_t cfg;
    echo_app_t app;
    uint8_t id[USMP_DEVICE_ID_BYTES];
    char id_text[2 * USMP_DEVICE_ID_BYTES + 1];
    esp_err_t err;
    int psk_len, rc;
    size_t i;
    uint64_t boot_counter;

    /* The Wi-Fi station MAC: the gateway's PSK file names the device by it. */
    usmp_port_get_device_id(id);
    for (i = 0; i < USMP_DEVICE_ID_BYTES; i++) {
        id_text[2 * i] = hex[id[i] >> 4];
        id_text[2 * i + 1] = hex[id[i] & 15u];
    }
    id_text[2 * USMP_DEVICE_ID_BYTES] = '\0';
    ESP_LOGI(TAG, "USMP %s echo example, device id %s", USMP_VERSION_STRING, id_text);

    /* NVS holds the PSK (and Wi-Fi's own data). The usual ESP-IDF recipe
     * erases the partition when it cannot be used; that would also erase
     * the provisioned PSK, so say what is wrong and stop instead. */
    err = nvs_flash_init();
    if (err != ESP_OK) {
        ESP_LOGE(TAG,
                 "NVS cannot be used (%s): erase the nvs partition and provision the PSK again",
                 esp_err_to_name(err));
        return;
    }
    psk_len = load_psk(psk, &psk_source);
    if (psk_len == 0) {
        explain_psk_provisioning(id_text);
    }
    if (psk_len <= 0) {
        return;
    }
    if (ssid[0] == '\0') {
        ESP_LOGE(TAG, "no Wi-Fi network: idf.py menuconfig > USMP echo example > Wi-Fi network");
        goto done;
    }

    ESP_LOGI(TAG, "PSK: %d bytes from %s", psk_len, psk_source);
    boot_counter = advance_boot_counter();
    ESP_LOGI(TAG, "boot counter: %llu", (unsigned long long)boot_counter);

    /* Wi-Fi first: besides the network, the running radio is what makes
     * esp_fill_random (the ephemeral keys' source) truly random; the port
     * stops the program if random bytes are drawn before Wi-Fi is
     * initialised (docs/esp32.md). */
    if (wifi_connect(ssid, CONFIG_USMP_ECHO_WIFI_PASSWORD) != ESP_OK) {
        ESP_LOGE(TAG, "Wi-Fi: could not join \"%s\"", ssid);
        goto done;
    }
    if (host[0] == '\0') {
        if (discover_gateway(found_host, sizeof found_host, &port) != 0) {
            goto done;
        }
        host = found_host;
    }

    if (usmp_tcp_transport_init(&transport, host, (uint16_t)port) != USMP_OK) {
        ESP_LOGE(TAG, "bad gateway address %s:%d", host, port);
        goto done;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.psk = psk;
    cfg.psk_len = (size_t)psk_len;
    cfg.keepalive_ms = CONFIG_USMP_ECHO_KEEPALIVE_MS;
    cfg.boot_counter = boot_counter;
    memset(&app, 0, sizeof app);
    app.transport = &transport;
    app.config = &cfg;
    app.messages = messages;
    app.message_count = sizeof messages / sizeof messages[0];
    app.reply_timeout_ms = CONFIG_USMP_ECHO_REPLY_TIMEOUT_MS;
    app.report = report;

    ESP_LOGI(TAG, "connecting to gateway %s:%d", host, port);
    rc = echo_app_run(&ctx, &app);
    if (rc == USMP_OK) {
        ESP_LOGI(TAG, "echo test passed: every message came back unchanged");
    } else {
        ESP_LOGE(TAG, "echo test failed: %s (%s)", usmp_error_name(rc), usmp_strerror(rc));
        if (rc == USMP_ERR_PEER_ERROR && usmp_peer_code(&ctx) == USMP_CODE_AUTH_FAILED) {
            /* The gateway's word, unauthenticated: likely, not proven. */
            ESP_LOGE(TAG,
                     "the gateway refused with AUTH_FAILED: it does not know device %s, "
                     "or its PSK for it differs",
                     id_text);
        } else if (rc == USMP_ERR_PEER_ERROR) {
            ESP_LOGE(TAG, "the gateway refused with code 0x%02x", (unsigned)usmp_peer_code(&ctx));
        } else if (rc == USMP_ERR_AUTH_FAILED) {
            ESP_LOGE(TAG, "the gateway's answer failed its MAC: a different PSK, or tampering");
        }
    }
done:
    /* The session is closed and its keys wiped; the PSK copy goes too. */
    memset(psk, 0, sizeof psk);
}
