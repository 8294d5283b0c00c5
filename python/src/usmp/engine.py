"""The sans-I/O USMP engine: both roles, both modes (spec/state-machine.md).

An engine never touches a socket, a clock or a random source it was not
given. The caller feeds it what arrived and the current time, and collects
what it must send::

    events = engine.receive_data(data, now)   # stream: any bytes; datagram: one datagram
    engine.handle_timeout(now)                # when now >= engine.next_deadline()
    engine.send_message(b"...", now)
    for frame in engine.frames_to_send(): transport.write(frame)
    if engine.finished: ...                   # CLOSED or FAILED; see .end_condition, .error

Times are seconds on any monotonic clock (``loop.time()``, ``time.monotonic()``).

Answers go out first (spec section 1). In stream mode one call of
``receive_data`` stops after the frame that produced a
:class:`HandshakeComplete` or :class:`MessageReceived`: the rest of what
arrived stays buffered and ``has_buffered_input`` is true. The driver
handles the event and sends its answer, then goes on with the buffered bytes
before reading more::

    while not engine.finished:
        data = b"" if engine.has_buffered_input else transport.read()
        events = engine.receive_data(data, now)
        transport.write(b"".join(engine.frames_to_send()))
        ...                                    # act on the events: answers go out now

so that the reply to a message precedes the BYE for a fatal frame that came
right behind it. Bytes still buffered when ``receive_eof`` is called are
discarded with the session.

Failures follow the state table: in stream mode every violation is fatal
(the engine queues the ERROR or BYE the table names and moves to FAILED);
in datagram mode a bad frame is dropped with an :class:`InputDropped` event
and nothing changes, except for the handshake frames whose rows say FAILED.
A datagram ERROR during the handshake is unauthenticated: it is dropped
(``InputDropped`` carrying a :class:`~usmp.PeerError`) and its code recorded;
if the handshake then times out, the last recorded code is the failure
(``PeerError``) instead of ``HandshakeTimeout`` (row 25).
A finished engine keeps its condition: every later call reports it.
"""

from __future__ import annotations

import enum
import itertools
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

from . import crypto, keylog
from .cookie import CookieJar
from .errors import (
    Condition,
    ConfigurationError,
    ConnectionLost,
    HandshakeTimeout,
    LocalProtocolError,
    PeerClosed,
    PeerError,
    PeerTimeout,
    RemoteProtocolError,
    USMPError,
)
from .psk import check_psk, parse_device_id
from .records import (
    MAX_PING_PAYLOAD,
    Reassembler,
    RecordReceiver,
    RecordSender,
    key_limit_error,
    split_message,
)
from .wire import (
    CHALLENGE_BODY_BYTES,
    COOKIE_BYTES,
    DEFINED_TYPES,
    ERROR_BODY_BYTES,
    HELLO_ACK_BODY_BYTES,
    HELLO_BODY_BYTES,
    MAX_MESSAGE,
    MAX_RECORD,
    NONCE_BYTES,
    SESSION_ID_BYTES,
    SESSION_INDEX_BYTES,
    SESSION_OK_BODY_BYTES,
    STREAM_HEADER_BYTES,
    SUITE,
    SUITE_BIT,
    PROTOCOL_VERSION,
    VERSION_BIT,
    Challenge,
    FrameType,
    Hello,
    Limits,
    Mode,
    build_frame,
    error_frame,
    frame_body,
    frame_type_condition,
    limits_valid,
    max_record_for,
)

log = logging.getLogger("usmp.engine")

PRIVATE_KEY_BYTES = 32
STAND_IN_PSK_BYTES = 32
# Section 8.1: datagram client retransmission timeout.
INITIAL_RETRANSMIT = 1.0
MAX_RETRANSMIT = 4.0

RandomSource = Callable[[int], bytes]


class State(enum.Enum):
    START = "START"
    WAIT_CHALLENGE = "WAIT_CHALLENGE"
    WAIT_SESSION_OK = "WAIT_SESSION_OK"
    WAIT_HELLO = "WAIT_HELLO"
    WAIT_HELLO_ACK = "WAIT_HELLO_ACK"
    ESTABLISHED = "ESTABLISHED"
    CLOSED = "CLOSED"
    FAILED = "FAILED"


HANDSHAKE_STATES = frozenset(
    {State.START, State.WAIT_CHALLENGE, State.WAIT_SESSION_OK, State.WAIT_HELLO, State.WAIT_HELLO_ACK}
)
TERMINAL_STATES = frozenset({State.CLOSED, State.FAILED})


class Role(enum.Flag):
    CLIENT = enum.auto()
    SERVER = enum.auto()
    BOTH = CLIENT | SERVER


STREAM_AND_DATAGRAM = frozenset({Mode.STREAM, Mode.DATAGRAM})
DATAGRAM_ONLY = frozenset({Mode.DATAGRAM})


@dataclass(frozen=True)
class Transition:
    """One row of the transition table: who, in which state, on which frame, runs which handler.

    ``row`` names the row of spec/state-machine.md. ``handler`` names an
    engine method ``_<handler>(frame, events, now)``, the same name as the C
    engine's (src/usmp_engine.c ``transitions[]``). A handler raises
    :class:`RemoteProtocolError` for a violation, which :meth:`Engine._violation`
    turns into FAILED (stream) or a drop (datagram); ``fatal`` rows fail in
    both modes (the handshake checks of section 4.5, where C calls fail()).
    """

    roles: Role
    state: State
    frame_type: FrameType
    modes: frozenset[Mode]
    row: int
    handler: str
    fatal: bool = False


