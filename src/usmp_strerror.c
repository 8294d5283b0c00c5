/*
 * usmp_strerror.c - an English sentence for each result code. A separate
 * file so that devices that never call usmp_strerror do not link it; with
 * USMP_ERROR_TEXT 0 it returns the condition name instead.
 */
#include "usmp_errors.h"
#include "usmp_options.h"

#include <stddef.h>

#if USMP_ERROR_TEXT
typedef struct {
    int code;
    const char *text;
} error_text_t;

static const error_text_t texts[] = {
    { USMP_OK, "success" },
    { USMP_ERR_ARG, "invalid argument" },
    { USMP_ERR_STATE, "call not allowed in the current state" },
    { USMP_ERR_BUFFER, "buffer too small" },
    { USMP_ERR_PSK, "PSK must be 16 to 64 bytes" },
    { USMP_ERR_MESSAGE_TOO_LARGE, "message larger than the peer accepts" },
    { USMP_ERR_WOULD_BLOCK, "no message within the timeout, or output pending" },
    { USMP_ERR_MALFORMED, "malformed frame from the peer" },
    { USMP_ERR_UNEXPECTED, "frame not allowed in this state" },
    { USMP_ERR_UNSUPPORTED_VERSION, "no common protocol version" },
    { USMP_ERR_UNSUPPORTED_SUITE, "no common cipher suite" },
    { USMP_ERR_AUTH_FAILED, "authentication failed: a MAC this side checked is wrong (wrong PSK, unknown device or tampered handshake)" },
    { USMP_ERR_BAD_KEY, "peer sent a low-order X25519 key" },
    { USMP_ERR_BUSY, "server busy" },
    { USMP_ERR_TOO_LARGE, "record or message over the announced limit" },
    { USMP_ERR_BAD_RECORD, "record failed authentication" },
    { USMP_ERR_KEY_LIMIT, "key usage limit reached" },
    { USMP_ERR_REPLAY, "replayed or too old record" },
    { USMP_ERR_UNKNOWN_SESSION, "record for another session" },
    { USMP_ERR_PEER_ERROR, "peer reported an error (unauthenticated; its code: usmp_peer_code)" },
    { USMP_ERR_PEER_CLOSED, "peer closed the session" },
    { USMP_ERR_TRANSPORT_CLOSED, "connection closed without BYE" },
    { USMP_ERR_TRANSPORT, "transport failure" },
    { USMP_ERR_TIMEOUT, "handshake timed out" },
    { USMP_ERR_PEER_TIMEOUT, "peer stopped answering" },
    { USMP_ERR_CRYPTO, "crypto backend failure" },
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
