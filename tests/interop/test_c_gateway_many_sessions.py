"""The C gateway with many sessions at once, and the framing that lets its
engines share one receive buffer (tools/c/usmp_gateway_internal.h).

2,000 devices hold a session at the same time (one key for every device:
the PSK file holds at most 256; each device its own id, since a newer
session of an id replaces the older one, spec section 13); each
echoes a message while all are open, a device that comes last is served as
the first was, and all close cleanly, in bounded time. Partial frames of one
session interleaved with whole frames of another, a record trickled byte by
byte, and records back to back in one write are each echoed intact: the
gateway gives an engine a header alone and the rest later, and puts that
header back into the shared receive buffer first (spec 5.1).
"""

from __future__ import annotations

import asyncio
import resource
import struct
from pathlib import Path

import pytest

from usmp.engine import ClientEngine, HandshakeComplete, MessageReceived
from usmp.wire import Mode

from interop_harness import PSK, CBuild, CProcess, async_test, gateway, pattern, sanitizer_env

MANY = 2000
T_DATA = 0x05


def _device(i: int) -> bytes:
    return b"\x03\x00" + struct.pack(">I", i)


def _psk(i: int) -> bytes:
    return bytes((b + i) & 0xFF for b in PSK)


class RawSession:
    """A device on a bare socket, driven by the Python client engine."""

    def __init__(self, index: int, psk: bytes | None = None) -> None:
        self.engine = ClientEngine(mode=Mode.STREAM, device_id=_device(index), psk=psk or _psk(index))
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def connect(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.engine.start(0.0)
        self.writer.write(b"".join(self.engine.frames_to_send()))
        while not self.engine.established:
            data = await asyncio.wait_for(self.reader.read(65536), 30)
            assert data, "the gateway closed during the handshake"
            events = self.engine.receive_data(data, 0.0)
            assert all(isinstance(e, HandshakeComplete) for e in events)
            self.writer.write(b"".join(self.engine.frames_to_send()))

    def record(self, message: bytes) -> bytes:
        """The DATA record of message, not sent."""
        self.engine.send_message(message, 0.0)
        return b"".join(self.engine.frames_to_send())

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def echoes(self, count: int) -> list[bytes]:
        got: list[bytes] = []
        data = b""
        while len(got) < count:
            for event in self.engine.receive_data(data, 0.0):
                if isinstance(event, MessageReceived):
                    got.append(event.data)
            if len(got) == count:
                break
            if self.engine.has_buffered_input:
                data = b""
                continue
            data = await asyncio.wait_for(self.reader.read(65536), 30)
            assert data, "the gateway closed the session"
        return got

    async def close(self) -> None:
        self.engine.close()
        self.writer.write(b"".join(self.engine.frames_to_send()))
        await self.writer.drain()
        assert await asyncio.wait_for(self.reader.read(65536), 30) == b""  # the gateway closes after the BYE
        self.writer.close()


def _raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@async_test(timeout=240)
async def test_two_thousand_sessions_at_once_each_echo_then_close(c_build: CBuild) -> None:
    # The gateway (a child: it inherits the limit) and this process each hold MANY sockets.
    _raise_file_limit(2 * MANY + 256)
    env = sanitizer_env()
    env["USMP_TEST_PSK"] = PSK.hex()
    gw = CProcess(
        [str(c_build.program("server")), "--psk-env", "USMP_TEST_PSK", "--port", "0", "--max-sessions",
         str(MANY + 1), "--handshake-rate", "1000000", "--handshake-burst", "1000000"],
        "usmp_server",
        env,
    )
    await gw.start()
    port = int((await gw.wait_line(r"listening on 127\.0\.0\.1:(\d+)", 10.0)).group(1))
    sessions = [RawSession(i, PSK) for i in range(MANY)]
    # At most 64 handshakes at a time, as devices that do not all connect in the same instant
    # (the gateway's pending queue, spec section 13, is not what this test is about).
    gate = asyncio.Semaphore(64)

    async def open_one(s: RawSession) -> None:
        async with gate:
            await s.connect(port)

    await asyncio.gather(*(open_one(s) for s in sessions))
    assert all(s.engine.established for s in sessions)

    # Every session, all open at once, echoes its own message.
    async def echo_one(i: int, s: RawSession) -> None:
        message = pattern(64, i)
        await s.write(s.record(message))
        assert await s.echoes(1) == [message]

    await asyncio.gather(*(echo_one(i, s) for i, s in enumerate(sessions)))

    # One more device, with 2,000 sessions open: served like the first.
    last = RawSession(MANY, PSK)
    await last.connect(port)
    await last.write(last.record(b"the last one"))
    assert await last.echoes(1) == [b"the last one"]
    await last.close()

    await asyncio.gather(*(s.close() for s in sessions))
    for i in (0, MANY // 2, MANY - 1):
        sid = sessions[i].engine.session_id
        assert sid is not None
        await gw.wait_line(rf"session {sid.hex()} closed: BYE from the device", 30.0)
    await gw.finish()


@async_test(timeout=60)
async def test_partial_frames_interleaved_across_sessions_are_echoed_intact(
    c_build: CBuild, tmp_path: Path
) -> None:
    psks = {_device(i): _psk(i) for i in range(2)}
    async with gateway("c", c_build, tmp_path, psks=psks, max_sessions=4) as gw:
        a, b = RawSession(0), RawSession(1)
        await a.connect(gw.port)
        await b.connect(gw.port)

        # A's record in three parts: its header alone (the gateway gives the engine the header
        # first, spec 5.1), part of the body, the rest. B's whole records use the shared receive
        # buffer in between.
        long_message = pattern(3000, 7)
        record = a.record(long_message)
        assert record[0] == T_DATA
        await a.write(record[:3])
        await asyncio.sleep(0.05)
        for k in range(3):
            await b.write(b.record(pattern(200 + k, k)))
            assert await b.echoes(1) == [pattern(200 + k, k)]
        await a.write(record[3:1000])
        await asyncio.sleep(0.05)
        await b.write(b.record(b"between the parts"))
        assert await b.echoes(1) == [b"between the parts"]
        await a.write(record[1000:])
        assert await a.echoes(1) == [long_message]

        # A record byte by byte, B's record after every few bytes.
        small = pattern(100, 9)
        record = a.record(small)
        for i in range(len(record)):
            await a.write(record[i : i + 1])
            if i % 17 == 0:
                await b.write(b.record(struct.pack(">I", i)))
                assert await b.echoes(1) == [struct.pack(">I", i)]
        assert await a.echoes(1) == [small]

        # Three records in one write, the last one cut: the two whole ones are echoed in order,
        # the third once its end comes.
        messages = [pattern(50 + k, 20 + k) for k in range(3)]
        records = b"".join(a.record(m) for m in messages)
        await a.write(records[:-10])
        assert await a.echoes(2) == messages[:2]
        await a.write(records[-10:])
        assert await a.echoes(1) == messages[2:]

        await a.close()
        await b.close()
