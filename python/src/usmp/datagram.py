"""Datagram-mode drivers shared by UDP and serial links (spec sections 5.2, 6.5, 8).

A datagram link carries one frame per datagram, may lose, duplicate and
reorder them, and (UDP) may change the peer's address. Three pieces live
here, independent of what carries the bytes:

:class:`DatagramSession`
    one engine, a bounded inbox of datagrams, its timers, and the
    application's view (``send``, ``close``, ``stats``).
:class:`DatagramGateway`
    the server's demultiplexer: handshake frames by source address,
    records by session index (5.6, unique per live session), duplicates
    (8.2 and the late HELLO of 8.4), NAT rebinding (6.5, 8.4), stateless
    cookies under load (8.3, which come before BUSY: 8.4), limits (13).
:class:`DatagramClient`
    the device side over any datagram link.

``udp.py`` and ``serial_link.py`` give these a socket or a serial port.
Delivery in datagram mode (protocol section 8.5): each message at most
once, intact, never with a hole, never out of a fragmented message's
order; a lost datagram is not resent after the handshake. What was lost
or refused is counted in :class:`LinkStats`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import inspect
import logging
import os
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Optional, Self, TypeVar

from .config import ClientConfig, ServerConfig
from .cookie import CookieJar
from .engine import (
    ClientEngine,
    ControlMessage,
    CookieCheck,
    EngineConfig,
    Event,
    HandshakeComplete,
    HelloReceived,
    InputDropped,
    MessageReceived,
    ServerEngine,
    State,
)
from .crypto import MAX_COUNTER
from .errors import Condition, ConfigurationError, ConnectionLost, LocalProtocolError, USMPError
from .psk import PskResolver, PskSource, check_psk, parse_device_id
from .ratelimit import HandshakeRateLimiter
from .session import SessionView
from .wire import (
    COOKIE_BYTES,
    DATAGRAM_RECORD_HEADER_BYTES,
    HELLO_BODY_BYTES,
    MAX_DATAGRAM_RECORD,
    SESSION_INDEX_BYTES,
    FrameType,
    Limits,
    Mode,
    is_record_type,
)

log = logging.getLogger("usmp.datagram")

HELLO_FRAME_BYTES = 1 + HELLO_BODY_BYTES  # a datagram HELLO without its cookie
INBOX_DATAGRAMS = 256  # per session; beyond it datagrams are dropped and counted (a lossy link may drop them anyway)

Address = TypeVar("Address", bound=Hashable)
SendDatagram = Callable[[bytes], None]


def datagram_config(config: EngineConfig) -> EngineConfig:
    """``config`` with ``max_record`` lowered to datagram mode's 1207 if needed (spec 6.6)."""
    if config.max_record <= MAX_DATAGRAM_RECORD:
        return config
    return dataclasses.replace(config, max_record=MAX_DATAGRAM_RECORD)


@dataclass
class LinkStats:
    """What a datagram link delivered, sent and lost; readable at any time (``session.stats``, ``server.stats``).

    ``dropped`` counts datagrams the engine or the demultiplexer discarded,
    by condition: ``REPLAY`` (duplicates and too old), ``BAD_RECORD``
    (failed tag: corrupted or forged), ``UNKNOWN_SESSION``, ``UNEXPECTED``
    (late handshake duplicates, a fragment out of sequence, which loses the
    partial message), ``MALFORMED``, ``PEER_ERROR`` (an unauthenticated
    ERROR that did not end anything), ``QUEUE_FULL`` (the session's inbox
    was full). ``framing_errors`` counts serial frames whose COBS was
    corrupt or oversize (spec 10); they never reach the engine.
    """

    datagrams_received: int = 0
    datagrams_sent: int = 0
    messages_received: int = 0
    messages_sent: int = 0
    framing_errors: int = 0
    rebinds: int = 0
    cookies_sent: int = 0
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def drop(self, reason: Condition | str) -> None:
        self.dropped[str(reason)] += 1


