/*
 * target.c - checks, results, the counter check, and the stack and heap
 * high-water marks shared by the firmware images (target.h).
 */
#include "target.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mbedtls/memory_buffer_alloc.h"

unsigned target_failures;
unsigned long target_heap_allocations;
/* 0 unless alloc_count.c is linked in (it defines the strong 1). */
__attribute__((weak)) const int target_counting_allocations = 0;

/* mbedTLS's heap: a static pool, painted so that its high-water mark can be
 * read back. The device would size it from the heap peak this reports. */
#define HEAP_POOL_BYTES  8192u
#define PAINT            0xA5u
#define HEAP_HEADER_ROOM 128u /* more than memory_buffer_alloc's header */
static unsigned char heap_pool[HEAP_POOL_BYTES] __attribute__((aligned(8)));

/* How much stack is painted below the caller of target_stack_paint. */
#define STACK_PAINT_BYTES 12288u
#define STACK_PAINT_GAP   64u /* left alone: target_stack_paint's own frame */
static uintptr_t painted_low;

void target_fail(const char *file, int line, const char *what)
{
    printf("FAIL %s:%d: %s\n", file, line, what);
    target_failures++;
}

void target_result(const char *key, unsigned long long value)
{
    printf("RESULT %s %llu\n", key, value);
}

void target_result_text(const char *key, const char *value)
{
    printf("RESULT %s %s\n", key, value);
}

/* The counter must count instructions: 2 per iteration of the known loop,
 * to within the counter's resolution and the few instructions around it. */
static void check_counter(void)
{
    const uint32_t iterations = 1000000u;
    uint64_t before, after, measured, expected = 2ull * iterations;
    uint64_t tolerance = 2u * board_counter_resolution() + 64u;

    before = board_instructions();
    board_known_loop(iterations);
    after = board_instructions();
    measured = after - before;
    target_result("counter_check_expected", expected);
    target_result("counter_check_measured", measured);
    TARGET_CHECK(measured + tolerance >= expected && measured <= expected + tolerance,
                 "the instruction counter disagrees with the known loop");
}

void target_start(const char *image)
{
    board_init();
    printf("usmp target %s, image %s\n", board_name, image);
    target_result_text("target", board_name);
    target_result_text("image", image);
    check_counter();
    /* The allocator zeroes the pool and writes its first block header at
     * the start; everything past that header is painted afterwards. */
    mbedtls_memory_buffer_alloc_init(heap_pool, sizeof heap_pool);
    memset(heap_pool + HEAP_HEADER_ROOM, PAINT, sizeof heap_pool - HEAP_HEADER_ROOM);
}

void target_finish(void)
{
    target_result("heap_peak", target_heap_peak());
    target_result("failures", target_failures);
    printf("%s: %s\n", board_name, target_failures == 0 ? "PASS" : "FAILED");
    exit(target_failures == 0 ? 0 : 1);
}

size_t target_heap_peak(void)
{
    size_t top = sizeof heap_pool;

    while (top > 0 && heap_pool[top - 1] == PAINT) {
        top--;
    }
    return top;
}

size_t target_heap_pool_size(void)
{
    return sizeof heap_pool;
}

__attribute__((noinline)) void target_stack_paint(void)
{
    uintptr_t sp = board_sp();
    volatile uint32_t *p;

    painted_low = (sp - STACK_PAINT_BYTES) & ~(uintptr_t)3;
    for (p = (volatile uint32_t *)painted_low; (uintptr_t)p < sp - STACK_PAINT_GAP; p++) {
        *p = 0xA5A5A5A5u;
    }
}

size_t target_stack_used(uintptr_t sp)
{
    const volatile uint32_t *p = (const volatile uint32_t *)painted_low;

    while ((uintptr_t)p < sp && *p == 0xA5A5A5A5u) {
        p++;
    }
    TARGET_CHECK((uintptr_t)p > painted_low, "the stack went below the painted area");
    return sp - (uintptr_t)p;
}
