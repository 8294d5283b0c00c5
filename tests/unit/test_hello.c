/*
 * test_hello.c - the HELLO and CHALLENGE bodies (src/usmp_hello.h, spec
 * 4.1, 4.2, 4.5) on their own: encode and parse agree, and each check of
 * the parse gives its condition, in the spec's order.
 */
#include <string.h>

#include "usmp_hello.h"
#include "usmp_test.h"

static const uint8_t DEVICE_ID[USMP_DEVICE_ID_BYTES] = { 1, 2, 3, 4, 5, 6 };

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
    size_t i;
    for (i = 0; i < n; i++) {
        p[i] = (uint8_t)(seed + i);
    }
}

static void test_hello_encode_and_parse_agree(void)
{
    uint8_t key[USMP_KEY_BYTES], body[USMP_HELLO_BODY_BYTES + USMP_COOKIE_BYTES];
    usmp_hello_t out = { 0x01, 0x01, DEVICE_ID, key, 512, 4096 }, in;

    fill(key, sizeof key, 0x40);
    memset(body, 0xEE, sizeof body);
    usmp_hello_encode(body, &out);
    CHECK_INT_EQ(body[0], 0x01);
    CHECK_INT_EQ(body[USMP_HELLO_MAX_RECORD], 0x02);
    CHECK_INT_EQ(body[USMP_HELLO_MAX_RECORD + 1], 0x00);
    CHECK_INT_EQ(body[USMP_HELLO_BODY_BYTES], 0xEE); /* nothing past the body */
    CHECK_INT_EQ(usmp_hello_parse(&in, body, USMP_HELLO_BODY_BYTES, USMP_MODE_STREAM), USMP_OK);
    CHECK_MEM_EQ(in.device_id, DEVICE_ID, sizeof DEVICE_ID);
    CHECK_MEM_EQ(in.ephemeral, key, sizeof key);
    CHECK(in.ephemeral == body + USMP_HELLO_EPHEMERAL); /* points into the body */
    CHECK_INT_EQ(in.max_record, 512);
    CHECK_INT_EQ(in.max_message, 4096);
    /* A NULL key leaves the field as the caller computed it in place. */
    out.ephemeral = NULL;
    memset(body + USMP_HELLO_EPHEMERAL, 0x77, USMP_KEY_BYTES);
    usmp_hello_encode(body, &out);
    CHECK_INT_EQ(body[USMP_HELLO_EPHEMERAL], 0x77);
    /* A cookie after the body: datagram only. */
    CHECK_INT_EQ(usmp_hello_parse(&in, body, sizeof body, USMP_MODE_STREAM), USMP_ERR_MALFORMED);
    out.max_message = 1207;
    out.max_record = 1207;
    usmp_hello_encode(body, &out);
    CHECK_INT_EQ(usmp_hello_parse(&in, body, sizeof body, USMP_MODE_DATAGRAM), USMP_OK);
}

