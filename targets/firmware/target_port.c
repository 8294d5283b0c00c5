/*
 * target_port.c - the port hooks (usmp_port.h) of the emulated targets.
 *
 * Scripted, so that a run reproduces the vectors: usmp_port_random plays
 * back the vector's ephemeral private key, the clock moves only when the
 * firmware moves it, and the device id is the vector's. The log goes
 * nowhere: a report line per event would blur the instruction counts.
 * This is a test port, not a port for a product: a device's random hook
 * must be its hardware generator (see ports/esp32).
 */
#include "target.h"
#include "usmp_port.h"

#include <string.h>

uint32_t target_now_ms;

static const uint8_t *script;
static size_t script_len, script_pos;
static uint8_t device_id[6];

void target_port_script_random(const uint8_t *bytes, size_t len)
{
    script = bytes;
    script_len = len;
    script_pos = 0;
}

void target_port_set_device_id(const uint8_t id[6])
{
    memcpy(device_id, id, sizeof device_id);
}

void usmp_port_get_device_id(uint8_t out[6])
{
    memcpy(out, device_id, sizeof device_id);
}

void usmp_port_random(uint8_t *buf, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        buf[i] = script_pos < script_len ? script[script_pos++] : 0x5A;
    }
}

void usmp_port_delay_ms(uint32_t ms)
{
    target_now_ms += ms;
}

uint32_t usmp_port_millis(void)
{
    return target_now_ms;
}

void usmp_port_log(const char *msg)
{
    (void)msg;
}
