/*
 * json.h - a small, strict JSON reader for test programs (RFC 8259).
 *
 * Parses a whole document into a tree (malloc'd; free it with json_free).
 * Strict on purpose, because a vector file that does not parse cleanly
 * should stop the test rather than be half read: trailing commas, comments,
 * leading zeros, raw control characters, invalid UTF-8, lone surrogates in
 * \u escapes, duplicate object keys and trailing garbage are all errors.
 * Nesting is limited to JSON_MAX_DEPTH so a hostile file cannot exhaust the
 * stack.
 *
 * Every accessor accepts NULL and answers "absent" for it, so lookups chain
 * without checks in between, and one check at the end suffices:
 *
 *     const char *pk = json_string(json_get(json_get(group, "publicKey"), "pk"));
 *     if (pk == NULL) { ...missing or not a string... }
 *
 * Numbers are read with strtod, which honours LC_NUMERIC: test programs stay
 * in the "C" locale (they never call setlocale).
 */
#ifndef USMP_TEST_JSON_H
#define USMP_TEST_JSON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define JSON_MAX_DEPTH 256

typedef enum {
    JSON_ABSENT = 0, /* what the accessors report for a NULL value */
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
} json_type;

typedef struct json_value json_value;

/* Parses len bytes of text. On failure returns NULL and, when err is not
 * NULL, writes "line L, column C: what" into err (always NUL-terminated). */
json_value *json_parse(const char *text, size_t len, char *err, size_t err_size);

/* Reads and parses a whole file; errors are prefixed with the path. */
json_value *json_parse_file(const char *path, char *err, size_t err_size);

void json_free(json_value *v);

json_type json_type_of(const json_value *v);

/* Object member by key (exact, byte-wise); NULL if v is not an object or has
 * no such key. */
const json_value *json_get(const json_value *v, const char *key);

/* Elements of an array, or members of an object in document order. */
size_t json_count(const json_value *v);
const json_value *json_at(const json_value *v, size_t index);
/* Key of member index of an object; NULL otherwise. */
const char *json_key_at(const json_value *v, size_t index);

/* The string's bytes (UTF-8, NUL-terminated; it may contain \u0000, so use
 * json_string_len for the length), or NULL if v is not a string. */
const char *json_string(const json_value *v);
size_t json_string_len(const json_value *v);

/* 1 and *out set when v has that type, else 0 and *out untouched. json_int
 * also needs the number to be an integer that fits a long long exactly. */
int json_number(const json_value *v, double *out);
int json_int(const json_value *v, long long *out);
int json_bool(const json_value *v, int *out);

/* 1 when the string equals s. */
int json_string_is(const json_value *v, const char *s);

/* Decodes a hex string (either case, even length) into a malloc'd buffer
 * that the caller frees. The buffer is never NULL on success, even for an
 * empty string, so it can be passed where a length-0 pointer is expected.
 * Returns NULL (and *out_len = 0) on a bad digit, an odd length or a
 * non-string. */
uint8_t *json_hex_bytes(const json_value *v, size_t *out_len);
uint8_t *json_hex_decode(const char *hex, size_t hex_len, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif /* USMP_TEST_JSON_H */