# The one transition table (spec/state-machine.md; tests/spec/test_spec.py checks it
# against the spec and against the C engine's). A frame with no row here is rows 27/28.
TRANSITIONS: tuple[Transition, ...] = (
    Transition(Role.CLIENT, State.WAIT_CHALLENGE, FrameType.CHALLENGE, STREAM_AND_DATAGRAM, 2, "on_challenge", True),
    Transition(Role.CLIENT, State.WAIT_CHALLENGE, FrameType.COOKIE, DATAGRAM_ONLY, 7, "on_cookie"),
    Transition(Role.CLIENT, State.WAIT_SESSION_OK, FrameType.SESSION_OK, STREAM_AND_DATAGRAM, 8, "on_session_ok", True),
    Transition(Role.SERVER, State.WAIT_HELLO, FrameType.HELLO, STREAM_AND_DATAGRAM, 13, "on_hello", True),
    Transition(Role.SERVER, State.WAIT_HELLO_ACK, FrameType.HELLO_ACK, STREAM_AND_DATAGRAM, 20, "on_hello_ack", True),
    Transition(Role.SERVER, State.WAIT_HELLO_ACK, FrameType.HELLO, DATAGRAM_ONLY, 23, "on_duplicate_hello"),
    Transition(Role.SERVER, State.ESTABLISHED, FrameType.HELLO_ACK, DATAGRAM_ONLY, 24, "on_duplicate_hello_ack"),
    Transition(Role.CLIENT, State.WAIT_CHALLENGE, FrameType.ERROR, STREAM_AND_DATAGRAM, 25, "on_error"),
    Transition(Role.CLIENT, State.WAIT_SESSION_OK, FrameType.ERROR, STREAM_AND_DATAGRAM, 25, "on_error"),
    Transition(Role.SERVER, State.WAIT_HELLO, FrameType.ERROR, STREAM_AND_DATAGRAM, 25, "on_error"),
    Transition(Role.SERVER, State.WAIT_HELLO_ACK, FrameType.ERROR, STREAM_AND_DATAGRAM, 25, "on_error"),
    Transition(Role.BOTH, State.ESTABLISHED, FrameType.DATA, STREAM_AND_DATAGRAM, 29, "on_record"),
    Transition(Role.BOTH, State.ESTABLISHED, FrameType.DATA_FRAGMENT, STREAM_AND_DATAGRAM, 30, "on_record"),
    Transition(Role.BOTH, State.ESTABLISHED, FrameType.PING, STREAM_AND_DATAGRAM, 31, "on_record"),
    Transition(Role.BOTH, State.ESTABLISHED, FrameType.PONG, STREAM_AND_DATAGRAM, 32, "on_record"),
    Transition(Role.BOTH, State.ESTABLISHED, FrameType.BYE, STREAM_AND_DATAGRAM, 33, "on_record"),
    Transition(Role.BOTH, State.ESTABLISHED, FrameType.CONTROL, STREAM_AND_DATAGRAM, 61, "on_record"),
)

# Section 4: the stream body length of each handshake frame and ERROR (records: section 6.2).
STREAM_BODY_BYTES = {
    FrameType.HELLO: HELLO_BODY_BYTES,
    FrameType.CHALLENGE: CHALLENGE_BODY_BYTES,
    FrameType.HELLO_ACK: HELLO_ACK_BODY_BYTES,
    FrameType.SESSION_OK: SESSION_OK_BODY_BYTES,
    FrameType.ERROR: ERROR_BODY_BYTES,
}


def check_positive(owner: object, *names: str) -> None:
    """Raise ConfigurationError unless each named attribute is positive or None."""
    for name in names:
        value = getattr(owner, name)
        if value is not None and not value > 0:
            raise ConfigurationError(f"{name} must be positive, got {value}")


@dataclass(frozen=True)
class EngineConfig:
    """What one side announces and its timers (spec sections 6.6 and 11). Times in seconds.

    ``keepalive_interval``: send PING when nothing authenticated has arrived
    for this long (``None``: off). ``pong_timeout``: then fail with
    PEER_TIMEOUT if nothing authenticated arrives within it (``None``: the
    keepalive interval). ``idle_timeout``: a server closes with BYE(IDLE_TIMEOUT)
    when nothing authenticated has arrived for this long (``None``: never;
    a client ignores it).
    """

    max_record: int = MAX_RECORD
    max_message: int = MAX_MESSAGE
    handshake_timeout: float = 10.0
    keepalive_interval: float | None = None
    pong_timeout: float | None = None
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        if not limits_valid(Mode.STREAM, self.max_record, self.max_message):
            raise ConfigurationError(
                f"max_record must be 16..{MAX_RECORD} and max_message max_record..{MAX_MESSAGE}, "
                f"got {self.max_record} and {self.max_message}"
            )
        check_positive(self, "handshake_timeout", "keepalive_interval", "pong_timeout", "idle_timeout")

    @property
    def limits(self) -> Limits:
        return Limits(self.max_record, self.max_message)


@dataclass(frozen=True)
class CookieCheck:
    """Given to a datagram :class:`ServerEngine` when its server is under load (spec 8.3)."""

    jar: CookieJar
    client_address: bytes


@dataclass
class HandshakeSecrets:
    """Every secret of one handshake, in one place, so that they are dropped together (spec 5.7).

    ``psk`` and ``ephemeral_private``: the client's, until the CHALLENGE is
    processed. The rest: both roles, from the key derivation until
    ESTABLISHED. See :data:`SECRETS_ALLOWED` and crypto.py about wiping.
    """

    psk: bytes | None = None
    ephemeral_private: bytes | None = None
    transcript: bytes | None = None
    confirm_server: bytes | None = None
    expected_client_mac: bytes | None = None
    record_keys: tuple[bytes, bytes] | None = None  # (send, receive) until installed

    def held(self) -> frozenset[str]:
        return frozenset(name for name, value in vars(self).items() if value is not None)


