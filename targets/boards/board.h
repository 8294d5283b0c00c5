/*
 * board.h - what the emulated-target firmware needs from a board: an
 * instruction counter, a loop of known length to check it against, the
 * stack pointer, and text output (stdout, through picolibc's stdio).
 *
 * Conventions:
 *  - Every board runs under QEMU with `-icount shift=0`, which retires one
 *    instruction per nanosecond of virtual time, so a clock counter is an
 *    instruction counter: mps2-an386's CMSDK timer (25 MHz: one tick per
 *    40 instructions), rv32 virt's instret CSR, the Xtensa sim's CCOUNT
 *    (40 MHz for lx106: one step per 25 instructions).
 *  - board_instructions() is monotonic and 64-bit; its resolution is
 *    board_counter_resolution() instructions.
 *  - The firmware ends with exit(status): semihosting's exit carries the
 *    status to QEMU's exit code, so a failed check fails the run.
 */
#ifndef USMP_TARGET_BOARD_H
#define USMP_TARGET_BOARD_H

#include <stdint.h>

/* The board's name as the reports print it, e.g. "cortex-m4". */
extern const char board_name[];

/* Starts the instruction counter. Called once, first thing in main. */
void board_init(void);

/* Instructions retired since board_init, to board_counter_resolution(). */
uint64_t board_instructions(void);

/* Instructions per step of the counter (40 on mps2, 25 on the lx106 sim,
 * 1 on rv32 virt). */
uint32_t board_counter_resolution(void);

/* Runs a loop of exactly 2 * iterations instructions (a decrement and a
 * branch per iteration), to check the counter against. */
void board_known_loop(uint32_t iterations);

/* The current stack pointer. */
static inline uintptr_t board_sp(void)
{
    uintptr_t sp;
#if defined(__arm__)
    __asm__ volatile("mov %0, sp" : "=r"(sp));
#elif defined(__riscv)
    __asm__ volatile("mv %0, sp" : "=r"(sp));
#elif defined(__xtensa__)
    __asm__ volatile("mov %0, a1" : "=r"(sp));
#else
#error "board_sp: unknown architecture"
#endif
    return sp;
}

#endif /* USMP_TARGET_BOARD_H */
