/*
 * psk_file.c - see psk_file.h.
 */
#define _POSIX_C_SOURCE 200809L

#include "psk_file.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "usmp_port_posix.h"

static int parse_key(const char *hex, size_t len, psk_entry_t *e, char *why, size_t why_size)
{
    int n = usmp_posix_parse_hex(hex, len, e->psk, sizeof e->psk);
    if (n < 0 && len % 2 == 0 && len / 2 <= sizeof e->psk) {
        snprintf(why, why_size, "the PSK is not hex");
        return -1;
    }
    if (n < 16 || n > 64) {
        snprintf(why, why_size,
                 "the PSK must be 16 to 64 bytes (32 to 128 hex digits), not %zu digits", len);
        return -1;
    }
    e->psk_len = (size_t)n;
    return 0;
}

int psk_table_load_file(psk_table_t *t, const char *path, char *err, size_t err_size)
{
    FILE *f = fopen(path, "r");
    char line[512];
    unsigned line_no = 0;

    memset(t, 0, sizeof *t);
    if (f == NULL) {
        snprintf(err, err_size, "%s: cannot open the PSK file", path);
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        char *p = line, *id, *key, *end;
        char why[128];
        line_no++;
        if ((end = strchr(p, '#')) != NULL) {
            *end = '\0';
        }
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0') {
            continue;
        }
        id = p;
        while (*p != '\0' && !isspace((unsigned char)*p))
            p++;
        if (*p != '\0')
            *p++ = '\0';
        while (isspace((unsigned char)*p))
            p++;
        key = p;
        while (*p != '\0' && !isspace((unsigned char)*p))
            p++;
        end = p;
        while (isspace((unsigned char)*p))
            p++;
        if (*key == '\0' || *p != '\0') {
            snprintf(err, err_size, "%s line %u: expected '<device id> <psk hex>'", path, line_no);
            fclose(f);
            return -1;
        }
        if (t->count == PSK_TABLE_MAX) {
            snprintf(err, err_size, "%s line %u: more than %d devices", path, line_no,
                     PSK_TABLE_MAX);
            fclose(f);
            return -1;
        }
        if (usmp_posix_parse_device_id(id, t->entries[t->count].device_id) != 0) {
            snprintf(err, err_size, "%s line %u: device id '%s' is not 12 hex digits", path,
                     line_no, id);
            fclose(f);
            return -1;
        }
        if (parse_key(key, (size_t)(end - key), &t->entries[t->count], why, sizeof why) != 0) {
            snprintf(err, err_size, "%s line %u: %s", path, line_no, why);
            fclose(f);
            return -1;
        }
        t->count++;
    }
    fclose(f);
    if (t->count == 0) {
        snprintf(err, err_size, "%s: no device in the PSK file", path);
        return -1;
    }
    return 0;
}

int psk_table_load_env(psk_table_t *t, const char *name, char *err, size_t err_size)
{
    const char *v = getenv(name);
    char why[128];

    memset(t, 0, sizeof *t);
    if (v == NULL || *v == '\0') {
        snprintf(err, err_size,
                 "environment variable %s is not set (generate a key with 'usmp keygen')", name);
        return -1;
    }
    if (parse_key(v, strlen(v), &t->entries[0], why, sizeof why) != 0) {
        snprintf(err, err_size, "environment variable %s: %s", name, why);
        return -1;
    }
    t->count = 1;
    t->any_device = 1;
    return 0;
}

size_t psk_table_lookup(void *table, const uint8_t device_id[6], uint8_t psk[64])
{
    const psk_table_t *t = table;
    size_t i;
    for (i = 0; i < t->count; i++) {
        if (t->any_device || memcmp(t->entries[i].device_id, device_id, 6) == 0) {
            memcpy(psk, t->entries[i].psk, t->entries[i].psk_len);
            return t->entries[i].psk_len;
        }
    }
    return 0;
}