# The invariant of section 5.7, written once: which handshake secrets may exist in
# which state. Record keys (the RecordSender/RecordReceiver) exist in ESTABLISHED
# only; after CLOSED or FAILED nothing secret is left. check_secrets_invariant()
# verifies it; the engine tests call it after every step.
SECRETS_ALLOWED: dict[State, frozenset[str]] = {
    State.START: frozenset({"psk"}),
    State.WAIT_CHALLENGE: frozenset({"psk", "ephemeral_private"}),
    State.WAIT_SESSION_OK: frozenset({"transcript", "confirm_server", "record_keys"}),
    State.WAIT_HELLO: frozenset(),
    State.WAIT_HELLO_ACK: frozenset({"transcript", "confirm_server", "expected_client_mac", "record_keys"}),
    State.ESTABLISHED: frozenset(),
    State.CLOSED: frozenset(),
    State.FAILED: frozenset(),
}


def check_secrets_invariant(engine: Engine) -> list[str]:
    """What an engine holds that :data:`SECRETS_ALLOWED` forbids in its state (empty: the invariant holds)."""
    state = engine.state
    problems = [f"{name} in {state.value}" for name in sorted(engine._secrets.held() - SECRETS_ALLOWED[state])]
    has_record_keys = engine._sender is not None or engine._receiver is not None
    if has_record_keys != (state is State.ESTABLISHED):
        problems.append(f"record keys {'present' if has_record_keys else 'missing'} in {state.value}")
    return problems


# --- events -------------------------------------------------------------------------


@dataclass(frozen=True)
class HelloReceived:
    """Server: a valid HELLO arrived. Answer with ``accept_hello(psk or None)`` or ``refuse_busy()``."""

    device_id: bytes


@dataclass(frozen=True)
class HandshakeComplete:
    session_id: bytes
    device_id: bytes
    peer_limits: Limits


@dataclass(frozen=True)
class MessageReceived:
    data: bytes


@dataclass(frozen=True)
class ControlMessage:
    """A CONTROL record (section 6.7, row 61): never an application message.

    A driver routes it by ``channel`` (0x01: OTA, spec/ota.md); a channel
    nothing handles is discarded and counted.
    """

    channel: int
    body: bytes


@dataclass(frozen=True)
class InputDropped:
    """Datagram mode: one frame was discarded; nothing else changed."""

    error: RemoteProtocolError


Event = Union[HelloReceived, HandshakeComplete, MessageReceived, ControlMessage, InputDropped]
# Stream input stops after these, so that the driver's answer precedes what follows (section 1).
_HOLDING_EVENTS = (HandshakeComplete, MessageReceived, ControlMessage)
_Handler = Callable[[bytes, list[Event], float], None]


