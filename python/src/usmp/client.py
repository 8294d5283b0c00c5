"""The asyncio USMP client: TCP (stream mode) here; UDP and serial lines through ``transport=``."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from .config import ClientConfig
from .engine import ClientEngine
from .crypto import MAX_COUNTER
from .errors import ConfigurationError, ConnectionLost, HandshakeTimeout, LocalProtocolError, USMPError
from .psk import check_psk, parse_device_id
from .datagram import DatagramClient, DatagramSession, LinkStats
from .serial_link import SerialClient
from .session import Session, SessionHandler
from .transports import DEFAULT_BAUD, Transport, transport_name
from .udp import UDPClient
from .wire import Limits, Mode

log = logging.getLogger("usmp.client")


class USMPClient:
    """Connects to a USMP server, runs the handshake, then sends and receives messages.

    ::

        async with USMPClient("gw.local", 9000, device_id="deadbeef0001", psk=key) as client:
            await client.send(b"hello")
            reply = await client.recv(timeout=5)

    ``connect()`` raises :class:`~usmp.PeerError` (the server sent ERROR,
    e.g. ``.peer_condition == Condition.AUTH_FAILED`` for a wrong PSK, or
    BUSY: the server's claim, distinct from a :class:`~usmp.RemoteProtocolError`
    with AUTH_FAILED, which means this side found the server's MAC wrong),
    :class:`~usmp.RemoteProtocolError`, :class:`~usmp.HandshakeTimeout`
    or :class:`~usmp.ConnectionLost`.

    ``boot_counter`` (spec 5.8): a number that never repeats across runs of
    this device, e.g. kept in a file and advanced before each start, so that
    the handshake stays fresh even if the random source repeats its output;
    0 when there is none.

    Once connected, a background task answers PINGs, sends keepalive PINGs,
    and queues received messages for :meth:`recv`. One client is one
    session; to reconnect, make a new one.

    ``transport``: ``"tcp"`` (default), ``"udp"`` (datagram mode to
    ``host``/``port``) or ``"serial"`` (datagram mode with COBS: ``host`` is
    the port's path, ``baud`` its speed, ``port`` is not used). Datagram
    mode delivers each message at most once and intact, but does not resend
    a lost one (spec 8.5); ``stats`` counts what was dropped.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        device_id: bytes | str,
        psk: bytes,
        config: ClientConfig | None = None,
        local_addr: tuple[str, int] | None = None,
        boot_counter: int = 0,
        transport: Transport = "tcp",
        baud: int = DEFAULT_BAUD,
    ) -> None:
        self.transport = transport_name(transport)
        self.host = host
        self.port = port
        self.config = config or ClientConfig()
        self._device_id = parse_device_id(device_id)
        self._psk: bytes | None = check_psk(psk)
        self._local_addr = local_addr
        if not (isinstance(boot_counter, int) and 0 <= boot_counter <= MAX_COUNTER):
            raise ConfigurationError(f"boot_counter must be an integer 0 .. 2**64 - 1, got {boot_counter!r}")
        self._boot_counter = boot_counter
        self._session: Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._inbox: _Inbox | None = None
        # Datagram transports: the client is theirs; this class forwards to it.
        self._datagram: DatagramClient | None = None
        if self.transport == "udp":
            self._datagram = UDPClient(
                host, port, device_id=device_id, psk=psk, config=config, local_addr=local_addr,
                boot_counter=boot_counter,
            )
        elif self.transport == "serial":
            self._datagram = SerialClient(
                host, baud, device_id=device_id, psk=psk, config=config, boot_counter=boot_counter
            )

    # --- connection ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the TCP connection (or the UDP socket, the serial port) and complete the handshake."""
        if self._datagram is not None:
            await self._datagram.connect()
            return
        if self._session is not None or self._psk is None:
            raise LocalProtocolError("a USMPClient connects once; make a new one to reconnect")
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self.config.handshake_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port, local_addr=self._local_addr)
        except TimeoutError:
            raise HandshakeTimeout(f"could not connect to {self.host}:{self.port} in time") from None
        except OSError as error:
            raise ConnectionLost(f"could not connect to {self.host}:{self.port}: {error}") from error
        engine = ClientEngine(
            mode=Mode.STREAM,
            device_id=self._device_id,
            psk=self._psk,
            config=self.config,
            boot_counter=self._boot_counter,
        )
        self._psk = None  # the engine holds it until the handshake no longer needs it
        # The handshake timer counts from before the TCP connect: one budget for both.
        engine.start(started)
        inbox = _Inbox(self.config.receive_queue)
        handler = _ClientHandler(inbox, loop.create_future())
        self._inbox = inbox
        self._session = Session(engine, reader, writer, handler)
        self._task = asyncio.create_task(self._session.run())
        try:
            await asyncio.shield(handler.opened)
        except BaseException:
            await self._session.close()
            raise
        assert self.session_id is not None
        log.info("session %s open with %s:%d", self.session_id.hex(), self.host, self.port)

    async def send(self, data: bytes) -> None:
        """Send one message (fragmented if over the server's ``max_record``)."""
        if self._datagram is not None:
            return await self._datagram.send(data)
        await self._established_session().send(data)

    async def recv(self, timeout: float | None = None) -> bytes:
        """The next message. Raises ``TimeoutError`` after ``timeout`` seconds, or the session's
        error (:class:`~usmp.PeerClosed`, :class:`~usmp.PeerTimeout`, :class:`~usmp.ConnectionLost`...)
        once it has ended and every queued message has been read."""
        if self._datagram is not None:
            return await self._datagram.recv(timeout)
        session = self._established_session()
        assert self._inbox is not None
        async with asyncio.timeout(timeout):
            message = await self._inbox.get()
        if message is None:
            raise session.error or LocalProtocolError("the session was closed by this side")
        return message

    async def close(self) -> None:
        """Send BYE and close; does nothing if never connected or already closed.

        Messages received but not yet read stay readable with :meth:`recv`.
        """
        if self._datagram is not None:
            return await self._datagram.close()
        if self._inbox is not None:
            self._inbox.end()  # a session loop waiting for room in a full inbox must not block the close
        if self._session is not None:
            await self._session.close()
        if self._task is not None:
            await self._task

    async def __aenter__(self) -> USMPClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- state ----------------------------------------------------------------------------------

    @property
    def device_id(self) -> bytes:
        return self._device_id

    @property
    def session(self) -> Session | DatagramSession | None:
        """The session under this client, for its CONTROL records (``control_handler``, ``send_control``)."""
        if self._datagram is not None:
            return self._datagram.session
        return self._session

    @property
    def session_id(self) -> bytes | None:
        if self._datagram is not None:
            return self._datagram.session_id
        return self._session.session_id if self._session else None

    @property
    def peer(self) -> Any:
        if self._datagram is not None:
            return self._datagram.peer
        return self._session.peer if self._session else None

    @property
    def connected(self) -> bool:
        if self._datagram is not None:
            return self._datagram.connected
        return self._session is not None and self._session.established

    @property
    def server_limits(self) -> Limits | None:
        if self._datagram is not None:
            return self._datagram.server_limits
        return self._session.peer_limits if self._session else None

    @property
    def error(self) -> USMPError | None:
        if self._datagram is not None:
            return self._datagram.error
        return self._session.error if self._session else None

    @property
    def stats(self) -> LinkStats | None:
        """UDP and serial: what the link dropped and why (:class:`~usmp.datagram.LinkStats`); TCP: ``None``."""
        return self._datagram.stats if self._datagram is not None else None

    def _established_session(self) -> Session:
        if self._session is None:
            raise LocalProtocolError("not connected: call connect() first")
        return self._session


