"""USMP over a serial line (datagram mode, COBS framing of spec section 10).

One session per port: the gateway side (:class:`SerialServer`) serves
whichever device is at the other end of its port, one session at a time;
a new handshake that completes replaces the session before it (spec 8.4).
The device side is :class:`SerialClient`. Ports are opened and set up
(baud rate, 8N1, raw) with pyserial (Debian: ``python3-serial``); the file
descriptor is then watched by the asyncio loop, so no thread is needed.
A pseudo-terminal from ``os.openpty`` works the same (the tests use one).

Between frames, garbage and noise are skipped; a frame whose COBS is
corrupt or too long is dropped and counted (``stats.framing_errors``); a
frame damaged in a way COBS cannot see fails its MAC or tag and is
dropped and counted by condition. Neither ends the session. A serial
line has no source address: no cookie is ever required (spec 8.4).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, Union

from . import cobs
from .config import ClientConfig, ServerConfig
from .datagram import (
    CloseCallback,
    DataCallback,
    DatagramClient,
    DatagramGateway,
    DatagramSession,
    LinkStats,
    OpenCallback,
    SendDatagram,
    datagram_config,
)
from .errors import ConfigurationError, ConnectionLost, LocalProtocolError, RemoteProtocolError
from .psk import PskSource

log = logging.getLogger("usmp.serial")

DEFAULT_BAUD = 115200
READ_BYTES = 4096


def open_serial_port(path: str, baud: int) -> Any:
    """Open ``path`` raw, 8N1, non-blocking, with pyserial; returns the ``serial.Serial``."""
    try:
        import serial  # type: ignore  # pyserial has no type information
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ConfigurationError(
            "serial ports need pyserial (Debian: apt-get install python3-serial)"
        ) from error
    try:
        port = serial.Serial(path, baudrate=baud, timeout=0, write_timeout=0, exclusive=True)
    except (serial.SerialException, ValueError) as error:
        raise ConnectionLost(f"cannot open serial port {path}: {error}") from error
    return port


class ByteLink:
    """A non-blocking file descriptor carrying COBS frames; calls ``on_frame`` for each frame decoded.

    ``owner`` (a ``serial.Serial``, or ``None`` for a bare descriptor such
    as a pty) is closed with the link.
    """

    def __init__(
        self,
        fd: int,
        max_frame: int,
        on_frame: Callable[[bytes], None],
        stats: Callable[[], LinkStats],
        owner: Any = None,
    ) -> None:
        self._fd = fd
        self._owner = owner
        self._deframer = cobs.CobsDeframer(max_frame)
        self._on_frame = on_frame
        self._stats = stats
        self._pending = bytearray()
        self._loop = asyncio.get_running_loop()
        self._closed = False
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._readable)
        self.write_frame(b"", resync=True)

    def write_frame(self, frame: bytes, *, resync: bool = False) -> None:
        """``COBS(frame) || 0x00`` (resync: a lone delimiter, spec 10)."""
        if self._closed:
            raise ConnectionLost("the serial link is closed")
        self._pending += b"\x00" if resync else cobs.frame(frame)
        self._write_some()

    def _write_some(self) -> None:
        while self._pending:
            try:
                written = os.write(self._fd, self._pending)
            except BlockingIOError:
                break
            except OSError as error:
                log.debug("serial write failed: %s", error)
                self._pending.clear()
                return
            del self._pending[:written]
        if self._pending:
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        self._loop.remove_writer(self._fd)
        self._write_some()

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, READ_BYTES)
        except BlockingIOError:
            return
        except OSError as error:
            if error.errno == errno.EIO:  # the other end of a pty is closed for now
                return
            log.debug("serial read failed: %s", error)
            return
        for item in self._deframer.feed(data):
            if isinstance(item, RemoteProtocolError):
                self._stats().framing_errors += 1
                log.debug("dropped a serial frame: %s", item)
            else:
                self._on_frame(item)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        if self._owner is not None:
            self._owner.close()


def _open_link(
    path: str | None, fd: int | None, baud: int, max_frame: int, on_frame: Callable[[bytes], None],
    stats: Callable[[], LinkStats],
) -> ByteLink:
    if (path is None) == (fd is None):
        raise LocalProtocolError("give a serial port path or a file descriptor, not both")
    if fd is not None:
        return ByteLink(fd, max_frame, on_frame, stats)
    assert path is not None
    port = open_serial_port(path, baud)
    return ByteLink(port.fileno(), max_frame, on_frame, stats, owner=port)


_PORT = "port"  # the only address on a serial line


class SerialServer:
    """A USMP gateway on one serial port; one session at a time (spec 8.4).

    ``path`` is the port (``/dev/ttyUSB0``), or pass ``fd``, an open
    descriptor (a pty). Callbacks and ``psk`` as for :class:`~usmp.USMPServer`.
    """

    def __init__(
        self,
        path: str | None = None,
        baud: int = DEFAULT_BAUD,
        psk: Union[PskSource, None] = None,
        on_data: DataCallback | None = None,
        *,
        fd: int | None = None,
        on_open: OpenCallback | None = None,
        on_close: CloseCallback | None = None,
        config: ServerConfig | None = None,
    ) -> None:
        if psk is None:
            raise LocalProtocolError("SerialServer needs a psk: there is no default key")
        self.path = path
        self.baud = baud
        self._fd = fd
        self.config = config or ServerConfig()
        self._psk = psk
        self._callbacks = (on_data, on_open, on_close)
        self._link: ByteLink | None = None
        self._gateway: DatagramGateway[str] | None = None
        self._closed: asyncio.Future[None] | None = None

    async def start(self) -> None:
        if self._link is not None:
            raise LocalProtocolError("the server is already started")
        on_data, on_open, on_close = self._callbacks

        def send(frame: bytes, address: str) -> None:
            assert self._link is not None
            self._link.write_frame(frame)

        self._gateway = DatagramGateway(
            send, self._psk, on_data=on_data, on_open=on_open, on_close=on_close, config=self.config,
            address_key=None, rate_source=None, rebinding=False,
        )
        gateway = self._gateway
        max_frame = cobs.longest_frame(datagram_config(self.config).max_record)
        self._link = _open_link(
            self.path, self._fd, self.baud, max_frame, lambda f: gateway.datagram_received(f, _PORT),
            lambda: gateway.stats,
        )
        self._closed = asyncio.get_running_loop().create_future()
        log.info("listening on serial %s", self.path or f"fd {self._fd}")

    async def serve_forever(self) -> None:
        if self._link is None:
            await self.start()
        assert self._closed is not None
        await asyncio.shield(self._closed)

    async def stop(self) -> None:
        if self._link is None or self._gateway is None:
            return
        await self._gateway.stop(self.config.shutdown_grace)
        self._link.close()
        self._link = None
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    async def __aenter__(self) -> SerialServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def sessions(self) -> Mapping[bytes, DatagramSession]:
        return self._gateway.sessions if self._gateway else {}

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """A serial port has no network address: always empty."""
        return []

    @property
    def handshakes_in_progress(self) -> int:
        return self._gateway.handshakes_in_progress if self._gateway else 0

    @property
    def stats(self) -> LinkStats:
        """Link-wide counters: COBS framing errors, routing drops, each ended session's counters."""
        return self._gateway.stats if self._gateway else LinkStats()


class SerialClient(DatagramClient):
    """A USMP device on a serial line; see :class:`~usmp.datagram.DatagramClient` for the calls."""

    def __init__(
        self,
        path: str | None = None,
        baud: int = DEFAULT_BAUD,
        *,
        fd: int | None = None,
        device_id: bytes | str,
        psk: bytes,
        config: ClientConfig | None = None,
        boot_counter: int = 0,
    ) -> None:
        super().__init__(device_id=device_id, psk=psk, config=config, boot_counter=boot_counter)
        self.path = path
        self.baud = baud
        self._fd = fd
        self._link: ByteLink | None = None

    async def _open_link(self) -> tuple[SendDatagram, Any]:
        max_frame = cobs.longest_frame(datagram_config(self.config).max_record)
        self._link = _open_link(self.path, self._fd, self.baud, max_frame, self._datagram_received, lambda: self.stats)
        return self._link.write_frame, self.path or f"fd {self._fd}"

    def _close_link(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
