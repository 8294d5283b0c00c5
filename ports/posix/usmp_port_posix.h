/*
 * usmp_port_posix.h - the host port (Linux, macOS): the five hooks of
 * usmp_port.h on POSIX, plus a setter for the device id.
 */
#ifndef USMP_PORT_POSIX_H
#define USMP_PORT_POSIX_H

#include <stddef.h>
#include <stdint.h>

/* The id usmp_port_get_device_id reports. Until it is set, the port uses
 * the USMP_DEVICE_ID environment variable (12 hex digits, colons allowed)
 * or, failing that, 02:00:00:00:00:01 (a locally administered address). */
void usmp_posix_set_device_id(const uint8_t id[6]);

/* Parses "deadbeef0001" or "de:ad:be:ef:00:01". Returns 0 on success. */
int usmp_posix_parse_device_id(const char *text, uint8_t id[6]);

/* Decodes hex_len hex digits (either case) into out. Returns the number of
 * bytes, or -1 for an odd length, a character that is not a hex digit, or
 * more than cap bytes. */
int usmp_posix_parse_hex(const char *hex, size_t hex_len, uint8_t *out, size_t cap);

/* Silences usmp_port_log (tests). */
void usmp_posix_set_log_enabled(int enabled);

#endif /* USMP_PORT_POSIX_H */
