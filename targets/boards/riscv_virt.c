/*
 * riscv_virt.c - rv32imc on QEMU's virt machine (the ISA of the ESP32-C3's
 * core; not an ESP32-C3). Output and exit go through RISC-V semihosting
 * (picolibc's libsemihost); instructions are counted with the instret CSR,
 * which QEMU derives from its instruction count under -icount.
 */
#include "board.h"

const char board_name[] = "rv32imc";

void board_init(void)
{
}

uint64_t board_instructions(void)
{
    uint32_t hi, lo, hi2;

    /* instreth and instret are read separately: retry on a carry. The CSR
     * instructions are the Zicsr extension, which -march=rv32imc leaves out
     * of the assembler's view since binutils 2.38. */
    do {
        __asm__ volatile(".option push\n\t.option arch, +zicsr\n\t"
                         "csrr %0, instreth\n\tcsrr %1, instret\n\tcsrr %2, instreth\n\t"
                         ".option pop"
                         : "=r"(hi), "=r"(lo), "=r"(hi2));
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
}

uint32_t board_counter_resolution(void)
{
    return 1u;
}

void board_known_loop(uint32_t iterations)
{
    __asm__ volatile("1: addi %0, %0, -1\n\tbnez %0, 1b" : "+r"(iterations));
}
