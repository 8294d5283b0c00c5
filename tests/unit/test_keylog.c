/*
 * test_keylog.c - the session key log of host builds (src/usmp_keylog.h,
 * ports/posix/usmp_keylog_posix.c, docs/wireshark.md): the line's format,
 * appending, the file's mode, nothing without USMP_KEYLOG_FILE, and a file
 * that cannot be written. Built only with USMP_KEYLOG (tests/CMakeLists.txt).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "usmp_keylog.h"
#include "usmp_test.h"

static const char expected_line[] =
    "USMP_SESSION 0001020304050607 "
    "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f "
    "303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f\n";

static uint8_t session_id[8], key_c2s[32], key_s2c[32];
static char directory[] = "/tmp/usmp_keylog_XXXXXX";
static char path[sizeof directory + 16];

static void fill(uint8_t *out, size_t len, uint8_t first)
{
    size_t i;
    for (i = 0; i < len; i++) {
        out[i] = (uint8_t)(first + i);
    }
}

/* The file's whole content, or "" when it does not exist. */
static size_t read_all(char *out, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n = 0;
    if (f != NULL) {
        n = fread(out, 1, cap - 1, f);
        fclose(f);
    }
    out[n] = '\0';
    return n;
}

static void test_nothing_without_the_variable(void)
{
    char content[512];
    unsetenv(USMP_KEYLOG_ENV);
    usmp_keylog_session(session_id, key_c2s, key_s2c);
    CHECK(setenv(USMP_KEYLOG_ENV, "", 1) == 0);
    usmp_keylog_session(session_id, key_c2s, key_s2c);
    CHECK_INT_EQ((long long)read_all(content, sizeof content), 0);
    CHECK(access(path, F_OK) != 0);
}

static void test_one_line_per_session_appended_owner_only(void)
{
    char content[512], twice[512];
    struct stat st;
    CHECK(setenv(USMP_KEYLOG_ENV, path, 1) == 0);
    usmp_keylog_session(session_id, key_c2s, key_s2c);
    read_all(content, sizeof content);
    CHECK_MSG(strcmp(content, expected_line) == 0, "line: %s", content);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

    usmp_keylog_session(session_id, key_c2s, key_s2c);
    snprintf(twice, sizeof twice, "%s%s", expected_line, expected_line);
    read_all(content, sizeof content);
    CHECK(strcmp(content, twice) == 0);
    CHECK(unlink(path) == 0);
}

static void test_an_unwritable_file_is_skipped(void)
{
    char missing[sizeof directory + 32];
    snprintf(missing, sizeof missing, "%s/no/such/dir", directory);
    CHECK(setenv(USMP_KEYLOG_ENV, missing, 1) == 0);
    usmp_keylog_session(session_id, key_c2s, key_s2c); /* returns; nothing to check but no fault */
    CHECK(access(missing, F_OK) != 0);
    unsetenv(USMP_KEYLOG_ENV);
}

int main(void)
{
    fill(session_id, sizeof session_id, 0x00);
    fill(key_c2s, sizeof key_c2s, 0x10);
    fill(key_s2c, sizeof key_s2c, 0x30);
    if (mkdtemp(directory) == NULL) {
        CHECK_MSG(0, "mkdtemp failed");
        return usmp_test_finish("test_keylog");
    }
    snprintf(path, sizeof path, "%s/keys.log", directory);
    test_nothing_without_the_variable();
    test_one_line_per_session_appended_owner_only();
    test_an_unwritable_file_is_skipped();
    rmdir(directory);
    return usmp_test_finish("test_keylog");
}
