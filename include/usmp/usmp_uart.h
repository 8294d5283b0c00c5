/*
 * usmp_uart.h - the UART transport: COBS frames with a 0x00 delimiter over
 * a serial line (spec/protocol.md section 10). A datagram transport: the
 * device API runs datagram mode over it (needs USMP_DATAGRAM).
 *
 *     usmp_transport_t transport;
 *     usmp_uart_transport_init(&transport, "/dev/ttyUSB0", 115200);  // POSIX
 *     usmp_uart_transport_init(&transport, "1", 115200);            // ESP32: UART_NUM_1
 *
 * On POSIX (transports/usmp_uart_posix.c) path names a terminal device,
 * set raw 8N1 at baud. On ESP32 (ports/esp32/usmp/usmp_uart_esp32.c) path
 * is the UART number ("0", "1", "2") driven through ESP-IDF's uart_driver;
 * the pins are the board's defaults unless the application calls
 * uart_set_pin before usmp_connect.
 *
 * Receiving: bytes are decoded as they arrive (usmp_cobs_stream.h) straight
 * into the caller's buffer, so the transport holds no frame buffer of its
 * own. Empty frames are skipped; noise on the line becomes part of a frame
 * that is then dropped, never delivered: a
 * corrupt or oversize frame (spec 10) is dropped (recv: USMP_ERR_MALFORMED),
 * one that decodes to more than the buffer too (USMP_ERR_TOO_LARGE); none
 * ends the session.
 */
#ifndef USMP_UART_H
#define USMP_UART_H

#include <stdint.h>

#include "usmp_cobs_stream.h"
#include "usmp_options.h"
#include "usmp_transport.h"

#if !USMP_DATAGRAM
#error "the UDP and UART transports need datagram mode: build with USMP_DATAGRAM=1 (usmp_options.h)"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes read from the line at a time; what follows a frame's delimiter
 * waits here for the next recv. */
#ifndef USMP_UART_CHUNK_BYTES
#define USMP_UART_CHUNK_BYTES 16
#endif

/* The UART transport's state, in usmp_transport_t.state. Private. */
typedef struct {
    const char *path; /* must stay valid: opened again on reconnect */
    uint32_t baud;
    int fd; /* POSIX descriptor or ESP32 UART number; -1: closed */
    usmp_cobs_stream_t deframer;
    uint8_t chunk[USMP_UART_CHUNK_BYTES];
    uint8_t chunk_len, chunk_off;
} usmp_uart_state_t;
USMP_TRANSPORT_STATE_FITS(usmp_uart_state_t);

/* UART transport on path at baud (see above). Nothing is opened until
 * usmp_connect; path must stay valid. Errors: USMP_ERR_ARG (NULL or empty
 * path, baud 0 or one the platform cannot set, reported at connect). */
int usmp_uart_transport_init(usmp_transport_t *transport, const char *path, uint32_t baud);

#ifdef __cplusplus
}
#endif

#endif /* USMP_UART_H */
