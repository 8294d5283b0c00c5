"""The record layer (spec section 6) and key usage limits (section 7).

Receiving is split in two phases so that a rejected record changes nothing:
``RecordReceiver.open`` runs checks 1 to 7 of section 6.2 without touching
any state, the engine then validates the payload (check 8), and only then
``RecordReceiver.accept`` moves the counter or the replay window.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag

from .aead import Aead, new_aes_gcm
from .errors import Condition, LocalProtocolError, RemoteProtocolError
from .wire import (
    DATAGRAM_RECORD_HEADER_BYTES,
    SESSION_INDEX_BYTES,
    STREAM_HEADER_BYTES,
    TAG_BYTES,
    FRAME_TYPES,
    FrameType,
    Mode,
    frame_type_condition,
    is_record_type,
)

# Section 7. Module-level so that tests can lower them to reach the limits quickly.
USAGE_SOFT_LIMIT = 1 << 34  # blocks; reaching it after a seal: BYE(REKEY)
USAGE_HARD_LIMIT = 1 << 36  # blocks; a seal that would pass it is refused (KEY_LIMIT)
RECEIVE_COUNTER_LIMIT = 1 << 36  # a received counter at or above it: KEY_LIMIT

REPLAY_WINDOW_BITS = 64
FRAGMENT_HEADER_BYTES = 4  # total (u16), offset (u16)
MAX_PING_PAYLOAD = 8


def record_nonce(counter: int) -> bytes:
    """Section 6.1: 32 zero bits || u64(counter)."""
    return b"\x00\x00\x00\x00" + counter.to_bytes(8, "big")


def usage_blocks(plaintext_len: int) -> int:
    """Section 7: a record costs ceil(len / 16) blocks plus one for the tag computation."""
    return -(-plaintext_len // 16) + 1


def record_header(mode: Mode, record_type: int, plaintext_len: int, counter: int, session_index: bytes) -> bytes:
    """The header that goes on the wire and into the AAD (section 6.2)."""
    if mode is Mode.STREAM:
        return struct.pack(">BH", record_type, plaintext_len + TAG_BYTES)
    return bytes((record_type,)) + session_index + counter.to_bytes(5, "big")


def seal_record(
    aead: Aead, mode: Mode, record_type: int, plaintext: bytes, counter: int, session_index: bytes = b""
) -> bytes:
    """One record with an explicit counter. Callers that keep state use :class:`RecordSender`."""
    header = record_header(mode, record_type, len(plaintext), counter, session_index)
    return header + aead.encrypt(record_nonce(counter), plaintext, header)


def open_record(aead: Aead, frame: bytes, header_len: int, counter: int) -> bytes:
    """Check 7 of section 6.2 alone: the tag of one record with an explicit counter (BAD_RECORD)."""
    try:
        return aead.decrypt(record_nonce(counter), frame[header_len:], frame[:header_len])
    except InvalidTag:
        raise RemoteProtocolError(Condition.BAD_RECORD, "record tag does not verify") from None


def check_record_size(record_type: int, sealed_len: int, max_record: int) -> None:
    """Checks 1 to 3 of section 6.2, which need only the header (stream) or the datagram length."""
    if not is_record_type(record_type):
        raise RemoteProtocolError(frame_type_condition(record_type), f"frame type 0x{record_type:02x} is not a record")
    if sealed_len < TAG_BYTES:
        raise RemoteProtocolError(Condition.MALFORMED, "record too short for its tag")
    if sealed_len - TAG_BYTES > max_record:
        raise RemoteProtocolError(Condition.TOO_LARGE, "record over our max_record")


@dataclass(frozen=True)
class OpenedRecord:
    """A record whose tag verified but which is not yet accepted (see the module docstring)."""

    record_type: FrameType
    counter: int
    plaintext: bytes


class ReplayWindow:
    """Section 6.5: the highest accepted ``seq`` and a 64-bit bitmap of ``top - 63 … top``."""

    __slots__ = ("top", "_bitmap")  # one per session: no dict (issue 12)

    def __init__(self) -> None:
        self.top: int | None = None
        self._bitmap = 0  # bit i set: seq top - i was accepted

    def check(self, seq: int) -> None:
        if self.top is None or seq > self.top:
            return
        behind = self.top - seq
        if behind >= REPLAY_WINDOW_BITS:
            raise RemoteProtocolError(Condition.REPLAY, "record older than the replay window")
        if self._bitmap >> behind & 1:
            raise RemoteProtocolError(Condition.REPLAY, "record already received")

    def accept(self, seq: int) -> None:
        if self.top is None:
            self.top, self._bitmap = seq, 1
        elif seq > self.top:
            self._bitmap = ((self._bitmap << (seq - self.top)) | 1) & ((1 << REPLAY_WINDOW_BITS) - 1)
            self.top = seq
        else:
            self._bitmap |= 1 << (self.top - seq)


def key_limit_error() -> LocalProtocolError:
    """What sealing past the hard usage limit reports (section 7, row 42)."""
    return LocalProtocolError("the key usage limit would be passed", Condition.KEY_LIMIT)


class RecordSender:
    """One direction's sealing key, counter and usage (sections 6.1 and 7)."""

    __slots__ = ("_aead", "_mode", "_session_index", "counter", "usage")

    def __init__(self, key: bytes, mode: Mode, session_index: bytes = b"") -> None:
        self._aead = new_aes_gcm(key)  # one context for the key's life (aead.py)
        self._mode = mode
        self._session_index = session_index
        self.counter = 0
        self.usage = 0

    def has_capacity(self, plaintext_lengths: list[int]) -> bool:
        """Whether these records can be sealed without passing the hard usage limit (row 42)."""
        return self.usage + sum(usage_blocks(n) for n in plaintext_lengths) <= USAGE_HARD_LIMIT

    def check_capacity(self, plaintext_lengths: list[int]) -> None:
        """Refuse (KEY_LIMIT) before sealing anything if these records would pass the hard limit."""
        if not self.has_capacity(plaintext_lengths):
            raise key_limit_error()

    def seal(self, record_type: FrameType, plaintext: bytes) -> bytes:
        self.check_capacity([len(plaintext)])
        # The counter is consumed here, whether or not the transport delivers the record.
        record = seal_record(self._aead, self._mode, record_type, plaintext, self.counter, self._session_index)
        self.counter += 1
        self.usage += usage_blocks(len(plaintext))
        return record

    @property
    def soft_limit_reached(self) -> bool:
        return self.usage >= USAGE_SOFT_LIMIT

    def release(self) -> None:
        """The key dies with the session (spec 5.7): free its cipher context now."""
        self._aead.release()


