/*
 * test_poller.c - the C gateway's event loop seam (tools/c/usmp_poller.h),
 * built twice: against usmp_poller_epoll.c (test_poller_epoll) and
 * usmp_poller_poll.c (test_poller_poll), so both implementations are
 * compiled and held to the same contract on Linux whichever one the
 * gateway uses. The name it reports is checked against USMP_TEST_POLLER.
 *
 * Cases: readiness follows what is watched (level-triggered, in and out),
 * each event carries the pointer it was added with, modify changes the
 * events and the pointer, remove stops reports, a hang-up is reported with
 * no events watched, adding a descriptor twice or changing one never added
 * fails, the wait times out, and many descriptors with only a few ready
 * report exactly those, each once, in batches smaller than the set.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "usmp_poller.h"
#include "usmp_test.h"

#ifndef USMP_TEST_POLLER
#error "USMP_TEST_POLLER names the implementation linked (tests/CMakeLists.txt)"
#endif

/* Many descriptors: pairs of connected sockets, 2 descriptors each. */
#define MANY_PAIRS 400

static int pair(int sv[2])
{
    return socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
}

/* Waits once; returns the number of events, copied into out. */
static int wait_events(usmp_poller_t *p, usmp_poller_event_t *out, int max, int timeout)
{
    int n;
    do {
        n = usmp_poller_wait(p, out, max, timeout);
    } while (n < 0 && errno == EINTR);
    return n;
}

static void test_name_is_the_one_built(void)
{
    CHECK_MSG(strcmp(usmp_poller_name(), USMP_TEST_POLLER) == 0, "%s", usmp_poller_name());
}

static void test_readiness_follows_what_is_watched_and_carries_the_pointer(void)
{
    usmp_poller_t *p = usmp_poller_create(4);
    usmp_poller_event_t ev[8];
    int sv[2], tag_a = 0, tag_b = 0, n;

    CHECK(p != NULL);
    CHECK(pair(sv) == 0);
    /* Watched for input, nothing written: nothing to report. */
    CHECK(usmp_poller_add(p, sv[0], USMP_POLLER_IN, &tag_a) == 0);
    CHECK_INT_EQ(wait_events(p, ev, 8, 0), 0);
    /* Input arrives: reported, with the pointer, on every wait until read. */
    CHECK(write(sv[1], "x", 1) == 1);
    n = wait_events(p, ev, 8, 1000);
    CHECK_INT_EQ(n, 1);
    CHECK(ev[0].ptr == &tag_a);
    CHECK(ev[0].events == USMP_POLLER_IN);
    CHECK_INT_EQ(wait_events(p, ev, 8, 0), 1); /* level-triggered: still there */
    /* Watched for output too, with another pointer: both events. */
    CHECK(usmp_poller_modify(p, sv[0], USMP_POLLER_IN | USMP_POLLER_OUT, &tag_b) == 0);
    n = wait_events(p, ev, 8, 1000);
    CHECK_INT_EQ(n, 1);
    CHECK(ev[0].ptr == &tag_b);
    CHECK(ev[0].events == (USMP_POLLER_IN | USMP_POLLER_OUT));
    /* Watched for nothing: input waiting is not reported. */
    CHECK(usmp_poller_modify(p, sv[0], 0, &tag_b) == 0);
    CHECK_INT_EQ(wait_events(p, ev, 8, 0), 0);
    /* Removed: not reported, and cannot be changed any more. */
    CHECK(usmp_poller_modify(p, sv[0], USMP_POLLER_IN, &tag_a) == 0);
    CHECK(usmp_poller_remove(p, sv[0]) == 0);
    CHECK_INT_EQ(wait_events(p, ev, 8, 0), 0);
    CHECK(usmp_poller_modify(p, sv[0], USMP_POLLER_IN, &tag_a) != 0);
    CHECK(usmp_poller_remove(p, sv[0]) != 0);
    /* Added again after its removal: watched again. */
    CHECK(usmp_poller_add(p, sv[0], USMP_POLLER_IN, &tag_a) == 0);
    CHECK_INT_EQ(wait_events(p, ev, 8, 0), 1);
    /* Added twice: refused, the first registration stays. */
    CHECK(usmp_poller_add(p, sv[0], USMP_POLLER_OUT, &tag_b) != 0);
    n = wait_events(p, ev, 8, 0);
    CHECK_INT_EQ(n, 1);
    CHECK(ev[0].ptr == &tag_a && ev[0].events == USMP_POLLER_IN);
    usmp_poller_destroy(p);
    close(sv[0]);
    close(sv[1]);
}

