/*
 * usmp_options.h - compile-time options, each with a default.
 *
 * Override any of them with -D on the compiler command line (the ESP-IDF
 * component maps its Kconfig entries onto these in ports/esp32). The core
 * reads nothing else: no sdkconfig.h, no platform headers.
 */
#ifndef USMP_OPTIONS_H
#define USMP_OPTIONS_H

/* Largest record plaintext this side accepts, announced in the handshake
 * (16 .. 65519). It sizes the receive buffer of usmp_ctx_t: each byte here
 * costs one byte of RAM, twice (receive and send buffers). */
#ifndef USMP_MAX_RECORD
#define USMP_MAX_RECORD 512
#endif

/* Largest message (after reassembly) this side accepts (USMP_MAX_RECORD ..
 * 65535). Above USMP_MAX_RECORD the context carries a reassembly buffer of
 * this size; equal to it (the default) there is none. */
#ifndef USMP_MAX_MESSAGE
#define USMP_MAX_MESSAGE USMP_MAX_RECORD
#endif

/* Features. A device needs only the client role over a stream transport;
 * turning the others off takes their code out of the image and their
 * fields out of usmp_engine_t (see docs/footprint.md for the figures). The
 * library and everything that includes its headers must agree on them. */

/* The server (gateway) role of the engine. */
#ifndef USMP_SERVER
#define USMP_SERVER 1
#endif

/* Datagram mode (UDP, UART with COBS, radios): the explicit sequence
 * number, the replay window, retransmission, duplicates, cookies. */
#ifndef USMP_DATAGRAM
#define USMP_DATAGRAM 1
#endif

/* usmp_strerror's English sentences. With 0 it returns the condition name
 * ("AUTH_FAILED") instead, about 1 KB less flash in an image that calls
 * usmp_strerror; one that never calls it links none of them either way. */
#ifndef USMP_ERROR_TEXT
#define USMP_ERROR_TEXT 1
#endif

/* The device's firmware-update module (include/usmp/usmp_ota.h,
 * spec/ota.md): CONTROL channel 0x01, Ed25519-signed images written
 * through the platform's flash hooks. Off unless the build turns it on
 * (CMake -DUSMP_OTA=ON, the default on the host; ESP-IDF CONFIG_USMP_OTA),
 * so a device built without it is exactly as large as before. */
#ifndef USMP_OTA
#define USMP_OTA 0
#endif

/* The session key log (docs/wireshark.md): with 1, a session that becomes
 * established appends its id and record keys to the file named by the
 * environment variable USMP_KEYLOG_FILE, for decrypting captures.
 * DANGEROUS: whoever reads that file reads the sessions. Host builds only:
 * the CMake option USMP_KEYLOG sets it (default ON for POSIX host builds,
 * OFF for the device profile); the ESP32 component never does. */
#ifndef USMP_KEYLOG
#define USMP_KEYLOG 0
#endif

/* How a record key is kept (include/usmp/usmp_aead.h, docs/crypto.md):
 *  1: each usmp_aead_t holds the backend's context, key schedule set up
 *     once for the session's life; the fastest records, but on mbedTLS two
 *     whole GCM contexts in usmp_engine_t plus their AES contexts on the
 *     heap for as long as the session lasts;
 *  0: each usmp_aead_t holds only the 32-byte key, and every seal or open
 *     sets a context up on its own stack and frees and wipes it before
 *     returning: 1,332 B less RAM in all on an emulated Cortex-M4 with
 *     mbedTLS, a 64-byte record in 28,080 instead of 15,360 instructions
 *     (docs/footprint.md).
 * Same API, same bytes on the wire. The CMake option of the same name
 * sets it (default ON); the footprint profiles (bench/footprint, targets/)
 * and the ESP-IDF component (CONFIG_USMP_AEAD_KEEP_CONTEXT, default n)
 * build with 0. It changes the size of usmp_engine_t, so the library and
 * everything that includes its headers must agree on it. */
#ifndef USMP_AEAD_KEEP_CONTEXT
#define USMP_AEAD_KEEP_CONTEXT 1
#endif

/* Handshake deadline, both roles (spec section 11). */
#ifndef USMP_HANDSHAKE_TIMEOUT_MS
#define USMP_HANDSHAKE_TIMEOUT_MS 10000u
#endif

/* Server: close a session after this long without an authenticated record. */
#ifndef USMP_IDLE_TIMEOUT_MS
#define USMP_IDLE_TIMEOUT_MS 90000u
#endif

/* Client reconnect backoff: first delay and cap (spec section 11). */
#ifndef USMP_RECONNECT_BASE_MS
#define USMP_RECONNECT_BASE_MS 500u
#endif
#ifndef USMP_RECONNECT_MAX_MS
#define USMP_RECONNECT_MAX_MS 30000u
#endif

/* Bytes read from the transport at a time by the blocking API. */
#ifndef USMP_INPUT_CHUNK_BYTES
#define USMP_INPUT_CHUNK_BYTES 64
#endif

/* Set to 0 to compile out usmp_port_log calls (saves flash and stack). */
#ifndef USMP_LOG
#define USMP_LOG 1
#endif

#if USMP_KEYLOG && defined(ESP_PLATFORM)
#error "USMP_KEYLOG exports session keys: it is for host builds and never compiled for ESP32"
#endif
#if USMP_KEYLOG && !USMP_SERVER && !USMP_DATAGRAM
#error "USMP_KEYLOG is never compiled into the device profile (USMP_SERVER=0, USMP_DATAGRAM=0)"
#endif
#if USMP_AEAD_KEEP_CONTEXT != 0 && USMP_AEAD_KEEP_CONTEXT != 1
#error "USMP_AEAD_KEEP_CONTEXT must be 0 or 1"
#endif
#if USMP_MAX_RECORD < 16 || USMP_MAX_RECORD > 65519
#error "USMP_MAX_RECORD must be 16 .. 65519 (spec/protocol.md section 4.1)"
#endif
#if USMP_MAX_MESSAGE < USMP_MAX_RECORD || USMP_MAX_MESSAGE > 65535
#error "USMP_MAX_MESSAGE must be USMP_MAX_RECORD .. 65535"
#endif

#endif /* USMP_OPTIONS_H */
