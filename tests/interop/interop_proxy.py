"""A man-in-the-middle TCP proxy for USMP stream mode (asyncio), for the interop and attack tests.

The proxy accepts a connection, opens one to the gateway, and forwards
whole stream frames (``type || u16 length || body``) in both directions.
A *hook* sees every frame before it is forwarded and decides what goes
out instead: the same frame (return ``None``), nothing (``[]``), other
bytes, or several frames; it may also inject bytes into either direction
(``conn.send_to``) or cut the connection (``conn.close_toward``,
``conn.abort``). Every frame received and every chunk forwarded is
recorded per direction, so a test can assert exactly what each side sent
and what it was shown.

Modes, for dead-peer and restart tests:

``forward``
    normal operation;
``blackhole``
    the gateway "stops answering": existing connections stay open but
    nothing is forwarded any more in either direction; new connections are
    accepted and never forwarded either;
``refuse``
    the gateway is "down": new connections are closed as soon as they are
    accepted (existing ones are left as they are).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any, Optional

C2S = "c2s"  # client (device) to server (gateway)
S2C = "s2c"

HEADER = 3
TAG = 16

T_HELLO, T_CHALLENGE, T_HELLO_ACK, T_SESSION_OK = 0x01, 0x02, 0x03, 0x04
T_DATA, T_PING, T_PONG, T_BYE, T_FRAGMENT = 0x05, 0x06, 0x07, 0x08, 0x09
T_ERROR = 0xFF
RECORD_TYPES = frozenset({T_DATA, T_PING, T_PONG, T_BYE, T_FRAGMENT})

Hook = Callable[["ProxyConnection", str, bytes], Optional[Iterable[bytes]]]


def frame_type(frame: bytes) -> int:
    return frame[0]


def body(frame: bytes) -> bytes:
    return frame[HEADER:]


def make_frame(ftype: int, payload: bytes) -> bytes:
    return struct.pack(">BH", ftype, len(payload)) + payload


def split_frames(buffer: bytearray) -> list[bytes]:
    """Take every complete frame off the front of ``buffer``."""
    frames = []
    while len(buffer) >= HEADER:
        (length,) = struct.unpack_from(">H", buffer, 1)
        end = HEADER + length
        if len(buffer) < end:
            break
        frames.append(bytes(buffer[:end]))
        del buffer[:end]
    return frames


def split_stream(data: bytes) -> list[bytes]:
    buffer = bytearray(data)
    frames = split_frames(buffer)
    if buffer:
        frames.append(bytes(buffer))  # a partial frame at the end
    return frames


def is_record(frame: bytes) -> bool:
    return frame[0] in RECORD_TYPES


def records_of(frames: Iterable[bytes], ftype: int) -> list[bytes]:
    return [f for f in frames if f[0] == ftype]


def plaintext_length(frame: bytes) -> int:
    return len(frame) - HEADER - TAG


class ProxyConnection:
    """One client connection through the proxy and its connection to the gateway."""

    def __init__(self, proxy: Proxy, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.index = index
        self.client_reader, self.client_writer = reader, writer
        self.upstream_reader: asyncio.StreamReader | None = None
        self.upstream_writer: asyncio.StreamWriter | None = None
        peer = writer.get_extra_info("peername")
        self.client_port: int = peer[1] if isinstance(peer, tuple) else 0
        self.upstream_port: int | None = None  # our local port towards the gateway: its log names it
        # Where the gateway's record stood when this connection reached it:
        # ports are reused, so only what the gateway recorded after this
        # mark can be about this connection.
        self.gateway_mark = 0
        self.accepted_at = time.monotonic()
        self.frames: dict[str, list[bytes]] = {C2S: [], S2C: []}  # as their sender sent them
        self.forwarded: dict[str, list[bytes]] = {C2S: [], S2C: []}  # as the receiver got them
        self.frozen = False
        self.eof: dict[str, bool] = {C2S: False, S2C: False}
        self.done = asyncio.Event()
        self.scratch: dict[str, Any] = {}  # for hooks
        self._tasks: list[asyncio.Task[None]] = []

    def _writer_for(self, direction: str) -> asyncio.StreamWriter | None:
        return self.upstream_writer if direction == C2S else self.client_writer

    def send_to(self, direction: str, data: bytes) -> None:
        """Write ``data`` to the receiver of ``direction`` (C2S: the gateway), recorded as forwarded."""
        writer = self._writer_for(direction)
        if writer is None or writer.is_closing():
            return
        writer.write(data)
        self.forwarded[direction].append(bytes(data))

    def close_toward(self, direction: str) -> None:
        """Close the connection of the receiver of ``direction`` (after what was written)."""
        writer = self._writer_for(direction)
        if writer is not None and not writer.is_closing():
            writer.close()

    def abort(self) -> None:
        for writer in (self.client_writer, self.upstream_writer):
            if writer is not None:
                writer.transport.abort()

    def received(self, direction: str, ftype: int | None = None) -> list[bytes]:
        frames = self.frames[direction]
        return frames if ftype is None else [f for f in frames if f[0] == ftype]

    def forwarded_frames(self, direction: str) -> list[bytes]:
        return split_stream(b"".join(self.forwarded[direction]))

    async def _pump(self, direction: str, reader: asyncio.StreamReader) -> None:
        buffer = bytearray()
        try:
            while True:
                try:
                    data = await reader.read(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                if self.frozen or self.proxy.mode == "blackhole":
                    self.frozen = True
                    continue  # swallowed: the other side hears nothing
                buffer += data
                for frame in split_frames(buffer):
                    self.frames[direction].append(frame)
                    out = self.proxy.hook(self, direction, frame) if self.proxy.hook else None
                    for chunk in [frame] if out is None else out:
                        self.send_to(direction, chunk)
                writer = self._writer_for(direction)
                if writer is not None and not writer.is_closing():
                    try:
                        await writer.drain()
                    except OSError:
                        pass
            if buffer and not self.frozen:
                self.frames[direction].append(bytes(buffer))  # a partial frame before the end
                self.send_to(direction, bytes(buffer))
        finally:
            self.eof[direction] = True
            if not self.frozen and not self.proxy.hold_open:
                self.close_toward(direction)
            if all(self.eof.values()):
                self.done.set()

    async def run(self) -> None:
        proxy = self.proxy
        if proxy.mode == "refuse":
            self.client_writer.close()
            self.done.set()
            return
        if proxy.mode == "blackhole":
            self.frozen = True
            await self._pump(C2S, self.client_reader)
            self.eof[S2C] = True
            self.done.set()
            self.client_writer.close()
            return
        try:
            assert proxy.upstream_port is not None
            self.upstream_reader, self.upstream_writer = await asyncio.open_connection(
                "127.0.0.1", proxy.upstream_port
            )
        except OSError:
            self.client_writer.close()
            self.done.set()
            return
        self.upstream_port = self.upstream_writer.get_extra_info("sockname")[1]
        if proxy.mark_source is not None:
            self.gateway_mark = proxy.mark_source()
        if proxy.on_connect is not None:
            proxy.on_connect(self)
        self._tasks = [
            asyncio.create_task(self._pump(C2S, self.client_reader)),
            asyncio.create_task(self._pump(S2C, self.upstream_reader)),
        ]
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.done.set()

    async def close(self) -> None:
        self.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Proxy:
    """``async with Proxy(upstream_port, hook) as proxy:`` then connect to ``proxy.port``."""

    def __init__(
        self,
        upstream_port: int | None,
        hook: Hook | None = None,
        *,
        hold_open: bool = False,
        on_connect: Callable[[ProxyConnection], None] | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.hook = hook
        self.hold_open = hold_open  # an end of stream from one side is not passed on
        self.on_connect = on_connect
        # Returns the gateway's current record position (set by the rig).
        self.mark_source: Callable[[], int] | None = None
        self.mode = "forward"
        self.connections: list[ProxyConnection] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self.connections:
            await conn.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ProxyConnection(self, len(self.connections), reader, writer)
        self.connections.append(conn)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await conn.run()
        finally:
            self._tasks.discard(task)

    def freeze(self) -> None:
        """The gateway stops answering: nothing more is forwarded, connections stay open."""
        self.mode = "blackhole"
        for conn in self.connections:
            conn.frozen = True

    async def wait_connections(self, count: int, timeout: float = 10.0) -> ProxyConnection:
        await wait_for(lambda: len(self.connections) >= count, timeout, f"{count} connection(s) through the proxy")
        return self.connections[count - 1]


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.005) -> Any:
    """Poll ``predicate`` until it returns something true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        await asyncio.sleep(interval)
