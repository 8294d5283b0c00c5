"""Gateway hardening (spec section 13, spec/security.md), the same on the C and the Python gateway.

- Idle connections that never send a HELLO cannot lock honest devices out: a connection without a
  complete HELLO holds no handshake slot, is closed after ``hello_timeout``, and at ``max_pending``
  a new connection evicts the oldest such connection instead of being refused.
- A peer that stops reading is cut off within ``idle_timeout`` + ``write_timeout``, so with
  ``max_sessions`` 1 another device gets in.
- Two sessions never claim one device id: a newly established session sends the older one
  BYE(REPLACED), with one shared key and with per-device keys; shared-key mode is announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Optional

import pytest

from usmp import ClientEngine, Condition, ServerConfig, Session, USMPServer
from usmp.engine import HandshakeComplete
from usmp.wire import Mode

from interop_harness import DEVICE, GATEWAYS, PSK, CBuild, CProcess, PyDevice, async_test, sanitizer_env

OTHER_DEVICE = bytes.fromhex("020000000002")
OTHER_PSK = bytes.fromhex("11" * 32)

FLOOD_SOURCES = [f"127.0.0.{i}" for i in range(2, 22)]  # 20 loopback source addresses
FLOOD_PER_SOURCE = 10  # 200 idle connections in all


class Gateway:
    """A C or a Python gateway with the options these tests need, echoing every message."""

    def __init__(self, kind: str, build: CBuild, workdir: Path, *, shared_key: bool = False, **options: Any) -> None:
        self.kind = kind
        self.build = build
        self.workdir = workdir
        self.shared_key = shared_key
        self.options = options
        self.port = 0
        self.process: Optional[CProcess] = None
        self.server: Optional[USMPServer] = None
        self.sessions: list[Session] = []

    async def __aenter__(self) -> Gateway:
        if self.kind == "c":
            await self._start_c()
        else:
            await self._start_py()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None:
            await self.process.finish(expect=0)
        if self.server is not None:
            await self.server.stop()

    async def _start_c(self) -> None:
        argv = [str(self.build.program("server")), "--port", "0"]
        env = sanitizer_env()
        if self.shared_key:
            argv += ["--psk-env", "USMP_TEST_SHARED_PSK"]
            env["USMP_TEST_SHARED_PSK"] = PSK.hex()
        else:
            psk_file = self.workdir / "hardening.psk"
            psk_file.write_text(f"{DEVICE.hex()} {PSK.hex()}\n{OTHER_DEVICE.hex()} {OTHER_PSK.hex()}\n")
            argv += ["--psk-file", str(psk_file)]
        names = {
            "max_sessions": ("--max-sessions", 1),
            "max_pending": ("--max-pending", 1),
            "hello_timeout": ("--hello-timeout-ms", 1000),
            "idle_timeout": ("--idle-timeout-ms", 1000),
            "write_timeout": ("--write-timeout-ms", 1000),
        }
        for name, value in self.options.items():
            option, scale = names[name]
            argv += [option, str(int(value * scale))]
        self.process = CProcess(argv, "usmp_server", env)
        await self.process.start()
        m = await self.process.wait_line(r"listening on 127\.0\.0\.1:(\d+)", 10.0)
        self.port = int(m.group(1))

    async def _start_py(self) -> None:
        async def echo(session: Session, data: bytes) -> None:
            await session.send(data)

        async def opened(session: Session) -> None:
            self.sessions.append(session)

        psk: Any = PSK if self.shared_key else {DEVICE: PSK, OTHER_DEVICE: OTHER_PSK}
        self.server = USMPServer("127.0.0.1", 0, psk, echo, on_open=opened, config=ServerConfig(**self.options))
        await self.server.start()
        self.port = self.server.port

    def lines(self) -> list[str]:
        return self.process.lines if self.process is not None else []


async def honest_exchange(port: int, device_id: bytes = OTHER_DEVICE, psk: bytes = OTHER_PSK) -> str:
    """A device connects, sends one message and reads its echo: "OK" or what went wrong."""
    device = PyDevice(port, device_id=device_id, psk=psk, handshake_timeout=5.0)
    try:
        outcome = await device.connect()
        if outcome != "OK":
            return f"connect: {outcome}"
        message = b"honest device " + device_id.hex().encode()
        outcome = await device.send(message)
        if outcome != "OK":
            return f"send: {outcome}"
        echo = await device.recv(5.0)
        return "OK" if echo == message else f"recv: {echo!r}"
    finally:
        await device.aclose()


async def open_idle(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection from ``source`` (bound before connect) that never sends a byte."""
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def closed_by_gateway(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True if the gateway ends the connection (EOF or reset) within ``timeout`` s."""
    try:
        async with asyncio.timeout(timeout):
            data = await reader.read(1)
    except TimeoutError:
        return False
    except OSError:
        return True
    assert data == b"", f"the gateway said something to a connection that sent nothing: {data!r}"
    return True


class IdleFlood:
    """``FLOOD_PER_SOURCE`` idle connections from each of ``FLOOD_SOURCES``, each reopened as soon as
    the gateway closes it (8 KiB of nothing: zero payload bytes)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.open = 0
        self.reopened = 0
        self.failed_connects = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def _hold(self, source: str) -> None:
        first = True
        while True:
            try:
                reader, writer = await open_idle(self.port, source)
            except OSError:
                self.failed_connects += 1
                await asyncio.sleep(0.05)
                continue
            self.open += 1
            if not first:
                self.reopened += 1
            first = False
            try:
                await closed_by_gateway(reader, 3600.0)
            finally:
                self.open -= 1
                writer.transport.abort()

    async def __aenter__(self) -> IdleFlood:
        for source in FLOOD_SOURCES:
            for _ in range(FLOOD_PER_SOURCE):
                self._tasks.append(asyncio.create_task(self._hold(source)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.mark.parametrize("gw_kind", GATEWAYS)
@async_test(90)
async def test_idle_connection_flood_does_not_lock_out_an_honest_device(
    c_build: CBuild, tmp_path: Path, gw_kind: str
) -> None:
    """200 idle connections from 20 source addresses, held open and refreshed: with the default
    limits an honest device still completes its handshake and exchanges a message, three times
    over two hello timeouts. Before: ERROR(BUSY) (the idle connections held every handshake slot)."""
    if gw_kind == "c":
        c_build.program("server")
    async with Gateway(gw_kind, c_build, tmp_path) as gw:
        async with IdleFlood(gw.port) as flood:
            deadline = time.monotonic() + 20.0
            while flood.open < len(FLOOD_SOURCES) * FLOOD_PER_SOURCE and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert flood.open == len(FLOOD_SOURCES) * FLOOD_PER_SOURCE, f"only {flood.open} idle connections open"
            outcomes = []
            for _ in range(3):
                outcomes.append(await honest_exchange(gw.port))
                await asyncio.sleep(1.5)
            assert outcomes == ["OK", "OK", "OK"], outcomes
            # The flood was refreshed meanwhile: the gateway closed idle connections (hello_timeout)
            # and they were opened again, so the device got in against a full set all along.
            assert flood.reopened >= 100, f"only {flood.reopened} idle connections were refreshed"
            assert flood.open >= 150, f"the flood thinned out to {flood.open} connections"


@pytest.mark.parametrize("gw_kind", GATEWAYS)
@async_test(60)
async def test_at_max_pending_a_new_connection_evicts_the_oldest_pending_one(
    c_build: CBuild, tmp_path: Path, gw_kind: str
) -> None:
    """max_pending 3, hello_timeout 20 s: a fourth idle connection closes the first (only), and an
    honest device arriving at the bound evicts the next oldest and completes its handshake."""
    if gw_kind == "c":
        c_build.program("server")
    async with Gateway(gw_kind, c_build, tmp_path, max_pending=3, hello_timeout=20.0) as gw:
        idle = []
        for _ in range(3):
            idle.append(await open_idle(gw.port, "127.0.0.1"))
            await asyncio.sleep(0.1)  # a clear order: the first is the oldest
        await asyncio.sleep(0.3)
        assert not await closed_by_gateway(idle[0][0], 0.2), "closed before the queue was full"
        idle.append(await open_idle(gw.port, "127.0.0.1"))
        assert await closed_by_gateway(idle[0][0], 3.0), "the oldest pending connection was not evicted"
        for reader, _ in idle[1:]:
            assert not await closed_by_gateway(reader, 0.2), "a younger pending connection was closed"
        assert await honest_exchange(gw.port) == "OK"
        assert await closed_by_gateway(idle[1][0], 3.0), "the honest device did not evict the next oldest"
        for reader, _ in idle[2:]:
            assert not await closed_by_gateway(reader, 0.2)
        for _, writer in idle:
            writer.transport.abort()


@pytest.mark.parametrize("gw_kind", GATEWAYS)
@async_test(60)
async def test_connection_without_hello_is_closed_after_hello_timeout(
    c_build: CBuild, tmp_path: Path, gw_kind: str
) -> None:
    """hello_timeout 0.5 s (handshake_timeout stays 10 s): an idle connection is closed without a
    word after about 0.5 s; one that sent a partial HELLO likewise."""
    if gw_kind == "c":
        c_build.program("server")
    async with Gateway(gw_kind, c_build, tmp_path, hello_timeout=0.5) as gw:
        started = time.monotonic()
        reader, writer = await open_idle(gw.port, "127.0.0.1")
        partial_reader, partial_writer = await open_idle(gw.port, "127.0.0.1")
        engine = ClientEngine(mode=Mode.STREAM, device_id=DEVICE, psk=PSK)
        engine.start(0.0)
        partial_writer.write(engine.frames_to_send()[0][:20])
        assert await closed_by_gateway(reader, 5.0)
        assert await closed_by_gateway(partial_reader, 5.0)
        elapsed = time.monotonic() - started
        assert 0.4 <= elapsed < 3.0, f"closed after {elapsed:.2f} s"
        writer.transport.abort()
        partial_writer.transport.abort()


async def handshake_then_stop_reading(port: int) -> tuple[socket.socket, float]:
    """A device that completes its handshake, then sends messages whose echoes it never reads until
    its own sends block (the gateway's output has backed up and it has stopped reading). Returns
    the socket (kept open, never read again) and the time the sends blocked."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # back up sooner
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    engine = ClientEngine(mode=Mode.STREAM, device_id=DEVICE, psk=PSK)
    engine.start(loop.time())
    established = False
    async with asyncio.timeout(10):
        while not established:
            for frame in engine.frames_to_send():
                await loop.sock_sendall(sock, frame)
            data = await loop.sock_recv(sock, 4096)
            assert data, "the gateway closed during the handshake"
            events = engine.receive_data(data, loop.time())
            established = any(isinstance(e, HandshakeComplete) for e in events)
        for frame in engine.frames_to_send():
            await loop.sock_sendall(sock, frame)
    pending = b""
    blocked_since: Optional[float] = None
    give_up = time.monotonic() + 30.0
    while time.monotonic() < give_up:
        if not pending:
            engine.send_message(bytes(4000), loop.time())
            pending = b"".join(engine.frames_to_send())
        try:
            sent = sock.send(pending)
            pending = pending[sent:]
            blocked_since = None
        except BlockingIOError:
            now = time.monotonic()
            if blocked_since is None:
                blocked_since = now
            elif now - blocked_since >= 0.3:
                return sock, blocked_since
            await asyncio.sleep(0.02)
    raise AssertionError("the gateway kept reading a peer that never reads its echoes")


@pytest.mark.parametrize("gw_kind", GATEWAYS)
@async_test(60)
async def test_peer_that_stops_reading_is_cut_off_within_idle_plus_write_timeout(
    c_build: CBuild, tmp_path: Path, gw_kind: str
) -> None:
    """max_sessions 1, idle_timeout 1 s, write_timeout 1 s: a peer that backs the gateway's output up
    and stops reading loses its slot within idle_timeout + write_timeout (plus scheduling slack), then
    another device connects and exchanges a message. Before: the slot was held forever (BUSY)."""
    if gw_kind == "c":
        c_build.program("server")
    async with Gateway(gw_kind, c_build, tmp_path, max_sessions=1, idle_timeout=1.0, write_timeout=1.0) as gw:
        stuck, stopped_at = await handshake_then_stop_reading(gw.port)
        try:
            outcome = "not tried"
            while time.monotonic() - stopped_at < 8.0:
                outcome = await honest_exchange(gw.port)
                if outcome == "OK":
                    break
                assert outcome == "connect: PEER_ERROR:BUSY", outcome
                await asyncio.sleep(0.1)
            cut_after = time.monotonic() - stopped_at
            assert outcome == "OK", f"still {outcome} {cut_after:.1f} s after the peer stopped reading"
            assert cut_after < 1.0 + 1.0 + 1.5, f"the slot came free only after {cut_after:.2f} s"
        finally:
            stuck.close()


@contextlib.asynccontextmanager
async def device_session(port: int) -> AsyncIterator[PyDevice]:
    device = PyDevice(port, device_id=DEVICE, psk=PSK, handshake_timeout=5.0)
    try:
        assert await device.connect() == "OK"
        yield device
    finally:
        await device.aclose()


@pytest.mark.parametrize("shared_key", [True, False], ids=["shared_key", "per_device_keys"])
@pytest.mark.parametrize("gw_kind", GATEWAYS)
@async_test(60)
async def test_newer_session_of_a_device_id_replaces_the_older_with_bye_replaced(
    c_build: CBuild, tmp_path: Path, gw_kind: str, shared_key: bool
) -> None:
    """Two sessions with one device id: the older gets BYE(REPLACED) once the newer is established,
    the newer works on. Before: both sessions ran side by side, both claiming the device."""
    if gw_kind == "c":
        c_build.program("server")
    async with Gateway(gw_kind, c_build, tmp_path, shared_key=shared_key) as gw:
        async with device_session(gw.port) as older:
            assert await older.send(b"first") == "OK"
            assert await older.recv(5.0) == b"first"
            async with device_session(gw.port) as newer:
                assert await older.recv(5.0) == "PEER_CLOSED:REPLACED"
                assert await newer.send(b"second") == "OK"
                assert await newer.recv(5.0) == b"second"
        if gw.process is not None:
            assert any(re.search(r"session \w+ replaced by session \w+ \(device " + DEVICE.hex(), line)
                       for line in gw.lines())
        else:
            assert [s.close_reason for s in gw.sessions][:1] == [Condition.REPLACED]


@pytest.mark.parametrize("shared_key", [True, False], ids=["shared_key", "per_device_keys"])
@async_test(30)
async def test_c_gateway_says_when_device_ids_are_not_authenticated(
    c_build: CBuild, tmp_path: Path, shared_key: bool
) -> None:
    """usmp_server --psk-env (one key for every device) prints a warning that device ids are not
    authenticated, and says so per session; with --psk-file it does not."""
    c_build.program("server")
    async with Gateway("c", c_build, tmp_path, shared_key=shared_key) as gw:
        async with device_session(gw.port):
            pass
        await asyncio.sleep(0.2)
        lines = gw.lines()
    warning = [line for line in lines if "warning" in line and "device ids are not authenticated" in line]
    per_session = [line for line in lines if re.search(r"device id \w+ is not authenticated", line)]
    if shared_key:
        assert len(warning) == 1 and len(per_session) == 1, lines
    else:
        assert warning == [] and per_session == [], lines