class _Inbox:
    """Received messages waiting for recv(); when full, the session stops reading the socket."""

    def __init__(self, size: int) -> None:
        self._messages: collections.deque[bytes] = collections.deque()
        self._size = size
        self._ended = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    async def put(self, message: bytes) -> None:
        while len(self._messages) >= self._size and not self._ended:
            self._writable.clear()
            await self._writable.wait()
        if not self._ended:  # after the end nobody will read it
            self._messages.append(message)
            self._readable.set()

    def end(self) -> None:
        self._ended = True
        self._readable.set()
        self._writable.set()

    async def get(self) -> bytes | None:
        """The next message, or ``None`` once the session has ended and nothing is left."""
        while not self._messages:
            if self._ended:
                return None
            self._readable.clear()
            await self._readable.wait()
        self._writable.set()
        return self._messages.popleft()


class _ClientHandler(SessionHandler):
    def __init__(self, inbox: _Inbox, opened: asyncio.Future[None]) -> None:
        self._inbox = inbox
        self.opened = opened

    async def on_open(self, session: Session) -> None:
        self.opened.set_result(None)

    async def on_message(self, session: Session, data: bytes) -> None:
        await self._inbox.put(data)

    async def on_close(self, session: Session) -> None:
        self._inbox.end()
        if not self.opened.done():
            self.opened.set_exception(session.error or ConnectionLost("the handshake ended without an error"))
        log.info("session closed: %s", session.error or session.close_reason)
