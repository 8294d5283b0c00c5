/*
 * riscv_virt_uart.c - the platform half of the UART transport
 * (transports/usmp_uart_line.h) on QEMU's riscv32 virt machine: its
 * NS16550A at 0x10000000 (registers one byte apart), which QEMU connects
 * to its first `-serial`. The same seam as transports/usmp_uart_posix.c
 * and the ESP32 driver; polled, no interrupts.
 */
#include <stddef.h>

#include "uart_line_common.h"
#include "usmp_errors.h"
#include "usmp_uart_line.h"

#define UART_BASE        0x10000000u
#define UART_REG(offset) (*(volatile uint8_t *)(UART_BASE + (offset)))
#define UART_RBR         UART_REG(0u) /* read: receive buffer */
#define UART_THR         UART_REG(0u) /* write: transmit holding */
#define UART_DLL         UART_REG(0u) /* with LCR.DLAB: divisor, low byte */
#define UART_IER         UART_REG(1u)
#define UART_DLM         UART_REG(1u) /* with LCR.DLAB: divisor, high byte */
#define UART_FCR         UART_REG(2u)
#define UART_LCR         UART_REG(3u)
#define UART_MCR         UART_REG(4u)
#define UART_LSR         UART_REG(5u)
#define LCR_8N1          0x03u
#define LCR_DLAB         0x80u
#define FCR_FIFO_ON      0x01u
#define FCR_CLEAR_RX     0x02u
#define FCR_CLEAR_TX     0x04u
#define MCR_DTR_RTS      0x03u
#define LSR_DATA         0x01u
#define LSR_THR_EMPTY    0x20u
/* The clock virt's device tree gives its NS16550A: divisor = clock / (16 * baud).
 * QEMU does not pace the line by it; a real board's driver would. */
#define UART_CLOCK_HZ 3686400u

uint64_t uart_line_waited;

int usmp_uart_line_open(const char *path, uint32_t baud)
{
    uint32_t divisor, drained;

    if (!uart_line_is_ours(path)) {
        return USMP_ERR_TRANSPORT;
    }
    if (baud == 0 || (divisor = UART_CLOCK_HZ / (16u * baud)) == 0 || divisor > 0xFFFFu) {
        return USMP_ERR_ARG;
    }
    UART_IER = 0; /* polled */
    UART_LCR = LCR_DLAB;
    UART_DLL = (uint8_t)divisor;
    UART_DLM = (uint8_t)(divisor >> 8);
    UART_LCR = LCR_8N1;
    UART_MCR = MCR_DTR_RTS;
    /* The FIFOs on, and emptied: what waited before this session is stale. */
    UART_FCR = FCR_FIFO_ON | FCR_CLEAR_RX | FCR_CLEAR_TX;
    for (drained = 0; drained < UART_LINE_DRAIN_MAX && (UART_LSR & LSR_DATA); drained++) {
        (void)UART_RBR;
    }
    return UART_LINE_NUMBER;
}

void usmp_uart_line_close(int line)
{
    (void)line; /* nothing to release: the next open sets the line up again */
}

int usmp_uart_line_read(int line, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    uint64_t waiting_since = board_instructions();
    uint32_t start = uart_line_millis();
    size_t n = 0;

    if (line != UART_LINE_NUMBER) {
        return USMP_ERR_TRANSPORT;
    }
    while (!(UART_LSR & LSR_DATA)) {
        if (uart_line_millis() - start >= timeout_ms) {
            uart_line_waited += board_instructions() - waiting_since;
            return 0;
        }
    }
    uart_line_waited += board_instructions() - waiting_since;
    while (n < cap && (UART_LSR & LSR_DATA)) {
        buf[n++] = UART_RBR;
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
        while (!(UART_LSR & LSR_THR_EMPTY)) {
            if (uart_line_millis() - start >= timeout_ms) {
                return USMP_ERR_TIMEOUT;
            }
        }
        UART_THR = data[i];
    }
    return USMP_OK;
}

int usmp_uart_line_pending(int line)
{
    if (line != UART_LINE_NUMBER) {
        return USMP_ERR_TRANSPORT;
    }
    return (UART_LSR & LSR_DATA) ? 1 : 0;
}
