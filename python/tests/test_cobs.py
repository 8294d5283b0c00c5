"""COBS framing (spec section 10): the oversize condition at its exact bound."""

from __future__ import annotations

import pytest

from usmp import cobs
from usmp.errors import Condition, RemoteProtocolError

NONZERO = b"\x01"


def test_longest_frame_is_the_largest_datagram_record_and_at_least_a_hello_with_a_cookie() -> None:
    assert cobs.longest_frame(1207) == 1232  # 9-byte header + 1207 + 16-byte tag
    assert cobs.longest_frame(36) == 61
    assert cobs.longest_frame(16) == 61  # the datagram HELLO with a cookie: 1 + 44 + 16


@pytest.mark.parametrize("max_record", [16, 512, 1207])
def test_a_frame_at_the_encoded_bound_is_decoded_and_one_byte_more_is_oversize(max_record: int) -> None:
    limit = cobs.longest_frame(max_record)
    bound = limit + -(-limit // 254) + 1  # L + ceil(L / 254) + 1
    assert cobs.encoded_size_bound(limit) == bound
    at_bound = next(NONZERO * n for n in range(limit, 2 * limit) if len(cobs.encode(NONZERO * n)) == bound)
    over = cobs.encode(at_bound + NONZERO)
    assert len(cobs.encode(at_bound)) == bound and len(over) == bound + 1
    deframer = cobs.CobsDeframer(max_frame=limit)
    # At the bound: decoded (to more than L bytes, for the engine to judge), not oversize.
    assert deframer.feed(cobs.frame(at_bound)) == [at_bound]
    # One encoded byte more: discarded without decoding, MALFORMED, whatever the chunking.
    for chunk in (len(over) + 1, 7, 1):
        line = over + b"\x00" + cobs.frame(b"next")
        results: list[bytes | RemoteProtocolError] = []
        for i in range(0, len(line), chunk):
            results += deframer.feed(line[i : i + chunk])
        assert len(results) == 2 and results[1] == b"next"
        assert isinstance(results[0], RemoteProtocolError) and results[0].condition is Condition.MALFORMED
