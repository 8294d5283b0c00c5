/*
 * alloc_count.c - counts mbedTLS's allocations on their way to the static
 * pool. Linked, with --wrap=mbedtls_calloc, only into the "count" variant
 * of the device image (targets/run.py), whose other figures are not used:
 * the wrapper's few instructions per allocation would blur the others.
 */
#include "target.h"

const int target_counting_allocations = 1;

void *__real_mbedtls_calloc(size_t n, size_t size);
void *__wrap_mbedtls_calloc(size_t n, size_t size);

void *__wrap_mbedtls_calloc(size_t n, size_t size)
{
    target_heap_allocations++;
    return __real_mbedtls_calloc(n, size);
}
