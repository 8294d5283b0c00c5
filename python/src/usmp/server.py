"""The asyncio USMP gateway: TCP (stream mode) here; UDP and serial lines through ``transport=``."""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Optional, Union, cast

from .config import ServerConfig
from .engine import ServerEngine
from .datagram import CloseCallback as DatagramClose
from .datagram import DataCallback as DatagramData
from .datagram import LinkStats
from .datagram import OpenCallback as DatagramOpen
from .errors import Condition, ConfigurationError, LocalProtocolError
from .psk import PskResolver, PskSource
from .ratelimit import HandshakeRateLimiter
from .serial_link import SerialServer
from .session import ControlHandler, HelloDecision, Session, SessionHandler
from .transports import DEFAULT_BAUD, Transport, transport_name
from .udp import UDPServer
from .wire import Mode

log = logging.getLogger("usmp.server")

DataCallback = Callable[[Session, bytes], Optional[Awaitable[None]]]
OpenCallback = Callable[[Session], Optional[Awaitable[None]]]
CloseCallback = Callable[[Session, Condition], Optional[Awaitable[None]]]


async def _call(callback: Callable[..., Any] | None, *args: Any) -> None:
    """Callbacks may be plain functions or coroutine functions."""
    if callback is not None:
        result = callback(*args)
        if inspect.isawaitable(result):
            await result


