/*
 * uart_port.c - the port hooks (usmp_port.h) of the "uart" image, which
 * talks to a real gateway on the host instead of a script: the clock is
 * the board's virtual time, and the random source is SHA-256 in counter
 * mode over a seed the host draws afresh for every run (passed on the
 * semihosting command line, uart_main.c), so no two runs share an
 * ephemeral key. A test port still: a product's random hook is its
 * hardware generator (see ports/esp32).
 */
#include <string.h>

#include "mbedtls/sha256.h"
#include "target.h"
#include "uart_line_common.h"
#include "usmp_port.h"

static uint8_t seed[32];
static uint32_t blocks_drawn;
static uint8_t device_id[6];

void uart_port_seed(const uint8_t bytes[32], const uint8_t id[6])
{
    memcpy(seed, bytes, sizeof seed);
    memcpy(device_id, id, sizeof device_id);
    blocks_drawn = 0;
}

void usmp_port_get_device_id(uint8_t out[6])
{
    memcpy(out, device_id, sizeof device_id);
}

void usmp_port_random(uint8_t *buf, size_t len)
{
    while (len > 0) {
        uint8_t block[32], input[36];
        size_t n = len < sizeof block ? len : sizeof block;

        memcpy(input, seed, sizeof seed);
        input[32] = (uint8_t)(blocks_drawn >> 24);
        input[33] = (uint8_t)(blocks_drawn >> 16);
        input[34] = (uint8_t)(blocks_drawn >> 8);
        input[35] = (uint8_t)blocks_drawn;
        blocks_drawn++;
        TARGET_CHECK(mbedtls_sha256_ret(input, sizeof input, block, 0) == 0, "random: SHA-256");
        memcpy(buf, block, n);
        buf += n;
        len -= n;
    }
}

void usmp_port_delay_ms(uint32_t ms)
{
    uint64_t waiting_since = board_instructions();
    uint32_t start = uart_line_millis();

    while (uart_line_millis() - start < ms) {
    }
    uart_line_waited += board_instructions() - waiting_since;
}

uint32_t usmp_port_millis(void)
{
    return uart_line_millis();
}

void usmp_port_log(const char *msg)
{
    (void)msg;
}
