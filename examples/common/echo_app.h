/*
 * echo_app.h - the device application of the examples, shared by the ESP32
 * example (examples/esp32_echo) and the simulated device on POSIX
 * (examples/posix_device), so the host runs the code the board runs.
 *
 * It connects, sends each message, waits for the gateway's echo, and
 * reports the session id, the bytes each message took on the wire and the
 * round-trip time through a report callback (printf on POSIX, ESP_LOGI on
 * ESP32).
 */
#ifndef ECHO_APP_H
#define ECHO_APP_H

#include <stddef.h>
#include <stdint.h>

#include "usmp.h"

typedef void (*echo_app_report_fn)(void *user, const char *line);

typedef struct {
    usmp_transport_t *transport;
    const usmp_config_t *config;
    const char *const *messages; /* text messages to send, in order */
    size_t message_count;
    uint32_t reply_timeout_ms; /* per message */
    echo_app_report_fn report;
    void *report_user;
} echo_app_t;

/* Runs the exchange on ctx and closes the session (BYE). Returns USMP_OK
 * when every message came back unchanged, else the first error
 * (USMP_ERR_MALFORMED for an echo that differs). */
int echo_app_run(usmp_ctx_t *ctx, const echo_app_t *app);

#endif /* ECHO_APP_H */
