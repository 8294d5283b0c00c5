/* json.c - see json.h. */
#include "json.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct json_value {
    json_type type;
    int boolean;
    double number;
    int is_integer; /* written without fraction or exponent, and fits */
    long long integer;
    char *string; /* JSON_STRING */
    size_t length;
    json_value **items; /* JSON_ARRAY elements, JSON_OBJECT values */
    char **keys;        /* JSON_OBJECT */
    size_t *key_lengths;
    size_t count;
    size_t capacity;
};

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
    const unsigned char *start;
    char *err;
    size_t err_size;
    int failed;
} parser;

static json_value *parse_value(parser *ps, int depth);

#if defined(__GNUC__) || defined(__clang__)
static void fail(parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif

/* ---- errors ------------------------------------------------------------- */

static void fail(parser *ps, const char *fmt, ...)
{
    const unsigned char *q;
    unsigned long line = 1;
    unsigned long column = 1;
    va_list ap;
    int n;

    if (ps->failed) {
        return; /* keep the first, innermost error */
    }
    ps->failed = 1;
    if (ps->err == NULL || ps->err_size == 0) {
        return;
    }
    for (q = ps->start; q < ps->p && q < ps->end; q++) {
        if (*q == '\n') {
            line++;
            column = 1;
        } else {
            column++;
        }
    }
    n = snprintf(ps->err, ps->err_size, "line %lu, column %lu: ", line, column);
    if (n < 0 || (size_t)n >= ps->err_size) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(ps->err + n, ps->err_size - (size_t)n, fmt, ap);
    va_end(ap);
}

/* ---- tree building ---------------------------------------------------- */

static json_value *new_value(parser *ps, json_type type)
{
    json_value *v = (json_value *)calloc(1, sizeof *v);

    if (v == NULL) {
        fail(ps, "out of memory");
        return NULL;
    }
    v->type = type;
    return v;
}

void json_free(json_value *v)
{
    size_t i;

    if (v == NULL) {
        return;
    }
    for (i = 0; i < v->count; i++) {
        json_free(v->items[i]);
        if (v->keys != NULL) {
            free(v->keys[i]);
        }
    }
    free(v->items);
    free(v->keys);
    free(v->key_lengths);
    free(v->string);
    free(v);
}

/* Appends item (and key, for objects); takes ownership of both either way. */
static int append(parser *ps, json_value *container, char *key, size_t key_len, json_value *item)
{
    if (container->count == container->capacity) {
        size_t cap = container->capacity == 0 ? 8 : container->capacity * 2;
        json_value **items;

        if (cap > SIZE_MAX / sizeof(json_value *) || cap > SIZE_MAX / sizeof(size_t)) {
            goto oom;
        }
        items = (json_value **)realloc(container->items, cap * sizeof *items);
        if (items == NULL) {
            goto oom;
        }
        container->items = items;
        if (container->type == JSON_OBJECT) {
            char **keys = (char **)realloc(container->keys, cap * sizeof *keys);
            size_t *lens;

            if (keys == NULL) {
                goto oom;
            }
            container->keys = keys;
            lens = (size_t *)realloc(container->key_lengths, cap * sizeof *lens);
            if (lens == NULL) {
                goto oom;
            }
            container->key_lengths = lens;
        }
        container->capacity = cap;
    }
    container->items[container->count] = item;
    if (container->type == JSON_OBJECT) {
        container->keys[container->count] = key;
        container->key_lengths[container->count] = key_len;
    }
    container->count++;
    return 1;
oom:
    fail(ps, "out of memory");
    free(key);
    json_free(item);
    return 0;
}

/* ---- lexing helpers ----------------------------------------------------- */

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) {
        ps->p++;
    }
}

static int literal(parser *ps, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
        fail(ps, "invalid literal (expected '%s')", word);
        return 0;
    }
    ps->p += n;
    return 1;
}

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not one:
 * overlong forms, UTF-16 surrogates and code points above U+10FFFF are all
 * rejected (RFC 3629). */
