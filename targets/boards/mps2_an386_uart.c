/*
 * mps2_an386_uart.c - the platform half of the UART transport
 * (transports/usmp_uart_line.h) on mps2-an386: CMSDK APB UART0, which QEMU
 * connects to its first `-serial` (or `-chardev ... -serial chardev:`).
 * The same seam as transports/usmp_uart_posix.c and the ESP32 driver;
 * polled, no interrupts. QEMU does not pace the line by BAUDDIV; a real
 * board's driver would.
 */
#include <stddef.h>

#include "uart_line_common.h"
#include "usmp_errors.h"
#include "usmp_uart_line.h"

/* CMSDK APB UART (ARM DDI 0479, "APB UART"): a one-byte buffer each way. */
#define UART0_BASE        0x40004000u
#define UART_DATA         (*(volatile uint32_t *)(UART0_BASE + 0x00u))
#define UART_STATE        (*(volatile uint32_t *)(UART0_BASE + 0x04u))
#define UART_CTRL         (*(volatile uint32_t *)(UART0_BASE + 0x08u))
#define UART_BAUDDIV      (*(volatile uint32_t *)(UART0_BASE + 0x10u))
#define UART_STATE_TXFULL 0x1u
#define UART_STATE_RXFULL 0x2u
#define UART_CTRL_TX_EN   0x1u
#define UART_CTRL_RX_EN   0x2u
#define UART_CLOCK_HZ     25000000u /* the AN386 peripheral clock */
#define UART_MIN_BAUDDIV  16u       /* the CMSDK UART's lower bound */

uint64_t uart_line_waited;

int usmp_uart_line_open(const char *path, uint32_t baud)
{
    uint32_t drained;

    if (!uart_line_is_ours(path)) {
        return USMP_ERR_TRANSPORT;
    }
    if (baud == 0 || UART_CLOCK_HZ / baud < UART_MIN_BAUDDIV) {
        return USMP_ERR_ARG;
    }
    UART_CTRL = 0;
    UART_BAUDDIV = UART_CLOCK_HZ / baud;
    UART_CTRL = UART_CTRL_TX_EN | UART_CTRL_RX_EN;
    /* Stale input waits in the one-byte buffer and in the host's queue
     * behind it: what arrives while draining is stale too. */
    for (drained = 0; drained < UART_LINE_DRAIN_MAX && (UART_STATE & UART_STATE_RXFULL);
         drained++) {
        (void)UART_DATA;
    }
    return UART_LINE_NUMBER;
}

void usmp_uart_line_close(int line)
{
    if (line == UART_LINE_NUMBER) {
        UART_CTRL = 0;
    }
}

int usmp_uart_line_read(int line, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    uint64_t waiting_since = board_instructions();
    uint32_t start = uart_line_millis();
    size_t n = 0;

    if (line != UART_LINE_NUMBER) {
        return USMP_ERR_TRANSPORT;
    }
    while (!(UART_STATE & UART_STATE_RXFULL)) {
        if (uart_line_millis() - start >= timeout_ms) {
            uart_line_waited += board_instructions() - waiting_since;
            return 0;
        }
    }
    uart_line_waited += board_instructions() - waiting_since;
    while (n < cap && (UART_STATE & UART_STATE_RXFULL)) {
        buf[n++] = (uint8_t)UART_DATA;
    }
    return (int)n;
}

int usmp_uart_line_write(int line, const uint8_t *data, size_t len, uint32_t timeout_ms)
{
    uint32_t start = uart_line_millis();
    size_t i;

    if (line != UART_LINE_NUMBER) {
        return USMP_ERR_TRANSPORT;
    }
    for (i = 0; i < len; i++) {
        while (UART_STATE & UART_STATE_TXFULL) {
            if (uart_line_millis() - start >= timeout_ms) {
                return USMP_ERR_TIMEOUT;
            }
        }
        UART_DATA = data[i];
    }
    return USMP_OK;
}

int usmp_uart_line_pending(int line)
{
    if (line != UART_LINE_NUMBER) {
        return USMP_ERR_TRANSPORT;
    }
    return (UART_STATE & UART_STATE_RXFULL) ? 1 : 0;
}
