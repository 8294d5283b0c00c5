/*
 * usmp_discovery_posix.h - finding a gateway on the LAN without its address:
 * DNS-SD over mDNS (_usmp._tcp, _usmp._udp; docs/bring-up.md, "What is advertised")
 * resolved by the system's avahi-daemon through libavahi-client.
 *
 * Conventions:
 * - Host programs only (examples/posix_device): the core never resolves
 *   names. Compiled when the build finds libavahi-client (CMake option
 *   USMP_AVAHI); usmp_posix_discovery_available() says whether it was.
 * - Discovery is not authentication: anyone on the LAN can answer. The
 *   handshake that follows (spec 6) is what proves the gateway holds the
 *   device's key; an impostor fails it with AUTH_FAILED.
 * - Only services whose TXT "v" names protocol version 1 are taken
 *   (spec 4); the first one resolved wins.
 */
#ifndef USMP_DISCOVERY_POSIX_H
#define USMP_DISCOVERY_POSIX_H

#include <stddef.h>
#include <stdint.h>

/* What a resolution found: an IPv4 address in dotted form and a port. */
typedef struct {
    char host[64];
    uint16_t port;
    char name[64]; /* the gateway's instance name, for messages */
} usmp_posix_gateway_t;

/* 1 when this build resolves through avahi, 0 when it was built without. */
int usmp_posix_discovery_available(void);

/* Browses for _usmp._<transport> ("tcp" or "udp") for at most timeout_ms
 * and resolves the first gateway found. Returns 0 and fills *out, or -1
 * with a sentence in err (no avahi-daemon, nothing found in time, a build
 * without avahi). */
int usmp_posix_discover(const char *transport, unsigned timeout_ms, usmp_posix_gateway_t *out,
                        char *err, size_t err_len);

#endif /* USMP_DISCOVERY_POSIX_H */