static void test_hello_parse_checks_in_the_spec_order(void)
{
    uint8_t key[USMP_KEY_BYTES] = { 9 }, body[USMP_HELLO_BODY_BYTES + 1];
    usmp_hello_t out = { 0x02, 0x02, DEVICE_ID, key, 8, 4 }, in;

    usmp_hello_encode(body, &out); /* no version 1, no suite 1, bad limits */
    CHECK_INT_EQ(usmp_hello_parse(&in, body, USMP_HELLO_BODY_BYTES - 1u, USMP_MODE_STREAM),
                 USMP_ERR_MALFORMED);
    CHECK_INT_EQ(usmp_hello_parse(&in, body, USMP_HELLO_BODY_BYTES + 1u, USMP_MODE_STREAM),
                 USMP_ERR_MALFORMED);
    CHECK_INT_EQ(usmp_hello_parse(&in, body, USMP_HELLO_BODY_BYTES, USMP_MODE_STREAM),
                 USMP_ERR_UNSUPPORTED_VERSION);
    body[USMP_HELLO_VERSIONS] = 0x03; /* versions 1 and 2 offered */
    CHECK_INT_EQ(usmp_hello_parse(&in, body, USMP_HELLO_BODY_BYTES, USMP_MODE_STREAM),
                 USMP_ERR_UNSUPPORTED_SUITE);
    body[USMP_HELLO_SUITES] = 0xFF;
    CHECK_INT_EQ(usmp_hello_parse(&in, body, USMP_HELLO_BODY_BYTES, USMP_MODE_STREAM),
                 USMP_ERR_MALFORMED); /* max_record 8 < 16 */
    usmp_put_u16(body + USMP_HELLO_MAX_RECORD, 16);
    usmp_put_u16(body + USMP_HELLO_MAX_MESSAGE, 15);
    CHECK_INT_EQ(usmp_hello_parse(&in, body, USMP_HELLO_BODY_BYTES, USMP_MODE_STREAM),
                 USMP_ERR_MALFORMED); /* max_message < max_record */
    usmp_put_u16(body + USMP_HELLO_MAX_MESSAGE, 16);
    CHECK_INT_EQ(usmp_hello_parse(&in, body, USMP_HELLO_BODY_BYTES, USMP_MODE_STREAM), USMP_OK);
    /* The mode's record limit: 65519 on a stream, 1207 on datagrams. */
    usmp_put_u16(body + USMP_HELLO_MAX_RECORD, 1208);
    usmp_put_u16(body + USMP_HELLO_MAX_MESSAGE, 2000);
    CHECK_INT_EQ(usmp_hello_parse(&in, body, USMP_HELLO_BODY_BYTES, USMP_MODE_STREAM), USMP_OK);
    CHECK_INT_EQ(usmp_hello_parse(&in, body, USMP_HELLO_BODY_BYTES, USMP_MODE_DATAGRAM),
                 USMP_ERR_MALFORMED);
    usmp_put_u16(body + USMP_HELLO_MAX_RECORD, 65520);
    usmp_put_u16(body + USMP_HELLO_MAX_MESSAGE, 65535);
    CHECK_INT_EQ(usmp_hello_parse(&in, body, USMP_HELLO_BODY_BYTES, USMP_MODE_STREAM),
                 USMP_ERR_MALFORMED);
}

static void test_challenge_encode_and_parse_agree_and_check_in_order(void)
{
    uint8_t key[USMP_KEY_BYTES], nonce[USMP_NONCE_BYTES], body[USMP_CHALLENGE_BODY_BYTES];
    usmp_challenge_t out = { 1, 1, nonce, key, 1024, 1024 }, in;

    fill(key, sizeof key, 0x80);
    fill(nonce, sizeof nonce, 0x10);
    usmp_challenge_encode(body, &out);
    CHECK_INT_EQ(usmp_challenge_parse(&in, body, sizeof body, USMP_MODE_STREAM), USMP_OK);
    CHECK_MEM_EQ(in.nonce, nonce, sizeof nonce);
    CHECK_MEM_EQ(in.ephemeral, key, sizeof key);
    CHECK_INT_EQ(in.max_record, 1024);
    CHECK_INT_EQ(in.max_message, 1024);
    /* Length first, then version, suite, limits. */
    CHECK_INT_EQ(usmp_challenge_parse(&in, body, sizeof body - 1u, USMP_MODE_STREAM),
                 USMP_ERR_MALFORMED);
    CHECK_INT_EQ(usmp_challenge_parse(&in, body, sizeof body, USMP_MODE_DATAGRAM),
                 USMP_OK); /* 1024 <= 1207 */
    out.version = 2;
    out.suite = 2;
    out.max_record = 4;
    usmp_challenge_encode(body, &out);
    CHECK_INT_EQ(usmp_challenge_parse(&in, body, sizeof body, USMP_MODE_STREAM),
                 USMP_ERR_UNSUPPORTED_VERSION);
    body[USMP_CHALLENGE_VERSION] = 1;
    CHECK_INT_EQ(usmp_challenge_parse(&in, body, sizeof body, USMP_MODE_STREAM),
                 USMP_ERR_UNSUPPORTED_SUITE);
    body[USMP_CHALLENGE_SUITE] = 1;
    CHECK_INT_EQ(usmp_challenge_parse(&in, body, sizeof body, USMP_MODE_STREAM),
                 USMP_ERR_MALFORMED);
    /* A CHALLENGE names one version: a bitmap with version 1 in it is not
     * version 1. */
    body[USMP_CHALLENGE_VERSION] = 0x03;
    usmp_put_u16(body + USMP_CHALLENGE_MAX_RECORD, 16);
    CHECK_INT_EQ(usmp_challenge_parse(&in, body, sizeof body, USMP_MODE_STREAM),
                 USMP_ERR_UNSUPPORTED_VERSION);
}

int main(void)
{
    test_hello_encode_and_parse_agree();
    test_hello_parse_checks_in_the_spec_order();
    test_challenge_encode_and_parse_agree_and_check_in_order();
    return usmp_test_finish("test_hello");
}
