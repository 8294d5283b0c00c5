/*
 * usmp_uart.c - the UART transport's framing, the same on every platform:
 * COBS(frame) || 0x00 (spec section 10) over a line of usmp_uart_line.h.
 * See usmp_uart.h.
 *
 * Sending encodes block by block into a small chunk (a COBS block is its
 * code byte and the source bytes unchanged), so no frame-sized buffer is
 * needed. Receiving decodes with usmp_cobs_stream straight into the
 * caller's buffer; bytes read past a frame's delimiter wait in the state's
 * chunk for the next recv.
 */
#include "usmp_options.h"

/* Datagram transports: nothing to compile without datagram mode. */
#if USMP_DATAGRAM

#include "usmp_uart.h"

#include <string.h>

#include "usmp_errors.h"
#include "usmp_port.h"
#include "usmp_uart_line.h"

/* How long a write may wait for room on the line before the frame counts
 * as lost: more than a 1.3 KB frame takes at 9600 baud. */
#define WRITE_WAIT_MS   2000u
#define COBS_FULL_BLOCK 254u

static usmp_uart_state_t *state_of(void *ctx)
{
    return (usmp_uart_state_t *)(void *)&((usmp_transport_t *)ctx)->state;
}

static void uart_close(void *ctx)
{
    usmp_uart_state_t *s = state_of(ctx);
    if (s->fd >= 0) {
        usmp_uart_line_close(s->fd);
        s->fd = -1;
    }
}

/* Collects output bytes and writes them a chunk at a time. */
typedef struct {
    int line;
    int rc;
    size_t len;
    uint8_t bytes[32];
} writer_t;

static void put(writer_t *w, const uint8_t *data, size_t len)
{
    while (len > 0 && w->rc == USMP_OK) {
        size_t n = sizeof w->bytes - w->len;
        if (n > len) {
            n = len;
        }
        memcpy(w->bytes + w->len, data, n);
        w->len += n;
        data += n;
        len -= n;
        if (w->len == sizeof w->bytes) {
            w->rc = usmp_uart_line_write(w->line, w->bytes, w->len, WRITE_WAIT_MS);
            w->len = 0;
        }
    }
}

static int uart_send(void *ctx, const uint8_t *data, size_t len)
{
    usmp_uart_state_t *s = state_of(ctx);
    static const uint8_t delimiter = 0;
    writer_t w;
    size_t i = 0;

    if (s->fd < 0) {
        return USMP_ERR_TRANSPORT;
    }
    if (len > 0x7FFFFFFFu) {
        return USMP_ERR_ARG;
    }
    w.line = s->fd;
    w.rc = USMP_OK;
    w.len = 0;
    /* The minimal encoding, as usmp_cobs_encode: blocks end at each zero
     * (which they replace) and after 254 non-zero bytes; no empty block
     * follows a full block that ends the frame. */
    for (;;) {
        size_t j = i;
        uint8_t code;
        while (j < len && data[j] != 0 && j - i < COBS_FULL_BLOCK) {
            j++;
        }
        code = (uint8_t)(j - i + 1u);
        put(&w, &code, 1);
        put(&w, data + i, j - i);
        if (j == len) {
            break;
        }
        i = code == 0xFFu ? j : j + 1u;
    }
    put(&w, &delimiter, 1);
    if (w.rc == USMP_OK && w.len > 0) {
        w.rc = usmp_uart_line_write(w.line, w.bytes, w.len, WRITE_WAIT_MS);
    }
    if (w.rc == USMP_ERR_TIMEOUT) {
        /* A stuck line loses the frame (the peer drops its damaged half);
         * datagram mode retransmits what must arrive. */
        return (int)len;
    }
    return w.rc == USMP_OK ? (int)len : USMP_ERR_TRANSPORT;
}

static int uart_recv(void *ctx, uint8_t *buf, size_t cap, uint32_t timeout_ms)
{
    usmp_uart_state_t *s = state_of(ctx);
    uint32_t start = usmp_port_millis();

    if (s->fd < 0) {
        return USMP_ERR_TRANSPORT;
    }
    for (;;) {
        uint32_t elapsed;
        int n;

        while (s->chunk_off < s->chunk_len) {
            size_t used = 0;
            int rc = usmp_cobs_stream_feed(&s->deframer, buf, cap, s->chunk + s->chunk_off,
                                           (size_t)(s->chunk_len - s->chunk_off), &used);
            s->chunk_off = (uint8_t)(s->chunk_off + used);
            if (rc != 0) {
                return rc; /* a frame, or one dropped (counted by the caller) */
            }
        }
        elapsed = usmp_port_millis() - start;
        n = usmp_uart_line_read(s->fd, s->chunk, sizeof s->chunk,
                                elapsed < timeout_ms ? timeout_ms - elapsed : 0u);
        if (n <= 0) {
            return n; /* timeout (the partial frame waits in buf) or failure */
        }
        s->chunk_len = (uint8_t)n;
        s->chunk_off = 0;
    }
}

static int uart_available(void *ctx)
{
    usmp_uart_state_t *s = state_of(ctx);
    if (s->fd < 0) {
        return USMP_ERR_TRANSPORT;
    }
    return s->chunk_off < s->chunk_len ? 1 : usmp_uart_line_pending(s->fd);
}

static int uart_reconnect(void *ctx)
{
    usmp_uart_state_t *s = state_of(ctx);
    static const uint8_t resync = 0;
    int line;

    uart_close(ctx);
    usmp_cobs_stream_init(&s->deframer);
    s->chunk_len = 0;
    s->chunk_off = 0;
    line = usmp_uart_line_open(s->path, s->baud);
    if (line < 0) {
        return line;
    }
    s->fd = line;
    /* A lone delimiter ends whatever half frame the peer holds from before
     * (spec 10: a sender MAY start with 0x00 to resynchronise). */
    if (usmp_uart_line_write(line, &resync, 1, WRITE_WAIT_MS) == USMP_ERR_TRANSPORT) {
        uart_close(ctx);
        return USMP_ERR_TRANSPORT;
    }
    return USMP_OK;
}

int usmp_uart_transport_init(usmp_transport_t *transport, const char *path, uint32_t baud)
{
    if (transport == NULL || path == NULL || path[0] == '\0' || baud == 0) {
        return USMP_ERR_ARG;
    }
    memset(transport, 0, sizeof *transport);
    transport->send = uart_send;
    transport->recv = uart_recv;
    transport->close = uart_close;
    transport->reconnect = uart_reconnect;
    transport->available = uart_available;
    transport->ctx = transport;
    transport->datagram = 1;
    state_of(transport)->path = path;
    state_of(transport)->baud = baud;
    state_of(transport)->fd = -1;
    usmp_cobs_stream_init(&state_of(transport)->deframer);
    return USMP_OK;
}

#else
typedef int usmp_no_datagram_transports; /* ISO C wants a declaration */
#endif /* USMP_DATAGRAM */
