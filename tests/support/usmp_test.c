/* usmp_test.c - see usmp_test.h. */
#include "usmp_test.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static unsigned long passed_count;
static unsigned long failed_count;

/* Failures go to stderr, unbuffered, while counts go to stdout: flushing
 * stdout first keeps the two in order when both land in one log. */
static void report_failure(const char *file, int line, const char *expr)
{
    fflush(stdout);
    if (expr != NULL) {
        fprintf(stderr, "%s:%d: CHECK failed: %s", file, line, expr);
    } else {
        fprintf(stderr, "%s:%d: FAILED", file, line);
    }
}

int usmp_test_check(int ok, const char *file, int line, const char *expr, const char *msg)
{
    if (ok) {
        passed_count++;
        return 1;
    }
    failed_count++;
    report_failure(file, line, expr);
    if (msg != NULL) {
        fprintf(stderr, " (%s)", msg);
    }
    fputc('\n', stderr);
    return 0;
}

int usmp_test_checkf(int ok, const char *file, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;

    if (ok) {
        passed_count++;
        return 1;
    }
    failed_count++;
    report_failure(file, line, expr);
    fputs(expr != NULL ? " (" : ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(expr != NULL ? ")\n" : "\n", stderr);
    return 0;
}

int usmp_test_check_int(long long got, long long want, const char *file, int line,
                        const char *got_expr, const char *want_expr)
{
    if (got == want) {
        passed_count++;
        return 1;
    }
    failed_count++;
    report_failure(file, line, got_expr);
    fprintf(stderr, " == %s (got %lld, want %lld)\n", want_expr, got, want);
    return 0;
}

int usmp_test_check_mem(const void *got, const void *want, size_t len, const char *file, int line,
                        const char *got_expr, const char *want_expr)
{
    const unsigned char *g = (const unsigned char *)got;
    const unsigned char *w = (const unsigned char *)want;
    size_t i;

    if (len != 0 && (g == NULL || w == NULL)) {
        failed_count++;
        report_failure(file, line, got_expr);
        fprintf(stderr, " == %s (NULL buffer, %zu bytes)\n", want_expr, len);
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (g[i] != w[i]) {
            failed_count++;
            report_failure(file, line, got_expr);
            fprintf(stderr,
                    " == %s (%zu bytes, first difference at offset %zu: "
                    "got 0x%02x, want 0x%02x)\n",
                    want_expr, len, i, g[i], w[i]);
            return 0;
        }
    }
    passed_count++;
    return 1;
}

void usmp_test_note(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

void usmp_test_skip(const char *what, const char *fmt, ...)
{
    va_list ap;

    printf("*** SKIPPED: %s: ", what);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf(" ***\n");
}

unsigned usmp_test_stride(void)
{
    const char *v = getenv("USMP_TEST_STRIDE");
    unsigned long n = v != NULL ? strtoul(v, NULL, 10) : 1ul;
    return n >= 1ul && n <= 1000ul ? (unsigned)n : 1u;
}

unsigned long usmp_test_passed(void)
{
    return passed_count;
}

unsigned long usmp_test_failed(void)
{
    return failed_count;
}

int usmp_test_finish(const char *program)
{
    fflush(stderr);
    printf("%s: %lu checks passed, %lu failed\n", program, passed_count, failed_count);
    fflush(stdout);
    return failed_count > 0 ? 1 : 0;
}
