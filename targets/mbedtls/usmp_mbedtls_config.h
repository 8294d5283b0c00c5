/*
 * usmp_mbedtls_config.h - mbedTLS 2.28 configuration for the emulated
 * devices (MBEDTLS_CONFIG_FILE): only what the crypto seam uses.
 *
 * AES-256 (tables in flash, the smaller set), GCM (which reaches AES
 * through the cipher layer), SHA-256 and its md/HMAC layer, HKDF (the seam
 * builds HKDF on HMAC itself, so --gc-sections drops mbedTLS's), and
 * bignum and ECP with Curve25519 alone, for the builds whose X25519 comes
 * from mbedTLS's ECP module. One library serves every crypto profile: where
 * X25519 comes from elsewhere, --gc-sections leaves ECP and bignum out of
 * the image (nothing else in this configuration calls them).
 *
 * No entropy or DRBG module: the one thing mbedTLS draws randomness for
 * (the ECP ladder's blinding) gets it from the port's random hook, through
 * crypto/mbedtls. No malloc: mbedTLS allocates from a static pool
 * (memory_buffer_alloc), whose high-water mark the firmware reports.
 */
#ifndef USMP_MBEDTLS_CONFIG_H
#define USMP_MBEDTLS_CONFIG_H

/* Platform: a static heap, no standard-library entropy. NO_STD_FUNCTIONS:
 * mbedTLS's defaults do not name libc's calloc, free, exit or printf, so
 * the image links none of them (memory_buffer_alloc replaces calloc/free
 * at start-up anyway). */
#define MBEDTLS_PLATFORM_C
#define MBEDTLS_PLATFORM_NO_STD_FUNCTIONS
#define MBEDTLS_PLATFORM_MEMORY
#define MBEDTLS_MEMORY_BUFFER_ALLOC_C
#define MBEDTLS_NO_PLATFORM_ENTROPY

/* AES-256-GCM. ROM tables: in flash, not built in RAM at first use;
 * FEWER_TABLES: one 1 KB table per direction instead of four. */
#define MBEDTLS_AES_C
#define MBEDTLS_AES_ROM_TABLES
#define MBEDTLS_AES_FEWER_TABLES
/* GCM never runs the inverse cipher: usmp_aes_encrypt_only.c replaces it
 * with entry points that refuse, and its tables stay out of the image. */
#define MBEDTLS_AES_SETKEY_DEC_ALT
#define MBEDTLS_AES_DECRYPT_ALT
#define MBEDTLS_CIPHER_C
#define MBEDTLS_GCM_C

/* SHA-256, HMAC-SHA256 (md), HKDF. SMALLER: the compact compression loop. */
#define MBEDTLS_MD_C
#define MBEDTLS_SHA256_C
#define MBEDTLS_SHA256_SMALLER
#define MBEDTLS_HKDF_C

/* X25519 through mbedTLS's generic ECP code (measured against the other
 * providers, docs/footprint.md). NIST_OPTIM brings the fast reduction
 * modulo 2^255 - 19 as well. */
#define MBEDTLS_BIGNUM_C
#define MBEDTLS_ECP_C
#define MBEDTLS_ECP_DP_CURVE25519_ENABLED
#define MBEDTLS_ECP_NIST_OPTIM
#define MBEDTLS_ECP_WINDOW_SIZE       2
#define MBEDTLS_ECP_FIXED_POINT_OPTIM 0
#define MBEDTLS_HAVE_ASM
/* The ladder is blinded with the RNG the backend always passes (the port's
 * random hook), so ECP needs no DRBG of its own. */
#define MBEDTLS_ECP_NO_INTERNAL_RNG

#include "mbedtls/check_config.h"

#endif /* USMP_MBEDTLS_CONFIG_H */