async def _call(callback: Callable[..., Any] | None, *args: Any) -> None:
    if callback is not None:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result


class DatagramSession(SessionView):
    """One datagram-mode session: what ``on_data``, ``on_open`` and ``on_close`` receive.

    The same attributes as the TCP :class:`~usmp.Session`: ``device_id``,
    ``session_id``, ``peer`` (the current source address: it follows NAT
    rebinding), ``established``, ``closed``, ``close_reason``, ``error``,
    ``send()``, ``close()``, ``wait_closed()``; plus ``stats``.
    """

    def __init__(
        self,
        engine: ClientEngine | ServerEngine,
        send_datagram: SendDatagram,
        peer: Any,
        *,
        on_hello: Callable[[DatagramSession, bytes], Awaitable[bytes | None | bool]] | None = None,
        on_open: Callable[[DatagramSession], Awaitable[None]] | None = None,
        on_message: Callable[[DatagramSession, bytes], Awaitable[None]] | None = None,
        on_close: Callable[[DatagramSession], Awaitable[None]] | None = None,
        on_moved: Callable[[DatagramSession, Any], None] | None = None,
        stats: LinkStats | None = None,
        keys_per_device: bool = False,
    ) -> None:
        self._engine = engine
        self._key_binds_device_id = keys_per_device
        self._send_datagram = send_datagram
        self.peer = peer
        self._on_hello = on_hello
        self._on_open = on_open
        self._on_message = on_message
        self._on_close = on_close
        self._on_moved = on_moved
        self.stats = stats or LinkStats()
        self._inbox: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._highest_seq = -1  # the replay window's top as the driver sees it (6.5)
        self._wakeup = asyncio.Event()
        self._ended = asyncio.Event()
        self._opened = False
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None

    # --- what the application sees (and SessionView's properties) ------------------------

    @property
    def state(self) -> State:
        return self._engine.state

    async def send(self, data: bytes) -> None:
        """Send one message (fragmented over the peer's ``max_record``); it is sent once, never resent."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise LocalProtocolError(f"send() takes bytes, not {type(data).__name__}")
        self._engine.send_message(bytes(data), self._loop.time())
        self.stats.messages_sent += 1
        self._flush()
        if self._engine.finished:  # BYE(REKEY) at the usage limit
            self._wake()

    async def send_control(self, channel: int, body: bytes) -> None:
        """Send one CONTROL record (protocol.md 6.7), once, never resent (the channel's protocol resends)."""
        self._seal_control(channel, body)
        self._flush()
        if self._engine.finished:
            self._wake()

    async def close(self, reason: Condition = Condition.NONE) -> None:
        """Send BYE(reason) (nothing during the handshake) and wait for the session's end."""
        self._stopping = True
        self._engine.close(reason)
        self._flush()
        self._wake()
        if self._task is not None and self._task is not asyncio.current_task():
            await self._ended.wait()

    def abandon(self) -> None:
        """End without a word (a handshake replaced by a new one, 8.2; the gateway stopping)."""
        self._stopping = True
        if not self._engine.finished:
            self._engine.close()  # during the handshake close() sends nothing
            self._engine.frames_to_send()
        self._wake()

    async def wait_closed(self) -> None:
        await self._ended.wait()

    def __repr__(self) -> str:
        sid = self.session_id.hex() if self.session_id else "-"
        return f"<DatagramSession {sid} peer={self.peer!r} state={self._engine.state.value}>"

    # --- driver side ------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run())
        return self._task

    def deliver(self, datagram: bytes, source: Any = None) -> None:
        """Queue one received datagram for the session's loop (never blocks; a full inbox drops).

        ``source`` is where it came from; a record that the engine accepts
        with a ``seq`` above every earlier one, from a source other than
        ``peer``, moves the session there (6.5) when ``on_moved`` is set.
        """
        self.stats.datagrams_received += 1
        if len(self._inbox) >= INBOX_DATAGRAMS:
            self.stats.drop("QUEUE_FULL")
            return
        self._inbox.append((datagram, source))
        self._wake()

    def _wake(self) -> None:
        self._wakeup.set()

    async def run(self, pending_events: list[Event] | None = None) -> None:
        try:
            self._flush()
            for event in pending_events or []:
                await self._dispatch(event)
            while not self._engine.finished and not (self._stopping and not self._engine.established):
                if not self._inbox:
                    self._wakeup.clear()
                    try:
                        async with asyncio.timeout_at(self._engine.next_deadline()):
                            await self._wakeup.wait()
                    except TimeoutError:
                        self._engine.handle_timeout(self._loop.time())
                        self._flush()
                    continue
                datagram, source = self._inbox.popleft()
                was_established = self._engine.established
                events = self._engine.receive_data(datagram, self._loop.time())
                if was_established and is_record_type(datagram[0]):
                    self._note_record(datagram, source, events)
                self._flush()
                for event in events:
                    await self._dispatch(event)
            self._flush()
        finally:
            self._ended.set()
            try:
                await _call(self._on_close, self)
            finally:
                self._inbox.clear()

    def _note_record(self, datagram: bytes, source: Any, events: list[Event]) -> None:
        """Rebinding (6.5): only a record that passed check 7 with ``seq`` > top moves the session."""
        if any(isinstance(e, InputDropped) for e in events) or len(datagram) < DATAGRAM_RECORD_HEADER_BYTES:
            return
        seq = int.from_bytes(datagram[1 + SESSION_INDEX_BYTES : DATAGRAM_RECORD_HEADER_BYTES], "big")
        if seq <= self._highest_seq:
            return
        self._highest_seq = seq
        if source is not None and source != self.peer and self._on_moved is not None:
            log.info("%r: moved to %r (an authenticated record came from there)", self, source)
            self.stats.rebinds += 1
            self.peer = source
            self._on_moved(self, source)

    def _flush(self) -> None:
        for frame in self._engine.frames_to_send():
            self.stats.datagrams_sent += 1
            try:
                self._send_datagram(frame)
            except OSError as error:  # a datagram that cannot be sent is a lost datagram
                log.debug("%r: send failed: %s", self, error)
                self.stats.drop("SEND_FAILED")

    async def _dispatch(self, event: Event) -> None:
        if isinstance(event, InputDropped):
            self.stats.drop(event.error.condition)
            log.debug("%r: dropped a datagram: %s", self, event.error)
        elif isinstance(event, MessageReceived):
            self.stats.messages_received += 1
            if not self._stopping:
                await self._guarded(_call(self._on_message, self, event.data))
        elif isinstance(event, ControlMessage):
            if not self._stopping:
                await self._guarded(self._deliver_control(event))
        elif isinstance(event, HandshakeComplete):
            self._opened = True
            await self._guarded(_call(self._on_open, self))
        elif isinstance(event, HelloReceived):
            await self._answer_hello(event.device_id)

    async def _answer_hello(self, device_id: bytes) -> None:
        engine = self._engine
        assert isinstance(engine, ServerEngine)
        decision: bytes | None | bool = None
        if self._on_hello is not None:
            try:
                async with asyncio.timeout_at(engine.next_deadline()):
                    decision = await self._on_hello(self, device_id)
            except TimeoutError:
                engine.handle_timeout(self._loop.time())
                return
        if engine.finished:
            return
        if decision is True:
            engine.refuse_busy()
            events: list[Event] = []
        else:
            events = engine.accept_hello(decision if isinstance(decision, bytes) else None, self._loop.time())
        self._flush()
        for event in events:
            await self._dispatch(event)

    async def _guarded(self, call: Awaitable[None]) -> None:
        """An application callback's exception is logged and does not end the session."""
        try:
            await call
        except USMPError as error:
            log.info("%r: callback could not use the session: %s", self, error)
        except Exception:
            log.exception("%r: application callback raised", self)


# --- the gateway's demultiplexer ----------------------------------------------------------------


DataCallback = Callable[[DatagramSession, bytes], Optional[Awaitable[None]]]
OpenCallback = Callable[[DatagramSession], Optional[Awaitable[None]]]
CloseCallback = Callable[[DatagramSession, Condition], Optional[Awaitable[None]]]


@dataclass
class _Entry(Generic[Address]):
    session: DatagramSession
    address: Address
    hello: bytes  # the HELLO frame without its cookie (8.2, 8.4)
    index: bytes
    highest_seq: int = -1  # the driver's copy of the window's top (6.5): rebinding needs seq > top


class DatagramGateway(Generic[Address]):
    """One datagram link serving many devices (UDP) or one (a serial port): spec 5.6, 6.5, 8.2-8.4, 13.

    ``send(frame, address)`` puts one frame on the link. ``address_key``
    turns an address into the bytes the cookie binds (8.3), or is ``None``
    where there is no source address (a serial line: no cookie, 8.4).
    ``rebinding`` lets an authenticated record move its session (6.5).
    Call :meth:`datagram_received` for every datagram that arrives.
    """

    def __init__(
        self,
        send: Callable[[bytes, Address], None],
        psk: PskSource,
        *,
        on_data: DataCallback | None = None,
        on_open: OpenCallback | None = None,
        on_close: CloseCallback | None = None,
        config: ServerConfig | None = None,
        cookie_threshold: int | None = None,
        address_key: Callable[[Address], bytes] | None = None,
        rate_source: Callable[[Address], str] | None = None,
        rebinding: bool = True,
        random: Callable[[int], bytes] = os.urandom,
        cookie_jar: CookieJar | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        self._engine_config = datagram_config(self.config)
        self._send = send
        self._psks = PskResolver(psk)
        # spec/security.md: with one key for every device, a device id is only a claim.
        self._keys_per_device = not isinstance(psk, (bytes, bytearray, memoryview))
        self._on_data = on_data
        self._on_open = on_open
        self._on_close = on_close
        self._address_key = address_key
        self._rate_source = rate_source
        self._rebinding = rebinding
        self._random = random
        # Section 8.3: default half the handshake limit. No source address: no cookie at all (8.4).
        if cookie_threshold is None:
            cookie_threshold = max(1, self.config.max_handshakes // 2)
        self.cookie_threshold = cookie_threshold
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._cookie_jar = cookie_jar or CookieJar(loop.time(), random=random)
        self._rate_limiter = HandshakeRateLimiter(
            self.config.handshake_rate,
            self.config.handshake_burst,
            v4_prefix=self.config.rate_prefix_v4,
            v6_prefix=self.config.rate_prefix_v6,
        )
        self._handshakes: dict[Address, _Entry[Address]] = {}  # by address: handshake frames (8.2)
        self._by_address: dict[Address, _Entry[Address]] = {}  # established sessions by current address
        self._by_index: dict[bytes, _Entry[Address]] = {}  # every live engine: records (5.6)
        self._entries: dict[DatagramSession, _Entry[Address]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.stats = LinkStats()

    # --- state --------------------------------------------------------------------------------

    @property
    def sessions(self) -> Mapping[bytes, DatagramSession]:
        """Established sessions by session id."""
        return {
            e.session.session_id: e.session
            for e in self._by_index.values()
            if e.session.established and e.session.session_id is not None
        }

    @property
    def handshakes_in_progress(self) -> int:
        return len(self._handshakes)

    def session_for_index(self, index: bytes) -> DatagramSession | None:
        entry = self._by_index.get(index)
        return entry.session if entry else None

    # --- input --------------------------------------------------------------------------------

    def datagram_received(self, datagram: bytes, address: Address) -> None:
        """Route one datagram; never raises for anything the network can send."""
        self.stats.datagrams_received += 1
        if not datagram:
            self.stats.drop(Condition.MALFORMED)  # 9.2: not answered
            return
        frame_type = datagram[0]
        if is_record_type(frame_type):
            self._route_record(datagram, address)
        elif frame_type == FrameType.HELLO:
            self._route_hello(datagram, address)
        elif frame_type in (FrameType.HELLO_ACK, FrameType.ERROR):
            entry = self._handshakes.get(address) or self._by_address.get(address)
            if entry is None:
                self.stats.drop(Condition.UNEXPECTED)
            else:
                entry.session.deliver(datagram)
        else:
            # CHALLENGE, SESSION_OK, COOKIE from a client; undefined types: dropped, never answered (9.2).
            self.stats.drop(Condition.UNEXPECTED if frame_type in set(FrameType) else Condition.MALFORMED)

    def _route_record(self, datagram: bytes, address: Address) -> None:
        if len(datagram) < DATAGRAM_RECORD_HEADER_BYTES:
            self.stats.drop(Condition.MALFORMED)
            return
        entry = self._by_index.get(datagram[1 : 1 + SESSION_INDEX_BYTES])
        if entry is None:
            self.stats.drop(Condition.UNKNOWN_SESSION)
            return
        # The address moves (6.5, 8.4) only once the engine has accepted the record: see _moved.
        entry.session.deliver(datagram, address)

    def _route_hello(self, datagram: bytes, address: Address) -> None:
        hello = datagram[:HELLO_FRAME_BYTES]
        pending = self._handshakes.get(address)
        if pending is not None:
            if pending.hello == hello and len(datagram) in (HELLO_FRAME_BYTES, HELLO_FRAME_BYTES + COOKIE_BYTES):
                pending.session.deliver(datagram)  # row 23: the engine resends its CHALLENGE
                return
            # 8.2: a different HELLO from this address replaces the handshake in progress.
            pending.session.abandon()
            self._forget(pending)
        established = self._by_address.get(address)
        if established is not None and established.hello == hello:
            # 8.4 rule 1: a late duplicate of an established session's HELLO changes nothing.
            self.stats.drop(Condition.UNEXPECTED)
            return
        self._new_handshake(datagram, address)

    def _new_handshake(self, datagram: bytes, address: Address) -> None:
        if self._stopping:
            return
        now = self._loop.time()
        cookie: CookieCheck | None = None
        if self._address_key is not None and len(self._handshakes) >= self.cookie_threshold:
            cookie = CookieCheck(self._cookie_jar, self._address_key(address))
        index = self._free_index()
        engine = ServerEngine(
            mode=Mode.DATAGRAM,
            now=now,
            config=self._engine_config,
            cookie=cookie,
            session_index=index,
            random=self._random,
        )
        events = engine.receive_data(datagram, now)
        if not any(isinstance(e, HelloReceived) for e in events):
            # A COOKIE (row 19) or an ERROR for a bad HELLO (rows 14-17): answered, nothing kept.
            for frame in engine.frames_to_send():
                if frame[0] == FrameType.COOKIE:
                    self.stats.cookies_sent += 1
                self._send_out(frame, address)
            for event in events:
                if isinstance(event, InputDropped):
                    self.stats.drop(event.error.condition)
            if engine.finished and engine.end_condition is not None:
                self.stats.drop(engine.end_condition)  # a HELLO that failed 4.5, answered with ERROR
            return
        if self._rate_source is not None and not self._rate_limiter.allow(self._rate_source(address), now):
            # Section 13: excess HELLOs are dropped on UDP, before any X25519 operation.
            self.stats.drop("RATE_LIMITED")
            return
        entry = self._make_entry(engine, address, datagram[:HELLO_FRAME_BYTES], index)
        self._handshakes[address] = entry
        self._by_index[index] = entry
        self._start(entry, events)

    def _make_entry(self, engine: ServerEngine, address: Address, hello: bytes, index: bytes) -> _Entry[Address]:
        holder: list[_Entry[Address]] = []

        def send(frame: bytes) -> None:
            self._send_out(frame, holder[0].address)

        session = DatagramSession(
            engine,
            send,
            address,
            on_hello=self._answer_hello,
            on_open=self._opened,
            on_message=self._message,
            on_close=self._closed,
            on_moved=self._moved if self._rebinding else None,
            keys_per_device=self._keys_per_device,
        )
        entry = _Entry(session, address, hello, index)
        holder.append(entry)
        self._entries[session] = entry
        return entry

    def _start(self, entry: _Entry[Address], events: list[Event]) -> None:
        task = asyncio.create_task(entry.session.run(events))
        entry.session._task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _moved(self, session: DatagramSession, address: Any) -> None:
        """Section 6.5 and 8.4: the session follows an authenticated record to its new address.

        A handshake in progress from that address is left alone: handshake
        frames from there keep going to it, records go by session index.
        """
        entry = self._entries.get(session)
        if entry is None:
            return
        if self._by_address.get(entry.address) is entry:
            del self._by_address[entry.address]
        entry.address = address
        self._by_address[address] = entry

    def _send_out(self, frame: bytes, address: Address) -> None:
        self.stats.datagrams_sent += 1
        try:
            self._send(frame, address)
        except OSError as error:
            log.debug("send to %r failed: %s", address, error)
            self.stats.drop("SEND_FAILED")

    def _free_index(self) -> bytes:
        """Section 5.6: an index unique among the live sessions and handshakes."""
        while True:
            index = self._random(SESSION_INDEX_BYTES)
            if index not in self._by_index:
                return index

    def _forget(self, entry: _Entry[Address]) -> None:
        if self._handshakes.get(entry.address) is entry:
            del self._handshakes[entry.address]
        if self._by_address.get(entry.address) is entry:
            del self._by_address[entry.address]
        if self._by_index.get(entry.index) is entry:
            del self._by_index[entry.index]

    # --- session events -------------------------------------------------------------------------

    async def _answer_hello(self, session: DatagramSession, device_id: bytes) -> bytes | None | bool:
        config = self.config
        sessions = sum(1 for e in self._by_index.values() if e.session.established)
        # This handshake is one of those in progress; the limit counts the others (13).
        if sessions >= config.max_sessions or len(self._handshakes) - 1 >= config.max_handshakes:
            log.warning("busy: refusing a handshake from %r", session.peer)
            return True
        try:
            return await self._psks.resolve(device_id)
        except Exception:
            log.exception("PSK lookup for device %s failed; handling it as unknown", device_id.hex())
            return None

    async def _opened(self, session: DatagramSession) -> None:
        entry = self._entries[session]
        if self._handshakes.get(entry.address) is entry:
            del self._handshakes[entry.address]
        for other in list(self._entries.values()):
            if other is entry or not other.session.established:
                continue
            if other.session.device_id == session.device_id or self._address_key is None:
                # Spec 13 (row 55): one session per device id; and one per serial port (8.4 rule 4).
                task = asyncio.create_task(other.session.close(Condition.REPLACED))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self._by_address[entry.address] = entry
        assert session.session_id is not None and session.device_id is not None
        log.info("session %s open: device %s from %r", session.session_id.hex(), session.device_id.hex(), session.peer)
        await _call(self._on_open, session)

    async def _message(self, session: DatagramSession, data: bytes) -> None:
        await _call(self._on_data, session, data)

    async def _closed(self, session: DatagramSession) -> None:
        entry = self._entries.pop(session)
        self._forget(entry)
        self._merge_stats(session.stats)
        reason = session.close_reason or Condition.TRANSPORT_CLOSED
        if session.session_id is None:
            log.info("handshake from %r ended: %s", entry.address, reason.value)
            return
        log.info("session %s closed: %s", session.session_id.hex(), reason.value)
        await _call(self._on_close, session, reason)

    def _merge_stats(self, stats: LinkStats) -> None:
        self.stats.messages_received += stats.messages_received
        self.stats.messages_sent += stats.messages_sent
        self.stats.rebinds += stats.rebinds
        self.stats.dropped.update(stats.dropped)

    # --- lifecycle ------------------------------------------------------------------------------

    async def stop(self, grace: float = 5.0) -> None:
        """BYE(SHUTDOWN) to every established session; handshakes end without a word."""
        self._stopping = True
        for entry in list(self._by_index.values()):
            if entry.session.established:
                try:
                    await entry.session.close(Condition.SHUTDOWN)
                except USMPError:
                    pass
            else:
                entry.session.abandon()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)


class DatagramServer(Generic[Address]):
    """What a gateway on one datagram link shares, whatever the link: its
    lifecycle and its read-only views. :class:`~usmp.udp.UDPServer` and
    :class:`~usmp.serial_link.SerialServer` open and close the link."""

    def __init__(
        self,
        psk: PskSource | None,
        callbacks: tuple[DataCallback | None, OpenCallback | None, CloseCallback | None],
        config: ServerConfig | None,
    ) -> None:
        if psk is None:
            raise LocalProtocolError(f"{type(self).__name__} needs a psk: there is no default key")
        self.config = config or ServerConfig()
        self._psk = psk
        self._callbacks = callbacks
        self._gateway: DatagramGateway[Address] | None = None
        self._closed: asyncio.Future[None] | None = None

    async def start(self) -> None:  # pragma: no cover - every link overrides it
        raise NotImplementedError

    @property
    def _link_open(self) -> bool:  # pragma: no cover - every link overrides it
        raise NotImplementedError

    def _close_link(self) -> None:  # pragma: no cover - every link overrides it
        raise NotImplementedError

    def _started(self) -> None:
        self._closed = asyncio.get_running_loop().create_future()

    async def serve_forever(self) -> None:
        if not self._link_open:
            await self.start()
        assert self._closed is not None
        await asyncio.shield(self._closed)

    async def stop(self) -> None:
        """BYE(SHUTDOWN) to every session, then close the link."""
        if not self._link_open or self._gateway is None:
            return
        await self._gateway.stop(self.config.shutdown_grace)
        self._close_link()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def sessions(self) -> Mapping[bytes, DatagramSession]:
        return self._gateway.sessions if self._gateway else {}

    @property
    def handshakes_in_progress(self) -> int:
        return self._gateway.handshakes_in_progress if self._gateway else 0

    @property
    def stats(self) -> LinkStats:
        """Link-wide counters: routing drops, cookies sent, COBS framing errors, and each ended
        session's counters."""
        return self._gateway.stats if self._gateway else LinkStats()


# --- the device side --------------------------------------------------------------------------


class DatagramClient:
    """A USMP client over a datagram link; :class:`~usmp.udp.UDPClient` and
    :class:`~usmp.serial_link.SerialClient` give it the link.

    The same calls as :class:`~usmp.USMPClient`: ``connect()``, ``send()``,
    ``recv()``, ``close()``, and ``stats`` for what was lost. The handshake
    is retransmitted as spec 8.1 says; messages are sent once (8.5).
    Received messages wait in a queue of ``config.receive_queue``; beyond
    it they are dropped and counted (``stats.dropped["QUEUE_FULL"]``), as a
    datagram link may drop them anyway.
    """

    def __init__(
        self, *, device_id: bytes | str, psk: bytes, config: ClientConfig | None = None, boot_counter: int = 0
    ) -> None:
        if not (isinstance(boot_counter, int) and 0 <= boot_counter <= MAX_COUNTER):
            raise ConfigurationError(f"boot_counter must be an integer 0 .. 2**64 - 1, got {boot_counter!r}")
        self._boot_counter = boot_counter  # spec 5.8, as for USMPClient
        self.config = config or ClientConfig()
        self._device_id = parse_device_id(device_id)
        self._psk: bytes | None = check_psk(psk)
        self._session: DatagramSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._messages: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._opened: asyncio.Future[None] | None = None
        self.stats = LinkStats()

    # --- what a link provides -----------------------------------------------------------------

    async def _open_link(self) -> tuple[SendDatagram, Any]:
        """Open the link; return the function that sends one frame, and the peer's name."""
        raise NotImplementedError

    def _close_link(self) -> None:
        raise NotImplementedError

    def _datagram_received(self, datagram: bytes) -> None:
        """Called by the link for every frame that arrives."""
        if self._session is None:
            self.stats.drop(Condition.UNEXPECTED)
            return
        self._session.deliver(datagram)

    # --- the application's calls --------------------------------------------------------------

    async def connect(self) -> None:
        """Open the link and complete the handshake within ``config.handshake_timeout``."""
        if self._session is not None or self._psk is None:
            raise LocalProtocolError("a client connects once; make a new one to reconnect")
        loop = asyncio.get_running_loop()
        started = loop.time()
        send, peer = await self._open_link()
        engine = ClientEngine(
            mode=Mode.DATAGRAM,
            device_id=self._device_id,
            psk=self._psk,
            config=datagram_config(self.config),
            boot_counter=self._boot_counter,
        )
        self._psk = None
        engine.start(started)
        self._opened = loop.create_future()
        self._session = DatagramSession(
            engine, send, peer, on_open=self._on_open, on_message=self._on_message, on_close=self._on_close,
            stats=self.stats,
        )
        self._task = self._session.start()
        try:
            await asyncio.shield(self._opened)
        except BaseException:
            await self.close()
            raise

    async def send(self, data: bytes) -> None:
        await self._established().send(data)

    async def recv(self, timeout: float | None = None) -> bytes:
        """The next message; ``TimeoutError`` after ``timeout``; the session's error once it has ended."""
        session = self._established()
        async with asyncio.timeout(timeout):
            message = await self._messages.get()
        if message is None:
            self._messages.put_nowait(None)  # every later call sees the end too
            raise session.error or LocalProtocolError("the session was closed by this side")
        return message

    async def close(self) -> None:
        """Send BYE (once established) and close the link."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        if self._task is not None:
            await self._task
        self._close_link()

    async def __aenter__(self) -> DatagramClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def device_id(self) -> bytes:
        return self._device_id

    @property
    def session(self) -> DatagramSession | None:
        """The session under this client, for its CONTROL records (``control_handler``, ``send_control``)."""
        return self._session

    @property
    def session_id(self) -> bytes | None:
        return self._session.session_id if self._session else None

    @property
    def peer(self) -> Any:
        return self._session.peer if self._session else None

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.established

    @property
    def server_limits(self) -> Limits | None:
        return self._session.peer_limits if self._session else None

    @property
    def error(self) -> USMPError | None:
        return self._session.error if self._session else None

    def _established(self) -> DatagramSession:
        if self._session is None:
            raise LocalProtocolError("not connected: call connect() first")
        return self._session

    async def _on_open(self, session: DatagramSession) -> None:
        assert self._opened is not None
        if not self._opened.done():
            self._opened.set_result(None)

    async def _on_message(self, session: DatagramSession, data: bytes) -> None:
        if self._messages.qsize() >= self.config.receive_queue:
            self.stats.drop("QUEUE_FULL")
            return
        self._messages.put_nowait(data)

    async def _on_close(self, session: DatagramSession) -> None:
        self._messages.put_nowait(None)
        if self._opened is not None and not self._opened.done():
            self._opened.set_exception(session.error or ConnectionLost("the handshake ended without an error"))
