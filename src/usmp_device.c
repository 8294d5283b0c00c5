/*
 * usmp_device.c - the blocking device API (usmp.h): a small loop around
 * the engine, the transport and the port hooks.
 */
#include "usmp.h"

#include <string.h>

#include "usmp_wire.h"
#if USMP_OTA
#include "usmp_ota.h"
#endif

/* A transport that accepts nothing for this long is treated as broken. */
#define SEND_STALL_LIMIT_MS 10000u
/* The longest single wait in a blocking call, so that timers run on time. */
#define MAX_WAIT_SLICE_MS 1000u

/* Handshakes started since boot (spec 5.8): with usmp_config_t.boot_counter
 * it goes into every ephemeral key, so two handshakes of one boot never
 * share a key even when the random source repeats. RAM only, shared by
 * every context. */
static uint64_t connections_since_boot;

/* ------------------------------------------------------------------ logging */

#if USMP_LOG
static void append(char *line, size_t cap, size_t *n, const char *s)
{
    while (*s != '\0' && *n + 1 < cap) {
        line[(*n)++] = *s++;
    }
}

/* Formats "usmp: <what>[: <condition>][, session <hex>]" without stdio,
 * which would cost a few kilobytes of flash on a microcontroller. */
static void log_event(const char *what, int code, const uint8_t *session_id)
{
    static const char hex[] = "0123456789abcdef";
    char line[96];
    size_t n = 0, i;

    append(line, sizeof line, &n, "usmp: ");
    append(line, sizeof line, &n, what);
    if (code != USMP_OK) {
        append(line, sizeof line, &n, ": ");
        append(line, sizeof line, &n, usmp_error_name(code));
    }
    if (session_id != NULL) {
        append(line, sizeof line, &n, ", session ");
        for (i = 0; i < USMP_SESSION_ID_BYTES && n + 2 < sizeof line; i++) {
            line[n++] = hex[session_id[i] >> 4];
            line[n++] = hex[session_id[i] & 15u];
        }
    }
    line[n] = '\0';
    usmp_port_log(line);
}
#else
#define log_event(what, code, session_id) ((void)(code))
#endif

/* ------------------------------------------------------------------ helpers */

static void port_random(void *user, uint8_t *buf, size_t len)
{
    (void)user;
    usmp_port_random(buf, len);
}

/* available is optional (usmp_transport.h). */
static int transport_valid(const usmp_transport_t *t)
{
    return t != NULL && t->send != NULL && t->recv != NULL && t->close != NULL &&
           t->reconnect != NULL;
}

/* Whether a read that may not wait would find anything: asks the
 * transport's available when it has one, so that an idle zero-wait pump
 * (usmp_keepalive_tick every 100 ms) costs one cheap check, not a read. */
static int nothing_to_read(const usmp_transport_t *t, uint32_t wait_ms)
{
    return wait_ms == 0 && t->available != NULL && t->available(t->ctx) == 0;
}

/* Sends everything the engine has queued. */
static int flush_output(usmp_ctx_t *ctx)
{
    uint32_t stalled_since = 0;
    int stalled = 0;

    for (;;) {
        const uint8_t *data;
        size_t len;
        int rc;

        usmp_engine_output(&ctx->engine, &data, &len);
        if (len == 0) {
            return USMP_OK;
        }
        rc = ctx->transport->send(ctx->transport->ctx, data, len);
        if (rc < 0) {
            return rc;
        }
        if (rc == 0) {
            uint32_t now = usmp_port_millis();
            if (!stalled) {
                stalled = 1;
                stalled_since = now;
            } else if (now - stalled_since >= SEND_STALL_LIMIT_MS) {
                return USMP_ERR_TRANSPORT;
            }
            usmp_port_delay_ms(1);
            continue;
        }
        stalled = 0;
        ctx->stats.bytes_sent += (uint32_t)rc;
        usmp_engine_output_done(&ctx->engine, (size_t)rc);
    }
}