class RecordReceiver:
    """One direction's opening key and replay state (implicit counter or replay window)."""

    __slots__ = ("_aead", "_mode", "_max_record", "_session_index", "_next_counter", "_window")

    def __init__(self, key: bytes, mode: Mode, max_record: int, session_index: bytes = b"") -> None:
        self._aead = new_aes_gcm(key)
        self._mode = mode
        self._max_record = max_record
        self._session_index = session_index
        self._next_counter = 0  # stream mode: records accepted so far
        self._window = ReplayWindow()  # datagram mode

    def check_stream_header(self, record_type: int, length: int) -> None:
        """Stream checks 1 to 3 from the 3-byte header alone, before the body is buffered."""
        check_record_size(record_type, length, self._max_record)

    def open(self, frame: bytes) -> OpenedRecord:
        """Checks 1 to 7 of section 6.2 on a whole record. Changes no state."""
        if self._mode is Mode.STREAM:
            self.check_stream_header(frame[0], len(frame) - STREAM_HEADER_BYTES)
            header_len = STREAM_HEADER_BYTES
            counter = self._next_counter
        else:
            header_len = DATAGRAM_RECORD_HEADER_BYTES
            check_record_size(frame[0], len(frame) - header_len, self._max_record)
            if frame[1 : 1 + SESSION_INDEX_BYTES] != self._session_index:
                raise RemoteProtocolError(Condition.UNKNOWN_SESSION, "record for another session index")
            counter = int.from_bytes(frame[4:9], "big")
        if counter >= RECEIVE_COUNTER_LIMIT:
            raise RemoteProtocolError(Condition.KEY_LIMIT, "record counter at the per-key limit")
        if self._mode is Mode.DATAGRAM:
            self._window.check(counter)
        plaintext = open_record(self._aead, frame, header_len, counter)
        return OpenedRecord(FRAME_TYPES[frame[0]], counter, plaintext)

    def accept(self, record: OpenedRecord) -> None:
        """Commit a record that passed every check: move the counter or the window."""
        if self._mode is Mode.STREAM:
            self._next_counter += 1
        else:
            self._window.accept(record.counter)

    def release(self) -> None:
        """The key dies with the session (spec 5.7): free its cipher context now."""
        self._aead.release()


