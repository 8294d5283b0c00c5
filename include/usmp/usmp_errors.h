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

enum {
    USMP_OK = 0,

    /* local misuse */
    USMP_ERR_ARG = -1,              /* NULL pointer, zero or bad length, bad option */
    USMP_ERR_STATE = -2,            /* call not allowed in the current state */
    USMP_ERR_BUFFER = -3,           /* caller's buffer too small; nothing is lost */
    USMP_ERR_PSK = -4,              /* PSK shorter than 16 or longer than 64 bytes */
    USMP_ERR_MESSAGE_TOO_LARGE = -5,/* message over the peer's max_message; not sent */
    USMP_ERR_WOULD_BLOCK = -6,      /* no message within the timeout / output pending */

    /* remote protocol violations: -(16 + wire code) */
    USMP_ERR_MALFORMED = -17,          /* 0x01 */
    USMP_ERR_UNEXPECTED = -18,         /* 0x02 */
    USMP_ERR_UNSUPPORTED_VERSION = -19,/* 0x03 */
    USMP_ERR_UNSUPPORTED_SUITE = -20,  /* 0x04 */
    USMP_ERR_AUTH_FAILED = -21,        /* 0x05: a MAC this side checked is wrong */
    USMP_ERR_BAD_KEY = -22,            /* 0x06: all-zero X25519 result */
    USMP_ERR_BUSY = -23,               /* 0x07 */
    USMP_ERR_TOO_LARGE = -24,          /* 0x08: over our announced limit */
    USMP_ERR_BAD_RECORD = -25,         /* 0x09: record tag does not verify */
    USMP_ERR_KEY_LIMIT = -26,          /* 0x0A: key usage limit, either direction */
    USMP_ERR_REPLAY = -40,             /* datagram record seen or too old */
    USMP_ERR_UNKNOWN_SESSION = -41,    /* datagram record for another session */
    USMP_ERR_PEER_ERROR = -42,         /* the peer sent ERROR; see usmp_peer_code */
    USMP_ERR_PEER_CLOSED = -43,        /* the peer sent BYE; see usmp_engine_peer_code */

    /* transport and timers */
    USMP_ERR_TRANSPORT_CLOSED = -48,   /* stream ended without BYE (possible truncation) */
    USMP_ERR_TRANSPORT = -49,          /* send/recv/connect failed */
    USMP_ERR_TIMEOUT = -50,            /* handshake did not finish in time */
    USMP_ERR_PEER_TIMEOUT = -51,       /* no answer to PING within the deadline */

    /* internal */
    USMP_ERR_CRYPTO = -64              /* the crypto backend failed */
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

#ifdef __cplusplus
}
#endif

#endif /* USMP_ERRORS_H */
