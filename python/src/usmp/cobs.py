"""COBS framing for byte links without their own framing (spec section 10).

``encode``/``decode`` work on one frame; :class:`CobsDeframer` cuts a byte
stream at the ``0x00`` delimiters with a bounded buffer.
"""

from __future__ import annotations

from .errors import Condition, RemoteProtocolError
from .wire import COOKIE_BYTES, DATAGRAM_RECORD_HEADER_BYTES, HELLO_BODY_BYTES, TAG_BYTES

DELIMITER = 0x00
_MAX_BLOCK = 254  # data bytes in a block whose code byte is 0xFF
# Section 10: L is at least the datagram HELLO with a cookie (type, body, cookie).
_SHORTEST_LONGEST_FRAME = 1 + HELLO_BODY_BYTES + COOKIE_BYTES


def longest_frame(max_record: int) -> int:
    """Section 10's ``L`` for a receiver announcing ``max_record``: its largest datagram record, at least 61."""
    return max(max_record + DATAGRAM_RECORD_HEADER_BYTES + TAG_BYTES, _SHORTEST_LONGEST_FRAME)


def encoded_size_bound(n: int) -> int:
    """Largest COBS encoding of an ``n``-byte frame, without the delimiter."""
    return n + -(-n // _MAX_BLOCK) + 1


def encode(data: bytes) -> bytes:
    """The minimal COBS encoding of ``data`` (no delimiter)."""
    out = bytearray(b"\x00")  # placeholder for the first code byte
    code_at = 0
    ended_full_block = False
    for byte in data:
        ended_full_block = False
        if byte:
            out.append(byte)
            if len(out) - code_at == 0xFF:  # 254 data bytes: a full block, no implied zero
                out[code_at] = 0xFF
                code_at = len(out)
                out.append(0)
                ended_full_block = True
        else:
            out[code_at] = len(out) - code_at
            code_at = len(out)
            out.append(0)
    if ended_full_block:
        del out[code_at]  # minimal encoding: no empty final block after a 0xFF block
    else:
        out[code_at] = len(out) - code_at
    return bytes(out)


def frame(data: bytes) -> bytes:
    """``COBS(data) || 0x00``: what goes on the line."""
    return encode(data) + b"\x00"


def decode(encoded: bytes) -> bytes:
    """Decode one frame (the bytes between two delimiters). Fails with MALFORMED."""
    if not encoded:
        raise RemoteProtocolError(Condition.MALFORMED, "empty COBS frame")
    out = bytearray()
    i = 0
    n = len(encoded)
    while i < n:
        code = encoded[i]
        if code == 0:
            raise RemoteProtocolError(Condition.MALFORMED, "COBS frame contains a zero byte")
        end = i + code
        if end > n:
            raise RemoteProtocolError(Condition.MALFORMED, "COBS code byte points past the end")
        block = encoded[i + 1 : end]
        if DELIMITER in block:
            raise RemoteProtocolError(Condition.MALFORMED, "COBS frame contains a zero byte")
        out += block
        i = end
        # A block shorter than 254 stands for its bytes and a zero, except at the very end.
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


class CobsDeframer:
    """Cuts a byte stream into decoded frames; every buffer is bounded by ``max_frame``.

    ``max_frame`` is section 10's ``L``, the longest frame the receiver
    accepts: ``longest_frame(max_record)``. ``feed`` returns, in order, each
    decoded frame or the :class:`RemoteProtocolError` (MALFORMED) of a frame
    that was dropped. Empty frames (two delimiters in a row) are ignored. A
    frame of more than ``encoded_size_bound(max_frame)`` encoded bytes is
    oversize: discarded up to the next delimiter without being decoded
    (MALFORMED). Any shorter frame is decoded, even if it decodes to more
    than ``max_frame`` bytes: the engine then judges it like any datagram
    (a record over ``max_record`` is TOO_LARGE).
    """

    def __init__(self, max_frame: int) -> None:
        self._max_encoded = encoded_size_bound(max_frame)
        self._buffer = bytearray()
        self._overflow = False

    def feed(self, data: bytes) -> list[bytes | RemoteProtocolError]:
        results: list[bytes | RemoteProtocolError] = []
        pieces = data.split(b"\x00")
        # Every piece but the last ends at a delimiter; the last one is an unfinished frame.
        for i, piece in enumerate(pieces):
            if not self._overflow:
                if len(self._buffer) + len(piece) > self._max_encoded:
                    self._overflow = True
                    self._buffer.clear()
                else:
                    self._buffer += piece
            if i == len(pieces) - 1:
                break
            if self._overflow:
                results.append(RemoteProtocolError(Condition.MALFORMED, "COBS frame longer than the buffer"))
            elif self._buffer:
                try:
                    results.append(decode(bytes(self._buffer)))
                except RemoteProtocolError as error:
                    results.append(error)
            self._buffer.clear()
            self._overflow = False
        return results
