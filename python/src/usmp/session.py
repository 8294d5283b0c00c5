"""One USMP session over an asyncio byte stream: the loop both drivers share.

The loop is the only reader of the socket. It feeds the engine, writes what
the engine queues, runs the engine's timers at ``engine.next_deadline()``,
and hands events to a :class:`SessionHandler` (the server's or the
client's). The engine stops after each delivered message; the loop lets the
handler answer it before the engine goes on with the rest of the same read
(spec section 1: the answer goes out first). Application calls (``send``, ``close``) go straight to the engine
and write at once; because an engine call and the write that follows it
never await in between, frames of concurrent senders never interleave.
"""

from __future__ import annotations

import asyncio
import logging
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Optional, Union

from .engine import (
    ClientEngine,
    ControlMessage,
    Event,
    HandshakeComplete,
    HelloReceived,
    InputDropped,
    MessageReceived,
    ServerEngine,
)
from .errors import Condition, LocalProtocolError, USMPError
from .wire import Limits

log = logging.getLogger("usmp.session")

READ_SIZE = 65536


@dataclass(frozen=True)
class HelloDecision:
    """The server's answer to a HELLO: the device's PSK (``None``: unknown device), or BUSY."""

    psk: bytes | None = None
    busy: bool = False


class SessionHandler:
    """What a driver does with a session's events. Every method may be left as is."""

    async def on_hello(self, session: Session, device_id: bytes) -> HelloDecision:
        return HelloDecision()

    async def on_open(self, session: Session) -> None:
        pass

    async def on_message(self, session: Session, data: bytes) -> None:
        pass

    async def on_close(self, session: Session) -> None:
        pass


ControlHandler = Callable[[Any, int, bytes], Optional[Awaitable[None]]]


class SessionView:
    """What the application reads of a session, on any transport: the views
    over its engine that :class:`Session` (a byte stream) and
    :class:`~usmp.datagram.DatagramSession` share. A driver sets
    ``_engine``, ``_opened`` (the handshake is done) and
    ``_key_binds_device_id`` (the gateway found the PSK in a per-device
    source).

    CONTROL records (spec/protocol.md 6.7) never reach ``on_data``: they go
    to ``control_handler(session, channel, body)`` when one is set (the OTA
    runner sets it, spec/ota.md), and are otherwise discarded and counted
    in ``control_discarded``."""

    _engine: Union[ClientEngine, ServerEngine]
    _opened: bool
    _key_binds_device_id: bool
    control_handler: ControlHandler | None = None
    control_discarded: int = 0

    def _seal_control(self, channel: int, body: bytes) -> None:
        """Seal one CONTROL record ``channel || body`` and queue it; each driver's ``send_control`` writes it.

        Raises :class:`~usmp.LocalProtocolError` (TOO_LARGE) when it does not
        fit the peer's ``max_record``: a control message is never fragmented.
        """
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise LocalProtocolError(f"send_control() takes bytes, not {type(body).__name__}")
        self._engine.send_control(channel, bytes(body))

    async def _deliver_control(self, event: ControlMessage) -> None:
        handler = self.control_handler
        if handler is None:
            self.control_discarded += 1  # protocol.md 6.7: a channel nothing handles
            return
        result = handler(self, event.channel, event.body)
        if inspect.isawaitable(result):
            await result

    @property
    def device_id(self) -> bytes | None:
        """The device id the peer proved a key for, once the handshake is done.

        It is bound to that device alone only if :attr:`device_authenticated`.
        """
        return self._engine.device_id if self._opened else None

    @property
    def device_authenticated(self) -> bool:
        """True when ``device_id`` is bound to a key of that device alone (spec/security.md).

        On a gateway with one shared key for every device (``psk=bytes``),
        any holder of that key can claim any device id: ``device_id`` is then
        only a claim and this is False. With a mapping or a callable it is True
        once the handshake is done. False before the handshake is done, and
        always on the device side (``USMPClient``), which knows its own id.
        """
        return self._opened and self._key_binds_device_id

    @property
    def session_id(self) -> bytes | None:
        return self._engine.session_id if self._opened else None

    @property
    def established(self) -> bool:
        return self._engine.established

    @property
    def closed(self) -> bool:
        return self._engine.finished

    @property
    def peer_limits(self) -> Limits | None:
        """The peer's ``max_record`` and ``max_message``: a message over ``max_message`` cannot be sent."""
        return self._engine.peer_limits

    @property
    def close_reason(self) -> Condition | None:
        """Why the session ended (``None`` while it runs): NONE, PEER_CLOSED, SHUTDOWN, AUTH_FAILED..."""
        return self._engine.end_condition

    @property
    def error(self) -> USMPError | None:
        """The exception that ended the session, if it did not end with a BYE sent by this side."""
        return self._engine.error


