/*
 * test_errors.c - the result codes generated from USMP_ERROR_LIST
 * (usmp_errors.h): every code has its name, its class by range and, with
 * USMP_ERROR_TEXT, its sentence; the wire-code helpers are inverse for the
 * ten codes ERROR carries (spec 9.1) and say "none" for every other value.
 */
#include <string.h>

#include "usmp_engine.h"
#include "usmp_errors.h"
#include "usmp_options.h"
#include "usmp_test.h"

typedef struct {
    int code;
    const char *name;
} listed_t;

#define LISTED_ENTRY(name, value, text) { value, #name },
static const listed_t listed[] = { USMP_ERROR_LIST(LISTED_ENTRY) };

static void test_every_listed_code_has_its_name_class_and_sentence(void)
{
    size_t i, j;

    CHECK(strcmp(usmp_error_name(USMP_OK), "OK") == 0);
    CHECK(usmp_error_class(USMP_OK) == USMP_ERROR_CLASS_NONE);
    CHECK(strcmp(usmp_error_name(-7), "UNKNOWN") == 0);
    CHECK(strcmp(usmp_error_name(1), "UNKNOWN") == 0);
    for (i = 0; i < sizeof listed / sizeof listed[0]; i++) {
        int code = listed[i].code;
        CHECK_MSG(code < 0, "%s", listed[i].name);
        CHECK_MSG(strcmp(usmp_error_name(code), listed[i].name) == 0, "%s", listed[i].name);
        CHECK_MSG(usmp_error_class(code) != USMP_ERROR_CLASS_NONE, "%s", listed[i].name);
#if USMP_ERROR_TEXT
        CHECK_MSG(strcmp(usmp_strerror(code), "unknown error") != 0, "%s", listed[i].name);
        CHECK_MSG(strcmp(usmp_strerror(code), listed[i].name) != 0, "%s", listed[i].name);
#else
        CHECK_MSG(strcmp(usmp_strerror(code), listed[i].name) == 0, "%s", listed[i].name);
#endif
        for (j = 0; j < i; j++) {
            CHECK_MSG(listed[j].code != code, "%s and %s share a value", listed[j].name,
                      listed[i].name);
        }
    }
    CHECK(usmp_error_class(USMP_ERR_WOULD_BLOCK) == USMP_ERROR_CLASS_LOCAL);
    CHECK(usmp_error_class(USMP_ERR_PEER_CLOSED) == USMP_ERROR_CLASS_REMOTE);
    CHECK(usmp_error_class(USMP_ERR_PEER_TIMEOUT) == USMP_ERROR_CLASS_TRANSPORT);
    CHECK(usmp_error_class(USMP_ERR_CRYPTO) == USMP_ERROR_CLASS_INTERNAL);
}

static void test_wire_codes_round_trip_for_the_ten_error_codes_only(void)
{
    int wire, code;

    CHECK_INT_EQ(usmp_error_to_wire(USMP_ERR_MALFORMED), USMP_CODE_MALFORMED);
    CHECK_INT_EQ(usmp_error_to_wire(USMP_ERR_BUSY), USMP_CODE_BUSY);
    CHECK_INT_EQ(usmp_error_to_wire(USMP_ERR_KEY_LIMIT), USMP_CODE_KEY_LIMIT);
    CHECK_INT_EQ(usmp_error_from_wire(USMP_CODE_AUTH_FAILED), USMP_ERR_AUTH_FAILED);
    for (wire = 0; wire <= 0xFF; wire++) {
        code = usmp_error_from_wire((unsigned char)wire);
        if (wire >= USMP_CODE_MALFORMED && wire <= USMP_CODE_KEY_LIMIT) {
            CHECK_INT_EQ(code, -(16 + wire));
            CHECK_INT_EQ(usmp_error_to_wire(code), wire);
            CHECK(usmp_error_class(code) == USMP_ERROR_CLASS_REMOTE);
        } else {
            CHECK_INT_EQ(code, USMP_OK); /* NONE, the BYE-only reasons, undefined */
        }
    }
    for (code = -100; code <= 0; code++) {
        if (code > USMP_ERR_MALFORMED || code < USMP_ERR_KEY_LIMIT) {
            CHECK_INT_EQ(usmp_error_to_wire(code), USMP_CODE_NONE);
        }
    }
}

int main(void)
{
    test_every_listed_code_has_its_name_class_and_sentence();
    test_wire_codes_round_trip_for_the_ten_error_codes_only();
    return usmp_test_finish("test_errors");
}
