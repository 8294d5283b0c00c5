"""Frame types, sizes and the handshake message layouts (spec sections 2, 4, 5.1, 5.2)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from .errors import Condition, RemoteProtocolError

PROTOCOL_VERSION = 1
SUITE = 1
VERSION_BIT = 1 << (PROTOCOL_VERSION - 1)
SUITE_BIT = 1 << (SUITE - 1)

DEVICE_ID_BYTES = 6
NONCE_BYTES = 16
SESSION_ID_BYTES = 8
SESSION_INDEX_BYTES = 3
MAC_BYTES = 16
COOKIE_BYTES = 16
TAG_BYTES = 16

MIN_PSK_BYTES = 16
MAX_PSK_BYTES = 64

MIN_RECORD = 16
MAX_RECORD = 65519  # stream: + 16-byte tag = 65535, the largest u16 length
MAX_DATAGRAM_RECORD = 1207  # datagram: + 25 = 1232 bytes, the IPv6 minimum MTU less headers (6.6)
MAX_MESSAGE = 65535

STREAM_HEADER_BYTES = 3  # type, u16 length
DATAGRAM_RECORD_HEADER_BYTES = 9  # type, session index (3), seq (u40)

HELLO_BODY_BYTES = 44
CHALLENGE_BODY_BYTES = 54
HELLO_ACK_BODY_BYTES = 16
SESSION_OK_BODY_BYTES = 24
ERROR_BODY_BYTES = 1


class Mode(enum.IntEnum):
    """The transport mode; its value is the byte that goes into the transcript hash."""

    STREAM = 0x00
    DATAGRAM = 0x01


class FrameType(enum.IntEnum):
    HELLO = 0x01
    CHALLENGE = 0x02
    HELLO_ACK = 0x03
    SESSION_OK = 0x04
    DATA = 0x05
    PING = 0x06
    PONG = 0x07
    BYE = 0x08
    DATA_FRAGMENT = 0x09
    COOKIE = 0x0A
    CONTROL = 0x0B  # section 6.7: channel || body, never an application message
    ERROR = 0xFF


DEFINED_TYPES = frozenset(int(t) for t in FrameType)


def is_record_type(frame_type: int) -> bool:
    return FrameType.DATA <= frame_type <= FrameType.DATA_FRAGMENT or frame_type == FrameType.CONTROL


# Section 6.7: the CONTROL channels (the OTA channel's messages: spec/ota.md).
CONTROL_CHANNEL_OTA = 0x01


def frame_type_condition(frame_type: int) -> Condition:
    """The condition for a frame type that is not allowed where it arrived (section 6.2 check 1)."""
    return Condition.UNEXPECTED if frame_type in DEFINED_TYPES else Condition.MALFORMED


def build_frame(mode: Mode, frame_type: int, body: bytes) -> bytes:
    """A handshake, COOKIE or ERROR frame: stream ``type || u16 length || body``, datagram ``type || body``."""
    if mode is Mode.STREAM:
        return struct.pack(">BH", frame_type, len(body)) + body
    return bytes((frame_type,)) + body


def frame_body(mode: Mode, frame: bytes) -> bytes:
    """The body of a complete handshake frame (the stream length was checked by the caller)."""
    return frame[STREAM_HEADER_BYTES:] if mode is Mode.STREAM else frame[1:]


def error_frame(mode: Mode, condition: Condition) -> bytes:
    code = condition.code
    assert code is not None, f"{condition} has no wire code"
    return build_frame(mode, FrameType.ERROR, bytes((code,)))


def max_record_for(mode: Mode) -> int:
    return MAX_RECORD if mode is Mode.STREAM else MAX_DATAGRAM_RECORD


def limits_valid(mode: Mode, max_record: int, max_message: int) -> bool:
    """Sections 4.1 and 6.6: ``max_record`` in 16 … 65519 (datagram: … 1207), ``max_message`` in ``max_record`` … 65535."""
    return MIN_RECORD <= max_record <= max_record_for(mode) and max_record <= max_message <= MAX_MESSAGE


@dataclass(frozen=True)
class Limits:
    """The largest record plaintext and the largest message one side accepts (section 6.6)."""

    max_record: int
    max_message: int


@dataclass(frozen=True)
class Hello:
    versions: int
    suites: int
    device_id: bytes
    public_key: bytes
    limits: Limits
    cookie: bytes | None = None

    def body(self, *, with_cookie: bool = True) -> bytes:
        body = (
            struct.pack(">BB", self.versions, self.suites)
            + self.device_id
            + self.public_key
            + struct.pack(">HH", self.limits.max_record, self.limits.max_message)
        )
        if with_cookie and self.cookie is not None:
            body += self.cookie
        return body

    @classmethod
    def parse(cls, mode: Mode, body: bytes) -> Hello:
        """Checks 2 to 4 of section 4.5 (server, HELLO); the length was checked by the caller."""
        versions, suites = body[0], body[1]
        if not versions & VERSION_BIT:
            raise RemoteProtocolError(Condition.UNSUPPORTED_VERSION, "HELLO does not offer version 1")
        if not suites & SUITE_BIT:
            raise RemoteProtocolError(Condition.UNSUPPORTED_SUITE, "HELLO does not offer suite 1")
        max_record, max_message = struct.unpack_from(">HH", body, 40)
        if not limits_valid(mode, max_record, max_message):
            raise RemoteProtocolError(Condition.MALFORMED, "HELLO limits out of range")
        cookie = bytes(body[HELLO_BODY_BYTES:]) or None
        return cls(
            versions,
            suites,
            bytes(body[2:8]),
            bytes(body[8:40]),
            Limits(max_record, max_message),
            cookie,
        )


@dataclass(frozen=True)
class Challenge:
    version: int
    suite: int
    nonce: bytes
    public_key: bytes
    limits: Limits

    def body(self) -> bytes:
        return (
            struct.pack(">BB", self.version, self.suite)
            + self.nonce
            + self.public_key
            + struct.pack(">HH", self.limits.max_record, self.limits.max_message)
        )

    @classmethod
    def parse(cls, mode: Mode, body: bytes) -> Challenge:
        """Checks 2 to 4 of section 4.5 (client, CHALLENGE); the length was checked by the caller.

        A v1 client offers only version 1 and suite 1, so the selection must be exactly those.
        """
        version, suite = body[0], body[1]
        if version != PROTOCOL_VERSION:
            raise RemoteProtocolError(Condition.UNSUPPORTED_VERSION, f"CHALLENGE selects version {version}")
        if suite != SUITE:
            raise RemoteProtocolError(Condition.UNSUPPORTED_SUITE, f"CHALLENGE selects suite {suite}")
        max_record, max_message = struct.unpack_from(">HH", body, 50)
        if not limits_valid(mode, max_record, max_message):
            raise RemoteProtocolError(Condition.MALFORMED, "CHALLENGE limits out of range")
        return cls(version, suite, bytes(body[2:18]), bytes(body[18:50]), Limits(max_record, max_message))
