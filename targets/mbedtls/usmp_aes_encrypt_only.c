/*
 * usmp_aes_encrypt_only.c - the AES decryption entry points of mbedTLS 2.28
 * for a device that only runs AES-GCM (MBEDTLS_AES_SETKEY_DEC_ALT and
 * MBEDTLS_AES_DECRYPT_ALT in usmp_mbedtls_config.h).
 *
 * GCM drives the block cipher forwards in both directions (counter mode
 * and GHASH), so the inverse cipher, its key schedule and its tables
 * (about 1.5 KB of flash on Cortex-M4) are dead weight; mbedTLS's cipher
 * layer still names them. These replacements refuse: anything that ever
 * asks for an AES decryption gets an error, never a wrong answer.
 */
#include "mbedtls/aes.h"
#include "mbedtls/platform.h"

int mbedtls_aes_setkey_dec(mbedtls_aes_context *ctx, const unsigned char *key, unsigned int keybits)
{
    (void)ctx;
    (void)key;
    (void)keybits;
    return MBEDTLS_ERR_PLATFORM_FEATURE_UNSUPPORTED;
}

int mbedtls_internal_aes_decrypt(mbedtls_aes_context *ctx, const unsigned char input[16],
                                 unsigned char output[16])
{
    (void)ctx;
    (void)input;
    (void)output;
    return MBEDTLS_ERR_PLATFORM_FEATURE_UNSUPPORTED;
}