/* How long a blocking call may wait now: at most `budget`, at most until
 * the engine's next timer, at most one slice. */
static uint32_t wait_budget(const usmp_ctx_t *ctx, uint32_t now, uint32_t budget)
{
    uint32_t deadline;

    if (budget > MAX_WAIT_SLICE_MS) {
        budget = MAX_WAIT_SLICE_MS;
    }
    if (usmp_engine_next_deadline(&ctx->engine, &deadline)) {
        if (usmp_time_reached(now, deadline)) {
            return 0;
        }
        if (deadline - now < budget) {
            budget = deadline - now;
        }
    }
#if USMP_OTA
    /* The OTA module's REQUEST retry (spec/ota.md 5). */
    if (ctx->ota != NULL && usmp_ota_next_deadline(ctx->ota, &deadline)) {
        if (usmp_time_reached(now, deadline)) {
            return 0;
        }
        if (deadline - now < budget) {
            budget = deadline - now;
        }
    }
#endif
    return budget;
}

/*
 * Reads what the transport has (waiting at most wait_ms), feeds it to the
 * engine and handles the events, then runs the timers and sends what the
 * engine queued. Stops early once a message is ready for usmp_recv.
 */
/* Handles what one feed produced. Returns USMP_ERR_PEER_CLOSED when the
 * gateway's BYE ended the session, else rc. */
static int on_event(usmp_ctx_t *ctx, const usmp_event_t *ev, uint32_t now, int rc)
{
    if (ev->type == USMP_EVENT_MESSAGE) {
        ctx->message_ready = 1;
        ctx->message = ev->data;
        ctx->message_len = ev->len;
        ctx->stats.messages_received++;
    } else if (ev->type == USMP_EVENT_PONG && ev->len == 4) {
        ctx->stats.last_rtt_ms = now - (uint32_t)usmp_get_be(ev->data, 4);
    } else if (ev->type == USMP_EVENT_ESTABLISHED) {
        log_event("session established", USMP_OK, usmp_engine_session_id(&ctx->engine));
#if USMP_OTA
        if (ctx->ota != NULL) {
            usmp_ota_session_opened(ctx->ota, ctx->engine.max_record); /* STATUS first */
        }
#endif
    } else if (ev->type == USMP_EVENT_CLOSED) {
        log_event("gateway closed the session", USMP_OK, NULL);
        rc = USMP_ERR_PEER_CLOSED;
    } else if (ev->type == USMP_EVENT_CONTROL) {
        /* Spec 6.7: never a message for usmp_recv; a channel nothing
         * handles is discarded and counted. */
#if USMP_OTA
        if (ev->channel == USMP_CONTROL_CHANNEL_OTA && ctx->ota != NULL) {
            usmp_ota_input(ctx->ota, ev->data, ev->len, now);
            return rc;
        }
#endif
        ctx->stats.control_discarded++;
    }
    return rc;
}

static int session_over(const usmp_ctx_t *ctx)
{
    usmp_state_t state = usmp_engine_state(&ctx->engine);
    return state == USMP_STATE_FAILED || state == USMP_STATE_CLOSED;
}

#if USMP_DATAGRAM
/*
 * Datagram mode: one datagram per recv, fed whole. What the transport or
 * the engine drops without ending the session (a duplicate, a bad tag, an
 * unauthenticated ERROR, a corrupt COBS frame: spec 6.2, 9.2, 10) is
 * counted and the pump goes on; only a failure that ends the session, or
 * the transport's own failure, is returned.
 */