static size_t utf8_sequence(const unsigned char *p, const unsigned char *end)
{
    size_t avail = (size_t)(end - p);
    unsigned c = p[0];

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80;
        unsigned hi = c == 0xED ? 0x9F : 0xBF;

        return avail >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80;
        unsigned hi = c == 0xF4 ? 0x8F : 0xBF;

        return avail >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 &&
                       (p[3] & 0xC0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

static size_t utf8_encode(unsigned long cp, unsigned char out[4])
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

static int read_hex4(parser *ps, unsigned long *out)
{
    unsigned long v = 0;
    int i;

    if (ps->end - ps->p < 4) {
        fail(ps, "truncated \\u escape");
        return 0;
    }
    for (i = 0; i < 4; i++) {
        int d = hex_digit(ps->p[i]);

        if (d < 0) {
            fail(ps, "bad hex digit in \\u escape");
            return 0;
        }
        v = (v << 4) | (unsigned long)d;
    }
    ps->p += 4;
    *out = v;
    return 1;
}

/* Parses a string at ps->p (which is at the opening quote) into a malloc'd,
 * NUL-terminated buffer. The decoded form is never longer than the source,
 * so one allocation of the source span suffices. */
static char *parse_string(parser *ps, size_t *out_len)
{
    const unsigned char *q = ps->p + 1;
    unsigned char *buf;
    size_t n = 0;

    /* Find the closing quote to size the buffer. */
    while (q < ps->end && *q != '"') {
        q += (*q == '\\' && q + 1 < ps->end) ? 2 : 1;
    }
    if (q >= ps->end) {
        fail(ps, "unterminated string");
        return NULL;
    }
    buf = (unsigned char *)malloc((size_t)(q - ps->p));
    if (buf == NULL) {
        fail(ps, "out of memory");
        return NULL;
    }
    ps->p++; /* opening quote */
    for (;;) {
        unsigned c = *ps->p;

        if (c == '"') {
            ps->p++;
            break;
        }
        if (c < 0x20) {
            fail(ps, "raw control character 0x%02x in string", c);
            goto error;
        }
        if (c != '\\') {
            size_t len = utf8_sequence(ps->p, ps->end);

            if (len == 0) {
                fail(ps, "invalid UTF-8 in string");
                goto error;
            }
            memcpy(buf + n, ps->p, len);
            n += len;
            ps->p += len;
            continue;
        }
        ps->p++; /* backslash; the sizing loop proved a byte follows */
        c = *ps->p++;
        switch (c) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            unsigned long cp;

            if (!read_hex4(ps, &cp)) {
                goto error;
            }
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                fail(ps, "lone low surrogate \\u%04lx", cp);
                goto error;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned long lo;

                if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u') {
                    fail(ps, "high surrogate \\u%04lx without a low one", cp);
                    goto error;
                }
                ps->p += 2;
                if (!read_hex4(ps, &lo)) {
                    goto error;
                }
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    fail(ps, "high surrogate \\u%04lx followed by \\u%04lx", cp, lo);
                    goto error;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            /* \uXXXX is 6 source bytes for at most 3 bytes of UTF-8, and a
             * pair is 12 for 4: the buffer bound holds. */
            n += utf8_encode(cp, buf + n);
            break;
        }
        default: fail(ps, "invalid escape \\%c", c >= 0x20 && c < 0x7F ? (int)c : '?'); goto error;
        }
    }
    buf[n] = '\0';
    *out_len = n;
    return (char *)buf;
error:
    free(buf);
    return NULL;
}

static json_value *parse_number(parser *ps)
{
    const unsigned char *s = ps->p;
    const unsigned char *q = s;
    int integral = 1;
    char *copy;
    char *endp;
    json_value *v;
    size_t len;

    if (q < ps->end && *q == '-') {
        q++;
    }
    if (q < ps->end && *q == '0') {
        q++;
    } else if (q < ps->end && *q >= '1' && *q <= '9') {
        while (q < ps->end && *q >= '0' && *q <= '9') {
            q++;
        }
    } else {
        fail(ps, "invalid number");
        return NULL;
    }
    if (q < ps->end && *q == '.') {
        integral = 0;
        q++;
        if (q >= ps->end || *q < '0' || *q > '9') {
            ps->p = q;
            fail(ps, "digit expected after '.'");
            return NULL;
        }
        while (q < ps->end && *q >= '0' && *q <= '9') {
            q++;
        }
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        integral = 0;
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) {
            q++;
        }
        if (q >= ps->end || *q < '0' || *q > '9') {
            ps->p = q;
            fail(ps, "digit expected in exponent");
            return NULL;
        }
        while (q < ps->end && *q >= '0' && *q <= '9') {
            q++;
        }
    }
    if (q < ps->end && *q >= '0' && *q <= '9') {
        ps->p = q;
        fail(ps, "leading zero in number");
        return NULL;
    }
    /* strtod and strtoll need a NUL-terminated copy: the input is not. */
    len = (size_t)(q - s);
    copy = (char *)malloc(len + 1);
    if (copy == NULL) {
        fail(ps, "out of memory");
        return NULL;
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    v = new_value(ps, JSON_NUMBER);
    if (v != NULL) {
        /* Out of range gives +-HUGE_VAL or 0, which is all a test needs. */
        v->number = strtod(copy, &endp);
        if (integral) {
            errno = 0;
            v->integer = strtoll(copy, &endp, 10);
            v->is_integer = errno == 0 && *endp == '\0';
        }
    }
    free(copy);
    ps->p = q;
    return v;
}

