/*
 * device_image.c - the smallest program that uses the whole device API, for
 * the footprint benchmark's linked-size figure: the linker, with
 * --gc-sections, keeps exactly the core code a device that connects, sends,
 * receives, ticks and closes can reach. Never run: the benchmark links it
 * with unresolved symbols (crypto seam, port hooks, libc) left at 0.
 *
 * The transport is five function pointers, as on a device; they are left
 * NULL here because the transport's code is not part of the core.
 */
#include "usmp.h"

static usmp_ctx_t ctx;
static usmp_transport_t transport;
static const uint8_t psk[32];
static uint8_t buf[USMP_MAX_MESSAGE];

int main(void);

int main(void)
{
    usmp_config_t cfg = { .psk = psk, .psk_len = sizeof psk, .keepalive_ms = 5000u };
    int rc = usmp_connect(&ctx, &transport, &cfg);

    if (rc == USMP_OK) {
        rc = usmp_send(&ctx, buf, 16);
    }
    if (rc == USMP_OK) {
        rc = usmp_recv(&ctx, buf, sizeof buf, 1000u);
    }
    if (rc >= 0) {
        rc = usmp_keepalive_tick(&ctx);
    }
    (void)usmp_close(&ctx);
    return rc;
}