static int pump_datagram(usmp_ctx_t *ctx, uint32_t wait_ms, int *read_failed)
{
    usmp_transport_t *t = ctx->transport;
    usmp_event_t ev;
    size_t used = 0;
    uint32_t now;
    int n, rc;

    if (ctx->message_ready || nothing_to_read(t, wait_ms)) {
        return USMP_OK;
    }
    n = t->recv(t->ctx, ctx->datagram_buf, sizeof ctx->datagram_buf, wait_ms);
    if (n == USMP_ERR_MALFORMED || n == USMP_ERR_TOO_LARGE) {
        ctx->stats.framing_errors++;
        ctx->stats.last_drop = n;
        return USMP_OK;
    }
    if (n <= 0) {
        *read_failed = n < 0;
        return n; /* nothing yet, or the transport failed */
    }
    ctx->stats.bytes_received += (uint32_t)n;
    now = usmp_port_millis();
    rc = usmp_engine_feed(&ctx->engine, ctx->datagram_buf, (size_t)n, now, &used, &ev);
    if (rc != USMP_OK && !session_over(ctx)) {
        ctx->stats.datagrams_dropped++;
        ctx->stats.last_drop = rc;
        rc = USMP_OK;
    }
    return on_event(ctx, &ev, now, rc);
}
#endif

/* Stream mode: what the transport delivered, fed until the engine took it
 * all or a message is ready for usmp_recv. */
static int pump_stream(usmp_ctx_t *ctx, uint32_t wait_ms, int *read_failed)
{
    usmp_transport_t *t = ctx->transport;
    int rc = USMP_OK;

    if (!ctx->message_ready && ctx->in_off == ctx->in_len) {
        int n;
        if (nothing_to_read(t, wait_ms)) {
            return USMP_OK;
        }
        n = t->recv(t->ctx, ctx->in_buf, sizeof ctx->in_buf, wait_ms);
        if (n == USMP_ERR_TRANSPORT_CLOSED) {
            *read_failed = 1;
            rc = usmp_engine_transport_closed(&ctx->engine);
            return rc != USMP_OK ? rc : USMP_ERR_PEER_CLOSED;
        }
        if (n < 0) {
            *read_failed = 1;
            return n;
        }
        ctx->in_len = (uint16_t)n;
        ctx->in_off = 0;
        ctx->stats.bytes_received += (uint32_t)n;
    }
    while (!ctx->message_ready && ctx->in_off < ctx->in_len) {
        size_t used = 0;
        usmp_event_t ev;
        uint32_t now = usmp_port_millis();
        const uint8_t *pending_out;
        size_t pending_len;

        rc = usmp_engine_feed(&ctx->engine, ctx->in_buf + ctx->in_off,
                              (size_t)(ctx->in_len - ctx->in_off), now, &used, &ev);
        ctx->in_off = (uint16_t)(ctx->in_off + used);
        rc = on_event(ctx, &ev, now, rc);
        if (rc != USMP_OK) {
            break;
        }
        if (used == 0) {
            /* The engine reads no PING while a PONG is unsent (spec 6.3):
             * send it and feed on; stop if nothing was waiting. */
            usmp_engine_output(&ctx->engine, &pending_out, &pending_len);
            if (pending_len == 0 || flush_output(ctx) != USMP_OK) {
                break;
            }
        }
    }
    return rc;
}

#if USMP_OTA
/* Runs the OTA module's timer and hands its messages to the session, one
 * CONTROL record at a time (the engine holds one record to send). */
static int ota_service(usmp_ctx_t *ctx)
{
    uint8_t body[64];
    size_t len;
    uint32_t now = usmp_port_millis();
    int rc = USMP_OK;

    if (ctx->ota == NULL || usmp_engine_state(&ctx->engine) != USMP_STATE_ESTABLISHED) {
        return USMP_OK;
    }
    usmp_ota_tick(ctx->ota, now);
    while ((len = usmp_ota_next_output(ctx->ota, body)) > 0) {
        rc = flush_output(ctx);
        if (rc != USMP_OK) {
            return rc;
        }
        rc = usmp_engine_send_control(&ctx->engine, USMP_CONTROL_CHANNEL_OTA, body, len, now);
        if (rc == USMP_ERR_MESSAGE_TOO_LARGE) {
            /* The gateway's max_record cannot carry it: nothing to resend. */
            ctx->ota->stats.send_failures++;
        } else if (rc != USMP_OK) {
            return rc == USMP_ERR_WOULD_BLOCK ? USMP_OK : rc; /* a message being sent: next pump */
        }
        usmp_ota_sent(ctx->ota, now);
    }
    return USMP_OK;
}
#endif

