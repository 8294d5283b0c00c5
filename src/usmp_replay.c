/*
 * usmp_replay.c - the datagram replay window (spec 6.5).
 */
#include "usmp_replay.h"

#if USMP_DATAGRAM
void usmp_replay_init(usmp_replay_t *w)
{
    w->top = 0;
    w->bitmap = 0;
}

int usmp_replay_check(const usmp_replay_t *w, uint64_t seq)
{
    if (w->bitmap == 0 || seq > w->top) {
        return USMP_OK;
    }
    if (w->top - seq >= USMP_REPLAY_WINDOW) {
        return USMP_ERR_REPLAY; /* older than the window */
    }
    if (w->bitmap & ((uint64_t)1 << (w->top - seq))) {
        return USMP_ERR_REPLAY; /* seen */
    }
    return USMP_OK;
}

void usmp_replay_accept(usmp_replay_t *w, uint64_t seq)
{
    if (w->bitmap == 0) {
        w->top = seq;
        w->bitmap = 1;
    } else if (seq > w->top) {
        uint64_t shift = seq - w->top;
        w->bitmap = shift >= USMP_REPLAY_WINDOW ? 1u : ((w->bitmap << shift) | 1u);
        w->top = seq;
    } else {
        w->bitmap |= (uint64_t)1 << (w->top - seq);
    }
}
#endif /* USMP_DATAGRAM */
