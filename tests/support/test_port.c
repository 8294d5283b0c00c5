/*
 * test_port.c - usmp_port_random for host test programs.
 *
 * Only the random hook: a backend may draw blinding bytes from it (mbedTLS
 * randomises its X25519 ladder), so any test that links usmp_crypto needs
 * it. It is its own (CMake OBJECT) library so that a program linking a real
 * port (ports/posix) simply leaves it out, and nothing clashes.
 */
#include "usmp_port.h"

#include <stdio.h>
#include <stdlib.h>

void usmp_port_random(uint8_t *buf, size_t len)
{
    FILE *f;

    if (len == 0) {
        return;
    }
    /* The port contract: never return predictable bytes; stop instead. */
    f = fopen("/dev/urandom", "rb");
    if (f == NULL || fread(buf, 1, len, f) != len) {
        fputs("usmp_port_random: cannot read /dev/urandom\n", stderr);
        abort();
    }
    fclose(f);
}
