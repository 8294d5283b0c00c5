/*
 * usmp_handshake.c - transcript hash, key schedule and key confirmation
 * (spec section 5).
 */
#include "usmp_handshake.h"

#include "usmp_crypto.h"
#include "usmp_wire.h"

#define LABEL(s) { (const uint8_t *)(s), sizeof(s) - 1u }

size_t usmp_hs_header(uint8_t *frame, usmp_mode_t mode, uint8_t type, size_t body_len)
{
    frame[0] = type;
    if (mode == USMP_MODE_STREAM) {
        usmp_put_u16(frame + 1, (uint16_t)body_len);
        return USMP_STREAM_HEADER_BYTES;
    }
    return USMP_DATAGRAM_HANDSHAKE_HEADER_BYTES;
}

int usmp_hs_transcript(uint8_t th[32], usmp_mode_t mode,
                       const uint8_t *hello, size_t hello_len,
                       const uint8_t *challenge, size_t challenge_len)
{
    const uint8_t mode_byte = (uint8_t)mode;
    const usmp_slice_t parts[] = {
        LABEL("usmp-v1 transcript"),
        { &mode_byte, 1u },
        { hello, hello_len },
        { challenge, challenge_len },
    };
    return usmp_crypto_sha256(th, parts, 4u) == USMP_CRYPTO_OK ? USMP_OK : USMP_ERR_CRYPTO;
}

int usmp_hs_derive_keys(usmp_hs_keys_t *keys, const uint8_t dh[32],
                        const uint8_t *psk, size_t psk_len,
                        const uint8_t nonce[16], const uint8_t th[32])
{
    uint8_t prk[USMP_SHA256_BYTES];
    const usmp_slice_t ikm[] = { { dh, 32u }, { psk, psk_len } };
    const usmp_slice_t info[] = { LABEL("usmp-v1"), { th, 32u } };
    int rc = usmp_crypto_hkdf_extract(prk, nonce, USMP_NONCE_BYTES, ikm, 2u);

    if (rc == USMP_CRYPTO_OK) {
        /* usmp_hs_keys_t is the 128 bytes of OKM in order. */
        rc = usmp_crypto_hkdf_expand((uint8_t *)keys, sizeof *keys, prk, info, 2u);
    }
    usmp_crypto_wipe(prk, sizeof prk);
    if (rc != USMP_CRYPTO_OK) {
        usmp_crypto_wipe(keys, sizeof *keys);
        return USMP_ERR_CRYPTO;
    }
    return USMP_OK;
}

int usmp_hs_client_ephemeral(uint8_t private_key[32], const uint8_t *psk, size_t psk_len,
                             uint64_t boot_counter, uint64_t connection_counter,
                             const uint8_t random32[32])
{
    uint8_t counters[16];
    const usmp_slice_t parts[] = {
        LABEL("usmp-v1 client ephemeral"),
        { counters, sizeof counters },
        { random32, 32u },
    };
    int rc;

    usmp_put_be(counters, boot_counter, 8);
    usmp_put_be(counters + 8, connection_counter, 8);
    /* The whole 32-byte tag is the key; X25519 clamps it (spec 5.8). */
    rc = usmp_crypto_hmac_sha256(private_key, psk, psk_len, parts, 3u);
    usmp_crypto_wipe(counters, sizeof counters);
    if (rc != USMP_CRYPTO_OK) {
        usmp_crypto_wipe(private_key, 32u);
        return USMP_ERR_CRYPTO;
    }
    return USMP_OK;
}

static int truncated_hmac(uint8_t mac[16], const uint8_t key[32],
                          const usmp_slice_t *parts, size_t count)
{
    uint8_t full[USMP_HMAC_SHA256_BYTES];
    size_t i;
    int rc = usmp_crypto_hmac_sha256(full, key, 32u, parts, count);

    for (i = 0; i < USMP_MAC_BYTES; i++) {
        mac[i] = full[i];
    }
    usmp_crypto_wipe(full, sizeof full);
    return rc == USMP_CRYPTO_OK ? USMP_OK : USMP_ERR_CRYPTO;
}

int usmp_hs_client_mac(uint8_t mac[16], const uint8_t confirm_client[32],
                       const uint8_t th[32])
{
    const usmp_slice_t parts[] = { LABEL("client finished"), { th, 32u } };
    return truncated_hmac(mac, confirm_client, parts, 2u);
}

int usmp_hs_server_mac(uint8_t mac[16], const uint8_t confirm_server[32],
                       const uint8_t th[32], const uint8_t *hello_ack, size_t hello_ack_len,
                       const uint8_t session_id[8])
{
    const usmp_slice_t parts[] = {
        LABEL("server finished"),
        { th, 32u },
        { hello_ack, hello_ack_len },
        { session_id, USMP_SESSION_ID_BYTES },
    };
    return truncated_hmac(mac, confirm_server, parts, 4u);
}
