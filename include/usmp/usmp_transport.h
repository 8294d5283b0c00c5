/*
 * usmp_transport.h - how the blocking API moves bytes.
 *
 * A transport is five function pointers and a context. USMP provides TCP
 * (transports/usmp_tcp.c, on POSIX sockets and on lwIP); a new link (a
 * UART, a radio) is five functions. Stream transports (TCP) may return any
 * number of bytes from recv; datagram transports set `datagram` and return
 * exactly one datagram per recv.
 */
#ifndef USMP_TRANSPORT_H
#define USMP_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* State of the built-in socket transports, kept inside the transport
 * struct so that one init call is all the setup they need. */
typedef struct {
    int fd;                      /* -1 when not connected */
    uint16_t port;
    uint32_t connect_timeout_ms;
    const char *host;            /* must stay valid: used again on reconnect */
} usmp_socket_state_t;

typedef struct usmp_transport {
    /* Sends up to len bytes. Returns the number sent (a stream may send
     * fewer; 0 means "try again"), or a negative USMP_ERR_* (TRANSPORT). */
    int (*send)(void *ctx, const uint8_t *data, size_t len);

    /* Waits at most timeout_ms (0: do not wait) for data and returns the
     * number of bytes read (> 0), 0 on timeout, USMP_ERR_TRANSPORT_CLOSED
     * when the peer closed the connection, or USMP_ERR_TRANSPORT. */
    int (*recv)(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms);

    /* Closes the connection. Safe to call when it is already closed. */
    void (*close)(void *ctx);

    /* Closes any connection and opens a new one to the same peer. The
     * blocking API calls it for the first connect too. USMP_OK or
     * USMP_ERR_TRANSPORT / USMP_ERR_TIMEOUT. */
    int (*reconnect)(void *ctx);

    /* > 0 when recv would return data without waiting, 0 when not,
     * negative on error. */
    int (*available)(void *ctx);

    void *ctx;           /* handed to the five functions */
    uint8_t datagram;    /* 1: each recv returns one whole datagram */
    union {
        usmp_socket_state_t socket;
    } builtin;           /* state of the built-in transports */
} usmp_transport_t;

/* TCP client transport to host (a name or an address) and port. Nothing is
 * connected until usmp_connect. The host string must stay valid. Connects
 * time out after 5000 ms (usmp_tcp_transport_set_connect_timeout). */
int usmp_tcp_transport_init(usmp_transport_t *transport, const char *host, uint16_t port);
void usmp_tcp_transport_set_connect_timeout(usmp_transport_t *transport, uint32_t timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* USMP_TRANSPORT_H */
