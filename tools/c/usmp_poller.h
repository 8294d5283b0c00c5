/*
 * usmp_poller.h - the C gateway's event loop seam: which descriptors are
 * ready, at a cost per wait that does not grow with the number of
 * descriptors watched (epoll on Linux), behind a small interface so that
 * poll() serves other POSIX systems (usmp_poller_poll.c). CMake picks one
 * at build time (USMP_GATEWAY_POLLER: epoll on Linux, poll elsewhere);
 * tests/unit/test_poller.c runs the same cases on both.
 *
 * Conventions: level-triggered, like poll(): a descriptor is reported on
 * every wait while it is ready for what it is watched for. Errors and
 * hang-ups (USMP_POLLER_ERROR) are reported whatever the events watched,
 * even none, as poll() and epoll do; a descriptor that should not be
 * reported at all is removed. Each descriptor is watched once, with a
 * pointer of the caller's that comes back with its events. Functions
 * that can fail return 0, or -1 with errno set.
 */
#ifndef USMP_POLLER_H
#define USMP_POLLER_H

#include <stddef.h>

#define USMP_POLLER_IN    0x1u /* readable, or the peer closed its side */
#define USMP_POLLER_OUT   0x2u /* writable */
#define USMP_POLLER_ERROR 0x4u /* an error or a hang-up on the descriptor */

typedef struct usmp_poller usmp_poller_t;

typedef struct {
    void *ptr;       /* what usmp_poller_add was given */
    unsigned events; /* USMP_POLLER_* */
} usmp_poller_event_t;

/* "epoll" or "poll": the implementation this build uses. */
const char *usmp_poller_name(void);

/* A poller for about size_hint descriptors (it grows past that). NULL
 * when out of memory or descriptors. */
usmp_poller_t *usmp_poller_create(size_t size_hint);

void usmp_poller_destroy(usmp_poller_t *p);

/* Watches fd for events (USMP_POLLER_IN, _OUT or both; 0: errors only). */
int usmp_poller_add(usmp_poller_t *p, int fd, unsigned events, void *ptr);

/* Changes what a watched fd is watched for. */
int usmp_poller_modify(usmp_poller_t *p, int fd, unsigned events, void *ptr);

/* Stops watching fd; call before closing it. */
int usmp_poller_remove(usmp_poller_t *p, int fd);

/* Waits up to timeout_ms (-1: no limit) for ready descriptors; stores at
 * most max of them in out. Returns how many (0 on timeout), or -1 (EINTR
 * included). */
int usmp_poller_wait(usmp_poller_t *p, usmp_poller_event_t *out, int max, int timeout_ms);

#endif /* USMP_POLLER_H */
