/*
 * usmp_test.h - the smallest harness that serves every USMP test program.
 *
 * Each CHECK records one check: a failure prints "file:line: CHECK failed:
 * <expression>" (plus a message for the _MSG form, and FAIL prints just its
 * message) to stderr, and the program goes on,
 * so one run shows every broken case. A program ends with
 *
 *     return usmp_test_finish("test_name");
 *
 * which prints "<program>: <N> checks passed, <M> failed" and gives the exit
 * status (1 when M > 0). Every CHECK is an expression worth 1 when the check
 * passed and 0 when it failed, so callers can count their own failures too:
 *
 *     if (!CHECK_INT_EQ(rc, USMP_CRYPTO_OK)) { continue; }
 */
#ifndef USMP_TEST_H
#define USMP_TEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define USMP_TEST_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define USMP_TEST_PRINTF(fmt_index, first_arg)
#endif

/* The plain check. */
#define CHECK(cond) usmp_test_check(!!(cond), __FILE__, __LINE__, #cond, NULL)

/* With a printf-style message that says which case failed. */
#define CHECK_MSG(cond, ...) usmp_test_checkf(!!(cond), __FILE__, __LINE__, #cond, __VA_ARGS__)

/* A failure with no condition to show (a missing file, an impossible case):
 * prints "file:line: FAILED: <message>". */
#define FAIL(...) usmp_test_checkf(0, __FILE__, __LINE__, NULL, __VA_ARGS__)

/* Integers: the message shows both values. */
#define CHECK_INT_EQ(got, want)                                                                    \
    usmp_test_check_int((long long)(got), (long long)(want), __FILE__, __LINE__, #got, #want)

/* Byte strings: the message shows the first differing offset and both bytes. */
#define CHECK_MEM_EQ(got, want, len)                                                               \
    usmp_test_check_mem((const void *)(got), (const void *)(want), (size_t)(len), __FILE__,        \
                        __LINE__, #got, #want)

int usmp_test_check(int ok, const char *file, int line, const char *expr, const char *msg);
int usmp_test_checkf(int ok, const char *file, int line, const char *expr, const char *fmt, ...)
    USMP_TEST_PRINTF(5, 6);
int usmp_test_check_int(long long got, long long want, const char *file, int line,
                        const char *got_expr, const char *want_expr);
int usmp_test_check_mem(const void *got, const void *want, size_t len, const char *file, int line,
                        const char *got_expr, const char *want_expr);

/* Prints one line to stdout, for progress and counts. */
void usmp_test_note(const char *fmt, ...) USMP_TEST_PRINTF(1, 2);

/* A part of the program that did not run. Printed loudly, so that a skip is
 * never mistaken for a pass; a skip is not a failure. */
void usmp_test_skip(const char *what, const char *fmt, ...) USMP_TEST_PRINTF(2, 3);

/* Counts so far. */
unsigned long usmp_test_passed(void);
unsigned long usmp_test_failed(void);

/* The step of exhaustive loops (every byte offset, every size): 1, or the
 * value of USMP_TEST_STRIDE. The valgrind configuration samples with a
 * larger stride, which keeps memory checking affordable; the sanitizer
 * configurations run everything. */
unsigned usmp_test_stride(void);

/* Prints the summary line and returns the exit status for main. */
int usmp_test_finish(const char *program);

#ifdef __cplusplus
}
#endif

#endif /* USMP_TEST_H */