static void test_hang_up_is_reported_with_nothing_watched(void)
{
    usmp_poller_t *p = usmp_poller_create(4);
    usmp_poller_event_t ev[4];
    int sv[2], tag = 0, n;

    CHECK(p != NULL);
    CHECK(pair(sv) == 0);
    CHECK(usmp_poller_add(p, sv[0], 0, &tag) == 0);
    CHECK_INT_EQ(wait_events(p, ev, 4, 0), 0);
    close(sv[1]);
    n = wait_events(p, ev, 4, 1000);
    CHECK_INT_EQ(n, 1);
    CHECK(ev[0].ptr == &tag);
    CHECK(ev[0].events & USMP_POLLER_ERROR);
    usmp_poller_destroy(p);
    close(sv[0]);
}

static void test_wait_times_out(void)
{
    usmp_poller_t *p = usmp_poller_create(1);
    usmp_poller_event_t ev[1];
    int sv[2], tag = 0;

    CHECK(p != NULL);
    CHECK(pair(sv) == 0);
    CHECK(usmp_poller_add(p, sv[0], USMP_POLLER_IN, &tag) == 0);
    CHECK_INT_EQ(wait_events(p, ev, 1, 20), 0);
    usmp_poller_destroy(p);
    close(sv[0]);
    close(sv[1]);
}

/* More descriptors than the size hint and than the batch: the ready few
 * are reported, each once per wait, and every one of them eventually even
 * with a batch of 1, whatever was removed in between (the poll()
 * implementation moves the last entry into a removed one's place). */
static void test_many_descriptors_report_exactly_the_ready_ones(void)
{
    static int sv[MANY_PAIRS][2];
    static int tags[MANY_PAIRS];
    usmp_poller_t *p = usmp_poller_create(8);
    usmp_poller_event_t ev[16];
    int seen[MANY_PAIRS];
    struct rlimit rl;
    int i, n, k, made = 0, rounds;

    CHECK(p != NULL);
    /* 2 descriptors per pair and a few for the runner. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 2 * MANY_PAIRS + 32) {
        rl.rlim_cur = rl.rlim_max < 2 * MANY_PAIRS + 32 ? rl.rlim_max : 2 * MANY_PAIRS + 32;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (i = 0; i < MANY_PAIRS && pair(sv[i]) == 0; i++) {
        tags[i] = i;
        CHECK(usmp_poller_add(p, sv[i][0], USMP_POLLER_IN, &tags[i]) == 0);
        made++;
    }
    CHECK_MSG(made > 100, "only %d socket pairs", made);
    /* Every 37th pair gets input; every 5th of the rest is removed. */
    for (i = 0; i < made; i++) {
        if (i % 37 == 0) {
            CHECK(write(sv[i][1], "y", 1) == 1);
        } else if (i % 5 == 0) {
            CHECK(usmp_poller_remove(p, sv[i][0]) == 0);
        }
    }
    n = wait_events(p, ev, 16, 1000);
    memset(seen, 0, sizeof seen);
    for (k = 0; k < n; k++) {
        int t = *(int *)ev[k].ptr;
        CHECK_MSG(t % 37 == 0, "pair %d reported, no input on it", t);
        CHECK_MSG(seen[t] == 0, "pair %d reported twice in one wait", t);
        seen[t]++;
    }
    CHECK_INT_EQ(n, (made + 36) / 37);
    /* One per wait: reading each one reported, all are reached. */
    memset(seen, 0, sizeof seen);
    for (rounds = 0; rounds < made; rounds++) {
        char b;
        if (wait_events(p, ev, 1, 0) != 1) {
            break;
        }
        k = *(int *)ev[0].ptr;
        seen[k]++;
        CHECK(read(sv[k][0], &b, 1) == 1);
    }
    for (i = 0; i < made; i += 37) {
        CHECK_MSG(seen[i] == 1, "pair %d reported %d times", i, seen[i]);
    }
    CHECK_INT_EQ(wait_events(p, ev, 16, 0), 0);
    usmp_poller_destroy(p);
    for (i = 0; i < made; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
}

int main(void)
{
    test_name_is_the_one_built();
    test_readiness_follows_what_is_watched_and_carries_the_pointer();
    test_hang_up_is_reported_with_nothing_watched();
    test_wait_times_out();
    test_many_descriptors_report_exactly_the_ready_ones();
    return usmp_test_finish("test_poller_" USMP_TEST_POLLER);
}
