/*
 * target.h - what the firmware images share: checks that count
 * failures, the port hooks' scripted inputs, the instruction counter around
 * a call, painted-stack and heap high-water marks.
 *
 * Conventions:
 *  - Every check prints "FAIL <file>:<line>: <what>" when it fails and
 *    counts; target_finish() prints the summary line and exits with the
 *    number of failures capped at 1, so QEMU's exit code fails the run.
 *  - Report lines are "key value" pairs after a "RESULT" tag, one per
 *    figure, for targets/run.py to parse: never reword them casually.
 */
#ifndef USMP_TARGET_H
#define USMP_TARGET_H

#include <stddef.h>
#include <stdint.h>

#include "board.h"

extern unsigned target_failures;

void target_fail(const char *file, int line, const char *what);
#define TARGET_CHECK(cond, what)                                                                   \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            target_fail(__FILE__, __LINE__, (what));                                               \
        }                                                                                          \
    } while (0)

/* Starts the board, checks the instruction counter against a known loop,
 * and hands mbedTLS its static heap (no malloc on the device). */
void target_start(const char *image);

/* Prints the summary and ends the run: exit code 0 only without failures. */
void target_finish(void) __attribute__((noreturn));

/* One result line: RESULT <key> <value>. */
void target_result(const char *key, unsigned long long value);
void target_result_text(const char *key, const char *value);

/* --- port hooks' inputs (target_port.c) --------------------------------- */
/* usmp_port_random plays these bytes back, then a fixed filler. */
void target_port_script_random(const uint8_t *bytes, size_t len);
void target_port_set_device_id(const uint8_t id[6]);
/* usmp_port_millis returns this; usmp_port_delay_ms advances it. */
extern uint32_t target_now_ms;

/* --- the "uart" image's port hooks (uart_port.c) ------------------------ */
/* Random bytes from SHA-256 over this seed and a block counter; the device
 * id the gateway knows the PSK by. */
void uart_port_seed(const uint8_t bytes[32], const uint8_t id[6]);

/* --- stack and heap high-water marks -------------------------------------- */
/* Paints the free stack below the caller; target_stack_used(sp) then gives
 * how deep below sp (the caller's stack pointer at the call it measures)
 * anything was written since. */
void target_stack_paint(void);
size_t target_stack_used(uintptr_t sp);

/* Bytes of mbedTLS's static heap ever touched: the high-water mark of its
 * first-fit allocator (mbedtls/memory_buffer_alloc.h), headers included. */
size_t target_heap_peak(void);
size_t target_heap_pool_size(void);

/* Allocations mbedTLS has made so far, counted only in the images linked
 * with alloc_count.c and --wrap=mbedtls_calloc (target_counting_allocations
 * is then 1): the count costs instructions, so the images whose time,
 * stack and size are reported do not carry it. */
extern unsigned long target_heap_allocations;
extern const int target_counting_allocations;

#endif /* USMP_TARGET_H */
