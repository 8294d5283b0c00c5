/*
 * usmp_port.h - the five hooks a platform provides to USMP.
 *
 * The blocking API (usmp_connect, usmp_send, usmp_recv, usmp_keepalive_tick)
 * calls these; the sans-I/O engine never does. ports/posix and ports/esp32
 * implement them; a new platform implements these five functions and
 * nothing else.
 */
#ifndef USMP_PORT_H
#define USMP_PORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The 6-byte device id sent in HELLO (the Wi-Fi station MAC on ESP32). The
 * gateway selects this device's PSK by it. It is sent in the clear. */
void usmp_port_get_device_id(uint8_t out[6]);

/* Fills buf with len bytes from a cryptographically secure generator.
 * Ephemeral X25519 keys come from here: a weak generator breaks forward
 * secrecy. Must not fail; a port that cannot produce randomness must stop
 * the program rather than return predictable bytes. */
void usmp_port_random(uint8_t *buf, size_t len);

/* Sleeps for ms milliseconds (yields to other tasks on an RTOS). */
void usmp_port_delay_ms(uint32_t ms);

/* A monotonic millisecond clock. It may wrap at 2^32; USMP compares times
 * with wrap-safe arithmetic, so only differences below 2^31 ms matter. */
uint32_t usmp_port_millis(void);

/* One line of diagnostic text, without a trailing newline. USMP never logs
 * key material. */
void usmp_port_log(const char *msg);

#ifdef __cplusplus
}
#endif

#endif /* USMP_PORT_H */
