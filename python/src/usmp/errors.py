"""Conditions (spec/protocol.md section 9.1) and the exceptions that carry them.

Every failure has exactly one :class:`Condition`. The exception class tells
*who* is at fault, the condition tells *what* happened:

``USMPError``
    base class; ``.condition`` is always set.
``LocalProtocolError``
    this side misused the API (bad argument, wrong state, a message over the
    peer's limit). Never touches the wire or the session state.
``ConfigurationError``
    a ``LocalProtocolError`` raised at configuration time (a PSK shorter than
    16 bytes, a limit out of range).
``RemoteProtocolError``
    the peer sent something the protocol does not allow (``AUTH_FAILED``,
    ``BAD_RECORD``, ``MALFORMED``...).
``PeerError``
    the peer aborted the handshake with an ERROR frame (``PEER_ERROR``);
    ``.peer_condition`` is the code it sent. Never the same class as this
    side's own finding of that condition: a forged ERROR(AUTH_FAILED) is a
    ``PeerError``, a MAC that does not verify here is a
    ``RemoteProtocolError`` with ``AUTH_FAILED``. In datagram mode an ERROR
    is unauthenticated and does not end the handshake: it is reported at
    the handshake timeout (the last one received) instead of
    ``HandshakeTimeout``.
``PeerClosed``
    the peer ended the session with an authenticated BYE (``PEER_CLOSED``);
    ``.reason`` is its reason.
``ConnectionLost`` (alias ``TransportClosed``)
    the byte stream ended without a BYE (``TRANSPORT_CLOSED``).
``HandshakeTimeout`` / ``PeerTimeout``
    ``TIMEOUT`` / ``PEER_TIMEOUT``.
"""

from __future__ import annotations

import enum


class Condition(str, enum.Enum):
    """Every condition of spec section 9.1, plus ``MISUSE`` for local API misuse.

    Members compare equal to their names (``Condition.AUTH_FAILED ==
    "AUTH_FAILED"``). ``code`` is the one-byte wire code, or ``None`` for
    the conditions that are only reported locally.
    """

    NONE = "NONE"
    MALFORMED = "MALFORMED"
    UNEXPECTED = "UNEXPECTED"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    UNSUPPORTED_SUITE = "UNSUPPORTED_SUITE"
    AUTH_FAILED = "AUTH_FAILED"
    BAD_KEY = "BAD_KEY"
    BUSY = "BUSY"
    TOO_LARGE = "TOO_LARGE"
    BAD_RECORD = "BAD_RECORD"
    KEY_LIMIT = "KEY_LIMIT"
    IDLE_TIMEOUT = "IDLE_TIMEOUT"
    REKEY = "REKEY"
    SHUTDOWN = "SHUTDOWN"
    REPLACED = "REPLACED"
    # Reported locally, never sent.
    REPLAY = "REPLAY"
    UNKNOWN_SESSION = "UNKNOWN_SESSION"
    PEER_ERROR = "PEER_ERROR"
    PEER_CLOSED = "PEER_CLOSED"
    TRANSPORT_CLOSED = "TRANSPORT_CLOSED"
    TIMEOUT = "TIMEOUT"
    PEER_TIMEOUT = "PEER_TIMEOUT"
    # The spec lets implementations add local conditions for API misuse.
    MISUSE = "MISUSE"

    @property
    def code(self) -> int | None:
        """The wire code (section 9.1), or ``None`` if this condition never goes on the wire."""
        return _WIRE_CODES.get(self)

    @classmethod
    def from_code(cls, code: int) -> Condition | None:
        """The condition a received ERROR or BYE code stands for, ``None`` if undefined."""
        return _BY_CODE.get(code)

    def __str__(self) -> str:
        return self.value


_WIRE_CODES: dict[Condition, int] = {
    Condition.NONE: 0x00,
    Condition.MALFORMED: 0x01,
    Condition.UNEXPECTED: 0x02,
    Condition.UNSUPPORTED_VERSION: 0x03,
    Condition.UNSUPPORTED_SUITE: 0x04,
    Condition.AUTH_FAILED: 0x05,
    Condition.BAD_KEY: 0x06,
    Condition.BUSY: 0x07,
    Condition.TOO_LARGE: 0x08,
    Condition.BAD_RECORD: 0x09,
    Condition.KEY_LIMIT: 0x0A,
    Condition.IDLE_TIMEOUT: 0x0B,
    Condition.REKEY: 0x0C,
    Condition.SHUTDOWN: 0x0D,
    Condition.REPLACED: 0x0E,
}
_BY_CODE: dict[int, Condition] = {code: cond for cond, code in _WIRE_CODES.items()}


class USMPError(Exception):
    """Base class of every exception this package raises on purpose."""

    def __init__(self, condition: Condition, message: str = "") -> None:
        self.condition = condition
        self.message = message
        super().__init__(f"{condition.value}: {message}" if message else condition.value)


class LocalProtocolError(USMPError):
    """This side broke a rule: bad argument, call in the wrong state, message over the peer's limit."""

    def __init__(self, message: str, condition: Condition = Condition.MISUSE) -> None:
        super().__init__(condition, message)


class ConfigurationError(LocalProtocolError):
    """A configuration value is refused (for example a PSK under 16 bytes)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, Condition.MISUSE)

    def __str__(self) -> str:
        return self.message  # a configuration mistake, not a protocol event: no condition prefix


class RemoteProtocolError(USMPError):
    """The peer sent something the protocol does not allow; ``condition`` names it."""


class PeerError(RemoteProtocolError):
    """The peer aborted the handshake with ERROR(code); ``peer_condition`` is that code's condition.

    Datagram mode: the handshake timed out after the peer (or anyone who
    knows the address) sent ERROR(code), the last one received.
    """

    def __init__(self, code: int) -> None:
        self.code = code
        self.peer_condition = Condition.from_code(code)
        name = self.peer_condition.value if self.peer_condition else f"undefined code 0x{code:02x}"
        super().__init__(Condition.PEER_ERROR, f"the peer aborted the handshake with {name}")


class PeerClosed(USMPError):
    """The peer ended the session with an authenticated BYE."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.reason = Condition.from_code(code)
        name = self.reason.value if self.reason else f"undefined code 0x{code:02x}"
        super().__init__(Condition.PEER_CLOSED, f"the peer closed the session ({name})")


class ConnectionLost(USMPError):
    """The transport ended without a BYE: the session may have been cut (truncation)."""

    def __init__(self, message: str = "the transport closed without a BYE") -> None:
        super().__init__(Condition.TRANSPORT_CLOSED, message)


TransportClosed = ConnectionLost


class HandshakeTimeout(USMPError):
    """The handshake did not finish within ``handshake_timeout``."""

    def __init__(self, message: str = "the handshake did not finish in time") -> None:
        super().__init__(Condition.TIMEOUT, message)


class PeerTimeout(USMPError):
    """No authenticated record arrived before the PONG deadline."""

    def __init__(self, message: str = "no answer to the keepalive PING") -> None:
        super().__init__(Condition.PEER_TIMEOUT, message)