def split_message(data: bytes, record_limit: int) -> list[tuple[FrameType, bytes]]:
    """Section 6.4: one DATA record if the message fits, else DATA_FRAGMENTs in order."""
    if len(data) <= record_limit:
        return [(FrameType.DATA, data)]
    chunk = record_limit - FRAGMENT_HEADER_BYTES
    return [
        (FrameType.DATA_FRAGMENT, struct.pack(">HH", len(data), offset) + data[offset : offset + chunk])
        for offset in range(0, len(data), chunk)
    ]


@dataclass(frozen=True)
class Fragment:
    """A DATA_FRAGMENT that passed check 8, or (datagram only) one that is out of sequence."""

    total: int
    offset: int
    chunk: bytes
    seq: int
    out_of_sequence: bool


class Reassembler:
    """The one reassembly buffer of section 6.4, bounded by our ``max_message``.

    ``check_*`` validate without changing anything; ``apply_*`` and
    ``discard`` run only once the engine has decided the record's fate.
    """

    __slots__ = ("_mode", "_max_record", "_max_message", "_buffer", "_total", "_next_seq")

    def __init__(self, mode: Mode, max_record: int, max_message: int) -> None:
        self._mode = mode
        self._max_record = max_record
        self._max_message = max_message
        self._buffer: bytearray | None = None
        self._total = 0
        self._next_seq = 0

    def check_data(self) -> None:
        if self._mode is Mode.STREAM and self._buffer is not None:
            raise RemoteProtocolError(Condition.UNEXPECTED, "DATA inside a fragmented message")

    def apply_data(self) -> None:
        self.discard()  # datagram mode: a DATA ends any partial message

    def discard(self) -> None:
        self._buffer = None

    def check_fragment(self, payload: bytes, seq: int) -> Fragment:
        """The fragment checks of section 6.4, in order."""
        if len(payload) < FRAGMENT_HEADER_BYTES:
            raise RemoteProtocolError(Condition.MALFORMED, "DATA_FRAGMENT shorter than its header")
        total, offset = struct.unpack_from(">HH", payload)
        chunk = payload[FRAGMENT_HEADER_BYTES:]
        if total > self._max_message:
            raise RemoteProtocolError(Condition.TOO_LARGE, "fragmented message over our max_message")
        if total <= self._max_record:
            raise RemoteProtocolError(Condition.UNEXPECTED, "a message that fits one record came in fragments")
        if not chunk or offset + len(chunk) > total:
            raise RemoteProtocolError(Condition.MALFORMED, "DATA_FRAGMENT chunk empty or past the total")
        if offset == 0:
            if self._mode is Mode.STREAM and self._buffer is not None:
                raise RemoteProtocolError(Condition.UNEXPECTED, "new message inside a fragmented message")
            return Fragment(total, offset, chunk, seq, False)
        continues = (
            self._buffer is not None
            and total == self._total
            and offset == len(self._buffer)
            and (self._mode is Mode.STREAM or seq == self._next_seq)
        )
        if continues:
            return Fragment(total, offset, chunk, seq, False)
        if self._mode is Mode.STREAM:
            raise RemoteProtocolError(Condition.UNEXPECTED, "DATA_FRAGMENT out of sequence")
        return Fragment(total, offset, chunk, seq, True)

    def apply_fragment(self, fragment: Fragment) -> bytes | None:
        """Add an accepted, in-sequence fragment; return the message when it is complete."""
        if fragment.offset == 0:
            self._buffer = bytearray()  # datagram mode: any partial message is discarded
            self._total = fragment.total
        assert self._buffer is not None and not fragment.out_of_sequence
        self._buffer += fragment.chunk
        self._next_seq = fragment.seq + 1
        if len(self._buffer) < self._total:
            return None
        message, self._buffer = bytes(self._buffer), None
        return message
