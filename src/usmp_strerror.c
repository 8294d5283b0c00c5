/*
 * usmp_strerror.c - an English sentence for each result code, from the one
 * list USMP_ERROR_LIST (usmp_errors.h). A separate file so that devices
 * that never call usmp_strerror do not link it; with USMP_ERROR_TEXT 0 the
 * sentences are compiled out and it returns the condition name instead.
 */
#include "usmp_errors.h"
#include "usmp_options.h"

#include <stddef.h>

#if USMP_ERROR_TEXT
typedef struct {
    int code;
    const char *text;
} error_text_t;

#define ERROR_TEXT_ENTRY(name, value, text) { value, text },

static const error_text_t texts[] = {
    { USMP_OK, "success" },
    USMP_ERROR_LIST(ERROR_TEXT_ENTRY)
};

const char *usmp_strerror(int code)
{
    size_t i;
    for (i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        if (texts[i].code == code) {
            return texts[i].text;
        }
    }
    return "unknown error";
}
#else
const char *usmp_strerror(int code)
{
    return usmp_error_name(code);
}
#endif
