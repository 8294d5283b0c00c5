/*
 * xtensa_sim.c - Xtensa lx106 (the ESP8266's core: call0 ABI, no 32x32->64
 * multiply) on QEMU's `sim` machine. Debian has no ESP32 LX6/LX7 toolchain
 * or machine: this is the nearest Xtensa that Debian can build and run, not
 * an ESP32.
 *
 * Output and exit go through the simulator's SIMCALL semihosting
 * (QEMU -semihosting); picolibc for lx106 has no semihosting library, so
 * stdout is a picolibc stream written here. Instructions are counted with
 * the CCOUNT special register. QEMU advances CCOUNT with virtual time at the
 * core's configured clock, 40 MHz for lx106: under -icount shift=0 (one
 * instruction per nanosecond) that is one step per 25 instructions, which
 * the known loop of target.c confirms at every start.
 */
#include "board.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

const char board_name[] = "xtensa-lx106";

/* SIMCALL requests (QEMU target/xtensa/xtensa-semi.c): a2 = request,
 * a3.. = arguments, result in a2. */
#define SIM_EXIT   1
#define SIM_WRITE  4
#define SIM_STDOUT 1

static int simcall(int request, int a, int b, int c)
{
    register int a2 __asm__("a2") = request;
    register int a3 __asm__("a3") = a;
    register int a4 __asm__("a4") = b;
    register int a5 __asm__("a5") = c;

    __asm__ volatile("simcall" : "+r"(a2) : "r"(a3), "r"(a4), "r"(a5) : "memory");
    return a2;
}

static int sim_putc(char c, FILE *file)
{
    (void)file;
    simcall(SIM_WRITE, SIM_STDOUT, (int)(uintptr_t)&c, 1);
    return (unsigned char)c;
}

static FILE sim_stdout = FDEV_SETUP_STREAM(sim_putc, NULL, NULL, _FDEV_SETUP_WRITE);
FILE *const stdout = &sim_stdout;

void _exit(int status)
{
    for (;;) {
        simcall(SIM_EXIT, status, 0, 0);
    }
}

#define INSTRUCTIONS_PER_CCOUNT 25u /* 1 GHz of instructions / 40 MHz */

static uint32_t last_ccount;
static uint64_t steps;

static uint32_t ccount(void)
{
    uint32_t v;

    __asm__ volatile("rsr %0, ccount" : "=r"(v));
    return v;
}

void board_init(void)
{
    last_ccount = ccount();
    steps = 0;
}

uint64_t board_instructions(void)
{
    uint32_t now = ccount();

    /* CCOUNT wraps every 2^32 steps: accumulate the differences. */
    steps += (uint32_t)(now - last_ccount);
    last_ccount = now;
    return steps * INSTRUCTIONS_PER_CCOUNT;
}

uint32_t board_counter_resolution(void)
{
    return INSTRUCTIONS_PER_CCOUNT;
}

void board_known_loop(uint32_t iterations)
{
    __asm__ volatile("1: addi %0, %0, -1\n\tbnez %0, 1b" : "+r"(iterations));
}

/* QEMU's sim machine starts at the core's reset vector (0x50000000 for
 * lx106), not at the ELF entry, and picolibc's _start expects a stack: the
 * .ResetVector.text section (placed at the vector by the linker script
 * targets/run.py derives from picolibc's) sets a1 to the top of the stack
 * and jumps to _start. */
__asm__(".section .ResetVector.text, \"ax\"\n"
        ".global usmp_reset_vector\n"
        "usmp_reset_vector:\n"
        "    j 1f\n"
        "    .align 4\n"
        "2:  .word _start\n"
        "3:  .word __stack\n"
        "1:  l32r a1, 3b\n"
        "    l32r a0, 2b\n"
        "    jx a0\n"
        ".previous\n");
