/*
 * usmp_tcp.h - the TCP client transport (transports/usmp_tcp.c): BSD
 * sockets on POSIX, lwIP's socket API on ESP32. A stream transport.
 *
 *     usmp_transport_t transport;
 *     usmp_tcp_transport_init(&transport, "192.168.1.100", 9000);
 */
#ifndef USMP_TCP_H
#define USMP_TCP_H

#include <stdint.h>

#include "usmp_transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The TCP transport's state, kept in usmp_transport_t.state so that one
 * init call is all the setup it needs. Private: use the functions below. */
typedef struct {
    int fd; /* -1 when not connected */
    uint16_t port;
    uint32_t connect_timeout_ms;
    const char *host; /* must stay valid: used again on reconnect */
} usmp_tcp_state_t;
USMP_TRANSPORT_STATE_FITS(usmp_tcp_state_t);

/* TCP client transport to host (a name or an address) and port. Nothing is
 * connected until usmp_connect. The host string must stay valid. Connects
 * time out after 5000 ms (usmp_tcp_transport_set_connect_timeout).
 * Errors: USMP_ERR_ARG. */
int usmp_tcp_transport_init(usmp_transport_t *transport, const char *host, uint16_t port);
void usmp_tcp_transport_set_connect_timeout(usmp_transport_t *transport, uint32_t timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* USMP_TCP_H */
