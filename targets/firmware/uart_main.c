/*
 * uart_main.c - firmware image "uart": the blocking device API in datagram
 * mode (USMP_DATAGRAM=1, client role) over the board's emulated UART with
 * COBS framing (transports/usmp_uart.c over the board's line driver,
 * boards/mps2_an386_uart.c or boards/riscv_virt_uart.c), against the
 * Python gateway's serial transport on the host (`usmp serve --serial`,
 * started by targets/run.py on QEMU's pty).
 *
 * The host passes, on the semihosting command line (picolibc's crt0 puts
 * them after its own argv[0]): the device id (12 hex
 * digits), the PSK (hex; the same as in the gateway's --psk-file) and a
 * 32-byte random seed (hex), all drawn afresh for each run; nothing secret
 * is compiled in.
 *
 * It waits for the gateway's first byte (the lone delimiter its serial
 * transport writes when it opens the port, spec 10), then: usmp_connect,
 * ECHO_MESSAGES messages each echoed back and checked byte for byte (the
 * last one 64 bytes), and usmp_close, whose BYE the gateway must report.
 * RESULT lines: session_id (for run.py to find in the gateway's log),
 * messages_echoed, instructions per handshake and per 64-byte record over
 * the UART, and the painted stack of usmp_connect.
 */
#include <stdio.h>
#include <string.h>

#include "target.h"
#include "uart_line_common.h"
#include "usmp.h"
#include "usmp_port.h"
#include "usmp_uart.h"
#include "usmp_uart_line.h"

#if USMP_SERVER || !USMP_DATAGRAM
#error "the uart image is built for a datagram device (USMP_SERVER=0 USMP_DATAGRAM=1)"
#endif

#define UART_BAUD 115200u
/* Virtual time (uart_line_common.h), which runs slower than the host's:
 * short enough that a failure ends the run soon, long enough for a gateway
 * on a loaded host. */
#define GATEWAY_WAIT_MS      20000u /* the host starts the gateway after QEMU */
#define HANDSHAKE_TIMEOUT_MS 5000u
#define ECHO_TIMEOUT_MS      5000u
/* After the BYE, before exiting: QEMU closes the pty when it exits, and
 * what the host has not read from it by then may be lost. */
#define LINGER_MS      300u
#define ECHO_MESSAGES  3u
#define RECORD64_BYTES 64u
#define PSK_MAX_BYTES  64u

static int hex_value(char c)
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

/* Decodes hex into out; returns the byte count, or 0 when text is not
 * whole bytes of hex or does not fit in cap. */
static size_t from_hex(const char *text, uint8_t *out, size_t cap)
{
    size_t len = strlen(text), i;

    if (len == 0 || len % 2 != 0 || len / 2 > cap) {
        return 0;
    }
    for (i = 0; i < len / 2; i++) {
        int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return 0;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return len / 2;
}

/* The gateway's serial transport writes a lone 0x00 when it opens the port;
 * frames sent before that would be lost in QEMU's unconnected pty. */
static int wait_for_gateway(void)
{
    uint8_t byte;
    int line = usmp_uart_line_open("0", UART_BAUD), rc;

    if (line < 0) {
        return line;
    }
    rc = usmp_uart_line_read(line, &byte, 1, GATEWAY_WAIT_MS);
    usmp_uart_line_close(line);
    return rc > 0 ? USMP_OK : USMP_ERR_TIMEOUT;
}

static void print_session_id(const uint8_t *id)
{
    size_t i;

    printf("RESULT session_id ");
    for (i = 0; i < 8; i++) {
        printf("%02x", id[i]);
    }
    printf("\n");
}

static usmp_ctx_t ctx;
static usmp_transport_t transport;

int main(int argc, char **argv)
{
    uint8_t device_id[6], psk[PSK_MAX_BYTES], seed[32];
    uint8_t message[RECORD64_BYTES], buf[USMP_MAX_MESSAGE];
    usmp_config_t cfg;
    unsigned echoed = 0, i;
    uint64_t t0, waited;
    uintptr_t sp;
    int rc;

    target_start("uart");
    if (argc != 4 || from_hex(argv[1], device_id, sizeof device_id) != sizeof device_id ||
        from_hex(argv[3], seed, sizeof seed) != sizeof seed) {
        TARGET_CHECK(0, "usage: uart DEVICE_ID_HEX PSK_HEX SEED_HEX (semihosting arguments)");
        target_finish();
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.psk = psk;
    cfg.psk_len = from_hex(argv[2], psk, sizeof psk);
    cfg.handshake_timeout_ms = HANDSHAKE_TIMEOUT_MS;
    uart_port_seed(seed, device_id);
    target_result("context_bytes", sizeof(usmp_ctx_t));

    rc = wait_for_gateway();
    TARGET_CHECK(rc == USMP_OK, "no byte from the gateway on the UART");
    if (rc != USMP_OK) {
        target_finish();
    }
    TARGET_CHECK(usmp_uart_transport_init(&transport, "0", UART_BAUD) == USMP_OK,
                 "usmp_uart_transport_init");

    target_stack_paint();
    sp = board_sp();
    waited = uart_line_waited;
    t0 = board_instructions();
    rc = usmp_connect(&ctx, &transport, &cfg);
    /* Over a real line the handshake includes waiting for the gateway: both
     * figures, with and without the driver's wait loops. */
    t0 = board_instructions() - t0;
    target_result("handshake_instructions_with_waits", t0);
    target_result("handshake_instructions", t0 - (uart_line_waited - waited));
    target_result("stack_connect", target_stack_used(sp));
    if (rc != USMP_OK) {
        printf("usmp_connect: %s (peer code %u)\n", usmp_strerror(rc), usmp_peer_code(&ctx));
        TARGET_CHECK(0, "usmp_connect over the UART");
        target_finish();
    }
    print_session_id(usmp_session_id(&ctx));

    for (i = 0; i < ECHO_MESSAGES; i++) {
        size_t len = i + 1 < ECHO_MESSAGES ? 5u + 7u * i : RECORD64_BYTES;
        size_t k;

        for (k = 0; k < len; k++) {
            message[k] = (uint8_t)(i * 31u + k);
        }
        waited = uart_line_waited;
        t0 = board_instructions();
        rc = usmp_send(&ctx, message, len);
        if (len == RECORD64_BYTES) {
            target_result("record64_instructions",
                          board_instructions() - t0 - (uart_line_waited - waited));
        }
        TARGET_CHECK(rc == USMP_OK, "usmp_send over the UART");
        rc = usmp_recv(&ctx, buf, sizeof buf, ECHO_TIMEOUT_MS);
        if (rc == (int)len && memcmp(buf, message, len) == 0) {
            echoed++;
        } else {
            printf("usmp_recv: %d (%s)\n", rc, rc < 0 ? usmp_strerror(rc) : "wrong echo");
            TARGET_CHECK(0, "the gateway's echo");
            break;
        }
    }
    target_result("messages_echoed", echoed);
    target_result("framing_errors", usmp_stats(&ctx)->framing_errors);
    target_result("datagrams_dropped", usmp_stats(&ctx)->datagrams_dropped);
    rc = usmp_close(&ctx);
    TARGET_CHECK(rc == USMP_OK, "usmp_close (BYE) over the UART");
    usmp_port_delay_ms(LINGER_MS);
    TARGET_CHECK(echoed == ECHO_MESSAGES, "not every message was echoed");
    target_finish();
}
