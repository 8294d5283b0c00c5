/*
 * usmp_keylog.h - the opt-in session key log of host builds, for
 * decrypting captures (docs/wireshark.md). Internal to the core.
 *
 * DANGEROUS: whoever reads the key log reads every session it names.
 *
 * Conventions
 *  - Compiled only with USMP_KEYLOG=1 (usmp_options.h), which the CMake
 *    option USMP_KEYLOG sets; its default is ON for POSIX host builds and
 *    OFF for the device profile; the ESP32 component never sets it, and
 *    usmp_options.h stops any ESP32 build that tries.
 *  - The engine calls usmp_keylog_session once per session, when it
 *    becomes ESTABLISHED (state rows 8 and 20). The implementation
 *    (ports/posix/usmp_keylog_posix.c) does nothing unless the environment
 *    variable USMP_KEYLOG_FILE names a file; it never fails the session.
 *  - One line per session, the format of tools/wireshark/usmp.lua and the
 *    Python implementation (python/src/usmp/keylog.py):
 *      USMP_SESSION <session_id: 16 hex> <k_c2s: 64 hex> <k_s2c: 64 hex>
 */
#ifndef USMP_KEYLOG_H
#define USMP_KEYLOG_H

#include <stdint.h>

#include "usmp_options.h"

#if USMP_KEYLOG
/* Environment variable naming the key log file. */
#define USMP_KEYLOG_ENV "USMP_KEYLOG_FILE"

/* Appends the session's line to $USMP_KEYLOG_FILE, if set. */
void usmp_keylog_session(const uint8_t session_id[8], const uint8_t key_c2s[32],
                         const uint8_t key_s2c[32]);
#endif

#endif /* USMP_KEYLOG_H */
