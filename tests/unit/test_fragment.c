/*
 * test_fragment.c - fragmentation and reassembly (src/usmp_fragment.h,
 * spec 6.4) on their own: each rule of the receiver's checks in the
 * spec's order, short and overlong fragments, stream and datagram
 * continuity, and the sender's cuts. Parse and check change nothing.
 */
#include <string.h>

#include "usmp_fragment.h"
#include "usmp_test.h"

#define MAX_RECORD  100u
#define MAX_MESSAGE 1000u

/* A DATA_FRAGMENT payload: total, offset, then chunk_len bytes of a
 * pattern that depends on the message offset. */
static size_t fragment(uint8_t *out, uint16_t total, uint16_t offset, size_t chunk_len)
{
    size_t i;
    usmp_put_u16(out, total);
    usmp_put_u16(out + 2, offset);
    for (i = 0; i < chunk_len; i++) {
        out[4 + i] = (uint8_t)(offset + i);
    }
    return 4 + chunk_len;
}

static int parse(usmp_fragment_t *f, const uint8_t *p, size_t len)
{
    return usmp_fragment_parse(f, p, len, MAX_RECORD, MAX_MESSAGE);
}

static void test_parse_applies_the_spec_checks_in_order(void)
{
    uint8_t p[MAX_MESSAGE + 8];
    usmp_fragment_t f;

    /* Shorter than the 4-byte header, or no chunk: MALFORMED. */
    fragment(p, 200, 0, 0);
    CHECK_INT_EQ(parse(&f, p, 0), USMP_ERR_MALFORMED);
    CHECK_INT_EQ(parse(&f, p, 3), USMP_ERR_MALFORMED);
    CHECK_INT_EQ(parse(&f, p, 4), USMP_ERR_MALFORMED);
    /* total over max_message: TOO_LARGE, before the other checks. */
    CHECK_INT_EQ(parse(&f, p, fragment(p, MAX_MESSAGE + 1u, 0, 10)), USMP_ERR_TOO_LARGE);
    CHECK_INT_EQ(parse(&f, p, fragment(p, 0xFFFF, 0xFFFF, 10)), USMP_ERR_TOO_LARGE);
    /* total that fits one record: it had to be a DATA. */
    CHECK_INT_EQ(parse(&f, p, fragment(p, MAX_RECORD, 0, 10)), USMP_ERR_UNEXPECTED);
    CHECK_INT_EQ(parse(&f, p, fragment(p, 1, 0, 1)), USMP_ERR_UNEXPECTED);
    /* offset + chunk past total (overlong): MALFORMED, without overflow. */
    CHECK_INT_EQ(parse(&f, p, fragment(p, 200, 190, 11)), USMP_ERR_MALFORMED);
    CHECK_INT_EQ(parse(&f, p, fragment(p, 200, 0xFFFF, 1)), USMP_ERR_MALFORMED);
    CHECK_INT_EQ(parse(&f, p, fragment(p, 200, 0, 201)), USMP_ERR_MALFORMED);
    /* The edges that pass. */
    CHECK_INT_EQ(parse(&f, p, fragment(p, MAX_RECORD + 1u, 0, 1)), USMP_OK);
    CHECK_INT_EQ(parse(&f, p, fragment(p, MAX_MESSAGE, 0, MAX_MESSAGE)), USMP_OK);
    CHECK_INT_EQ(parse(&f, p, fragment(p, 200, 190, 10)), USMP_OK);
    CHECK_INT_EQ(f.total, 200);
    CHECK_INT_EQ(f.offset, 190);
    CHECK_INT_EQ(f.chunk_len, 10);
    CHECK(f.chunk == p + 4);
}

/* Feeds (offset, chunk_len, seq) fragments of a 250-byte message. */
static int step(usmp_reassembly_t *r, uint8_t *buf, int datagram, uint16_t offset,
                size_t chunk_len, uint64_t seq)
{
    uint8_t p[300];
    usmp_fragment_t f;
    int rc = parse(&f, p, fragment(p, 250, offset, chunk_len));
    if (rc == USMP_OK) {
        rc = usmp_reassembly_check(r, &f, datagram, seq);
    }
    if (rc == USMP_OK) {
        rc = usmp_reassembly_apply(r, buf, &f, seq) ? 1 : USMP_OK;
    }
    return rc;
}

static void test_a_message_in_order_is_delivered_whole(void)
{
    uint8_t buf[MAX_MESSAGE];
    usmp_reassembly_t r;
    int mode;
    size_t i;

    for (mode = 0; mode < 2; mode++) {
        memset(buf, 0, sizeof buf);
        usmp_reassembly_reset(&r);
        CHECK(!usmp_reassembly_active(&r));
        CHECK_INT_EQ(step(&r, buf, mode, 0, 96, 7), USMP_OK);
        CHECK(usmp_reassembly_active(&r));
        CHECK_INT_EQ(step(&r, buf, mode, 96, 96, 8), USMP_OK);
        CHECK_INT_EQ(step(&r, buf, mode, 192, 58, 9), 1); /* complete */
        CHECK(!usmp_reassembly_active(&r));
        for (i = 0; i < 250; i++) {
            if (buf[i] != (uint8_t)i) {
                FAIL("mode %d: byte %zu wrong", mode, i);
                break;
            }
        }
    }
}