/* ---- structure ---------------------------------------------------------- */

static json_value *parse_array(parser *ps, int depth)
{
    json_value *arr = new_value(ps, JSON_ARRAY);

    if (arr == NULL) {
        return NULL;
    }
    ps->p++; /* [ */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return arr;
    }
    for (;;) {
        json_value *item = parse_value(ps, depth + 1);

        if (item == NULL || !append(ps, arr, NULL, 0, item)) {
            break;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            return arr;
        }
        fail(ps, "',' or ']' expected in array");
        break;
    }
    json_free(arr);
    return NULL;
}

static json_value *parse_object(parser *ps, int depth)
{
    json_value *obj = new_value(ps, JSON_OBJECT);

    if (obj == NULL) {
        return NULL;
    }
    ps->p++; /* { */
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return obj;
    }
    for (;;) {
        const unsigned char *key_at;
        json_value *item;
        size_t key_len = 0;
        size_t i;
        char *key;

        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"') {
            fail(ps, "string key expected in object");
            break;
        }
        key_at = ps->p;
        key = parse_string(ps, &key_len);
        if (key == NULL) {
            break;
        }
        for (i = 0; i < obj->count; i++) {
            if (obj->key_lengths[i] == key_len && memcmp(obj->keys[i], key, key_len) == 0) {
                break;
            }
        }
        if (i < obj->count) {
            ps->p = key_at;
            fail(ps, "duplicate key \"%s\"", key);
            free(key);
            break;
        }
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
            fail(ps, "':' expected after key");
            free(key);
            break;
        }
        ps->p++;
        item = parse_value(ps, depth + 1);
        if (item == NULL) {
            free(key);
            break;
        }
        if (!append(ps, obj, key, key_len, item)) {
            break;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            return obj;
        }
        fail(ps, "',' or '}' expected in object");
        break;
    }
    json_free(obj);
    return NULL;
}

static json_value *parse_value(parser *ps, int depth)
{
    json_value *v;

    if (depth > JSON_MAX_DEPTH) {
        fail(ps, "nesting deeper than %d", JSON_MAX_DEPTH);
        return NULL;
    }
    skip_ws(ps);
    if (ps->p >= ps->end) {
        fail(ps, "value expected, found end of input");
        return NULL;
    }
    switch (*ps->p) {
    case '{': return parse_object(ps, depth);
    case '[': return parse_array(ps, depth);
    case '"': {
        size_t len = 0;
        char *s = parse_string(ps, &len);

        if (s == NULL) {
            return NULL;
        }
        v = new_value(ps, JSON_STRING);
        if (v == NULL) {
            free(s);
            return NULL;
        }
        v->string = s;
        v->length = len;
        return v;
    }
    case 't':
    case 'f': {
        int is_true = *ps->p == 't';

        if (!literal(ps, is_true ? "true" : "false")) {
            return NULL;
        }
        v = new_value(ps, JSON_BOOL);
        if (v != NULL) {
            v->boolean = is_true;
        }
        return v;
    }
    case 'n': return literal(ps, "null") ? new_value(ps, JSON_NULL) : NULL;
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) {
            return parse_number(ps);
        }
        fail(ps, "unexpected character '%c'", *ps->p >= 0x20 && *ps->p < 0x7F ? (int)*ps->p : '?');
        return NULL;
    }
}

json_value *json_parse(const char *text, size_t len, char *err, size_t err_size)
{
    parser ps;
    json_value *root;

    if (err != NULL && err_size > 0) {
        err[0] = '\0';
    }
    memset(&ps, 0, sizeof ps);
    ps.start = (const unsigned char *)text;
    ps.p = ps.start;
    ps.end = ps.start + (text == NULL ? 0 : len);
    ps.err = err;
    ps.err_size = err_size;
    /* A UTF-8 byte order mark may precede the text (RFC 8259 section 8.1). */
    if (ps.end - ps.p >= 3 && ps.p[0] == 0xEF && ps.p[1] == 0xBB && ps.p[2] == 0xBF) {
        ps.p += 3;
    }
    root = parse_value(&ps, 0);
    if (root == NULL) {
        return NULL;
    }
    skip_ws(&ps);
    if (ps.p != ps.end) {
        fail(&ps, "trailing characters after the document");
        json_free(root);
        return NULL;
    }
    return root;
}

