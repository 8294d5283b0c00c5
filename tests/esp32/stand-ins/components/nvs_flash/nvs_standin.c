/*
 * STAND-IN host implementation of nvs.h / nvs_flash.h -- host tests only,
 * not ESP-IDF code. See include/nvs.h for the CSV it reads.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvs_flash.h"

#define MAX_ENTRIES 16
#define MAX_VALUE 256
#define ENTRY_U64 2

typedef struct {
    char ns[16], key[16];
    int is_blob;                 /* hex2bin: blob; string: string; u64: ENTRY_U64 */
    unsigned char value[MAX_VALUE];
    size_t len;
} entry_t;

static entry_t entries[MAX_ENTRIES];
static size_t entry_count;
static int initialised;
static char open_ns[16];
static int have_open;

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Splits "a,b,c,d" in place into 4 fields. */
static int split4(char *line, char *field[4])
{
    int n = 0;
    field[n++] = line;
    for (; *line != '\0'; line++) {
        if (*line == ',') {
            *line = '\0';
            if (n == 4) {
                return -1;
            }
            field[n++] = line + 1;
        }
    }
    return n == 4 ? 0 : -1;
}

esp_err_t nvs_flash_init(void)
{
    const char *path = getenv("USMP_STANDIN_NVS_CSV");
    char line[600], ns[16] = "";
    FILE *f;
    int first = 1;

    initialised = 1;
    entry_count = 0;
    if (path == NULL) {
        return ESP_OK; /* an empty NVS partition */
    }
    f = fopen(path, "r");
    if (f == NULL) {
        perror(path);
        return ESP_FAIL;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        char *field[4];
        entry_t *e;
        size_t i;

        line[strcspn(line, "\r\n")] = '\0';
        if (first) { /* the header row, "key,type,encoding,value" */
            first = 0;
            continue;
        }
        if (line[0] == '\0' || split4(line, field) != 0) {
            continue;
        }
        if (strcmp(field[1], "namespace") == 0) {
            snprintf(ns, sizeof ns, "%s", field[0]);
            continue;
        }
        if (strcmp(field[1], "data") != 0 || ns[0] == '\0' || entry_count == MAX_ENTRIES) {
            continue;
        }
        e = &entries[entry_count];
        snprintf(e->ns, sizeof e->ns, "%s", ns);
        snprintf(e->key, sizeof e->key, "%s", field[0]);
        if (strcmp(field[2], "hex2bin") == 0) {
            size_t n = strlen(field[3]);
            if (n % 2 != 0 || n / 2 > MAX_VALUE) {
                continue;
            }
            for (i = 0; i < n / 2; i++) {
                int hi = hex_digit(field[3][2 * i]), lo = hex_digit(field[3][2 * i + 1]);
                if (hi < 0 || lo < 0) {
                    break;
                }
                e->value[i] = (unsigned char)(hi * 16 + lo);
            }
            if (i != n / 2) {
                continue;
            }
            e->len = n / 2;
            e->is_blob = 1;
        } else if (strcmp(field[2], "u64") == 0) {
            unsigned long long v = strtoull(field[3], NULL, 10);
            memcpy(e->value, &v, sizeof v);
            e->len = sizeof v;
            e->is_blob = ENTRY_U64;
        } else if (strcmp(field[2], "string") == 0 && strlen(field[3]) < MAX_VALUE) {
            e->len = strlen(field[3]) + 1;
            memcpy(e->value, field[3], e->len);
            e->is_blob = 0;
        } else {
            continue;
        }
        entry_count++;
    }
    fclose(f);
    return ESP_OK;
}

esp_err_t nvs_open(const char *namespace_name, nvs_open_mode_t open_mode, nvs_handle_t *out_handle)
{
    size_t i;

    if (!initialised) {
        return ESP_ERR_NVS_NOT_INITIALIZED;
    }
    for (i = 0; i < entry_count; i++) {
        if (strcmp(entries[i].ns, namespace_name) == 0) {
            break;
        }
    }
    /* As in ESP-IDF: a namespace that does not exist cannot be opened
     * read-only. */
    if (i == entry_count && open_mode == NVS_READONLY) {
        return ESP_ERR_NVS_NOT_FOUND;
    }
    snprintf(open_ns, sizeof open_ns, "%s", namespace_name);
    have_open = 1;
    *out_handle = 1;
    return ESP_OK;
}

esp_err_t nvs_get_blob(nvs_handle_t handle, const char *key, void *out_value, size_t *length)
{
    size_t i;

    if (handle != 1 || !have_open) {
        return ESP_ERR_NVS_INVALID_HANDLE;
    }
    for (i = 0; i < entry_count; i++) {
        const entry_t *e = &entries[i];
        if (strcmp(e->ns, open_ns) != 0 || strcmp(e->key, key) != 0) {
            continue;
        }
        if (e->is_blob != 1) {
            return ESP_ERR_NVS_TYPE_MISMATCH;
        }
        if (out_value == NULL) {
            *length = e->len;
            return ESP_OK;
        }
        if (*length < e->len) {
            return ESP_ERR_NVS_INVALID_LENGTH;
        }
        memcpy(out_value, e->value, e->len);
        *length = e->len;
        return ESP_OK;
    }
    return ESP_ERR_NVS_NOT_FOUND;
}

static entry_t *find_entry(const char *key)
{
    size_t i;
    for (i = 0; i < entry_count; i++) {
        if (strcmp(entries[i].ns, open_ns) == 0 && strcmp(entries[i].key, key) == 0) {
            return &entries[i];
        }
    }
    return NULL;
}

esp_err_t nvs_get_u64(nvs_handle_t handle, const char *key, uint64_t *out_value)
{
    const entry_t *e;
    unsigned long long v;

    if (handle != 1 || !have_open) {
        return ESP_ERR_NVS_INVALID_HANDLE;
    }
    e = find_entry(key);
    if (e == NULL) {
        return ESP_ERR_NVS_NOT_FOUND;
    }
    if (e->is_blob != ENTRY_U64) {
        return ESP_ERR_NVS_TYPE_MISMATCH;
    }
    memcpy(&v, e->value, sizeof v);
    *out_value = (uint64_t)v;
    return ESP_OK;
}

esp_err_t nvs_set_u64(nvs_handle_t handle, const char *key, uint64_t value)
{
    entry_t *e;
    unsigned long long v = value;

    if (handle != 1 || !have_open) {
        return ESP_ERR_NVS_INVALID_HANDLE;
    }
    e = find_entry(key);
    if (e == NULL) {
        if (entry_count == MAX_ENTRIES) {
            return ESP_ERR_NVS_NO_FREE_PAGES;
        }
        e = &entries[entry_count++];
        snprintf(e->ns, sizeof e->ns, "%s", open_ns);
        snprintf(e->key, sizeof e->key, "%s", key);
    } else if (e->is_blob != ENTRY_U64) {
        return ESP_ERR_NVS_TYPE_MISMATCH;
    }
    memcpy(e->value, &v, sizeof v);
    e->len = sizeof v;
    e->is_blob = ENTRY_U64;
    return ESP_OK;
}

esp_err_t nvs_commit(nvs_handle_t handle)
{
    return handle == 1 && have_open ? ESP_OK : ESP_ERR_NVS_INVALID_HANDLE;
}

void nvs_close(nvs_handle_t handle)
{
    if (handle == 1) {
        have_open = 0;
    }
}
