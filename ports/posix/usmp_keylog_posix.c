/*
 * usmp_keylog_posix.c - the opt-in session key log on POSIX hosts
 * (usmp_keylog.h, docs/wireshark.md). DANGEROUS: the file it writes holds
 * the record keys of every session this process establishes.
 */
#define _POSIX_C_SOURCE 200809L

#ifdef ESP_PLATFORM
#error "the session key log is for host builds only: it is never compiled for ESP32"
#endif

#include "usmp_keylog.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "usmp_crypto.h"

#if USMP_KEYLOG

static const char keylog_prefix[] = "USMP_SESSION ";

static char *put_hex(char *out, const uint8_t *bytes, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        *out++ = digits[bytes[i] >> 4];
        *out++ = digits[bytes[i] & 0x0F];
    }
    return out;
}

void usmp_keylog_session(const uint8_t session_id[8], const uint8_t key_c2s[32],
                         const uint8_t key_s2c[32])
{
    /* prefix, 16 + 1 + 64 + 1 + 64 hex and spaces, newline */
    char line[sizeof keylog_prefix - 1 + 16 + 1 + 64 + 1 + 64 + 1];
    const char *path = getenv(USMP_KEYLOG_ENV);
    char *p = line;
    size_t i;
    int fd;

    if (path == NULL || path[0] == '\0') {
        return;
    }
    for (i = 0; i < sizeof keylog_prefix - 1; i++) {
        *p++ = keylog_prefix[i];
    }
    p = put_hex(p, session_id, 8);
    *p++ = ' ';
    p = put_hex(p, key_c2s, 32);
    *p++ = ' ';
    p = put_hex(p, key_s2c, 32);
    *p++ = '\n';

    /* Readable by its owner only; one O_APPEND write per line, so that
     * processes sharing the file never interleave their lines. A file that
     * cannot be written is skipped: a debugging aid must not change what
     * the protocol does. */
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (write(fd, line, (size_t)(p - line)) < 0) {
            /* nothing to do: the session goes on without its line */
        }
        (void)close(fd);
    }
    usmp_crypto_wipe(line, sizeof line);
}

#endif /* USMP_KEYLOG */