json_value *json_parse_file(const char *path, char *err, size_t err_size)
{
    FILE *f;
    char *buf = NULL;
    size_t len = 0;
    size_t cap = 0;
    json_value *root;
    char inner[256];

    if (err != NULL && err_size > 0) {
        err[0] = '\0';
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        if (err != NULL && err_size > 0) {
            snprintf(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        }
        return NULL;
    }
    for (;;) {
        size_t got;

        if (len == cap) {
            char *grown;

            cap = cap == 0 ? 65536 : cap * 2;
            grown = (char *)realloc(buf, cap);
            if (grown == NULL) {
                free(buf);
                fclose(f);
                if (err != NULL && err_size > 0) {
                    snprintf(err, err_size, "%s: out of memory", path);
                }
                return NULL;
            }
            buf = grown;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            break;
        }
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        if (err != NULL && err_size > 0) {
            snprintf(err, err_size, "%s: read error", path);
        }
        return NULL;
    }
    fclose(f);
    root = json_parse(buf, len, inner, sizeof inner);
    free(buf);
    if (root == NULL && err != NULL && err_size > 0) {
        snprintf(err, err_size, "%s: %s", path, inner);
    }
    return root;
}

/* ---- accessors ---------------------------------------------------------- */

json_type json_type_of(const json_value *v)
{
    return v == NULL ? JSON_ABSENT : v->type;
}

const json_value *json_get(const json_value *v, const char *key)
{
    size_t key_len;
    size_t i;

    if (v == NULL || v->type != JSON_OBJECT || key == NULL) {
        return NULL;
    }
    key_len = strlen(key);
    for (i = 0; i < v->count; i++) {
        if (v->key_lengths[i] == key_len && memcmp(v->keys[i], key, key_len) == 0) {
            return v->items[i];
        }
    }
    return NULL;
}

size_t json_count(const json_value *v)
{
    return v != NULL && (v->type == JSON_ARRAY || v->type == JSON_OBJECT) ? v->count : 0;
}

const json_value *json_at(const json_value *v, size_t index)
{
    return index < json_count(v) ? v->items[index] : NULL;
}

const char *json_key_at(const json_value *v, size_t index)
{
    return v != NULL && v->type == JSON_OBJECT && index < v->count ? v->keys[index] : NULL;
}

const char *json_string(const json_value *v)
{
    return v != NULL && v->type == JSON_STRING ? v->string : NULL;
}

size_t json_string_len(const json_value *v)
{
    return v != NULL && v->type == JSON_STRING ? v->length : 0;
}

int json_number(const json_value *v, double *out)
{
    if (v == NULL || v->type != JSON_NUMBER) {
        return 0;
    }
    *out = v->number;
    return 1;
}

int json_int(const json_value *v, long long *out)
{
    if (v == NULL || v->type != JSON_NUMBER) {
        return 0;
    }
    if (v->is_integer) {
        *out = v->integer;
        return 1;
    }
    /* 1e3 or 2.0 are integers too, when the double holds them exactly. */
    if (v->number == floor(v->number) && fabs(v->number) <= 9007199254740992.0) {
        *out = (long long)v->number;
        return 1;
    }
    return 0;
}

int json_bool(const json_value *v, int *out)
{
    if (v == NULL || v->type != JSON_BOOL) {
        return 0;
    }
    *out = v->boolean;
    return 1;
}

int json_string_is(const json_value *v, const char *s)
{
    return v != NULL && v->type == JSON_STRING && s != NULL && strlen(s) == v->length &&
           memcmp(v->string, s, v->length) == 0;
}

uint8_t *json_hex_decode(const char *hex, size_t hex_len, size_t *out_len)
{
    uint8_t *out;
    size_t i;

    *out_len = 0;
    if (hex == NULL || hex_len % 2 != 0) {
        return NULL;
    }
    out = (uint8_t *)malloc(hex_len / 2 + 1); /* + 1: never malloc(0) */
    if (out == NULL) {
        return NULL;
    }
    for (i = 0; i < hex_len / 2; i++) {
        int hi = hex_digit((unsigned char)hex[2 * i]);
        int lo = hex_digit((unsigned char)hex[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        out[i] = (uint8_t)((hi << 4) | lo);
    }
    *out_len = hex_len / 2;
    return out;
}

uint8_t *json_hex_bytes(const json_value *v, size_t *out_len)
{
    *out_len = 0;
    if (v == NULL || v->type != JSON_STRING) {
        return NULL;
    }
    return json_hex_decode(v->string, v->length, out_len);
}