/*
 * Reads what the transport has (waiting at most wait_ms), feeds it to the
 * engine and handles the events, then runs the timers and sends what the
 * engine queued. Stops early once a message is ready for usmp_recv.
 */
static int pump(usmp_ctx_t *ctx, uint32_t wait_ms)
{
    int read_failed = 0;
    int rc;

#if USMP_DATAGRAM
    if (ctx->transport->datagram) {
        rc = pump_datagram(ctx, wait_ms, &read_failed);
    } else
#endif
    {
        rc = pump_stream(ctx, wait_ms, &read_failed);
    }
    if (read_failed) {
        return rc; /* the transport failed or the stream ended: nothing to run or send */
    }
    if (rc == USMP_OK) {
        rc = usmp_engine_tick(&ctx->engine, usmp_port_millis());
    }
#if USMP_OTA
    if (rc == USMP_OK) {
        rc = ota_service(ctx);
    }
#endif
    /* Send what the engine queued, also after a failure: its ERROR or BYE. */
    if (flush_output(ctx) != USMP_OK && rc == USMP_OK) {
        rc = USMP_ERR_TRANSPORT;
    }
    if (session_over(ctx)) {
        /* The session is over and its last word is out: free the
         * connection now rather than at the next call. */
        ctx->transport->close(ctx->transport->ctx);
    }
    return rc;
}

/* The error a finished session reports. A gateway's ERROR stays
 * USMP_ERR_PEER_ERROR, its code in usmp_peer_code: ERROR is
 * unauthenticated, so a forged ERROR(AUTH_FAILED) must not read like the
 * USMP_ERR_AUTH_FAILED this side reports only for a MAC it found wrong. */
static int session_error(const usmp_ctx_t *ctx)
{
    if (usmp_engine_state(&ctx->engine) == USMP_STATE_FAILED) {
        return usmp_engine_error(&ctx->engine);
    }
    if (usmp_engine_error(&ctx->engine) == USMP_ERR_PEER_CLOSED) {
        return USMP_ERR_PEER_CLOSED; /* the reason: usmp_engine_peer_code */
    }
    return ctx->last_error != USMP_OK ? ctx->last_error : USMP_ERR_STATE;
}

/* ------------------------------------------------------------------ connect */

