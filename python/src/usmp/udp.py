"""USMP over UDP (datagram mode): one socket serving many devices, and the device side.

::

    async with UDPServer(host="0.0.0.0", port=9000, psk=PSK, on_data=on_data) as server:
        await server.serve_forever()

    async with UDPClient("gw.local", 9000, device_id="deadbeef0001", psk=key) as client:
        await client.send(b"hello")

The demultiplexing, duplicates, cookies and rebinding are those of
:class:`~usmp.datagram.DatagramGateway` (spec 5.6, 6.5, 8.2-8.4).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from typing import Any, Union

from .config import ClientConfig, ServerConfig
from .cookie import address_bytes
from .datagram import (
    CloseCallback,
    DataCallback,
    DatagramClient,
    DatagramGateway,
    DatagramSession,
    LinkStats,
    OpenCallback,
    SendDatagram,
)
from .errors import ConnectionLost, LocalProtocolError
from .psk import PskSource

log = logging.getLogger("usmp.udp")

UDPAddress = tuple[Any, ...]  # (host, port) or IPv6 (host, port, flowinfo, scope_id)
RECEIVE_BUFFER_BYTES = 1 << 20  # room for a burst of datagrams while the loop is busy


def _enlarge_receive_buffer(transport: asyncio.BaseTransport) -> None:
    """Room for a burst of datagrams while the loop is busy (the kernel caps it at rmem_max)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        except OSError:
            pass


def _address_key(address: UDPAddress) -> bytes:
    """Section 8.3: the source address as the cookie binds it."""
    return address_bytes(str(address[0]), int(address[1]))


def _rate_source(address: UDPAddress) -> str:
    return str(address[0])


def _normal(address: UDPAddress) -> UDPAddress:
    return (address[0], address[1])


class _ServerProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: UDPServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: UDPAddress) -> None:
        gateway = self._server._gateway
        if gateway is not None:
            try:
                gateway.datagram_received(bytes(data), _normal(addr))
            except Exception:  # pragma: no cover - a bug must not stop the socket
                log.exception("datagram from %r could not be handled", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("socket error: %s", exc)  # ICMP errors from spoofed or gone peers


class UDPServer:
    """A USMP gateway on one UDP socket (datagram mode).

    Takes the same ``psk`` and callbacks as :class:`~usmp.USMPServer`; the
    sessions are :class:`~usmp.datagram.DatagramSession`. ``config`` is a
    :class:`~usmp.ServerConfig` (``max_record`` is lowered to 1207, spec
    6.6). ``cookie_threshold``: with this many handshakes in progress, a
    HELLO without a valid cookie gets a COOKIE (spec 8.3; default half of
    ``max_handshakes``). ``stats`` counts what was dropped and why.
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
        cookie_threshold: int | None = None,
    ) -> None:
        if psk is None:
            raise LocalProtocolError("UDPServer needs a psk: there is no default key")
        self.host = host
        self.requested_port = port
        self.config = config or ServerConfig()
        self._psk = psk
        self._callbacks = (on_data, on_open, on_close)
        self._cookie_threshold = cookie_threshold
        self._transport: asyncio.DatagramTransport | None = None
        self._gateway: DatagramGateway[UDPAddress] | None = None
        self._closed: asyncio.Future[None] | None = None

    async def start(self) -> None:
        if self._transport is not None:
            raise LocalProtocolError("the server is already started")
        loop = asyncio.get_running_loop()
        on_data, on_open, on_close = self._callbacks
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _ServerProtocol(self), local_addr=(self.host or "0.0.0.0", self.requested_port)
        )
        _enlarge_receive_buffer(transport)
        self._transport = transport
        self._gateway = DatagramGateway(
            lambda frame, address: transport.sendto(frame, address),
            self._psk,
            on_data=on_data,
            on_open=on_open,
            on_close=on_close,
            config=self.config,
            cookie_threshold=self._cookie_threshold,
            address_key=_address_key,
            rate_source=_rate_source,
            rebinding=True,
        )
        self._closed = loop.create_future()
        log.info("listening on udp %s:%d", *self.address)

    async def serve_forever(self) -> None:
        if self._transport is None:
            await self.start()
        assert self._closed is not None
        await asyncio.shield(self._closed)

    async def stop(self) -> None:
        """BYE(SHUTDOWN) to every session, then close the socket."""
        if self._transport is None or self._gateway is None:
            return
        await self._gateway.stop(self.config.shutdown_grace)
        self._transport.close()
        self._transport = None
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    async def __aenter__(self) -> UDPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def address(self) -> tuple[str, int]:
        if self._transport is None:
            raise LocalProtocolError("the server is not started")
        name = self._transport.get_extra_info("sockname")
        return str(name[0]), int(name[1])

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [self.address] if self._transport is not None else []

    @property
    def sessions(self) -> Mapping[bytes, DatagramSession]:
        return self._gateway.sessions if self._gateway else {}

    @property
    def handshakes_in_progress(self) -> int:
        return self._gateway.handshakes_in_progress if self._gateway else 0

    @property
    def stats(self) -> LinkStats:
        """Gateway-wide counters: routing drops, cookies sent, and each ended session's counters."""
        return self._gateway.stats if self._gateway else LinkStats()


class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self, client: UDPClient) -> None:
        self._client = client

    def datagram_received(self, data: bytes, addr: UDPAddress) -> None:
        self._client._datagram_received(bytes(data))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the gateway restarts: UDP may lose datagrams; retransmission covers it.
        log.debug("socket error: %s", exc)


class UDPClient(DatagramClient):
    """A USMP device over UDP; see :class:`~usmp.datagram.DatagramClient` for the calls."""

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
    ) -> None:
        super().__init__(device_id=device_id, psk=psk, config=config, boot_counter=boot_counter)
        self.host = host
        self.port = port
        self._local_addr = local_addr
        self._transport: asyncio.DatagramTransport | None = None

    async def _open_link(self) -> tuple[SendDatagram, Any]:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _ClientProtocol(self), remote_addr=(self.host, self.port), local_addr=self._local_addr
            )
        except OSError as error:
            raise ConnectionLost(f"cannot reach udp {self.host}:{self.port}: {error}") from error
        _enlarge_receive_buffer(transport)
        self._transport = transport
        return transport.sendto, (self.host, self.port)

    def _close_link(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    @property
    def local_address(self) -> tuple[str, int] | None:
        if self._transport is None:
            return None
        name = self._transport.get_extra_info("sockname")
        return str(name[0]), int(name[1])