static void test_continuity_rules(void)
{
    uint8_t buf[MAX_MESSAGE];
    usmp_reassembly_t r;
    usmp_fragment_t f;
    uint8_t p[300];

    /* A fragment that does not continue: wrong offset, wrong total, none
     * in progress. */
    usmp_reassembly_reset(&r);
    CHECK_INT_EQ(step(&r, buf, 0, 96, 96, 0), USMP_ERR_UNEXPECTED);
    CHECK_INT_EQ(step(&r, buf, 0, 0, 96, 0), USMP_OK);
    CHECK_INT_EQ(step(&r, buf, 0, 97, 96, 1), USMP_ERR_UNEXPECTED);
    CHECK_INT_EQ(parse(&f, p, fragment(p, 251, 96, 96)), USMP_OK);
    CHECK_INT_EQ(usmp_reassembly_check(&r, &f, 0, 1), USMP_ERR_UNEXPECTED);
    /* Stream: offset 0 while a message is in progress is UNEXPECTED;
     * datagram: it starts a new message. */
    CHECK_INT_EQ(step(&r, buf, 0, 0, 96, 1), USMP_ERR_UNEXPECTED);
    CHECK_INT_EQ(step(&r, buf, 1, 0, 96, 1), USMP_OK);
    /* Datagram: the next fragment must be in the record after the last. */
    usmp_reassembly_reset(&r);
    CHECK_INT_EQ(step(&r, buf, 1, 0, 96, 10), USMP_OK);
    CHECK_INT_EQ(step(&r, buf, 1, 96, 96, 12), USMP_ERR_UNEXPECTED);
    CHECK_INT_EQ(step(&r, buf, 1, 96, 96, 10), USMP_ERR_UNEXPECTED);
    CHECK_INT_EQ(step(&r, buf, 1, 96, 96, 11), USMP_OK);
    /* Stream: seq is not looked at (the counter is implicit). */
    usmp_reassembly_reset(&r);
    CHECK_INT_EQ(step(&r, buf, 0, 0, 96, 10), USMP_OK);
    CHECK_INT_EQ(step(&r, buf, 0, 96, 96, 50), USMP_OK);
}

static void test_check_changes_nothing(void)
{
    uint8_t buf[MAX_MESSAGE];
    usmp_reassembly_t r, before;
    usmp_fragment_t f;
    uint8_t p[300];
    uint16_t offset;

    memset(&r, 0, sizeof r); /* the padding too: the struct is compared whole */
    usmp_reassembly_reset(&r);
    CHECK_INT_EQ(step(&r, buf, 1, 0, 96, 3), USMP_OK);
    memcpy(&before, &r, sizeof r);
    for (offset = 0; offset < 250; offset++) {
        if (parse(&f, p, fragment(p, 250, offset, 1)) == USMP_OK) {
            (void)usmp_reassembly_check(&r, &f, 1, 4);
            (void)usmp_reassembly_check(&r, &f, 0, 4);
        }
    }
    CHECK(memcmp(&before, &r, sizeof r) == 0);
}

static void test_the_sender_cuts_a_message_into_fragments(void)
{
    uint8_t msg[250], out[MAX_RECORD], buf[MAX_MESSAGE];
    usmp_fragmenter_t s;
    usmp_reassembly_t r;
    usmp_fragment_t f;
    size_t sent = 0, chunk, i, fragments = 0;
    int done = 0;

    for (i = 0; i < sizeof msg; i++) {
        msg[i] = (uint8_t)(i * 7);
    }
    memset(&s, 0, sizeof s);
    CHECK_INT_EQ(usmp_fragmenter_remaining(&s), 0);
    usmp_fragmenter_start(&s, sizeof msg);
    usmp_reassembly_reset(&r);
    while (!done) {
        CHECK_INT_EQ(usmp_fragmenter_remaining(&s), sizeof msg - sent);
        chunk = usmp_fragmenter_write(&s, out, MAX_RECORD, msg + sent, sizeof msg - sent);
        CHECK(chunk >= 1 && chunk <= MAX_RECORD - 4u);
        CHECK_INT_EQ(usmp_get_u16(out), sizeof msg);
        CHECK_INT_EQ(usmp_get_u16(out + 2), sent);
        CHECK_INT_EQ(parse(&f, out, 4 + chunk), USMP_OK);
        CHECK_INT_EQ(usmp_reassembly_check(&r, &f, 1, fragments), USMP_OK);
        CHECK_INT_EQ(usmp_reassembly_apply(&r, buf, &f, fragments), 0 + (sent + chunk == sizeof msg));
        done = usmp_fragmenter_sent(&s, chunk);
        sent += chunk;
        fragments++;
        if (fragments > 10) {
            FAIL("the sender does not finish");
            break;
        }
    }
    CHECK_INT_EQ(fragments, 3); /* 96 + 96 + 58 */
    CHECK_INT_EQ(usmp_fragmenter_remaining(&s), 0);
    CHECK_MEM_EQ(buf, msg, sizeof msg);
    /* Idle again: a second message starts from offset 0. */
    usmp_fragmenter_start(&s, 150);
    chunk = usmp_fragmenter_write(&s, out, MAX_RECORD, msg, 150);
    CHECK_INT_EQ(chunk, 96);
    CHECK_INT_EQ(usmp_get_u16(out + 2), 0);
}

int main(void)
{
    test_parse_applies_the_spec_checks_in_order();
    test_a_message_in_order_is_delivered_whole();
    test_continuity_rules();
    test_check_changes_nothing();
    test_the_sender_cuts_a_message_into_fragments();
    return usmp_test_finish("test_fragment");
}