static int begin_handshake(usmp_ctx_t *ctx)
{
    usmp_engine_config_t ec;
    int rc;

    memset(&ec, 0, sizeof ec);
    ec.role = USMP_ROLE_CLIENT;
    ec.mode = USMP_MODE_STREAM;
    ec.max_record = USMP_MAX_RECORD;
    ec.max_message = USMP_MAX_MESSAGE;
#if USMP_DATAGRAM
    if (ctx->transport->datagram) {
        /* Spec 8: the explicit sequence number, the replay window, the
         * retransmitted flight and the cookie are the engine's. */
        ec.mode = USMP_MODE_DATAGRAM;
        ec.max_record = USMP_DATAGRAM_LIMIT(USMP_MAX_RECORD);
    }
#endif
    ec.psk = ctx->config.psk;
    ec.psk_len = ctx->config.psk_len;
    usmp_port_get_device_id(ec.device_id);
    ec.random = port_random;
    ec.rx_buf = ctx->rx_buf;
    ec.rx_cap = sizeof ctx->rx_buf;
    ec.tx_buf = ctx->tx_buf;
    ec.tx_cap = sizeof ctx->tx_buf;
#if USMP_MAX_MESSAGE > USMP_MAX_RECORD
    ec.reassembly_buf = ctx->reassembly_buf;
    ec.reassembly_cap = sizeof ctx->reassembly_buf;
#endif
    ec.handshake_timeout_ms = ctx->config.handshake_timeout_ms != 0
                                  ? ctx->config.handshake_timeout_ms
                                  : USMP_HANDSHAKE_TIMEOUT_MS;
    ec.keepalive_ms = ctx->config.keepalive_ms;
    ec.pong_timeout_ms = ctx->config.pong_timeout_ms;
    ec.boot_counter = ctx->config.boot_counter;
    ec.connection_counter = connections_since_boot++;

    ctx->in_len = 0;
    ctx->in_off = 0;
    ctx->message_ready = 0;
    rc = ctx->transport->reconnect(ctx->transport->ctx);
    if (rc != USMP_OK) {
        log_event("cannot reach the gateway", rc, NULL);
        return rc;
    }
    /* The previous session may have ended with its record keys still
     * held for a BYE that never went out (FAILED, BYE pending): the wipe
     * releases the backend's contexts before the engine is set up again.
     * ctx is zeroed by usmp_connect_start, so the first time there is
     * nothing to release. */
    usmp_engine_wipe(&ctx->engine);
    rc = usmp_engine_init(&ctx->engine, &ec);
    if (rc == USMP_OK) {
        rc = usmp_engine_start(&ctx->engine, usmp_port_millis());
    }
    if (rc == USMP_OK) {
        rc = flush_output(ctx);
    }
    if (rc != USMP_OK) {
        ctx->transport->close(ctx->transport->ctx);
    }
    return rc;
}

int usmp_connect_start(usmp_ctx_t *ctx, usmp_transport_t *transport, const usmp_config_t *cfg)
{
    if (ctx == NULL || cfg == NULL || !transport_valid(transport)) {
        return USMP_ERR_ARG;
    }
#if !USMP_DATAGRAM
    if (transport->datagram) {
        return USMP_ERR_ARG; /* datagram mode is compiled out (usmp_options.h) */
    }
#endif
    if (cfg->psk == NULL || cfg->psk_len < USMP_PSK_MIN_BYTES ||
        cfg->psk_len > USMP_PSK_MAX_BYTES) {
        return USMP_ERR_PSK;
    }
    memset(ctx, 0, sizeof *ctx);
    ctx->transport = transport;
    ctx->config = *cfg;
    ctx->last_error = begin_handshake(ctx);
    return ctx->last_error;
}

int usmp_connect_poll(usmp_ctx_t *ctx, uint32_t wait_ms)
{
    uint32_t start;
    int first = 1;

    if (ctx == NULL || ctx->transport == NULL) {
        return USMP_ERR_ARG;
    }
    start = usmp_port_millis();
    for (;;) {
        uint32_t now = usmp_port_millis();
        uint32_t elapsed = now - start;
        usmp_state_t state = usmp_engine_state(&ctx->engine);
        int rc;

        if (state == USMP_STATE_ESTABLISHED) {
            return USMP_OK;
        }
        if (state == USMP_STATE_FAILED || state == USMP_STATE_CLOSED) {
            ctx->last_error = session_error(ctx);
            log_event("handshake failed", ctx->last_error, NULL);
            ctx->transport->close(ctx->transport->ctx);
            return ctx->last_error;
        }
        if (!first && elapsed >= wait_ms) {
            return USMP_ERR_WOULD_BLOCK;
        }
        first = 0;
        rc = pump(ctx, wait_budget(ctx, now, elapsed < wait_ms ? wait_ms - elapsed : 0));
        if (rc != USMP_OK && usmp_engine_state(&ctx->engine) != USMP_STATE_FAILED &&
            usmp_engine_state(&ctx->engine) != USMP_STATE_CLOSED) {
            /* A transport failure: the engine cannot know of it. */
            ctx->last_error = rc;
            log_event("handshake failed", rc, NULL);
            ctx->transport->close(ctx->transport->ctx);
            usmp_engine_wipe(&ctx->engine);
            return rc;
        }
    }
}

