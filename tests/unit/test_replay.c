/*
 * test_replay.c - the datagram replay window (src/usmp_replay.h, spec 6.5)
 * on its own: the first record, the edges of the 64-record window, slides
 * by 64 and more, the highest counter, and check changing nothing.
 */
#include <string.h>

#include "usmp_replay.h"
#include "usmp_test.h"
#include "usmp_wire.h"

static const uint64_t COUNTER_MAX = USMP_RECORD_COUNTER_LIMIT - 1u; /* 2^36 - 1 */

static void accept_ok(usmp_replay_t *w, uint64_t seq)
{
    CHECK_MSG(usmp_replay_check(w, seq) == USMP_OK, "seq %llu refused", (unsigned long long)seq);
    usmp_replay_accept(w, seq);
}

static void test_an_empty_window_accepts_any_first_seq(void)
{
    static const uint64_t firsts[] = { 0, 1, 63, 64, 1000, 0xFFFFFFFFu };
    usmp_replay_t w;
    size_t i;

    for (i = 0; i < sizeof firsts / sizeof firsts[0]; i++) {
        usmp_replay_init(&w);
        accept_ok(&w, firsts[i]);
        CHECK_INT_EQ(usmp_replay_check(&w, firsts[i]), USMP_ERR_REPLAY);
    }
    /* seq 0 first: bitmap stays nonzero, so the window is not empty again */
    usmp_replay_init(&w);
    accept_ok(&w, 0);
    CHECK(w.bitmap != 0);
    CHECK_INT_EQ(usmp_replay_check(&w, 0), USMP_ERR_REPLAY);
}

static void test_seq_equal_to_top_is_a_replay(void)
{
    usmp_replay_t w;

    usmp_replay_init(&w);
    accept_ok(&w, 10);
    accept_ok(&w, 11);
    CHECK_INT_EQ(usmp_replay_check(&w, 11), USMP_ERR_REPLAY);
    CHECK_INT_EQ(usmp_replay_check(&w, 10), USMP_ERR_REPLAY);
    CHECK_INT_EQ(usmp_replay_check(&w, 12), USMP_OK);
}

static void test_the_window_is_64_records_wide(void)
{
    usmp_replay_t w;

    usmp_replay_init(&w);
    accept_ok(&w, 100);
    /* top - 63 is the oldest still inside; top - 64 is too old */
    CHECK_INT_EQ(usmp_replay_check(&w, 37), USMP_OK);
    CHECK_INT_EQ(usmp_replay_check(&w, 36), USMP_ERR_REPLAY);
    CHECK_INT_EQ(usmp_replay_check(&w, 0), USMP_ERR_REPLAY);
    accept_ok(&w, 37);
    CHECK_INT_EQ(usmp_replay_check(&w, 37), USMP_ERR_REPLAY);
    /* out of order inside the window: each once */
    accept_ok(&w, 50);
    accept_ok(&w, 99);
    CHECK_INT_EQ(usmp_replay_check(&w, 50), USMP_ERR_REPLAY);
    CHECK_INT_EQ(usmp_replay_check(&w, 99), USMP_ERR_REPLAY);
    CHECK_INT_EQ(usmp_replay_check(&w, 98), USMP_OK);
}

static void test_a_slide_keeps_the_seqs_still_inside(void)
{
    usmp_replay_t w;

    usmp_replay_init(&w);
    accept_ok(&w, 100);
    accept_ok(&w, 90);
    accept_ok(&w, 110); /* slide by 10: 90 and 100 stay marked */
    CHECK_INT_EQ(usmp_replay_check(&w, 100), USMP_ERR_REPLAY);
    CHECK_INT_EQ(usmp_replay_check(&w, 90), USMP_ERR_REPLAY);
    CHECK_INT_EQ(usmp_replay_check(&w, 95), USMP_OK);
    accept_ok(&w, 110 + 63); /* slide by 63: 110 is the oldest inside */
    CHECK_INT_EQ(usmp_replay_check(&w, 110), USMP_ERR_REPLAY);
    CHECK_INT_EQ(usmp_replay_check(&w, 111), USMP_OK);
    CHECK_INT_EQ(usmp_replay_check(&w, 100), USMP_ERR_REPLAY); /* now too old */
}

static void test_a_shift_of_64_or_more_starts_a_fresh_window(void)
{
    static const uint64_t shifts[] = { 64, 65, 1000, ((uint64_t)1 << 35) };
    usmp_replay_t w;
    size_t i;

    for (i = 0; i < sizeof shifts / sizeof shifts[0]; i++) {
        uint64_t top = 1000 + shifts[i];
        usmp_replay_init(&w);
        accept_ok(&w, 1000);
        accept_ok(&w, 999);
        accept_ok(&w, top);
        CHECK_INT_EQ(w.bitmap, 1u); /* only top itself */
        CHECK_INT_EQ(usmp_replay_check(&w, top - 1), USMP_OK);
        CHECK_INT_EQ(usmp_replay_check(&w, top - 63), USMP_OK);
        CHECK_INT_EQ(usmp_replay_check(&w, 1000), USMP_ERR_REPLAY); /* too old */
    }
}

static void test_the_highest_counter_is_accepted_once(void)
{
    usmp_replay_t w;

    usmp_replay_init(&w);
    accept_ok(&w, COUNTER_MAX - 1u);
    accept_ok(&w, COUNTER_MAX);
    CHECK_INT_EQ(usmp_replay_check(&w, COUNTER_MAX), USMP_ERR_REPLAY);
    CHECK_INT_EQ(usmp_replay_check(&w, COUNTER_MAX - 1u), USMP_ERR_REPLAY);
    CHECK_INT_EQ(usmp_replay_check(&w, COUNTER_MAX - 2u), USMP_OK);
    CHECK_INT_EQ(usmp_replay_check(&w, COUNTER_MAX - 64u), USMP_ERR_REPLAY);
    CHECK(w.top == COUNTER_MAX);
}

static void test_check_changes_nothing(void)
{
    usmp_replay_t w, before;
    uint64_t seq;

    usmp_replay_init(&w);
    accept_ok(&w, 500);
    accept_ok(&w, 480);
    memcpy(&before, &w, sizeof w);
    for (seq = 0; seq < 1200; seq++) {
        (void)usmp_replay_check(&w, seq);
    }
    CHECK(memcmp(&before, &w, sizeof w) == 0);
}

int main(void)
{
    test_an_empty_window_accepts_any_first_seq();
    test_seq_equal_to_top_is_a_replay();
    test_the_window_is_64_records_wide();
    test_a_slide_keeps_the_seqs_still_inside();
    test_a_shift_of_64_or_more_starts_a_fresh_window();
    test_the_highest_counter_is_accepted_once();
    test_check_changes_nothing();
    return usmp_test_finish("test_replay");
}
