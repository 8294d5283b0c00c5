/*
 * usmp_error.c - names, classes and wire codes of the result codes, from
 * the one list USMP_ERROR_LIST (usmp_errors.h). The English sentences of
 * usmp_strerror live in usmp_strerror.c, so that an image that never calls
 * it does not carry them (string literals of one object file cannot be
 * dropped separately).
 */
#include "usmp_errors.h"

#include <stddef.h>

/* The remote conditions that have a wire code (spec 9.1): 0x01 .. 0x0A. */
#define WIRE_OFFSET     16
#define FIRST_WIRE_CODE 0x01
#define LAST_WIRE_CODE  0x0A

typedef struct {
    int code;
    const char *name; /* the spec's condition name */
} error_info_t;

#define ERROR_INFO_ENTRY(name, value, text) { value, #name },

static const error_info_t errors[] = {
    { USMP_OK, "OK" },
    USMP_ERROR_LIST(ERROR_INFO_ENTRY)
};

static const error_info_t *find(int code)
{
    size_t i;
    for (i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        if (errors[i].code == code) {
            return &errors[i];
        }
    }
    return NULL;
}

const char *usmp_error_name(int code)
{
    const error_info_t *info = find(code);
    return info != NULL ? info->name : "UNKNOWN";
}

usmp_error_class_t usmp_error_class(int code)
{
    if (code >= 0) {
        return USMP_ERROR_CLASS_NONE;
    }
    if (code >= -15) {
        return USMP_ERROR_CLASS_LOCAL;
    }
    if (code >= -47) {
        return USMP_ERROR_CLASS_REMOTE;
    }
    if (code >= -63) {
        return USMP_ERROR_CLASS_TRANSPORT;
    }
    return USMP_ERROR_CLASS_INTERNAL;
}

unsigned char usmp_error_to_wire(int code)
{
    if (code <= -(WIRE_OFFSET + FIRST_WIRE_CODE) && code >= -(WIRE_OFFSET + LAST_WIRE_CODE)) {
        return (unsigned char)(-code - WIRE_OFFSET);
    }
    return 0u;
}

int usmp_error_from_wire(unsigned char wire_code)
{
    if (wire_code >= FIRST_WIRE_CODE && wire_code <= LAST_WIRE_CODE) {
        return -(WIRE_OFFSET + (int)wire_code);
    }
    return 0;
}
