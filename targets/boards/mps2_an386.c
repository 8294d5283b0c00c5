/*
 * mps2_an386.c - Cortex-M4 on QEMU's mps2-an386 (the Arm MPS2 board with
 * the AN386 FPGA image). Output and exit go through Arm semihosting
 * (picolibc's libsemihost); instructions are counted with the CMSDK APB
 * timer 0, clocked at 25 MHz: under -icount shift=0 one tick is 40
 * instructions.
 */
#include "board.h"

const char board_name[] = "cortex-m4";

/* CMSDK APB timer 0 (ARM DDI 0479, "APB timer"): a 32-bit down counter. */
#define TIMER0_BASE           0x40000000u
#define TIMER_CTRL            (*(volatile uint32_t *)(TIMER0_BASE + 0x00u))
#define TIMER_VALUE           (*(volatile uint32_t *)(TIMER0_BASE + 0x04u))
#define TIMER_RELOAD          (*(volatile uint32_t *)(TIMER0_BASE + 0x08u))
#define TIMER_CTRL_ENABLE     1u
#define INSTRUCTIONS_PER_TICK 40u /* 1 GHz of instructions / 25 MHz */

/* Ticks are accumulated across wraps of the 32-bit counter (every 171 G
 * instructions; a run is far shorter, but the sum costs nothing). */
static uint32_t last_value;
static uint64_t ticks;

void board_init(void)
{
    TIMER_CTRL = 0;
    TIMER_RELOAD = 0xFFFFFFFFu;
    TIMER_VALUE = 0xFFFFFFFFu;
    TIMER_CTRL = TIMER_CTRL_ENABLE;
    last_value = TIMER_VALUE;
    ticks = 0;
}

uint64_t board_instructions(void)
{
    uint32_t now = TIMER_VALUE;

    ticks += (uint32_t)(last_value - now); /* down counter */
    last_value = now;
    return ticks * INSTRUCTIONS_PER_TICK;
}

uint32_t board_counter_resolution(void)
{
    return INSTRUCTIONS_PER_TICK;
}

void board_known_loop(uint32_t iterations)
{
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(iterations) : : "cc");
}