class USMPServer:
    """A USMP gateway: accepts TCP connections, runs the handshake, and calls you per message.

    ::

        async def on_data(session, data):
            await session.send(data)

        async with USMPServer(host="0.0.0.0", port=9000, psk=PSK, on_data=on_data) as server:
            await server.serve_forever()

    ``psk`` is one key for every device (``bytes``), a mapping ``device_id ->
    key`` (ids as 6 bytes or 12 hex digits), or a callable ``(device_id) ->
    key or None``, sync or async. Keys are 16 to 64 bytes; a bad key is
    refused with :class:`~usmp.ConfigurationError` here (a callable's key:
    when it returns, and that handshake then fails like an unknown device's).
    Unknown devices fail at HELLO_ACK with AUTH_FAILED, exactly like a wrong
    PSK.

    Shared-key mode: with one key for every device, anyone who holds it (it
    is in every device's flash) can open a session under any device id, so
    the device id is only a claim: ``session.device_authenticated`` is then
    False. With a mapping or a callable each id is bound to its own key and
    ``session.device_authenticated`` is True. In every mode a newly
    established session for a device id that already has one replaces the
    older session (BYE(REPLACED)), so two sessions never claim one device.

    Callbacks may be sync or async: ``on_data(session, data)``,
    ``on_open(session)``, ``on_close(session, reason)`` where ``reason`` is
    a :class:`~usmp.Condition` (``session.error`` has the exception, if any).
    ``on_control(session, channel, body)`` receives the session's CONTROL
    records (spec/protocol.md 6.7; channel 0x01 is OTA, spec/ota.md), which
    never reach ``on_data``; ``session.send_control(channel, body)`` answers.

    ``transport``: ``"tcp"`` (default), ``"udp"`` (datagram mode on
    ``host``/``port``: a :class:`~usmp.udp.UDPServer` does the work) or
    ``"serial"`` (datagram mode with COBS on ``serial_port`` at ``baud``: a
    :class:`~usmp.serial_link.SerialServer`). The sessions are then
    :class:`~usmp.datagram.DatagramSession`, with the same calls plus
    ``stats``; ``stats`` here has the transport's loss counters.
    """

    def __init__(
        self,
        host: Union[str, None] = "0.0.0.0",
        port: int = 9000,
        psk: Union[PskSource, None] = None,
        on_data: DataCallback | None = None,
        *,
        on_open: OpenCallback | None = None,
        on_close: CloseCallback | None = None,
        on_control: ControlHandler | None = None,
        config: ServerConfig | None = None,
        transport: Transport = "tcp",
        serial_port: str | None = None,
        baud: int = DEFAULT_BAUD,
    ) -> None:
        if psk is None:
            raise LocalProtocolError("USMPServer needs a psk: there is no default key")
        self.transport = transport_name(transport)
        if on_control is not None:
            on_open = _with_control_handler(on_control, on_open)
        # Datagram transports: the whole gateway is theirs; this class forwards to it.
        self._datagram: UDPServer | SerialServer | None = None
        if self.transport != "tcp":
            self._datagram = _datagram_server(
                self.transport, host, port, serial_port, baud, psk, on_data, on_open, on_close, config
            )
        self.host = host
        self.requested_port = port
        self.config = config or ServerConfig()
        self._psks = PskResolver(psk)
        # Shared-key mode (spec/security.md): one key for every device, so the id is only a claim.
        self._shared_key = isinstance(psk, (bytes, bytearray, memoryview))
        self._on_data = on_data
        self._on_open = on_open
        self._on_close = on_close
        self._rate_limiter = HandshakeRateLimiter(
            self.config.handshake_rate,
            self.config.handshake_burst,
            v4_prefix=self.config.rate_prefix_v4,
            v6_prefix=self.config.rate_prefix_v6,
        )
        self._server: asyncio.Server | None = None
        self._connections: set[Session] = set()
        # Connections that have not sent a complete HELLO yet, oldest first, with their hello_timeout timer.
        self._pending: OrderedDict[Session, asyncio.TimerHandle] = OrderedDict()
        self._sessions: dict[bytes, Session] = {}
        self._by_device: dict[bytes, Session] = {}  # the one established session per device id
        self._replacements: set[asyncio.Task[None]] = set()
        self._connection_tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._handler = _ServerHandler(self)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start accepting connections."""
        if self._datagram is not None:
            await self._datagram.start()
            return
        if self._server is not None:
            raise LocalProtocolError("the server is already started")
        self._stopping = False
        self._server = await asyncio.start_server(self._accept, self.host, self.requested_port)
        for address in self.addresses:
            log.info("listening on %s:%d", address[0], address[1])

    async def serve_forever(self) -> None:
        if self._datagram is not None:
            await self._datagram.serve_forever()
            return
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            await self._server.serve_forever()
        except asyncio.CancelledError:
            if not self._stopping:
                raise

    async def stop(self) -> None:
        """Stop accepting, let running ``on_data`` calls finish (up to ``shutdown_grace``),
        send BYE(SHUTDOWN) to every session, and close every connection."""
        if self._datagram is not None:
            await self._datagram.stop()
            return
        if self._server is None:
            return
        self._stopping = True
        self._server.close()
        connections = list(self._connections)
        if connections:
            await asyncio.gather(*(s.shutdown(self.config.shutdown_grace) for s in connections))
        # Connections accepted but not yet registered end by themselves: _accept sees _stopping.
        if self._connection_tasks:
            await asyncio.gather(*self._connection_tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        log.info("stopped")

    async def __aenter__(self) -> USMPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- state ----------------------------------------------------------------------------------

    @property
    def sessions(self) -> Mapping[bytes, Session]:
        """Established sessions by session id (read-only view)."""
        if self._datagram is not None:
            # DatagramSession has every attribute and call of Session (and stats).
            return cast(Mapping[bytes, Session], self._datagram.sessions)
        return types.MappingProxyType(self._sessions)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) pairs; useful with ``port=0``. A serial port has none."""
        if self._datagram is not None:
            return self._datagram.addresses
        if self._server is None:
            return []
        return [tuple(sock.getsockname()[:2]) for sock in self._server.sockets]  # type: ignore[misc]

    @property
    def port(self) -> int:
        """The bound port (the first socket's)."""
        addresses = self.addresses
        if not addresses:
            raise LocalProtocolError("the server is not started")
        return addresses[0][1]

    @property
    def device_ids_authenticated(self) -> bool:
        """False in shared-key mode (one key for every device): device ids are then only claims."""
        return not self._shared_key

    @property
    def pending_connections(self) -> int:
        """Connections that have not sent a complete HELLO yet (bounded by ``max_pending``)."""
        return len(self._pending)

    @property
    def handshakes_in_progress(self) -> int:
        """Connections past their HELLO whose handshake has not finished (bounded by ``max_handshakes``)."""
        if self._datagram is not None:
            return self._datagram.handshakes_in_progress
        return len(self._connections) - len(self._sessions) - len(self._pending)

    @property
    def stats(self) -> LinkStats | None:
        """UDP and serial: what the link dropped and why (:class:`~usmp.datagram.LinkStats`); TCP: ``None``."""
        return self._datagram.stats if self._datagram is not None else None

    # --- connections ----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        loop = asyncio.get_running_loop()
        if self._stopping or not self._rate_limiter.allow(source, loop.time()):
            # Section 13: excess connections are closed before any X25519 work.
            log.info("connection from %s refused: %s", source, "stopping" if self._stopping else "rate limit")
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connection_tasks.add(task)
        engine = ServerEngine(
            mode=Mode.STREAM, now=loop.time(), config=self.config
        )
        session = Session(engine, reader, writer, self._handler, write_timeout=self.config.write_timeout)
        session._key_binds_device_id = not self._shared_key
        self._connections.add(session)
        self._add_pending(session, writer)
        try:
            await session.run()
        finally:
            self._hello_received(session)
            self._connections.discard(session)
            self._connection_tasks.discard(task)

    # --- pending connections (spec 13): not yet a complete HELLO ---------------------------------

    def _add_pending(self, session: Session, writer: asyncio.StreamWriter) -> None:
        """Queue a new connection until its HELLO; at ``max_pending`` the oldest one makes room.

        A connection that has sent nothing costs no handshake slot: it holds a
        pending place for at most ``hello_timeout``, and when the queue is full
        the newcomer evicts the oldest, so idle connections cannot lock out
        an honest device that sends its HELLO at once.
        """
        while len(self._pending) >= self.config.max_pending:
            oldest, timer = self._pending.popitem(last=False)
            timer.cancel()
            log.info("connection from %s evicted: %d connections without a HELLO", oldest.peer, len(self._pending) + 1)
            oldest.abort()
        loop = asyncio.get_running_loop()
        self._pending[session] = loop.call_later(self.config.hello_timeout, self._hello_timed_out, session)

    def _hello_timed_out(self, session: Session) -> None:
        if self._pending.pop(session, None) is not None:
            log.info("connection from %s closed: no HELLO within %.1f s", session.peer, self.config.hello_timeout)
            session.abort()  # without a word: nothing has been said yet

    def _hello_received(self, session: Session) -> None:
        timer = self._pending.pop(session, None)
        if timer is not None:
            timer.cancel()

    def _replace_older_session(self, session: Session) -> None:
        """A newly established session takes over its device id; the older one gets BYE(REPLACED)."""
        assert session.device_id is not None
        older = self._by_device.get(session.device_id)
        self._by_device[session.device_id] = session
        if older is None or older is session or older.closed:
            return
        log.info(
            "session %s replaced by session %s (device %s)",
            older.session_id.hex() if older.session_id else "-",
            session.session_id.hex() if session.session_id else "-",
            session.device_id.hex(),
        )
        task = asyncio.get_running_loop().create_task(older.close(Condition.REPLACED))
        self._replacements.add(task)
        task.add_done_callback(self._replacements.discard)


