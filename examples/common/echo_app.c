/*
 * echo_app.c - see echo_app.h. Formats its report lines without stdio so
 * that it builds the same for a microcontroller as for the host.
 */
#include "echo_app.h"

#include <string.h>

typedef struct {
    char text[160];
    size_t len;
} line_t;

static void put_str(line_t *l, const char *s)
{
    while (*s != '\0' && l->len + 1 < sizeof l->text) {
        l->text[l->len++] = *s++;
    }
    l->text[l->len] = '\0';
}

/* The first `most` characters of s, and "..." when there are more. */
static void put_prefix(line_t *l, const char *s, size_t most)
{
    size_t i;
    for (i = 0; s[i] != '\0' && i < most && l->len + 1 < sizeof l->text; i++) {
        l->text[l->len++] = s[i];
    }
    l->text[l->len] = '\0';
    if (s[i] != '\0' && i == most) {
        put_str(l, "...");
    }
}

static void put_uint(line_t *l, uint32_t v)
{
    char digits[10];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0 && n < sizeof digits);
    while (n > 0 && l->len + 1 < sizeof l->text) {
        l->text[l->len++] = digits[--n];
    }
    l->text[l->len] = '\0';
}

static void put_hex(line_t *l, const uint8_t *b, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n && l->len + 3 < sizeof l->text; i++) {
        l->text[l->len++] = hex[b[i] >> 4];
        l->text[l->len++] = hex[b[i] & 15u];
    }
    l->text[l->len] = '\0';
}

static void report_error(const echo_app_t *app, const char *what, int rc)
{
    line_t l = { { 0 }, 0 };
    put_str(&l, what);
    put_str(&l, ": ");
    put_str(&l, usmp_error_name(rc));
    put_str(&l, " (");
    put_str(&l, usmp_strerror(rc));
    put_str(&l, ")");
    app->report(app->report_user, l.text);
}

int echo_app_run(usmp_ctx_t *ctx, const echo_app_t *app)
{
    static uint8_t reply[USMP_MAX_MESSAGE];
    const usmp_stats_t *stats;
    uint32_t t0;
    line_t l = { { 0 }, 0 };
    size_t i;
    int rc;

    t0 = usmp_port_millis();
    rc = usmp_connect(ctx, app->transport, app->config);
    if (rc != USMP_OK) {
        report_error(app, "handshake failed", rc);
        return rc;
    }
    stats = usmp_stats(ctx);
    put_str(&l, "session ");
    put_hex(&l, usmp_session_id(ctx), USMP_SESSION_ID_BYTES);
    put_str(&l, " established in ");
    put_uint(&l, usmp_port_millis() - t0);
    put_str(&l, " ms, handshake ");
    put_uint(&l, stats->bytes_sent + stats->bytes_received);
    put_str(&l, " bytes on the wire");
    app->report(app->report_user, l.text);

    for (i = 0; i < app->message_count && rc == USMP_OK; i++) {
        const char *msg = app->messages[i];
        size_t len = strlen(msg), got = 0;
        uint32_t received_before = stats->bytes_received, start = usmp_port_millis(), rtt;

        rc = usmp_send(ctx, (const uint8_t *)msg, len);
        if (rc == USMP_OK) {
            rc = usmp_recv_message(ctx, reply, sizeof reply, app->reply_timeout_ms, &got);
        }
        if (rc != USMP_OK) {
            report_error(app, "exchange failed", rc);
            break;
        }
        rtt = usmp_port_millis() - start;
        l.len = 0;
        put_str(&l, "sent ");
        put_uint(&l, (uint32_t)len);
        put_str(&l, " bytes as ");
        put_uint(&l, stats->last_send_wire_bytes);
        put_str(&l, " on the wire, echo of ");
        put_uint(&l, (uint32_t)got);
        put_str(&l, " bytes took ");
        put_uint(&l, stats->bytes_received - received_before);
        put_str(&l, ", round trip ");
        if (rtt == 0) {
            put_str(&l, "<1"); /* a millisecond clock cannot say more */
        } else {
            put_uint(&l, rtt);
        }
        put_str(&l, " ms: \"");
        put_prefix(&l, msg, 40);
        put_str(&l, "\"");
        app->report(app->report_user, l.text);
        if (got != len || memcmp(reply, msg, len) != 0) {
            report_error(app, "echo differs", USMP_ERR_MALFORMED);
            rc = USMP_ERR_MALFORMED;
        }
    }
    l.len = 0;
    put_str(&l, "closing: ");
    put_uint(&l, stats->messages_sent);
    put_str(&l, " messages, ");
    put_uint(&l, stats->bytes_sent);
    put_str(&l, " bytes sent and ");
    put_uint(&l, stats->bytes_received);
    put_str(&l, " received in all");
    app->report(app->report_user, l.text);
    (void)usmp_close(ctx);
    return rc;
}
