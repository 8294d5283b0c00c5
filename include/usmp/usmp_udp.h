/*
 * usmp_udp.h - the UDP client transport (transports/usmp_udp.c): BSD
 * sockets on POSIX, lwIP's socket API on ESP32. A datagram transport: the
 * device API runs datagram mode over it (needs USMP_DATAGRAM).
 *
 *     usmp_transport_t transport;
 *     usmp_udp_transport_init(&transport, "192.168.1.100", 9000);
 */
#ifndef USMP_UDP_H
#define USMP_UDP_H

#include <stdint.h>

#include "usmp_options.h"
#include "usmp_transport.h"

#if !USMP_DATAGRAM
#error "the UDP and UART transports need datagram mode: build with USMP_DATAGRAM=1 (usmp_options.h)"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The UDP transport's state, in usmp_transport_t.state. Private. */
typedef struct {
    int fd; /* -1 when not open */
    uint16_t port;
    const char *host; /* must stay valid: resolved again on reconnect */
} usmp_udp_state_t;
USMP_TRANSPORT_STATE_FITS(usmp_udp_state_t);

/* UDP transport to host (a name or an address) and port. The socket is
 * connected to that address, so datagrams from anyone else are never
 * read. Nothing is opened until usmp_connect; the host string must stay
 * valid. A datagram longer than the receive buffer is dropped
 * (USMP_ERR_TOO_LARGE from recv). Errors: USMP_ERR_ARG. */
int usmp_udp_transport_init(usmp_transport_t *transport, const char *host, uint16_t port);

#ifdef __cplusplus
}
#endif

#endif /* USMP_UDP_H */