int usmp_connect(usmp_ctx_t *ctx, usmp_transport_t *transport, const usmp_config_t *cfg)
{
    int rc = usmp_connect_start(ctx, transport, cfg);
    while (rc == USMP_OK) {
        rc = usmp_connect_poll(ctx, MAX_WAIT_SLICE_MS);
        if (rc == USMP_ERR_WOULD_BLOCK) {
            rc = USMP_OK; /* the engine's handshake timer bounds this loop */
        } else {
            break;
        }
    }
    return rc;
}

/* --------------------------------------------------------------- send, recv */

int usmp_send(usmp_ctx_t *ctx, const uint8_t *msg, size_t len)
{
    size_t done = 0;
    uint32_t bytes_before;

    if (ctx == NULL || ctx->transport == NULL || (msg == NULL && len > 0)) {
        return USMP_ERR_ARG;
    }
    if (usmp_engine_state(&ctx->engine) != USMP_STATE_ESTABLISHED) {
        return session_error(ctx);
    }
    bytes_before = ctx->stats.bytes_sent;
    for (;;) {
        int rc = usmp_engine_send(&ctx->engine, msg + done, len - done, usmp_port_millis());
        if (rc == USMP_ERR_WOULD_BLOCK) {
            rc = flush_output(ctx);
            if (rc != USMP_OK) {
                return ctx->last_error = rc;
            }
            continue;
        }
        if (rc < 0) {
            return rc;
        }
        done += (size_t)rc;
        rc = flush_output(ctx);
        if (rc != USMP_OK) {
            return ctx->last_error = rc;
        }
        if (done == len) {
            break;
        }
    }
    ctx->stats.messages_sent++;
    /* Measured, not computed: fragments and any control frame flushed
     * with the message count too. */
    ctx->stats.last_send_wire_bytes = ctx->stats.bytes_sent - bytes_before;
    return USMP_OK;
}

int usmp_recv_message(usmp_ctx_t *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms, size_t *len)
{
    uint32_t start;
    int first = 1;

    if (len != NULL) {
        *len = 0;
    }
    if (ctx == NULL || ctx->transport == NULL || len == NULL || (buf == NULL && cap > 0)) {
        return USMP_ERR_ARG;
    }
    start = usmp_port_millis();
    for (;;) {
        uint32_t now = usmp_port_millis();
        uint32_t elapsed = now - start;
        int rc;

        if (ctx->message_ready) {
            if (ctx->message_len > cap) {
                return USMP_ERR_BUFFER; /* kept for a larger buffer */
            }
            if (ctx->message_len > 0) {
                memcpy(buf, ctx->message, ctx->message_len);
            }
            *len = ctx->message_len;
            ctx->message_ready = 0;
            return USMP_OK;
        }
        if (usmp_engine_state(&ctx->engine) != USMP_STATE_ESTABLISHED) {
            return session_error(ctx);
        }
        if (!first && elapsed >= timeout_ms) {
            return USMP_ERR_WOULD_BLOCK;
        }
        first = 0;
        rc = pump(ctx, wait_budget(ctx, now, elapsed < timeout_ms ? timeout_ms - elapsed : 0));
        if (rc != USMP_OK && !ctx->message_ready) {
            ctx->last_error = rc;
            if (rc != USMP_ERR_PEER_CLOSED) {
                log_event("session lost", rc, NULL);
            }
            return rc;
        }
    }
}

int usmp_recv(usmp_ctx_t *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    size_t len = 0;
    int rc = usmp_recv_message(ctx, buf, cap, timeout_ms, &len);

    if (rc == USMP_OK) {
        return (int)len;
    }
    return rc == USMP_ERR_WOULD_BLOCK ? 0 : rc;
}

/* ---------------------------------------------------------------- keepalive */

