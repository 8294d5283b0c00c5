/*
 * test_cookie.c - the stateless UDP cookie (src/usmp_cookie.c, spec 8.3)
 * on its own: its argument errors, and that it binds the secret, the
 * client's address and the HELLO. The value itself is checked against the
 * spec vectors by test_vectors.
 */
#include <string.h>

#include "usmp_engine.h"
#include "usmp_test.h"
#include "usmp_wire.h"

#define HELLO_LEN (USMP_DATAGRAM_HANDSHAKE_HEADER_BYTES + USMP_HELLO_BODY_BYTES)

static const uint8_t ADDRESS[6] = { 192, 0, 2, 7, 0x30, 0x39 };

static void test_arguments_are_checked(void)
{
    uint8_t cookie[USMP_COOKIE_BYTES], secret[USMP_COOKIE_SECRET_BYTES] = { 1 };
    uint8_t hello[HELLO_LEN + USMP_COOKIE_BYTES] = { USMP_TYPE_HELLO };

    CHECK_INT_EQ(usmp_cookie_compute(NULL, secret, ADDRESS, 6, hello, HELLO_LEN), USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_cookie_compute(cookie, NULL, ADDRESS, 6, hello, HELLO_LEN), USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_cookie_compute(cookie, secret, NULL, 6, hello, HELLO_LEN), USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_cookie_compute(cookie, secret, ADDRESS, 6, NULL, HELLO_LEN), USMP_ERR_ARG);
    /* Only the bare datagram HELLO (45 bytes): not the stream form, not
     * one that already carries a cookie. */
    CHECK_INT_EQ(usmp_cookie_compute(cookie, secret, ADDRESS, 6, hello, HELLO_LEN - 1u), USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_cookie_compute(cookie, secret, ADDRESS, 6, hello, HELLO_LEN + USMP_COOKIE_BYTES),
                 USMP_ERR_ARG);
    CHECK_INT_EQ(usmp_cookie_compute(cookie, secret, NULL, 0, hello, HELLO_LEN), USMP_OK);
}

static void test_the_cookie_binds_secret_address_and_hello(void)
{
    uint8_t secret[USMP_COOKIE_SECRET_BYTES], hello[HELLO_LEN];
    uint8_t a[USMP_COOKIE_BYTES], b[USMP_COOKIE_BYTES];
    uint8_t other_address[6];

    memset(secret, 0x11, sizeof secret);
    memset(hello, 0x22, sizeof hello);
    hello[0] = USMP_TYPE_HELLO;
    memcpy(other_address, ADDRESS, sizeof other_address);
    other_address[5] ^= 1u;

    CHECK_INT_EQ(usmp_cookie_compute(a, secret, ADDRESS, 6, hello, HELLO_LEN), USMP_OK);
    CHECK_INT_EQ(usmp_cookie_compute(b, secret, ADDRESS, 6, hello, HELLO_LEN), USMP_OK);
    CHECK_MEM_EQ(a, b, sizeof a); /* stateless: the same inputs, the same cookie */
    CHECK_INT_EQ(usmp_cookie_compute(b, secret, other_address, 6, hello, HELLO_LEN), USMP_OK);
    CHECK(memcmp(a, b, sizeof a) != 0);
    hello[10] ^= 1u;
    CHECK_INT_EQ(usmp_cookie_compute(b, secret, ADDRESS, 6, hello, HELLO_LEN), USMP_OK);
    CHECK(memcmp(a, b, sizeof a) != 0);
    hello[10] ^= 1u;
    secret[0] ^= 1u;
    CHECK_INT_EQ(usmp_cookie_compute(b, secret, ADDRESS, 6, hello, HELLO_LEN), USMP_OK);
    CHECK(memcmp(a, b, sizeof a) != 0);
}

int main(void)
{
    test_arguments_are_checked();
    test_the_cookie_binds_secret_address_and_hello();
    return usmp_test_finish("test_cookie");
}
