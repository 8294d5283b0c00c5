/*
 * usmp_error.c - names and classes of the result codes. The English
 * sentences of usmp_strerror live in usmp_strerror.c, so that an image
 * that never calls it does not carry them (string literals of one object
 * file cannot be dropped separately).
 */
#include "usmp_errors.h"

#include <stddef.h>

typedef struct {
    int code;
    const char *name; /* the spec's condition name */
} error_info_t;

static const error_info_t errors[] = {
    { USMP_OK, "OK" },
    { USMP_ERR_ARG, "ARG" },
    { USMP_ERR_STATE, "STATE" },
    { USMP_ERR_BUFFER, "BUFFER" },
    { USMP_ERR_PSK, "PSK" },
    { USMP_ERR_MESSAGE_TOO_LARGE, "MESSAGE_TOO_LARGE" },
    { USMP_ERR_WOULD_BLOCK, "WOULD_BLOCK" },
    { USMP_ERR_MALFORMED, "MALFORMED" },
    { USMP_ERR_UNEXPECTED, "UNEXPECTED" },
    { USMP_ERR_UNSUPPORTED_VERSION, "UNSUPPORTED_VERSION" },
    { USMP_ERR_UNSUPPORTED_SUITE, "UNSUPPORTED_SUITE" },
    { USMP_ERR_AUTH_FAILED, "AUTH_FAILED" },
    { USMP_ERR_BAD_KEY, "BAD_KEY" },
    { USMP_ERR_BUSY, "BUSY" },
    { USMP_ERR_TOO_LARGE, "TOO_LARGE" },
    { USMP_ERR_BAD_RECORD, "BAD_RECORD" },
    { USMP_ERR_KEY_LIMIT, "KEY_LIMIT" },
    { USMP_ERR_REPLAY, "REPLAY" },
    { USMP_ERR_UNKNOWN_SESSION, "UNKNOWN_SESSION" },
    { USMP_ERR_PEER_ERROR, "PEER_ERROR" },
    { USMP_ERR_PEER_CLOSED, "PEER_CLOSED" },
    { USMP_ERR_TRANSPORT_CLOSED, "TRANSPORT_CLOSED" },
    { USMP_ERR_TRANSPORT, "TRANSPORT" },
    { USMP_ERR_TIMEOUT, "TIMEOUT" },
    { USMP_ERR_PEER_TIMEOUT, "PEER_TIMEOUT" },
    { USMP_ERR_CRYPTO, "CRYPTO" },
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
