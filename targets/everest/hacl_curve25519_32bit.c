/*
 * hacl_curve25519_32bit.c - HACL*'s 32-bit X25519, from the 3rdparty/everest
 * directory of mbedTLS's source package, as one translation unit.
 *
 * The same three files the host build compiles separately (CMakeLists.txt,
 * USMP_X25519=everest), included here so that the compiler can inline
 * kremlib's emulated 128-bit arithmetic into the field operations, as
 * mbedTLS's own Hacl_Curve25519_joined.c does. Nothing of them is copied:
 * targets/run.py points the include path at the unpacked source package.
 */
#define KRML_VERIFIED_UINT128
#include "kremlib/FStar_UInt128_extracted.c"
#include "legacy/Hacl_Curve25519.c"
#include "kremlib/FStar_UInt64_FStar_UInt32_FStar_UInt16_FStar_UInt8.c"