class Session(SessionView):
    """An established (or establishing) USMP session; what ``on_data``, ``on_open`` and ``on_close`` receive.

    ``device_id`` and ``session_id`` are set once the handshake is done;
    ``peer`` is the remote socket address.
    """

    def __init__(
        self,
        engine: Union[ClientEngine, ServerEngine],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handler: SessionHandler,
        *,
        write_timeout: float | None = None,
    ) -> None:
        self._engine = engine
        self._reader = reader
        self._writer = writer
        self._handler = handler
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._ended = asyncio.Event()
        self._stopping = False  # set by close(): deliver nothing more to the application
        self._callback_idle = asyncio.Event()  # clear while a handler callback runs
        self._callback_idle.set()
        self._opened = False
        self._write_timeout = write_timeout  # the gateway's write deadline (spec 13); None: none
        self._key_binds_device_id = False  # set by the gateway: the PSK came from a per-device source
        self.peer: Any = writer.get_extra_info("peername")

    # --- what the application sees (and SessionView's properties) ------------------------

    async def send(self, data: bytes) -> None:
        """Send one message; waits while the socket's write buffer is full.

        Raises :class:`~usmp.LocalProtocolError` (TOO_LARGE) for a message over
        the peer's ``max_message``, and the session's error once it has ended.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise LocalProtocolError(f"send() takes bytes, not {type(data).__name__}")
        self._engine.send_message(bytes(data), self._loop.time())
        await self._flush()
        if self._engine.finished:  # the usage limit made it send BYE(REKEY)
            self._writer.close()

    async def send_control(self, channel: int, body: bytes) -> None:
        """Send one CONTROL record (protocol.md 6.7); waits while the socket's write buffer is full."""
        self._seal_control(channel, body)
        await self._flush()
        if self._engine.finished:
            self._writer.close()

    async def close(self, reason: Condition = Condition.NONE) -> None:
        """Send BYE(reason) (nothing during the handshake), close the connection, and wait for the end."""
        self._stopping = True
        self._engine.close(reason)
        await self._flush()
        self._writer.close()
        if self._task is not None and self._task is not asyncio.current_task():
            await self._ended.wait()

    def abort(self) -> None:
        """Drop the connection at once, without a word (a gateway evicting a connection that sent no HELLO)."""
        self._stopping = True
        self._writer.transport.abort()

    async def wait_closed(self) -> None:
        await self._ended.wait()

    def __repr__(self) -> str:
        sid = self.session_id.hex() if self.session_id else "-"
        return f"<Session {sid} peer={self.peer!r} state={self._engine.state.value}>"

    # --- driver side ------------------------------------------------------------------------

    async def run(self) -> None:
        """The session's loop; returns when the session has ended and the connection is closed."""
        self._task = asyncio.current_task()
        try:
            await self._flush()  # a client's HELLO
            while not self._engine.finished:
                if self._engine.has_buffered_input:
                    # The engine stopped after an event of the last read so that the
                    # answer to it went out first (spec section 1); go on with the rest.
                    events = self._engine.receive_data(b"", self._loop.time())
                else:
                    events = await self._next_input()
                await self._flush()
                for event in events:
                    await self._dispatch(event)
            await self._flush()
        finally:
            self._writer.close()
            self._ended.set()
            try:
                await self._callback(self._handler.on_close(self))
            finally:
                await self._wait_transport_closed()

    async def shutdown(self, grace: float) -> None:
        """Server stop: let a running callback finish (up to ``grace`` seconds), then BYE(SHUTDOWN)."""
        self._stopping = True
        try:
            async with asyncio.timeout(grace):
                await self._callback_idle.wait()
        except TimeoutError:
            log.warning("%r: on_data still running after %.1f s, cancelled", self, grace)
            if self._task is not None:
                self._task.cancel()
        if self._engine.established:
            await self.close(Condition.SHUTDOWN)
        else:
            await self.close()

    async def _next_input(self) -> list[Event]:
        try:
            async with asyncio.timeout_at(self._engine.next_deadline()):
                data = await self._reader.read(READ_SIZE)
        except TimeoutError:
            self._engine.handle_timeout(self._loop.time())
            return []
        except OSError:  # reset, unreachable: the stream is gone
            data = b""
        if not data:
            self._engine.receive_eof()
            return []
        return self._engine.receive_data(data, self._loop.time())

    async def _dispatch(self, event: Event) -> None:
        if isinstance(event, HelloReceived):
            await self._answer_hello(event.device_id)
        elif isinstance(event, HandshakeComplete):
            self._opened = True
            await self._callback(self._handler.on_open(self))
        elif isinstance(event, MessageReceived):
            if not self._stopping:
                await self._callback(self._handler.on_message(self, event.data))
        elif isinstance(event, ControlMessage):
            if not self._stopping:
                await self._callback(self._deliver_control(event))
        elif isinstance(event, InputDropped):  # pragma: no cover - stream sessions fail instead
            log.debug("%r: dropped input: %s", self, event.error)

    async def _answer_hello(self, device_id: bytes) -> None:
        engine = self._engine
        assert isinstance(engine, ServerEngine)
        try:
            # The PSK lookup may be slow; it still counts against the handshake timeout.
            async with asyncio.timeout_at(engine.next_deadline()):
                decision = await self._handler.on_hello(self, device_id)
        except TimeoutError:
            engine.handle_timeout(self._loop.time())
            return
        if engine.finished:
            return
        if decision.busy:
            engine.refuse_busy()
            events = []
        else:
            events = engine.accept_hello(decision.psk, self._loop.time())
        await self._flush()
        for event in events:
            await self._dispatch(event)

    async def _callback(self, call: Awaitable[None]) -> None:
        """Run an application callback; its exception is logged and does not end the session."""
        self._callback_idle.clear()
        try:
            await call
        except USMPError as error:
            if self._engine.finished:
                # The session ended while the callback ran (say a fatal frame
                # came in the same read as the message it answers): its send
                # found the session closed. Not a bug in the application.
                log.info("%r: callback could not use the ended session: %s", self, error)
            else:
                log.exception("%r: application callback raised", self)
        except Exception:
            log.exception("%r: application callback raised", self)
        finally:
            self._callback_idle.set()

    async def _flush(self) -> None:
        frames = self._engine.frames_to_send()
        if not frames or self._writer.is_closing():
            return
        self._writer.write(b"".join(frames))
        try:
            await self._drain()
        except OSError:
            self._engine.receive_eof()

    async def _drain(self) -> None:
        """Wait until the socket takes the output, bounded by the write deadline (spec 13).

        While it waits the engine's timers still run (idle, handshake,
        keepalive: a peer that stops reading must not stop them), and output
        that makes no progress for ``write_timeout`` ends the connection at
        once, without a BYE (none could be written).
        """
        if self._write_timeout is None:
            await self._writer.drain()
            return
        transport = self._writer.transport
        backlog = transport.get_write_buffer_size()
        stall_deadline = self._loop.time() + self._write_timeout
        while True:
            timer = self._engine.next_deadline()
            wake = stall_deadline if timer is None else min(stall_deadline, timer)
            wake = max(wake, self._loop.time() + 0.001)  # a timer already due never makes this spin
            try:
                async with asyncio.timeout_at(wake):
                    await self._writer.drain()
                return
            except TimeoutError:
                pass
            now = self._loop.time()
            if timer is not None and now >= timer:
                self._engine.handle_timeout(now)
                frames = self._engine.frames_to_send()
                if frames and not self._writer.is_closing():
                    self._writer.write(b"".join(frames))
            size = transport.get_write_buffer_size()
            if size < backlog:  # the peer took some: progress, the deadline starts again
                stall_deadline = now + self._write_timeout
            backlog = size
            if now >= stall_deadline:
                log.info("%r: no write progress for %.1f s, connection dropped", self, self._write_timeout)
                transport.abort()
                self._engine.receive_eof()
                return

    async def _wait_transport_closed(self) -> None:
        """Wait until the last frames are written and the connection is closed.

        With a write deadline, a peer that does not read those last frames
        gets them dropped after ``write_timeout`` without progress (spec 13),
        so a closed session never lingers and counts as a connection.
        """
        closed = self._loop.create_task(self._writer.wait_closed())
        transport = self._writer.transport
        backlog = transport.get_write_buffer_size()
        while self._write_timeout is not None:
            done, _ = await asyncio.wait({closed}, timeout=self._write_timeout)
            if done:
                break
            size = transport.get_write_buffer_size()
            if size >= backlog:
                log.info("%r: the peer does not read the last frames; connection dropped", self)
                transport.abort()
                break
            backlog = size
        try:
            await closed
        except OSError:
            pass  # the connection is gone either way
