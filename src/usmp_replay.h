/*
 * usmp_replay.h - the datagram replay window (spec/protocol.md section
 * 6.5, check 6 of 6.2): which of the last 64 record counters were
 * accepted. Internal to the core and used directly by the tests.
 *
 * Conventions
 *  - The window is a usmp_replay_t (usmp_engine.h, for its size) that the
 *    caller owns. It is empty after usmp_replay_init: bitmap 0 means no
 *    record was accepted yet, since an accepted top always has bit 0 set.
 *  - Check, then accept: usmp_replay_check changes nothing, so a record
 *    whose tag or payload then fails is dropped without a trace (6.2);
 *    usmp_replay_accept is called only for a record that passed every
 *    check, with a seq that usmp_replay_check accepted.
 *  - seq is the record's explicit counter, below 2^36 (check 5 of 6.2 is
 *    the caller's).
 */
#ifndef USMP_REPLAY_H
#define USMP_REPLAY_H

#include <stdint.h>

#include "usmp_engine.h"

#if USMP_DATAGRAM
/* The window's width in records (spec 6.5). */
#define USMP_REPLAY_WINDOW 64u

/* Empties the window: the next seq, whatever it is, is new. */
void usmp_replay_init(usmp_replay_t *w);

/* Whether seq may be accepted: USMP_OK when it is above the highest
 * accepted (top), or inside the window and not yet accepted;
 * USMP_ERR_REPLAY when it was accepted already or is 64 or more below top.
 * Changes nothing. */
int usmp_replay_check(const usmp_replay_t *w, uint64_t seq);

/* Records seq as accepted: a seq above top becomes top and slides the
 * window (by 64 or more: a fresh window); one inside marks its bit. */
void usmp_replay_accept(usmp_replay_t *w, uint64_t seq);
#endif

#endif /* USMP_REPLAY_H */
