/*
 * usmp_socket_common.h - what the TCP and UDP transports share: a poll()
 * that retries EINTR, and the port as decimal text for getaddrinfo.
 * Private to transports/.
 */
#ifndef USMP_SOCKET_COMMON_H
#define USMP_SOCKET_COMMON_H

#include <errno.h>
#include <stdint.h>
/* ESP-IDF has no <poll.h>: its newlib declares poll() in <sys/poll.h> only
 * (components/newlib/platform_include). POSIX names <poll.h>, and musl warns
 * about <sys/poll.h>, so each platform gets its own spelling. */
#ifdef ESP_PLATFORM
#include <sys/poll.h>
#else
#include <poll.h>
#endif

/* poll() one descriptor, retrying on EINTR. > 0 ready, 0 timeout, < 0 error. */
static inline int usmp_socket_wait(int fd, short events, int timeout_ms)
{
    struct pollfd p;
    int rc;

    p.fd = fd;
    p.events = events;
    p.revents = 0;
    do {
        rc = poll(&p, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc > 0 && (p.revents & (POLLERR | POLLNVAL)) && !(p.revents & events)) {
        return -1;
    }
    return rc;
}

/* A millisecond timeout as poll() takes it. */
static inline int usmp_socket_timeout(uint32_t timeout_ms)
{
    return timeout_ms > 0x7FFFFFFFu ? 0x7FFFFFFF : (int)timeout_ms;
}

/* The port as decimal text, without stdio; returns where it starts in text. */
static inline const char *usmp_socket_port_text(char text[6], uint16_t port)
{
    unsigned v = port, i;

    text[5] = '\0';
    for (i = 5; i-- > 0;) {
        text[i] = (char)('0' + v % 10u);
        v /= 10u;
    }
    for (i = 0; i < 4 && text[i] == '0'; i++) {
    }
    return text + i;
}

#endif /* USMP_SOCKET_COMMON_H */
