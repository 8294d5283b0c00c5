"""The asyncio USMP gateway over TCP (stream mode)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Optional, Union

from .config import ServerConfig
from .engine import ServerEngine
from .errors import Condition, LocalProtocolError
from .psk import PskResolver, PskSource
from .ratelimit import HandshakeRateLimiter
from .session import HelloDecision, Session, SessionHandler
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
    PSK. Callbacks may be sync or async: ``on_data(session, data)``,
    ``on_open(session)``, ``on_close(session, reason)`` where ``reason`` is
    a :class:`~usmp.Condition` (``session.error`` has the exception, if any).
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
        config: ServerConfig | None = None,
    ) -> None:
        if psk is None:
            raise LocalProtocolError("USMPServer needs a psk: there is no default key")
        self.host = host
        self.requested_port = port
        self.config = config or ServerConfig()
        self._psks = PskResolver(psk)
        self._on_data = on_data
        self._on_open = on_open
        self._on_close = on_close
        self._rate_limiter = HandshakeRateLimiter(self.config.handshake_rate, self.config.handshake_burst)
        self._server: asyncio.Server | None = None
        self._connections: set[Session] = set()
        self._sessions: dict[bytes, Session] = {}
        self._connection_tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._handler = _ServerHandler(self)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start accepting connections."""
        if self._server is not None:
            raise LocalProtocolError("the server is already started")
        self._stopping = False
        self._server = await asyncio.start_server(self._accept, self.host, self.requested_port)
        for address in self.addresses:
            log.info("listening on %s:%d", address[0], address[1])

    async def serve_forever(self) -> None:
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
        return types.MappingProxyType(self._sessions)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bound (host, port) pairs; useful with ``port=0``."""
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
    def handshakes_in_progress(self) -> int:
        return len(self._connections) - len(self._sessions)

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
            mode=Mode.STREAM, now=loop.time(), config=self.config, idle_timeout=self.config.idle_timeout
        )
        session = Session(engine, reader, writer, self._handler)
        self._connections.add(session)
        try:
            await session.run()
        finally:
            self._connections.discard(session)
            self._connection_tasks.discard(task)


class _ServerHandler(SessionHandler):
    def __init__(self, server: USMPServer) -> None:
        self._server = server

    async def on_hello(self, session: Session, device_id: bytes) -> HelloDecision:
        server = self._server
        config = server.config
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
            "session %s open: device %s from %s", session.session_id.hex(), session.device_id.hex(), session.peer
        )
        await _call(self._server._on_open, session)

    async def on_message(self, session: Session, data: bytes) -> None:
        await _call(self._server._on_data, session, data)

    async def on_close(self, session: Session) -> None:
        reason = session.close_reason or Condition.TRANSPORT_CLOSED
        if session.session_id is None:
            log.info("handshake from %s failed: %s", session.peer, reason.value)
            return
        self._server._sessions.pop(session.session_id, None)
        log.info("session %s closed: %s", session.session_id.hex(), _describe(session))
        await _call(self._server._on_close, session, reason)


def _describe(session: Session) -> str:
    reason = session.close_reason
    error = session.error
    if error is not None and error.condition is reason:
        return str(error)
    return reason.value if reason is not None else "unknown"
