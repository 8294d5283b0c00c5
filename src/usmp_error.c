/*
 * usmp_error.c - names and descriptions of the result codes.
 */
#include "usmp_errors.h"

#include <stddef.h>

typedef struct {
    int code;
    const char *name;        /* the spec's condition name */
    const char *description;
} error_info_t;

static const error_info_t errors[] = {
    { USMP_OK, "OK", "success" },
    { USMP_ERR_ARG, "ARG", "invalid argument" },
    { USMP_ERR_STATE, "STATE", "call not allowed in the current state" },
    { USMP_ERR_BUFFER, "BUFFER", "buffer too small" },
    { USMP_ERR_PSK, "PSK", "PSK must be 16 to 64 bytes" },
    { USMP_ERR_MESSAGE_TOO_LARGE, "MESSAGE_TOO_LARGE", "message larger than the peer accepts" },
    { USMP_ERR_WOULD_BLOCK, "WOULD_BLOCK", "no message within the timeout, or output pending" },
    { USMP_ERR_MALFORMED, "MALFORMED", "malformed frame from the peer" },
    { USMP_ERR_UNEXPECTED, "UNEXPECTED", "frame not allowed in this state" },
    { USMP_ERR_UNSUPPORTED_VERSION, "UNSUPPORTED_VERSION", "no common protocol version" },
    { USMP_ERR_UNSUPPORTED_SUITE, "UNSUPPORTED_SUITE", "no common cipher suite" },
    { USMP_ERR_AUTH_FAILED, "AUTH_FAILED",
      "authentication failed: wrong PSK, unknown device or tampered handshake" },
    { USMP_ERR_BAD_KEY, "BAD_KEY", "peer sent a low-order X25519 key" },
    { USMP_ERR_BUSY, "BUSY", "server busy" },
    { USMP_ERR_TOO_LARGE, "TOO_LARGE", "record or message over the announced limit" },
    { USMP_ERR_BAD_RECORD, "BAD_RECORD", "record failed authentication" },
    { USMP_ERR_KEY_LIMIT, "KEY_LIMIT", "key usage limit reached" },
    { USMP_ERR_REPLAY, "REPLAY", "replayed or too old record" },
    { USMP_ERR_UNKNOWN_SESSION, "UNKNOWN_SESSION", "record for another session" },
    { USMP_ERR_PEER_ERROR, "PEER_ERROR", "peer reported an error" },
    { USMP_ERR_PEER_CLOSED, "PEER_CLOSED", "peer closed the session" },
    { USMP_ERR_TRANSPORT_CLOSED, "TRANSPORT_CLOSED", "connection closed without BYE" },
    { USMP_ERR_TRANSPORT, "TRANSPORT", "transport failure" },
    { USMP_ERR_TIMEOUT, "TIMEOUT", "handshake timed out" },
    { USMP_ERR_PEER_TIMEOUT, "PEER_TIMEOUT", "peer stopped answering" },
    { USMP_ERR_CRYPTO, "CRYPTO", "crypto backend failure" },
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

const char *usmp_strerror(int code)
{
    const error_info_t *info = find(code);
    return info != NULL ? info->description : "unknown error";
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
