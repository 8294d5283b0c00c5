/*
 * usmp_uart_esp32.c - a serial line on ESP32 through ESP-IDF's UART driver:
 * the platform half of the UART transport (transports/usmp_uart_line.h).
 *
 * The line's name is the UART number as text ("0", "1", "2"), so that
 * usmp_uart_transport_init keeps one signature on every platform. The
 * driver is installed at connect and deleted at close; its receive ring
 * buffer holds what arrives between two reads, so the transport reads a
 * few bytes at a time without losing any. Pins stay the board's defaults
 * unless the application calls uart_set_pin first.
 */
#include "usmp_options.h"

/* Datagram transports: nothing to compile without datagram mode. */
#if USMP_DATAGRAM

#include <stddef.h>
#include <stdint.h>

#include "driver/uart.h"
#include "freertos/FreeRTOS.h"

#include "usmp_errors.h"
#include "usmp_uart_line.h"

/* The driver's ring buffers: room for two of the longest frames the
 * device accepts (USMP_MAX_RECORD + 25, COBS-encoded, delimited) and at
 * least the driver's minimum. */
#define RX_RING_BYTES 2048
#define TX_RING_BYTES 1024

/* Milliseconds to ticks, rounding up so that a short wait still waits. */
static TickType_t ticks_of(uint32_t ms)
{
    TickType_t t = pdMS_TO_TICKS(ms);
    return (ms > 0 && t == 0) ? 1 : t;
}

int usmp_uart_line_open(const char *path, uint32_t baud)
{
    uart_config_t config = { 0 };
    int num = 0;

    if (path[0] < '0' || path[0] > '9' || path[1] != '\0') {
        return USMP_ERR_ARG;
    }
    num = path[0] - '0';
    if (num >= UART_NUM_MAX || baud > 5000000u) {
        return USMP_ERR_ARG;
    }
    config.baud_rate = (int)baud;
    config.data_bits = UART_DATA_8_BITS;
    config.parity = UART_PARITY_DISABLE;
    config.stop_bits = UART_STOP_BITS_1;
    config.flow_ctrl = UART_HW_FLOWCTRL_DISABLE;
    config.source_clk = UART_SCLK_DEFAULT;
    if (uart_driver_install((uart_port_t)num, RX_RING_BYTES, TX_RING_BYTES, 0, NULL, 0) != ESP_OK) {
        return USMP_ERR_TRANSPORT;
    }
    if (uart_param_config((uart_port_t)num, &config) != ESP_OK) {
        (void)uart_driver_delete((uart_port_t)num);
        return USMP_ERR_TRANSPORT;
    }
    (void)uart_flush_input((uart_port_t)num); /* what waited before this session */
    return num;
}

void usmp_uart_line_close(int line)
{
    (void)uart_driver_delete((uart_port_t)line);
}

int usmp_uart_line_read(int line, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    size_t waiting = 0;
    int n;

    /* Take what is there without waiting for a full buffer; wait for the
     * first byte only when nothing is. */
    if (uart_get_buffered_data_len((uart_port_t)line, &waiting) != ESP_OK) {
        return USMP_ERR_TRANSPORT;
    }
    if (waiting == 0) {
        waiting = 1;
    }
    n = uart_read_bytes((uart_port_t)line, buf, (uint32_t)(waiting < cap ? waiting : cap),
                        waiting > 1 ? 0 : ticks_of(timeout_ms));
    return n < 0 ? USMP_ERR_TRANSPORT : n;
}

int usmp_uart_line_write(int line, const uint8_t *data, size_t len, uint32_t timeout_ms)
{
    /* uart_write_bytes blocks until the bytes are in the TX ring buffer. */
    int n = uart_write_bytes((uart_port_t)line, data, len);
    (void)timeout_ms;
    return n == (int)len ? USMP_OK : USMP_ERR_TRANSPORT;
}

int usmp_uart_line_pending(int line)
{
    size_t waiting = 0;
    if (uart_get_buffered_data_len((uart_port_t)line, &waiting) != ESP_OK) {
        return USMP_ERR_TRANSPORT;
    }
    return waiting > 0 ? 1 : 0;
}

#else
typedef int usmp_no_datagram_transports; /* ISO C wants a declaration */
#endif /* USMP_DATAGRAM */
