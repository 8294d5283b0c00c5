/*
 * usmp_error.c - names and descriptions of the result codes.
 */
#include "usmp_errors.h"

#include <stddef.h>

#include "usmp_options.h"

/* With USMP_ERROR_TEXT off the sentences are not compiled in at all, so a
 * small image keeps only the names. */
#if USMP_ERROR_TEXT
#define TEXT(s) , s
#else
#define TEXT(s)
#endif

typedef struct {
    int code;
    const char *name;        /* the spec's condition name */
#if USMP_ERROR_TEXT
    const char *description;
#endif
} error_info_t;

static const error_info_t errors[] = {
    { USMP_OK, "OK" TEXT("success") },
    { USMP_ERR_ARG, "ARG" TEXT("invalid argument") },
    { USMP_ERR_STATE, "STATE" TEXT("call not allowed in the current state") },
    { USMP_ERR_BUFFER, "BUFFER" TEXT("buffer too small") },
    { USMP_ERR_PSK, "PSK" TEXT("PSK must be 16 to 64 bytes") },
    { USMP_ERR_MESSAGE_TOO_LARGE, "MESSAGE_TOO_LARGE" TEXT("message larger than the peer accepts") },
    { USMP_ERR_WOULD_BLOCK, "WOULD_BLOCK" TEXT("no message within the timeout, or output pending") },
    { USMP_ERR_MALFORMED, "MALFORMED" TEXT("malformed frame from the peer") },
    { USMP_ERR_UNEXPECTED, "UNEXPECTED" TEXT("frame not allowed in this state") },
    { USMP_ERR_UNSUPPORTED_VERSION, "UNSUPPORTED_VERSION" TEXT("no common protocol version") },
    { USMP_ERR_UNSUPPORTED_SUITE, "UNSUPPORTED_SUITE" TEXT("no common cipher suite") },
    { USMP_ERR_AUTH_FAILED, "AUTH_FAILED" TEXT("authentication failed: wrong PSK, unknown device or tampered handshake") },
    { USMP_ERR_BAD_KEY, "BAD_KEY" TEXT("peer sent a low-order X25519 key") },
    { USMP_ERR_BUSY, "BUSY" TEXT("server busy") },
    { USMP_ERR_TOO_LARGE, "TOO_LARGE" TEXT("record or message over the announced limit") },
    { USMP_ERR_BAD_RECORD, "BAD_RECORD" TEXT("record failed authentication") },
    { USMP_ERR_KEY_LIMIT, "KEY_LIMIT" TEXT("key usage limit reached") },
    { USMP_ERR_REPLAY, "REPLAY" TEXT("replayed or too old record") },
    { USMP_ERR_UNKNOWN_SESSION, "UNKNOWN_SESSION" TEXT("record for another session") },
    { USMP_ERR_PEER_ERROR, "PEER_ERROR" TEXT("peer reported an error") },
    { USMP_ERR_PEER_CLOSED, "PEER_CLOSED" TEXT("peer closed the session") },
    { USMP_ERR_TRANSPORT_CLOSED, "TRANSPORT_CLOSED" TEXT("connection closed without BYE") },
    { USMP_ERR_TRANSPORT, "TRANSPORT" TEXT("transport failure") },
    { USMP_ERR_TIMEOUT, "TIMEOUT" TEXT("handshake timed out") },
    { USMP_ERR_PEER_TIMEOUT, "PEER_TIMEOUT" TEXT("peer stopped answering") },
    { USMP_ERR_CRYPTO, "CRYPTO" TEXT("crypto backend failure") },
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
#if USMP_ERROR_TEXT
    return info != NULL ? info->description : "unknown error";
#else
    return info != NULL ? info->name : "UNKNOWN";
#endif
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
