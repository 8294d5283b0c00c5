/*
 * fuzz_cobs.c - libFuzzer target for the COBS codec.
 *
 * Any input is decoded (it must be rejected or decode without a zero-free
 * violation or overrun) and encoded; encode then decode must give the input
 * back, the encoding must hold no 0x00 and stay within
 * USMP_COBS_MAX_ENCODED. Built like fuzz_engine.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usmp_cobs.h"
#include "usmp_errors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t encoded[USMP_COBS_MAX_ENCODED(4096)], decoded[4096 + 8];
    int n, m;

    if (size > 4096) {
        return 0;
    }
    n = usmp_cobs_decode(decoded, sizeof decoded, data, size);
    if (n < 0 && n != USMP_ERR_MALFORMED && n != USMP_ERR_BUFFER) {
        abort();
    }
    if (n >= 0 && (size_t)n >= size) {
        abort(); /* decoding always shrinks */
    }
    n = usmp_cobs_encode(encoded, sizeof encoded, data, size);
    if (n <= 0 || (size_t)n > USMP_COBS_MAX_ENCODED(size) ||
        memchr(encoded, 0, (size_t)n) != NULL) {
        abort();
    }
    m = usmp_cobs_decode(decoded, sizeof decoded, encoded, (size_t)n);
    if (m != (int)size || (size > 0 && memcmp(decoded, data, size) != 0)) {
        abort();
    }
    /* Too small an output buffer is an error, not an overrun. */
    if (size > 0 && usmp_cobs_encode(encoded, (size_t)n - 1, data, size) != USMP_ERR_BUFFER &&
        (size_t)n - 1 < USMP_COBS_MAX_ENCODED(size)) {
        abort();
    }
    return 0;
}
