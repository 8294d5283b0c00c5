/*
 * provisioned_psk.c - stand-in for the key storage the README's C example
 * reads its DEVICE_PSK from. The README example is only compiled by the
 * test suite, never run, so this definition exists only to satisfy the
 * linker: it is not a key, and nothing ships with it.
 */
#include <stdint.h>

extern const uint8_t DEVICE_PSK[32];
const uint8_t DEVICE_PSK[32] = { 0 };