def _with_control_handler(on_control: ControlHandler, on_open: OpenCallback | None) -> OpenCallback:
    """An ``on_open`` that first routes the session's CONTROL records to ``on_control`` (protocol.md 6.7)."""

    async def opened(session: Session) -> None:
        session.control_handler = on_control
        await _call(on_open, session)

    return opened


def _datagram_server(
    transport: Transport,
    host: Union[str, None],
    port: int,
    serial_port: str | None,
    baud: int,
    psk: PskSource,
    on_data: DataCallback | None,
    on_open: OpenCallback | None,
    on_close: CloseCallback | None,
    config: ServerConfig | None,
) -> UDPServer | SerialServer:
    # The callbacks receive a DatagramSession, which has every attribute and call of Session.
    data, opened, closed = cast(DatagramData, on_data), cast(DatagramOpen, on_open), cast(DatagramClose, on_close)
    if transport == "udp":
        return UDPServer(host, port, psk, data, on_open=opened, on_close=closed, config=config)
    if not serial_port:
        raise ConfigurationError("transport='serial' needs serial_port (for example '/dev/ttyUSB0')")
    return SerialServer(serial_port, baud, psk, data, on_open=opened, on_close=closed, config=config)


class _ServerHandler(SessionHandler):
    def __init__(self, server: USMPServer) -> None:
        self._server = server

    async def on_hello(self, session: Session, device_id: bytes) -> HelloDecision:
        server = self._server
        config = server.config
        server._hello_received(session)
        # This connection is one of the handshakes in progress; the limit counts the others.
        if len(server._sessions) >= config.max_sessions or server.handshakes_in_progress - 1 >= config.max_handshakes:
            log.warning("busy: refusing a handshake from %s", session.peer)
            return HelloDecision(busy=True)
        try:
            psk = await server._psks.resolve(device_id)
        except Exception:
            # Treated like an unknown device, so the peer learns nothing; the operator sees why.
            log.exception("PSK lookup for device %s failed; handling it as unknown", device_id.hex())
            psk = None
        return HelloDecision(psk=psk)

    async def on_open(self, session: Session) -> None:
        assert session.session_id is not None and session.device_id is not None
        self._server._sessions[session.session_id] = session
        log.info(
            "session %s open: device %s from %s%s",
            session.session_id.hex(),
            session.device_id.hex(),
            session.peer,
            "" if session.device_authenticated else " (device id not authenticated: shared key)",
        )
        self._server._replace_older_session(session)
        await _call(self._server._on_open, session)

    async def on_message(self, session: Session, data: bytes) -> None:
        await _call(self._server._on_data, session, data)

    async def on_close(self, session: Session) -> None:
        reason = session.close_reason or Condition.TRANSPORT_CLOSED
        if session.session_id is None:
            log.info("handshake from %s failed: %s", session.peer, reason.value)
            return
        self._server._sessions.pop(session.session_id, None)
        if session.device_id is not None and self._server._by_device.get(session.device_id) is session:
            del self._server._by_device[session.device_id]
        log.info("session %s closed: %s", session.session_id.hex(), _describe(session))
        await _call(self._server._on_close, session, reason)


def _describe(session: Session) -> str:
    reason = session.close_reason
    error = session.error
    if error is not None and error.condition is reason:
        return str(error)
    return reason.value if reason is not None else "unknown"
