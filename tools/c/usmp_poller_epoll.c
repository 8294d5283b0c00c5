/*
 * usmp_poller_epoll.c - usmp_poller.h on Linux's epoll: the kernel keeps
 * the set, so a wait costs what is ready, not what is watched.
 */
#define _GNU_SOURCE

#include "usmp_poller.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

/* The most events taken from the kernel per wait. */
#define EPOLL_BATCH 256

struct usmp_poller {
    int ep;
    struct epoll_event ready[EPOLL_BATCH];
};

const char *usmp_poller_name(void)
{
    return "epoll";
}

usmp_poller_t *usmp_poller_create(size_t size_hint)
{
    usmp_poller_t *p = calloc(1, sizeof *p);
    (void)size_hint; /* the kernel's set grows by itself */
    if (p == NULL) {
        return NULL;
    }
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    if (p->ep < 0) {
        free(p);
        return NULL;
    }
    return p;
}

void usmp_poller_destroy(usmp_poller_t *p)
{
    if (p != NULL) {
        close(p->ep);
        free(p);
    }
}

static int control(usmp_poller_t *p, int op, int fd, unsigned events, void *ptr)
{
    struct epoll_event ev;
    ev.events = ((events & USMP_POLLER_IN) ? (uint32_t)EPOLLIN : 0u) |
                ((events & USMP_POLLER_OUT) ? (uint32_t)EPOLLOUT : 0u);
    ev.data.ptr = ptr;
    return epoll_ctl(p->ep, op, fd, &ev);
}

int usmp_poller_add(usmp_poller_t *p, int fd, unsigned events, void *ptr)
{
    return control(p, EPOLL_CTL_ADD, fd, events, ptr);
}

int usmp_poller_modify(usmp_poller_t *p, int fd, unsigned events, void *ptr)
{
    return control(p, EPOLL_CTL_MOD, fd, events, ptr);
}

int usmp_poller_remove(usmp_poller_t *p, int fd)
{
    struct epoll_event ev = { 0, { 0 } }; /* ignored, but not NULL for kernels before 2.6.9 */
    return epoll_ctl(p->ep, EPOLL_CTL_DEL, fd, &ev);
}

int usmp_poller_wait(usmp_poller_t *p, usmp_poller_event_t *out, int max, int timeout_ms)
{
    int i, n;
    if (max > EPOLL_BATCH) {
        max = EPOLL_BATCH;
    }
    n = epoll_wait(p->ep, p->ready, max, timeout_ms);
    for (i = 0; i < n; i++) {
        uint32_t e = p->ready[i].events;
        out[i].ptr = p->ready[i].data.ptr;
        out[i].events = ((e & EPOLLIN) ? USMP_POLLER_IN : 0u) |
                        ((e & EPOLLOUT) ? USMP_POLLER_OUT : 0u) |
                        ((e & (EPOLLERR | EPOLLHUP)) ? USMP_POLLER_ERROR : 0u);
    }
    return n;
}
