/*
 * usmp_cobs.c - COBS encoder and decoder (spec section 10).
 */
#include "usmp_cobs.h"

#include <string.h>

#include "usmp_errors.h"

int usmp_cobs_encode(uint8_t *out, size_t out_cap, const uint8_t *in, size_t in_len)
{
    size_t code_at = 0; /* where the current block's code byte goes */
    size_t o = 1;       /* next output position */
    size_t i;
    uint8_t code = 1; /* block length + 1 so far */
    int ended_on_full_block = 0;

    if (out == NULL || (in == NULL && in_len > 0)) {
        return USMP_ERR_ARG;
    }
    if (out_cap < USMP_COBS_MAX_ENCODED(in_len) || USMP_COBS_MAX_ENCODED(in_len) > 0x7FFFFFFFu) {
        return USMP_ERR_BUFFER;
    }
    for (i = 0; i < in_len; i++) {
        ended_on_full_block = 0;
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
            continue;
        }
        out[o++] = in[i];
        code++;
        if (code == 0xFF) {
            /* 254 non-zero bytes: a full block, which implies no zero. */
            out[code_at] = code;
            code_at = o++;
            code = 1;
            ended_on_full_block = 1;
        }
    }
    if (ended_on_full_block) {
        return (int)(o - 1u); /* the minimal encoding drops the empty last block */
    }
    out[code_at] = code;
    return (int)o;
}

int usmp_cobs_decode(uint8_t *out, size_t out_cap, const uint8_t *in, size_t in_len)
{
    size_t i = 0;
    size_t o = 0;

    if (out == NULL || in == NULL) {
        return USMP_ERR_ARG;
    }
    if (in_len == 0 || in_len > 0x7FFFFFFFu) {
        return USMP_ERR_MALFORMED;
    }
    while (i < in_len) {
        uint8_t code = in[i];
        size_t n;
        if (code == 0 || (size_t)code > in_len - i) {
            return USMP_ERR_MALFORMED;
        }
        n = (size_t)code - 1u;
        if (memchr(in + i + 1, 0, n) != NULL) {
            return USMP_ERR_MALFORMED;
        }
        if (n > out_cap - o) {
            return USMP_ERR_BUFFER;
        }
        memmove(out + o, in + i + 1, n); /* o <= i: safe in place */
        o += n;
        i += code;
        if (code != 0xFF && i < in_len) {
            if (o >= out_cap) {
                return USMP_ERR_BUFFER;
            }
            out[o++] = 0;
        }
    }
    return (int)o;
}