class Engine:
    """What both roles share: framing, the transition table's one lookup, records, timers, endings.

    Every handler is a plain method of this one class. The role shows only
    through :data:`TRANSITIONS` (which rows, hence which handlers, apply) and
    through :class:`ClientEngine` and :class:`ServerEngine`, which hold just
    the constructors and the role's own application calls (``start``;
    ``accept_hello`` and ``refuse_busy``).
    """

    role: Role

    def __init__(
        self,
        mode: Mode,
        config: EngineConfig,
        state: State,
        *,
        random: RandomSource,
    ) -> None:
        if not limits_valid(mode, config.max_record, config.max_message):
            raise ConfigurationError(
                f"in {mode.name.lower()} mode max_record is at most {max_record_for(mode)}, got {config.max_record}"
            )
        self.mode = mode
        self.config = config
        self.state = state
        self.error: USMPError | None = None
        self.end_condition: Condition | None = None
        self.session_id: bytes | None = None
        self.device_id: bytes | None = None
        self.peer_limits: Limits | None = None
        self._random = random
        self._secrets = HandshakeSecrets()
        # Handshake state that is not secret. Client: the HELLO as sent, without a
        # cookie, (datagram) what a retransmission resends and when, and the
        # HELLO_ACK. Server: the HELLO received, its transcript form, whether it
        # awaits accept_hello(), the CHALLENGE sent and, datagram, the answers
        # to a lost SESSION_OK until the first client record (8.2).
        self._hello_frame = b""
        self._flight: bytes | None = None
        self._retransmit_at: float | None = None
        self._retransmit_interval = INITIAL_RETRANSMIT
        self._hello_ack_frame = b""
        self._hello: Hello | None = None
        self._hello_pending = False
        self._challenge_frame = b""
        self._accepted_hello_ack: bytes | None = None
        self._session_ok_frame: bytes | None = None
        # Server settings (the constructors set them).
        self._idle_timeout: float | None = None
        self._cookie: CookieCheck | None = None
        self._session_index: bytes | None = None
        self._outgoing: list[bytes] = []
        self._stream_buffer = bytearray()
        self._input_held = False  # stream: stopped after an event with input left (section 1)
        self._handshake_deadline: float | None = None
        self._peer_error: PeerError | None = None  # datagram: the last ERROR received in the handshake
        self._sender: RecordSender | None = None
        self._receiver: RecordReceiver | None = None
        self._reassembler = Reassembler(mode, config.max_record, config.max_message)
        self._last_authenticated = 0.0
        self._pong_deadline: float | None = None

    # --- queries ----------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED

    @property
    def has_buffered_input(self) -> bool:
        """Stream mode: :meth:`receive_data` stopped after an event with received bytes left unprocessed.

        Handle the events, send what the engine queued (and any answer), then
        call ``receive_data(b"", now)`` to go on with those bytes. Always
        ``False`` in datagram mode and once the engine has finished.
        """
        return self._input_held and not self.finished

    def frames_to_send(self) -> list[bytes]:
        """Every frame queued since the last call, in order (stream: write them back to back)."""
        frames, self._outgoing = self._outgoing, []
        return frames

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` must next be called, or ``None``."""
        if self.finished:
            return None
        if self.state in HANDSHAKE_STATES:
            return self._handshake_deadlines()
        candidates = [self._idle_deadline()]
        if self._pong_deadline is not None:
            candidates.append(self._pong_deadline)
        elif self.config.keepalive_interval is not None:
            candidates.append(self._last_authenticated + self.config.keepalive_interval)
        return min((t for t in candidates if t is not None), default=None)

    # --- input ------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Stream mode: any bytes of the stream. Datagram mode: exactly one datagram (one frame).

        Stream mode returns at most one :class:`HandshakeComplete` or
        :class:`MessageReceived`, the last event of the list; bytes after that
        frame stay buffered (:attr:`has_buffered_input`) until the next call,
        ``receive_data(b"", now)`` to go on without new bytes.
        """
        self._check_not_paused()
        events: list[Event] = []
        if self.finished:
            return events
        if self.mode is Mode.STREAM:
            self._stream_buffer += data
            self._process_stream(events, now)
        elif not data:
            events.append(InputDropped(RemoteProtocolError(Condition.MALFORMED, "empty datagram")))
        else:
            self._handle_frame(bytes(data), events, now)
        return events

    def receive_eof(self) -> None:
        """The transport ended (or broke). Without a BYE first this is TRANSPORT_CLOSED (row 48)."""
        self._fail(ConnectionLost())

    def handle_timeout(self, now: float) -> None:
        """Run every timer that is due at ``now`` (rows 12, 26, 44-46)."""
        if self.finished:
            return
        if self.state in HANDSHAKE_STATES:
            if self._handshake_deadline is not None and now >= self._handshake_deadline:
                # Rows 12 and 26: a datagram ERROR received meanwhile is what is reported.
                self._fail(self._peer_error or HandshakeTimeout())
            else:
                self._retransmit_if_due(now)
            return
        if self._pong_deadline is not None and now >= self._pong_deadline:
            self._fail(PeerTimeout())
            return
        idle = self._idle_deadline()
        if idle is not None and now >= idle:
            self._close(Condition.IDLE_TIMEOUT)
            return
        keepalive = self.config.keepalive_interval
        if keepalive is not None and self._pong_deadline is None and now >= self._last_authenticated + keepalive:
            if self._seal(FrameType.PING, b""):
                self._pong_deadline = now + (self.config.pong_timeout or keepalive)

    # --- application calls --------------------------------------------------------------

    def send_message(self, data: bytes, now: float) -> None:
        """Seal one message as DATA or DATA_FRAGMENTs (rows 39-42).

        Raises :class:`LocalProtocolError` with TOO_LARGE, and sends nothing,
        if the message is over the peer's ``max_message``.
        """
        self._require_established()
        assert self._sender is not None and self.peer_limits is not None
        if len(data) > self.peer_limits.max_message:
            raise LocalProtocolError(
                f"message of {len(data)} bytes is over the peer's max_message {self.peer_limits.max_message}",
                Condition.TOO_LARGE,
            )
        records = split_message(bytes(data), self.peer_limits.max_record)
        # All or nothing: a message is never cut short by the usage limit.
        if not self._sender.has_capacity([len(payload) for _, payload in records]):
            error = key_limit_error()
            self._fail(error)
            raise error
        for record_type, payload in records:
            self._outgoing.append(self._sender.seal(record_type, payload))
        self._rekey_if_due()

    def send_control(self, channel: int, body: bytes) -> None:
        """Seal one CONTROL record, ``channel || body`` (section 6.7, rows 62-63).

        A control message is never fragmented: raises :class:`LocalProtocolError`
        with TOO_LARGE, and sends nothing, if ``1 + len(body)`` is over the
        peer's ``max_record``. Messages are sealed whole, so a CONTROL record
        never comes between the fragments of one.
        """
        self._require_established()
        assert self.peer_limits is not None
        if not 0 <= channel <= 0xFF:
            raise LocalProtocolError(f"control channel {channel} is not one byte")
        if 1 + len(body) > self.peer_limits.max_record:
            raise LocalProtocolError(
                f"control message of {1 + len(body)} bytes is over the peer's max_record "
                f"{self.peer_limits.max_record}",
                Condition.TOO_LARGE,
            )
        self._seal(FrameType.CONTROL, bytes((channel,)) + bytes(body))

    def send_ping(self, payload: bytes = b"") -> None:
        """Send a PING (0 to 8 opaque bytes); the peer answers PONG with the same bytes."""
        self._require_established()
        if len(payload) > MAX_PING_PAYLOAD:
            raise LocalProtocolError(f"a PING payload is at most {MAX_PING_PAYLOAD} bytes")
        self._seal(FrameType.PING, bytes(payload))

    def close(self, reason: Condition = Condition.NONE) -> None:
        """End the session: BYE(reason) when established; during the handshake nothing is sent.

        Does nothing if the session has already ended.
        """
        if reason.code is None:
            raise LocalProtocolError(f"{reason} cannot be sent in a BYE")
        if self.finished:
            return
        if self.state is State.ESTABLISHED:
            self._close(reason)
        else:
            self._finish(State.CLOSED, reason, None)

    # --- framing ------------------------------------------------------------------------

    def _process_stream(self, events: list[Event], now: float) -> None:
        self._input_held = False
        buffer = self._stream_buffer
        while not self.finished and not self._paused() and len(buffer) >= STREAM_HEADER_BYTES:
            frame_type = buffer[0]
            (length,) = struct.unpack_from(">H", buffer, 1)
            # Section 5.1: type and length are judged before the body is waited for.
            error = self._stream_header_error(frame_type, length)
            if error is not None:
                self._fail(error)  # stream: every violation is fatal
                return
            end = STREAM_HEADER_BYTES + length
            if len(buffer) < end:
                return
            frame = bytes(buffer[:end])
            del buffer[:end]
            already = len(events)
            self._handle_frame(frame, events, now)
            if buffer and any(isinstance(e, _HOLDING_EVENTS) for e in events[already:]):
                # Section 1, "the answer goes out first": stop here so that the
                # driver can answer this event before a later frame of the same
                # read (possibly a fatal one) is judged. See has_buffered_input.
                self._input_held = True
                return

    def _find_transition(self, frame_type: int) -> Transition | None:
        """The one lookup of the transition table: this role, state and mode's row for ``frame_type``."""
        for transition in TRANSITIONS:
            if (
                transition.roles & self.role
                and transition.state is self.state
                and transition.frame_type == frame_type
                and self.mode in transition.modes
            ):
                return transition
        return None

    def _no_transition(self, frame_type: int) -> RemoteProtocolError:
        """Rows 27 and 28: a frame this state has no transition for."""
        return RemoteProtocolError(frame_type_condition(frame_type), f"{_type_name(frame_type)} in {self.state.value}")

    def _stream_header_error(self, frame_type: int, length: int) -> RemoteProtocolError | None:
        if self._find_transition(frame_type) is None:
            return self._no_transition(frame_type)
        if self.state is State.ESTABLISHED:
            assert self._receiver is not None
            try:
                self._receiver.check_stream_header(frame_type, length)
            except RemoteProtocolError as error:
                return error
        elif length != STREAM_BODY_BYTES[FrameType(frame_type)]:
            return RemoteProtocolError(Condition.MALFORMED, f"{_type_name(frame_type)} of wrong length")
        return None

    def _handle_frame(self, frame: bytes, events: list[Event], now: float) -> None:
        """One whole frame, through its row of the transition table."""
        transition = self._find_transition(frame[0])
        try:
            if transition is None:
                raise self._no_transition(frame[0])
            handler: _Handler = getattr(self, "_" + transition.handler)
            handler(frame, events, now)
        except RemoteProtocolError as error:
            self._violation(error, events, fatal=transition is not None and transition.fatal)

    def _violation(self, error: RemoteProtocolError, events: list[Event], *, fatal: bool = False) -> None:
        """The one place that decides fatal versus drop (C: violation()).

        Stream: every violation is fatal. Datagram: the frame is dropped and
        nothing changes, except on rows that say FAILED in both modes.
        """
        if self.mode is Mode.STREAM or fatal:
            self._fail(error)
        else:
            log.debug("dropped a datagram: %s", error)
            events.append(InputDropped(error))

    def _on_error(self, frame: bytes, events: list[Event], now: float) -> None:
        """Row 25, section 9.2."""
        if len(frame_body(self.mode, frame)) != ERROR_BODY_BYTES:
            raise RemoteProtocolError(Condition.MALFORMED, "ERROR of wrong length")
        peer_error = PeerError(frame[-1])
        if self.mode is Mode.DATAGRAM:
            # An ERROR is unauthenticated and anyone who knows the address can
            # send one, so it only records the code (a later ERROR replaces it)
            # and is dropped; the handshake goes on, and the handshake timeout
            # reports the last code (row 26).
            self._peer_error = peer_error
        raise peer_error  # stream: fatal (no ERROR is sent back for a PeerError)

    def _check_length(self, frame: bytes, body_length: int, *other_datagram_lengths: int) -> None:
        """Section 4: every handshake frame has exactly its length; otherwise MALFORMED."""
        length = len(frame_body(self.mode, frame))
        allowed = (body_length,) if self.mode is Mode.STREAM else (body_length, *other_datagram_lengths)
        if length not in allowed:
            raise RemoteProtocolError(Condition.MALFORMED, f"{_type_name(frame[0])} of wrong length")

    # --- records ------------------------------------------------------------------------

    def _establish(self, session_id: bytes, events: list[Event], now: float) -> None:
        """Rows 8 and 20: install the record keys and forget the handshake."""
        assert self._secrets.record_keys is not None and self.device_id is not None and self.peer_limits is not None
        send_key, receive_key = self._secrets.record_keys
        # Opt-in debugging export, off unless USMP_KEYLOG_FILE is set (keylog.py).
        if self.role is Role.CLIENT:
            keylog.log_session_keys(session_id, send_key, receive_key)
        else:
            keylog.log_session_keys(session_id, receive_key, send_key)
        index = session_id[:SESSION_INDEX_BYTES] if self.mode is Mode.DATAGRAM else b""
        self._sender = RecordSender(send_key, self.mode, index)
        self._receiver = RecordReceiver(receive_key, self.mode, self.config.max_record, index)
        self._last_authenticated = now
        self._handshake_deadline = None
        self._peer_error = None  # 9.2: a completed handshake forgets a recorded ERROR
        self.session_id = session_id
        self.state = State.ESTABLISHED
        self._drop_handshake_secrets()
        events.append(HandshakeComplete(session_id, self.device_id, self.peer_limits))

    def _drop_handshake_secrets(self) -> None:
        """The one place handshake secrets die: at ESTABLISHED and at every ending (spec 5.7)."""
        self._secrets = HandshakeSecrets()
        self._flight = self._retransmit_at = None
        self._hello = None
        self._hello_pending = False

    def _on_record(self, frame: bytes, events: list[Event], now: float) -> None:
        """Rows 29-33 and 61, the checks of section 6.2 in order; nothing changes until all have passed."""
        assert self._receiver is not None
        record = self._receiver.open(frame)  # checks 1-7
        payload = record.plaintext
        fragment = None
        # Check 8, still without changing anything.
        if record.record_type is FrameType.DATA:
            self._reassembler.check_data()
        elif record.record_type is FrameType.DATA_FRAGMENT:
            fragment = self._reassembler.check_fragment(payload, record.counter)
            if fragment.out_of_sequence:
                # Datagram mode (6.4): the partial message is lost with this fragment,
                # which is dropped as UNEXPECTED without being accepted.
                self._reassembler.discard()
                raise RemoteProtocolError(Condition.UNEXPECTED, "DATA_FRAGMENT out of sequence")
        elif record.record_type in (FrameType.PING, FrameType.PONG):
            if len(payload) > MAX_PING_PAYLOAD:
                raise RemoteProtocolError(Condition.MALFORMED, f"{record.record_type.name} payload over 8 bytes")
        elif record.record_type is FrameType.CONTROL:
            if not payload:
                raise RemoteProtocolError(Condition.MALFORMED, "CONTROL record without its channel byte")
        elif len(payload) != 1:
            raise RemoteProtocolError(Condition.MALFORMED, "BYE payload is not exactly one byte")
        # Accepted: only now does any state move.
        self._receiver.accept(record)
        self._record_accepted()
        self._last_authenticated = now
        self._pong_deadline = None
        if record.record_type is FrameType.DATA:
            self._reassembler.apply_data()
            events.append(MessageReceived(payload))
        elif fragment is not None:
            message = self._reassembler.apply_fragment(fragment)
            if message is not None:
                events.append(MessageReceived(message))
        elif record.record_type is FrameType.PING:
            self._seal(FrameType.PONG, payload)
        elif record.record_type is FrameType.CONTROL:
            # Row 61: reported apart from messages; a partial message stays as it is.
            events.append(ControlMessage(payload[0], payload[1:]))
        elif record.record_type is FrameType.BYE:
            self._finish(State.CLOSED, Condition.PEER_CLOSED, PeerClosed(payload[0]))

    def _seal(self, record_type: FrameType, payload: bytes) -> bool:
        """Seal and queue one record; at the hard usage limit fail with KEY_LIMIT instead (row 42)."""
        assert self._sender is not None
        if not self._sender.has_capacity([len(payload)]):
            self._fail(key_limit_error())
            return False
        self._outgoing.append(self._sender.seal(record_type, payload))
        self._rekey_if_due()
        return True

    def _rekey_if_due(self) -> None:
        """Row 41: at the soft usage limit, finish the record, then BYE(REKEY) and close."""
        assert self._sender is not None
        if self.state is State.ESTABLISHED and self._sender.soft_limit_reached:
            self._close(Condition.REKEY)

    # --- ending -------------------------------------------------------------------------

    def _close(self, reason: Condition) -> None:
        code = reason.code
        assert code is not None and self._sender is not None
        if not self._sender.has_capacity([1]):
            self._fail(key_limit_error())
            return
        self._outgoing.append(self._sender.seal(FrameType.BYE, bytes((code,))))
        self._finish(State.CLOSED, reason, None)

    def _fail(self, error: USMPError) -> None:
        """Move to FAILED, first queueing the reply the state table names for a peer's violation."""
        if self.finished:
            return
        code = error.condition.code
        if isinstance(error, RemoteProtocolError) and not isinstance(error, PeerError) and code is not None:
            if self.state in HANDSHAKE_STATES:
                self._outgoing.append(error_frame(self.mode, error.condition))
            elif self.mode is Mode.STREAM and self._sender is not None and self._sender.has_capacity([1]):
                # At the usage limit the BYE cannot be sealed: close without it.
                self._outgoing.append(self._sender.seal(FrameType.BYE, bytes((code,))))
        log.debug("session failed: %s", error)
        self._finish(State.FAILED, error.condition, error)

    def _finish(self, state: State, condition: Condition, error: USMPError | None) -> None:
        """The one place a session ends: every path to CLOSED or FAILED comes here, and so do the wipes."""
        self.state = state
        self.end_condition = condition
        self.error = error
        # Record keys go with the session (spec 5.7); see crypto.py about wiping.
        self._sender = self._receiver = None
        self._stream_buffer.clear()
        self._input_held = False
        self._drop_handshake_secrets()

    def _require_established(self) -> None:
        if self.state is State.ESTABLISHED:
            return
        if self.error is not None:
            raise self.error  # sticky: every later call reports the condition that ended it
        raise LocalProtocolError(f"not allowed in state {self.state.value}")

    # --- handshake handlers, named by TRANSITIONS (the table says which role runs which) ---

    def _on_cookie(self, frame: bytes, events: list[Event], now: float) -> None:
        """Row 7: resend the same HELLO with the cookie appended, and retransmit that from now on.

        A COOKIE of the wrong length is dropped rather than fatal: the state
        table names no failure for it, and it is unauthenticated.
        """
        self._check_length(frame, COOKIE_BYTES)
        self._send_flight(self._hello_frame + frame_body(self.mode, frame), now)

    def _on_challenge(self, frame: bytes, events: list[Event], now: float) -> None:
        """Rows 2-6, checks in the order of section 4.5."""
        self._check_length(frame, CHALLENGE_BODY_BYTES)
        challenge = Challenge.parse(self.mode, frame_body(self.mode, frame))
        secrets = self._secrets
        assert secrets.ephemeral_private is not None and secrets.psk is not None
        shared = crypto.x25519_shared(secrets.ephemeral_private, challenge.public_key)
        transcript = crypto.transcript_hash(self.mode, self._hello_frame, frame)
        keys = crypto.derive_keys(shared, secrets.psk, challenge.nonce, transcript)
        del shared
        # The ephemeral key and the PSK go as soon as the keys are derived (5.7).
        self._secrets = HandshakeSecrets(
            transcript=transcript, confirm_server=keys.confirm_server, record_keys=(keys.c2s, keys.s2c)
        )
        self.peer_limits = challenge.limits
        self._hello_ack_frame = build_frame(
            self.mode, FrameType.HELLO_ACK, crypto.client_finished(keys.confirm_client, transcript)
        )
        self.state = State.WAIT_SESSION_OK
        self._send_flight(self._hello_ack_frame, now)

    def _on_session_ok(self, frame: bytes, events: list[Event], now: float) -> None:
        """Rows 8-10."""
        self._check_length(frame, SESSION_OK_BODY_BYTES)
        body = frame_body(self.mode, frame)
        session_id, mac = body[:SESSION_ID_BYTES], body[SESSION_ID_BYTES:]
        secrets = self._secrets
        assert secrets.confirm_server is not None and secrets.transcript is not None
        expected = crypto.server_finished(secrets.confirm_server, secrets.transcript, self._hello_ack_frame, session_id)
        if not crypto.macs_equal(mac, expected):
            raise RemoteProtocolError(Condition.AUTH_FAILED, "SESSION_OK MAC does not verify")
        self._establish(session_id, events, now)

    def _send_flight(self, frame: bytes, now: float) -> None:
        self._outgoing.append(frame)
        if self.mode is Mode.DATAGRAM:
            self._flight = frame
            self._retransmit_interval = INITIAL_RETRANSMIT
            self._retransmit_at = now + INITIAL_RETRANSMIT

    def _retransmit_if_due(self, now: float) -> None:
        if self._flight is None or self._retransmit_at is None or now < self._retransmit_at:
            return
        self._outgoing.append(self._flight)  # byte for byte
        self._retransmit_interval = min(2 * self._retransmit_interval, MAX_RETRANSMIT)
        self._retransmit_at = now + self._retransmit_interval

    def _handshake_deadlines(self) -> float | None:
        deadlines = [t for t in (self._handshake_deadline, self._retransmit_at) if t is not None]
        return min(deadlines, default=None)

    def _on_hello(self, frame: bytes, events: list[Event], now: float) -> None:
        """Section 4.5 steps 1-5; steps 6-7 run in accept_hello()."""
        self._check_length(frame, HELLO_BODY_BYTES, HELLO_BODY_BYTES + COOKIE_BYTES)
        hello = Hello.parse(self.mode, frame_body(self.mode, frame))
        hello_frame = build_frame(self.mode, FrameType.HELLO, hello.body(with_cookie=False))
        if self._cookie is not None:
            jar, address = self._cookie.jar, self._cookie.client_address
            if hello.cookie is None or not jar.verify(address, hello_frame, hello.cookie, now):
                # Row 19: answer with a cookie and keep nothing.
                cookie = jar.make(address, hello_frame, now)
                self._outgoing.append(build_frame(self.mode, FrameType.COOKIE, cookie))
                return
        self._hello, self._hello_frame = hello, hello_frame
        self.device_id = hello.device_id
        self._hello_pending = True
        events.append(HelloReceived(hello.device_id))

    def _new_session_id(self) -> bytes:
        """Section 5.6: a datagram server's index must be unique among its live sessions (the driver's choice)."""
        index = self._session_index or self._random(SESSION_INDEX_BYTES)
        return index + self._random(SESSION_ID_BYTES - SESSION_INDEX_BYTES)

    def _on_duplicate_hello(self, frame: bytes, events: list[Event], now: float) -> None:
        """Row 23: the same HELLO again (cookie ignored) gets the stored CHALLENGE.

        Row 51: a *different* HELLO is dropped here (UNEXPECTED, nothing sent,
        nothing changed). It starts a new handshake from that address, which
        is the datagram server's business (8.2): it ends this engine without a
        word and gives the HELLO to a new engine in WAIT_HELLO.
        """
        if frame[: len(self._hello_frame)] == self._hello_frame and len(frame) in (
            len(self._hello_frame),
            len(self._hello_frame) + COOKIE_BYTES,
        ):
            self._outgoing.append(self._challenge_frame)
            return
        raise RemoteProtocolError(Condition.UNEXPECTED, "a different HELLO during the handshake")

    def _on_hello_ack(self, frame: bytes, events: list[Event], now: float) -> None:
        """Rows 20-22."""
        self._check_length(frame, HELLO_ACK_BODY_BYTES)
        secrets = self._secrets
        assert secrets.expected_client_mac is not None
        if not crypto.macs_equal(frame_body(self.mode, frame), secrets.expected_client_mac):
            raise RemoteProtocolError(Condition.AUTH_FAILED, "HELLO_ACK MAC does not verify")
        assert secrets.confirm_server is not None and secrets.transcript is not None and self.session_id is not None
        mac = crypto.server_finished(secrets.confirm_server, secrets.transcript, frame, self.session_id)
        session_ok = build_frame(self.mode, FrameType.SESSION_OK, self.session_id + mac)
        self._outgoing.append(session_ok)
        if self.mode is Mode.DATAGRAM:
            self._accepted_hello_ack, self._session_ok_frame = frame, session_ok
        self._establish(self.session_id, events, now)

    def _on_duplicate_hello_ack(self, frame: bytes, events: list[Event], now: float) -> None:
        """Row 24: the accepted HELLO_ACK again, before any client record, gets the same SESSION_OK (8.2)."""
        if self._session_ok_frame is None or frame != self._accepted_hello_ack:
            raise self._no_transition(frame[0])
        self._outgoing.append(self._session_ok_frame)

    def _record_accepted(self) -> None:
        # After the first authenticated client record a HELLO_ACK is just UNEXPECTED (8.2).
        self._accepted_hello_ack = self._session_ok_frame = None

    # --- timers and pauses ----------------------------------------------------------------

    def _paused(self) -> bool:
        return self._hello_pending

    def _check_not_paused(self) -> None:
        if self._hello_pending:
            raise LocalProtocolError("a HELLO is waiting for accept_hello() or refuse_busy()")

    def _idle_deadline(self) -> float | None:
        if self._idle_timeout is None or self.state is not State.ESTABLISHED:
            return None
        return self._last_authenticated + self._idle_timeout


def _type_name(frame_type: int) -> str:
    try:
        return FrameType(frame_type).name
    except ValueError:
        return f"type 0x{frame_type:02x}"


# Section 5.8's connection_counter for this process ("handshakes started since boot", in RAM).
_connections_started = itertools.count()


def _next_connection_counter() -> int:
    """0 for the first ClientEngine of the process that takes the default, then 1, 2, ..."""
    return next(_connections_started)


class ClientEngine(Engine):
    """The device side: starts the handshake (rows 1-12).

    The ephemeral key is derived from 32 bytes of ``random``, the PSK and two
    counters (spec 5.8), so that a random source that repeats itself does not
    repeat the HELLO. ``boot_counter``: a value that never repeats across
    boots (or runs) of this device, e.g. kept in non-volatile storage and
    advanced before the first connection; 0 when there is none (see
    spec/security.md section 6 for what holds then). ``connection_counter``:
    handshakes started since boot; ``None`` (the default) takes the next
    value of a counter kept by this module for the process.
    """

    role = Role.CLIENT

    def __init__(
        self,
        *,
        mode: Mode,
        device_id: bytes | str,
        psk: bytes,
        config: EngineConfig | None = None,
        random: RandomSource = os.urandom,
        boot_counter: int = 0,
        connection_counter: int | None = None,
    ) -> None:
        super().__init__(
            mode,
            config or EngineConfig(),
            State.START,
            random=random,
        )
        for name, value in (("boot_counter", boot_counter), ("connection_counter", connection_counter)):
            if value is not None and not (isinstance(value, int) and 0 <= value <= crypto.MAX_COUNTER):
                raise ConfigurationError(f"{name} must be an integer 0 .. 2**64 - 1, got {value!r}")
        self.device_id = parse_device_id(device_id)
        self._secrets.psk = check_psk(psk)
        self.boot_counter = boot_counter
        self.connection_counter = _next_connection_counter() if connection_counter is None else connection_counter

    def start(self, now: float) -> None:
        """Send HELLO (row 1)."""
        if self.state is not State.START:
            raise LocalProtocolError(f"start() in state {self.state.value}")
        psk = self._secrets.psk
        assert self.device_id is not None and psk is not None
        random_output = self._random(crypto.CLIENT_RANDOM_BYTES)
        if len(random_output) != crypto.CLIENT_RANDOM_BYTES:
            raise ConfigurationError(f"the random source returned {len(random_output)} bytes, not 32")
        # Row 1, section 5.8: the random output alone does not decide e_C.
        private = crypto.client_ephemeral_private(
            psk, self.boot_counter, self.connection_counter, random_output
        )
        self._secrets.ephemeral_private = private
        hello = Hello(VERSION_BIT, SUITE_BIT, self.device_id, crypto.x25519_public(private), self.config.limits)
        self._hello_frame = build_frame(self.mode, FrameType.HELLO, hello.body())
        self._handshake_deadline = now + self.config.handshake_timeout
        self.state = State.WAIT_CHALLENGE
        self._send_flight(self._hello_frame, now)

class ServerEngine(Engine):
    """The gateway side of one connection (stream) or one client address (datagram): rows 13-24.

    A valid HELLO pauses the engine with a :class:`HelloReceived` event, so
    that the driver can look the PSK up (possibly asynchronously) and apply
    its session and handshake limits; it then calls :meth:`accept_hello` or
    :meth:`refuse_busy`.
    """

    role = Role.SERVER

    def __init__(
        self,
        *,
        mode: Mode,
        now: float,
        config: EngineConfig | None = None,
        cookie: CookieCheck | None = None,
        session_index: bytes | None = None,
        random: RandomSource = os.urandom,
    ) -> None:
        super().__init__(
            mode,
            config or EngineConfig(),
            State.WAIT_HELLO,
            random=random,
        )
        if session_index is not None and len(session_index) != SESSION_INDEX_BYTES:
            raise ConfigurationError(f"a session index is {SESSION_INDEX_BYTES} bytes")
        if cookie is not None and mode is not Mode.DATAGRAM:
            raise ConfigurationError("cookies exist only in datagram mode")
        self._idle_timeout = self.config.idle_timeout
        self._cookie = cookie
        self._session_index = session_index
        # The handshake timer runs from the first byte or datagram, so that a
        # connection that never completes its HELLO is bounded too.
        self._handshake_deadline = now + self.config.handshake_timeout

    def accept_hello(self, psk: bytes | None, now: float) -> list[Event]:
        """Continue after :class:`HelloReceived` with the device's PSK, or ``None`` for an unknown device.

        An unknown device gets a random stand-in PSK and goes on exactly like
        a known one, to fail at HELLO_ACK with AUTH_FAILED (4.5 step 6, 13).
        Returns the events of any input buffered meanwhile.
        """
        if not self._hello_pending:
            raise LocalProtocolError("accept_hello() without a pending HELLO")
        self._hello_pending = False
        assert self._hello is not None
        events: list[Event] = []
        private = self._random(PRIVATE_KEY_BYTES)
        nonce = self._random(NONCE_BYTES)
        session_id = self._new_session_id()
        key = check_psk(psk) if psk is not None else self._random(STAND_IN_PSK_BYTES)
        challenge = Challenge(PROTOCOL_VERSION, SUITE, nonce, crypto.x25519_public(private), self.config.limits)
        challenge_frame = build_frame(self.mode, FrameType.CHALLENGE, challenge.body())
        try:
            shared = crypto.x25519_shared(private, self._hello.public_key)
        except RemoteProtocolError as error:
            self._fail(error)
            return events
        del private  # the ephemeral private key is not needed after dh (5.7)
        transcript = crypto.transcript_hash(self.mode, self._hello_frame, challenge_frame)
        keys = crypto.derive_keys(shared, key, nonce, transcript)
        del shared, key
        self._secrets = HandshakeSecrets(
            transcript=transcript,
            confirm_server=keys.confirm_server,
            expected_client_mac=crypto.client_finished(keys.confirm_client, transcript),
            record_keys=(keys.s2c, keys.c2s),
        )
        self.peer_limits = self._hello.limits
        self.session_id = session_id
        self._challenge_frame = challenge_frame
        self._outgoing.append(challenge_frame)
        self.state = State.WAIT_HELLO_ACK
        if self.mode is Mode.STREAM:
            self._process_stream(events, now)
        return events

    def refuse_busy(self) -> None:
        """Row 18: answer the pending HELLO with ERROR(BUSY), before any X25519."""
        if not self._hello_pending:
            raise LocalProtocolError("refuse_busy() without a pending HELLO")
        self._hello_pending = False
        self._outgoing.append(error_frame(self.mode, Condition.BUSY))
        self._finish(State.FAILED, Condition.BUSY, USMPError(Condition.BUSY, "at the session or handshake limit"))
