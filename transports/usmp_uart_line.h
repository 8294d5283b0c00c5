/*
 * usmp_uart_line.h - the platform half of the UART transport: open, read,
 * write and close a serial line. transports/usmp_uart.c does the framing
 * (COBS, spec section 10) on top; transports/usmp_uart_posix.c (termios)
 * and ports/esp32/usmp/usmp_uart_esp32.c (ESP-IDF's uart_driver) are the
 * two implementations. Private to the UART transport.
 *
 * A line is named by an int: a POSIX descriptor or an ESP32 UART number.
 */
#ifndef USMP_UART_LINE_H
#define USMP_UART_LINE_H

#include <stddef.h>
#include <stdint.h>

/* Opens path raw, 8N1, at baud; stale input is discarded. Returns the line
 * (>= 0), USMP_ERR_ARG for a baud rate the platform cannot set, or
 * USMP_ERR_TRANSPORT. */
int usmp_uart_line_open(const char *path, uint32_t baud);

void usmp_uart_line_close(int line);

/* Waits at most timeout_ms for bytes and reads up to cap of them. Returns
 * the count (> 0), 0 on timeout, or USMP_ERR_TRANSPORT. */
int usmp_uart_line_read(int line, uint8_t *buf, size_t cap, uint32_t timeout_ms);

/* Writes all len bytes, waiting at most timeout_ms for room. Returns
 * USMP_OK, USMP_ERR_TIMEOUT or USMP_ERR_TRANSPORT. */
int usmp_uart_line_write(int line, const uint8_t *data, size_t len, uint32_t timeout_ms);

/* > 0 when bytes wait to be read, 0 when none, USMP_ERR_TRANSPORT. */
int usmp_uart_line_pending(int line);

#endif /* USMP_UART_LINE_H */