/* Spec 11: wait d/2 + random(0 .. d/2), d = min(cap, base * 2^attempt). */
static uint32_t backoff_ms(uint32_t attempt)
{
    uint32_t d = USMP_RECONNECT_BASE_MS;
    uint8_t r[4];

    while (attempt-- > 0 && d < USMP_RECONNECT_MAX_MS) {
        d *= 2u;
    }
    if (d > USMP_RECONNECT_MAX_MS) {
        d = USMP_RECONNECT_MAX_MS;
    }
    usmp_port_random(r, sizeof r);
    return d / 2u + (uint32_t)usmp_get_be(r, 4) % (d / 2u + 1u);
}

int usmp_keepalive_tick(usmp_ctx_t *ctx)
{
    uint32_t now;
    int rc;

    if (ctx == NULL || ctx->transport == NULL) {
        return USMP_ERR_ARG;
    }
    now = usmp_port_millis();
    if (usmp_engine_state(&ctx->engine) == USMP_STATE_ESTABLISHED) {
        rc = pump(ctx, 0);
        if (rc != USMP_OK) {
            ctx->last_error = rc;
        }
        if (usmp_engine_state(&ctx->engine) == USMP_STATE_ESTABLISHED && rc == USMP_OK) {
            return USMP_OK;
        }
        log_event("session lost", session_error(ctx), NULL);
    }

    /* The session is down. A message still waiting for usmp_recv lives in
     * the engine's buffers: keep them until it is read. */
    if (ctx->config.no_reconnect || ctx->message_ready) {
        return ctx->message_ready ? USMP_ERR_WOULD_BLOCK : session_error(ctx);
    }
    if (!ctx->reconnect_due) {
        ctx->transport->close(ctx->transport->ctx);
        usmp_engine_wipe(&ctx->engine);
        ctx->reconnect_at = now + backoff_ms(ctx->reconnect_attempt);
        ctx->reconnect_due = 1;
        log_event("reconnecting after backoff", USMP_OK, NULL);
        return USMP_ERR_WOULD_BLOCK;
    }
    if (!usmp_time_reached(now, ctx->reconnect_at)) {
        return USMP_ERR_WOULD_BLOCK;
    }
    ctx->reconnect_due = 0;
    ctx->reconnect_attempt++;
    rc = begin_handshake(ctx);
    while (rc == USMP_OK) {
        rc = usmp_connect_poll(ctx, MAX_WAIT_SLICE_MS);
        if (rc == USMP_ERR_WOULD_BLOCK) {
            rc = USMP_OK;
        } else {
            break;
        }
    }
    ctx->last_error = rc;
    if (rc == USMP_OK) {
        ctx->reconnect_attempt = 0;
        ctx->stats.reconnects++;
    }
    return rc;
}

/* -------------------------------------------------------------------- close */

int usmp_close(usmp_ctx_t *ctx)
{
    if (ctx == NULL || ctx->transport == NULL) {
        return USMP_ERR_ARG;
    }
    if (usmp_engine_state(&ctx->engine) == USMP_STATE_ESTABLISHED) {
        (void)usmp_engine_close(&ctx->engine, USMP_CODE_NONE);
        (void)flush_output(ctx); /* best effort: the peer may be gone */
    }
    ctx->transport->close(ctx->transport->ctx);
    usmp_engine_wipe(&ctx->engine);
    ctx->message_ready = 0;
    ctx->reconnect_due = 0;
    return USMP_OK;
}

uint8_t usmp_peer_code(const usmp_ctx_t *ctx)
{
    return ctx != NULL ? usmp_engine_peer_code(&ctx->engine) : 0u;
}

usmp_state_t usmp_state(const usmp_ctx_t *ctx)
{
    return ctx != NULL ? usmp_engine_state(&ctx->engine) : USMP_STATE_FAILED;
}

const uint8_t *usmp_session_id(const usmp_ctx_t *ctx)
{
    return ctx != NULL ? usmp_engine_session_id(&ctx->engine) : NULL;
}

const usmp_stats_t *usmp_stats(const usmp_ctx_t *ctx)
{
    return ctx != NULL ? &ctx->stats : NULL;
}
