/*
 * usmp_errors.h - USMP result codes.
 *
 * Every USMP function returns USMP_OK (0) or a negative code from this
 * list (usmp_recv also returns positive byte counts). The codes fall in four
 * classes, so a caller can tell whose fault a failure is:
 *
 *   -1  .. -15   local misuse: a bad argument or a call in the wrong state.
 *                Nothing was sent and the session is unchanged.
 *   -16 .. -47   the peer (or an attacker) broke the protocol. The code is
 *                -(16 + the spec's one-byte wire code) where one exists
 *                (spec/protocol.md section 9.1).
 *   -48 .. -63   the transport failed or a timer ran out.
 *   -64 ..       internal failure (the crypto library, the random source).
 */
#ifndef USMP_ERRORS_H
#define USMP_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The one list of result codes, X(NAME, value, sentence): the enum below,
 * usmp_error_name (usmp_error.c) and usmp_strerror (usmp_strerror.c) are
 * generated from it, so they cannot drift apart. tests/spec/test_errors.py
 * holds it to the spec's wire codes and to Python's Condition list. NAME is
 * the spec's condition name; the constant is USMP_ERR_NAME.
 */
#define USMP_ERROR_LIST(X)                                                                      \
    /* local misuse */                                                                          \
    X(ARG, -1, "invalid argument")                                                              \
    X(STATE, -2, "call not allowed in the current state")                                       \
    X(BUFFER, -3, "buffer too small") /* nothing is lost */                                     \
    X(PSK, -4, "PSK must be 16 to 64 bytes")                                                    \
    X(MESSAGE_TOO_LARGE, -5, "message larger than the peer accepts") /* not sent */             \
    X(WOULD_BLOCK, -6, "no message within the timeout, or output pending")                      \
    /* remote protocol violations: -(16 + wire code), see usmp_error_from_wire */               \
    X(MALFORMED, -17, "malformed frame from the peer")                                          \
    X(UNEXPECTED, -18, "frame not allowed in this state")                                       \
    X(UNSUPPORTED_VERSION, -19, "no common protocol version")                                   \
    X(UNSUPPORTED_SUITE, -20, "no common cipher suite")                                         \
    X(AUTH_FAILED, -21, "authentication failed: a MAC this side checked is wrong "              \
                        "(wrong PSK, unknown device or tampered handshake)")                    \
    X(BAD_KEY, -22, "peer sent a low-order X25519 key") /* all-zero X25519 result */            \
    X(BUSY, -23, "server busy")                                                                 \
    X(TOO_LARGE, -24, "record or message over the announced limit") /* ours */                  \
    X(BAD_RECORD, -25, "record failed authentication") /* its tag does not verify */            \
    X(KEY_LIMIT, -26, "key usage limit reached") /* either direction */                         \
    X(REPLAY, -40, "replayed or too old record") /* datagram */                                 \
    X(UNKNOWN_SESSION, -41, "record for another session") /* datagram */                        \
    X(PEER_ERROR, -42, "peer reported an error (unauthenticated; its code: usmp_peer_code)")    \
    X(PEER_CLOSED, -43, "peer closed the session") /* BYE; see usmp_engine_peer_code */         \
    /* transport and timers */                                                                  \
    X(TRANSPORT_CLOSED, -48, "connection closed without BYE") /* possible truncation */         \
    X(TRANSPORT, -49, "transport failure") /* send/recv/connect failed */                       \
    X(TIMEOUT, -50, "handshake timed out")                                                      \
    X(PEER_TIMEOUT, -51, "peer stopped answering") /* no answer to PING in time */              \
    /* internal */                                                                              \
    X(CRYPTO, -64, "crypto backend failure")

#define USMP_ERROR_ENUM_ENTRY_(name, value, text) USMP_ERR_##name = value,

enum {
    USMP_OK = 0,
    USMP_ERROR_LIST(USMP_ERROR_ENUM_ENTRY_)
};

typedef enum {
    USMP_ERROR_CLASS_NONE = 0,
    USMP_ERROR_CLASS_LOCAL,
    USMP_ERROR_CLASS_REMOTE,
    USMP_ERROR_CLASS_TRANSPORT,
    USMP_ERROR_CLASS_INTERNAL
} usmp_error_class_t;

/* A short English description of a code ("authentication failed: wrong
 * PSK, unknown device or tampered handshake"). Never NULL. */
const char *usmp_strerror(int code);

/* The spec's condition name of a code ("AUTH_FAILED"), as used in the test
 * vectors; "OK" for 0 and "UNKNOWN" for codes USMP does not define. */
const char *usmp_error_name(int code);

/* Which class a code belongs to. */
usmp_error_class_t usmp_error_class(int code);

/* The wire code of a result (spec 9.1): -(16 + code) for the conditions
 * that have one (USMP_ERR_MALFORMED .. USMP_ERR_KEY_LIMIT, codes 0x01 to
 * 0x0A), else 0 (USMP_CODE_NONE): the result never goes on the wire. */
unsigned char usmp_error_to_wire(int code);

/* The result a wire code stands for when this side detects it: the
 * inverse of usmp_error_to_wire for 0x01 .. 0x0A; USMP_OK for every other
 * code (NONE, the BYE-only reasons 0x0B .. 0x0E, and undefined ones). */
int usmp_error_from_wire(unsigned char wire_code);

#ifdef __cplusplus
}
#endif

#endif /* USMP_ERRORS_H */
