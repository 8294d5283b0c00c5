/*
 * uart_line_common.h - what the two emulated boards' UART line drivers
 * (mps2_an386_uart.c, riscv_virt_uart.c) share: the line's name and the
 * clock their timeouts are measured on.
 *
 * Conventions:
 *  - A board has one UART for USMP, named "0" (usmp_uart_transport_init's
 *    path); the console stays on semihosting, so that line carries COBS
 *    frames only.
 *  - Time is the instruction counter: under `-icount shift=0` QEMU retires
 *    one instruction per nanosecond of virtual time, so a million
 *    instructions are a millisecond (board.h). A timeout is virtual time,
 *    which runs slower than the host's while QEMU spins in a wait loop: the
 *    host gateway always gets at least as long as the device asked for.
 */
#ifndef USMP_TARGET_UART_LINE_COMMON_H
#define USMP_TARGET_UART_LINE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "board.h"

#define UART_LINE_NUMBER       0
#define INSTRUCTIONS_PER_MILLI 1000000u

/* Instructions spent in the line driver's wait loops (and the port's
 * delay), so that a figure measured over the UART can leave out the time
 * the device only waited for the host. Defined by each line driver. */
extern uint64_t uart_line_waited;

/* The most stale bytes open() discards: a line that keeps talking cannot
 * hold it forever. */
#define UART_LINE_DRAIN_MAX 4096u

/* Milliseconds of virtual time since board_init. */
static inline uint32_t uart_line_millis(void)
{
    return (uint32_t)(board_instructions() / INSTRUCTIONS_PER_MILLI);
}

/* 1 when path names this board's USMP line ("0"). */
static inline int uart_line_is_ours(const char *path)
{
    return path != NULL && path[0] == '0' && path[1] == '\0';
}

#endif /* USMP_TARGET_UART_LINE_COMMON_H */
