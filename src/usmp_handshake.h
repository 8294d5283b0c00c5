/*
 * usmp_handshake.h - transcript hash, key schedule and key confirmation
 * (spec/protocol.md section 5). Internal to the core; the vector tests
 * call these directly.
 */
#ifndef USMP_HANDSHAKE_H
#define USMP_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "usmp_engine.h"

typedef struct {
    uint8_t c2s[32];
    uint8_t s2c[32];
    uint8_t confirm_client[32];
    uint8_t confirm_server[32];
} usmp_hs_keys_t;

/* Writes the frame header for a handshake frame of body_len bytes and
 * returns its length: 3 (stream: type || u16 length) or 1 (datagram). */
size_t usmp_hs_header(uint8_t *frame, usmp_mode_t mode, uint8_t type, size_t body_len);

/* TH = SHA-256("usmp-v1 transcript" || mode || HELLO || CHALLENGE), the
 * HELLO frame given without its cookie. */
int usmp_hs_transcript(uint8_t th[32], usmp_mode_t mode, const uint8_t *hello, size_t hello_len,
                       const uint8_t *challenge, size_t challenge_len);

/* PRK = HKDF-Extract(nonce, dh || psk); OKM = HKDF-Expand(PRK, "usmp-v1" ||
 * TH, 128), split into the four keys. Intermediate secrets are wiped. */
int usmp_hs_derive_keys(usmp_hs_keys_t *keys, const uint8_t dh[32], const uint8_t *psk,
                        size_t psk_len, const uint8_t nonce[16], const uint8_t th[32]);

/* The hedged client ephemeral private key (spec 5.8):
 * HMAC-SHA256(psk, "usmp-v1 client ephemeral" || u64(boot_counter) ||
 * u64(connection_counter) || random32), all 32 bytes. A repeated random
 * output alone does not repeat the key. */
int usmp_hs_client_ephemeral(uint8_t private_key[32], const uint8_t *psk, size_t psk_len,
                             uint64_t boot_counter, uint64_t connection_counter,
                             const uint8_t random32[32]);

/* HMAC-SHA256(k_conf_c, "client finished" || TH)[0:16] */
int usmp_hs_client_mac(uint8_t mac[16], const uint8_t confirm_client[32], const uint8_t th[32]);

/* HMAC-SHA256(k_conf_s, "server finished" || TH || HELLO_ACK frame ||
 * session_id)[0:16] */
int usmp_hs_server_mac(uint8_t mac[16], const uint8_t confirm_server[32], const uint8_t th[32],
                       const uint8_t *hello_ack, size_t hello_ack_len, const uint8_t session_id[8]);

#endif /* USMP_HANDSHAKE_H */
