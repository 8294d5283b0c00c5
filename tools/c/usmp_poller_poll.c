/*
 * usmp_poller_poll.c - usmp_poller.h on POSIX poll(), for systems without
 * epoll. The set is an array that add, modify and remove change in O(1)
 * (an index by descriptor; a removed entry takes the last one's place);
 * the wait itself is poll()'s, linear in the descriptors watched, which
 * is why Linux builds use usmp_poller_epoll.c.
 */
#define _POSIX_C_SOURCE 200809L

#include "usmp_poller.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

struct usmp_poller {
    struct pollfd *fds;
    void **ptrs;      /* ptrs[i]: the caller's pointer for fds[i] */
    size_t n, cap;    /* entries used, allocated */
    size_t *where;    /* where[fd]: index in fds + 1; 0: not watched */
    size_t where_cap; /* descriptors where[] covers */
    size_t next;      /* the entry the next wait reports first (fairness) */
};

const char *usmp_poller_name(void)
{
    return "poll";
}

usmp_poller_t *usmp_poller_create(size_t size_hint)
{
    usmp_poller_t *p = calloc(1, sizeof *p);
    if (p == NULL) {
        return NULL;
    }
    p->cap = size_hint < 16 ? 16 : size_hint;
    p->fds = calloc(p->cap, sizeof *p->fds);
    p->ptrs = calloc(p->cap, sizeof *p->ptrs);
    if (p->fds == NULL || p->ptrs == NULL) {
        usmp_poller_destroy(p);
        return NULL;
    }
    return p;
}

void usmp_poller_destroy(usmp_poller_t *p)
{
    if (p != NULL) {
        free(p->fds);
        free(p->ptrs);
        free(p->where);
        free(p);
    }
}

static short poll_events(unsigned events)
{
    return (short)(((events & USMP_POLLER_IN) ? POLLIN : 0) |
                   ((events & USMP_POLLER_OUT) ? POLLOUT : 0));
}

/* The entry of fd, or NULL (errno ENOENT) when it is not watched. */
static struct pollfd *entry(usmp_poller_t *p, int fd)
{
    if (fd < 0 || (size_t)fd >= p->where_cap || p->where[fd] == 0) {
        errno = ENOENT;
        return NULL;
    }
    return &p->fds[p->where[fd] - 1];
}

int usmp_poller_add(usmp_poller_t *p, int fd, unsigned events, void *ptr)
{
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    if ((size_t)fd >= p->where_cap) {
        size_t cap = p->where_cap < 64 ? 64 : p->where_cap;
        size_t *w;
        while (cap <= (size_t)fd) {
            cap *= 2;
        }
        w = realloc(p->where, cap * sizeof *w);
        if (w == NULL) {
            return -1;
        }
        memset(w + p->where_cap, 0, (cap - p->where_cap) * sizeof *w);
        p->where = w;
        p->where_cap = cap;
    }
    if (p->where[fd] != 0) {
        errno = EEXIST;
        return -1;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap * 2;
        struct pollfd *fds = realloc(p->fds, cap * sizeof *fds);
        void **ptrs;
        if (fds == NULL) {
            return -1;
        }
        p->fds = fds;
        ptrs = realloc(p->ptrs, cap * sizeof *ptrs);
        if (ptrs == NULL) {
            return -1;
        }
        p->ptrs = ptrs;
        p->cap = cap;
    }
    p->fds[p->n].fd = fd;
    p->fds[p->n].events = poll_events(events);
    p->fds[p->n].revents = 0;
    p->ptrs[p->n] = ptr;
    p->n++;
    p->where[fd] = p->n;
    return 0;
}

int usmp_poller_modify(usmp_poller_t *p, int fd, unsigned events, void *ptr)
{
    struct pollfd *f = entry(p, fd);
    if (f == NULL) {
        return -1;
    }
    f->events = poll_events(events);
    p->ptrs[f - p->fds] = ptr;
    return 0;
}

int usmp_poller_remove(usmp_poller_t *p, int fd)
{
    struct pollfd *f = entry(p, fd);
    size_t i, last;
    if (f == NULL) {
        return -1;
    }
    i = (size_t)(f - p->fds);
    last = p->n - 1;
    if (i != last) {
        p->fds[i] = p->fds[last];
        p->ptrs[i] = p->ptrs[last];
        p->where[p->fds[i].fd] = i + 1;
    }
    p->where[fd] = 0;
    p->n--;
    return 0;
}

int usmp_poller_wait(usmp_poller_t *p, usmp_poller_event_t *out, int max, int timeout_ms)
{
    size_t k, i;
    int found = 0, n = poll(p->fds, (nfds_t)p->n, timeout_ms);
    if (n <= 0) {
        return n;
    }
    /* Starting where the last wait stopped, so that with more ready
     * descriptors than max none waits forever. */
    for (k = 0; k < p->n && found < max; k++) {
        i = (p->next + k) % p->n;
        if (p->fds[i].revents != 0) {
            short r = p->fds[i].revents;
            out[found].ptr = p->ptrs[i];
            out[found].events = ((r & POLLIN) ? USMP_POLLER_IN : 0u) |
                                ((r & POLLOUT) ? USMP_POLLER_OUT : 0u) |
                                ((r & (POLLERR | POLLHUP | POLLNVAL)) ? USMP_POLLER_ERROR : 0u);
            found++;
        }
    }
    p->next = p->n > 0 ? (p->next + k) % p->n : 0;
    return found;
}
