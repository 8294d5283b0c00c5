/*
 * usmp_port_posix.c - the five port hooks on POSIX.
 */
#define _POSIX_C_SOURCE 200809L

#include "usmp_port_posix.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "usmp_port.h"

#if defined(__linux__)
#include <sys/random.h>
#endif

static uint8_t device_id[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
static int device_id_set = 0;
static int log_enabled = 1;

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int usmp_posix_parse_hex(const char *hex, size_t hex_len, uint8_t *out, size_t cap)
{
    size_t i;

    if (hex == NULL || out == NULL || hex_len % 2 != 0 || hex_len / 2 > cap) {
        return -1;
    }
    for (i = 0; i < hex_len; i += 2) {
        int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        out[i / 2] = (uint8_t)(hi * 16 + lo);
    }
    return (int)(hex_len / 2);
}

int usmp_posix_parse_device_id(const char *text, uint8_t id[6])
{
    char digits[12];
    size_t n = 0;

    if (text == NULL) {
        return -1;
    }
    for (; *text != '\0'; text++) {
        if (*text == ':') {
            continue; /* "de:ad:be:ef:00:01" */
        }
        if (n == sizeof digits) {
            return -1;
        }
        digits[n++] = *text;
    }
    return n == sizeof digits && usmp_posix_parse_hex(digits, n, id, 6) == 6 ? 0 : -1;
}

void usmp_posix_set_device_id(const uint8_t id[6])
{
    memcpy(device_id, id, 6);
    device_id_set = 1;
}

void usmp_posix_set_log_enabled(int enabled)
{
    log_enabled = enabled;
}

void usmp_port_get_device_id(uint8_t out[6])
{
    if (!device_id_set) {
        const char *env = getenv("USMP_DEVICE_ID");
        if (env != NULL && usmp_posix_parse_device_id(env, device_id) != 0) {
            fprintf(stderr,
                    "usmp: USMP_DEVICE_ID='%s' is not 12 hex digits; using the default id\n", env);
        }
        device_id_set = 1;
    }
    memcpy(out, device_id, 6);
}

void usmp_port_random(uint8_t *buf, size_t len)
{
    size_t done = 0;

#if defined(__linux__)
    while (done < len) {
        ssize_t n = getrandom(buf + done, len - done, 0);
        if (n > 0) {
            done += (size_t)n;
        } else if (n < 0 && errno != EINTR) {
            break;
        }
    }
#endif
    if (done < len) {
        int fd = open("/dev/urandom", O_RDONLY);
        while (fd >= 0 && done < len) {
            ssize_t n = read(fd, buf + done, len - done);
            if (n > 0) {
                done += (size_t)n;
            } else if (n < 0 && errno != EINTR) {
                break;
            }
        }
        if (fd >= 0) {
            close(fd);
        }
    }
    if (done < len) {
        /* Predictable bytes would break forward secrecy: stop instead. */
        fprintf(stderr, "usmp: no secure random source available\n");
        abort();
    }
}

void usmp_port_delay_ms(uint32_t ms)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000u);
    ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

uint32_t usmp_port_millis(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

void usmp_port_log(const char *msg)
{
    if (log_enabled) {
        fprintf(stderr, "%s\n", msg);
    }
}
