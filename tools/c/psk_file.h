/*
 * psk_file.h - reading device PSKs for the C tools, in the format the
 * Python gateway's `usmp serve --psk-file` reads:
 *
 *     # comment
 *     deadbeef0001  <32 to 128 hex digits>    # trailing comment
 *
 * or one hex key from an environment variable, for every device.
 */
#ifndef USMP_TOOLS_PSK_FILE_H
#define USMP_TOOLS_PSK_FILE_H

#include <stddef.h>
#include <stdint.h>

#define PSK_TABLE_MAX 256

typedef struct {
    uint8_t device_id[6];
    uint8_t psk[64];
    size_t psk_len;
} psk_entry_t;

typedef struct {
    psk_entry_t entries[PSK_TABLE_MAX];
    size_t count;
    int any_device; /* 1: entries[0] serves every device id */
} psk_table_t;

/* Loads a PSK file. Returns 0, or -1 with a message ("devices.psk line 3:
 * PSK must be 16 to 64 bytes") in err. */
int psk_table_load_file(psk_table_t *t, const char *path, char *err, size_t err_size);

/* One key for every device from the environment variable `name`. */
int psk_table_load_env(psk_table_t *t, const char *name, char *err, size_t err_size);

/* usmp_psk_lookup_fn over a table. */
size_t psk_table_lookup(void *table, const uint8_t device_id[6], uint8_t psk[64]);

#endif /* USMP_TOOLS_PSK_FILE_H */
