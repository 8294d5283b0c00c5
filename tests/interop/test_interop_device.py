"""C device -> Python gateway: the C device API (usmp.h) against USMPServer over loopback TCP.

Programs: ``usmp_device`` (examples/posix_device, the demo) and
``usmp_interop_device`` (tests/interop/interop_device.c: the same API,
scriptable line by line), plus ``usmp_interop_device_small``, the same device
built with USMP_MAX_RECORD 128 and USMP_MAX_MESSAGE 4096 (reassembly).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from pathlib import Path

from usmp import Condition, LocalProtocolError, Session

from interop_harness import (
    DEVICE,
    PSK,
    CBuild,
    CDevice,
    CProcess,
    async_test,
    client,
    gateway,
    pattern,
)
from interop_proxy import C2S, S2C, T_DATA, T_FRAGMENT, Proxy, plaintext_length, wait_for


@async_test(timeout=60)
async def test_demo_device_program_exchanges_many_messages_with_python_gateway(c_build: CBuild, tmp_path: Path) -> None:
    """The shipped demo (usmp_device) sends each argument and checks each echo; exit status 0."""
    messages = [f"message {i}: " + "x" * (i * 7 % 300) for i in range(40)] + ["", "last"]
    async with gateway("py", c_build, tmp_path, psks={DEVICE: PSK}) as gw:
        env = dict(os.environ, INTEROP_PSK=PSK.hex())
        device = CProcess(
            [
                str(c_build.program("device")),
                "--psk-env",
                "INTEROP_PSK",
                "--device-id",
                DEVICE.hex(),
                "--port",
                str(gw.port),
                "--timeout-ms",
                "5000",
                *messages,
            ],
            "usmp_device",
            env=env,
        )
        await device.start()
        rc = await device._wait_exit(30.0)
        device.finished = True
        device.check_sanitizers()
        assert rc == 0, "\n".join(device.lines) + device.stderr
        assert any(re.search(r"device: session [0-9a-f]{16} established", line) for line in device.lines)
        echoed = [line for line in device.lines if line.startswith("device: sent ")]
        assert len(echoed) == len(messages)
        for line, message in zip(echoed, messages):
            n = len(message)
            # 19 bytes of overhead per DATA record (spec section 15).
            assert f"sent {n} bytes as {n + 19} on the wire, echo of {n} bytes took {n + 19}" in line
        assert [data for _, data in gw.delivered] == [m.encode() for m in messages]
        session = gw.opened[0]
        await session.wait_closed()
        assert gw.ends[session.peer[1]] == "PEER_CLOSED:NONE"  # the demo ends with BYE(NONE)


@async_test(timeout=90)
async def test_every_size_from_0_to_the_device_max_record_both_ways(c_build: CBuild, tmp_path: Path) -> None:
    """Every message size 0..512 (the device's USMP_MAX_RECORD): device -> gateway -> device, checked
    byte for byte on both sides."""
    async with gateway("py", c_build, tmp_path) as gw:
        async with client("c", c_build, gw.port) as dev:
            assert isinstance(dev, CDevice)
            assert (dev.max_record, dev.max_message) == (512, 512)
            assert await dev.connect() == "OK"
            line = await dev.command("echo 0 512 1 7 10000", timeout=120)
            assert line == "ok echo 513", line
            expected = [pattern(n, 7 + n) for n in range(513)]
            assert [data for _, data in gw.delivered] == expected
            stats = await dev.stats()
            assert stats["messages_sent"] == 513 and stats["messages_received"] == 513


@async_test(timeout=30)
async def test_message_fitting_peer_record_but_not_device_buffer_is_refused_locally(
    c_build: CBuild, tmp_path: Path
) -> None:
    """The gateway accepts records of 65519 bytes; the device's tx buffer holds one record of
    USMP_MAX_RECORD (512) plaintext bytes or a little more (USMP_RECORD_BUFFER_BYTES(512) = 537 is
    sized for the datagram overhead of 25, so in stream mode it holds 518). A longer message fits
    the gateway's record, so it must not be fragmented (spec 6.4): the device refuses it with
    MESSAGE_TOO_LARGE, puts nothing on the wire, and the session goes on."""
    async with gateway("py", c_build, tmp_path) as gw:
        async with Proxy(gw.port) as proxy:
            async with client("c", c_build, proxy.port) as dev:
                assert isinstance(dev, CDevice)
                assert await dev.connect() == "OK"
                limit = dev.max_single_record
                assert 512 <= limit <= 537 - 19, limit
                conn = proxy.connections[0]
                before = len(conn.frames[C2S])
                for n in (limit + 1, 1024, 4000, 65519):
                    assert await dev.send_pattern(n, 1) == "MESSAGE_TOO_LARGE", n
                await asyncio.sleep(0.2)
                assert len(conn.frames[C2S]) == before, "a refused message put bytes on the wire"
                # The largest message it can send goes as one DATA record and arrives intact.
                assert await dev.send_pattern(limit, 2) == "OK"
                await wait_for(lambda: gw.delivered, 10, "the message at the gateway")
                assert [d for _, d in gw.delivered] == [pattern(limit, 2)]
                assert [plaintext_length(f) for f in conn.received(C2S, T_DATA)] == [limit]
                assert await dev.send_pattern(512, 3) == "OK"
                assert await dev.recv(10) == pattern(512, 3)


@async_test(timeout=60)
async def test_device_fragments_messages_larger_than_the_gateway_record(c_build: CBuild, tmp_path: Path) -> None:
    """Gateway max_record 256, max_message 2048: the device sends 257..2048-byte messages as
    DATA_FRAGMENTs of at most 256 bytes; 2049 is over the gateway's max_message (TOO_LARGE locally)."""

    async def on_data(session: Session, data: bytes) -> None:
        await session.send(hashlib.sha256(data).digest())

    async with gateway("py", c_build, tmp_path, max_record=256, max_message=2048, on_data=on_data) as gw:
        async with Proxy(gw.port) as proxy:
            async with client("c", c_build, proxy.port) as dev:
                assert isinstance(dev, CDevice)
                assert await dev.connect() == "OK"
                sizes = [0, 1, 255, 256, 257, 258, 300, 511, 512, 513, 1000, 1023, 1024, 1025, 2047, 2048]
                for n in sizes:
                    assert await dev.send_pattern(n, n) == "OK", n
                    assert await dev.recv(10) == hashlib.sha256(pattern(n, n)).digest(), n
                assert await dev.send_pattern(2049, 0) == "MESSAGE_TOO_LARGE"
                assert [d for _, d in gw.delivered] == [pattern(n, n) for n in sizes]
                conn = proxy.connections[0]
                fragments = conn.received(C2S, T_FRAGMENT)
                assert fragments and max(plaintext_length(f) for f in fragments) <= 256
                assert all(plaintext_length(f) <= 256 for f in conn.received(C2S, T_DATA))


@async_test(timeout=30)
async def test_gateway_cannot_send_the_device_more_than_its_max_message(c_build: CBuild, tmp_path: Path) -> None:
    """The device announces max_record = max_message = 512: USMPServer refuses 513 bytes with
    TOO_LARGE and sends nothing; 512 bytes arrive in one DATA record."""
    results: list[object] = []

    async def on_open(session: Session) -> None:
        assert session.peer_limits is not None
        results.append((session.peer_limits.max_record, session.peer_limits.max_message))
        try:
            await session.send(pattern(513, 3))
        except LocalProtocolError as error:
            results.append(error.condition)
        await session.send(pattern(512, 4))

    async with gateway("py", c_build, tmp_path, on_open=on_open) as gw:
        async with Proxy(gw.port) as proxy:
            async with client("c", c_build, proxy.port) as dev:
                assert await dev.connect() == "OK"
                assert await dev.recv(10) == pattern(512, 4)
                assert results == [(512, 512), Condition.TOO_LARGE]
                records = proxy.connections[0].received(S2C, T_DATA)
                assert [plaintext_length(r) for r in records] == [512]


@async_test(timeout=60)
async def test_small_device_reassembles_fragments_from_the_gateway(c_build: CBuild, tmp_path: Path) -> None:
    """A device built with USMP_MAX_RECORD 128 / USMP_MAX_MESSAGE 4096 receives 129..4096-byte messages
    as fragments of at most 128 bytes and reassembles them; 4097 is refused by the gateway."""
    sizes = [0, 1, 127, 128, 129, 130, 200, 255, 256, 257, 1000, 2048, 4095, 4096]
    refused: list[Condition] = []

    async def on_open(session: Session) -> None:
        for n in sizes:
            await session.send(pattern(n, 100 + n))
        try:
            await session.send(pattern(4097, 0))
        except LocalProtocolError as error:
            refused.append(error.condition)

    async with gateway("py", c_build, tmp_path, on_open=on_open) as gw:
        async with Proxy(gw.port) as proxy:
            async with client("c", c_build, proxy.port, small=True) as dev:
                assert isinstance(dev, CDevice)
                assert (dev.max_record, dev.max_message) == (128, 4096)
                assert await dev.connect() == "OK"
                for n in sizes:
                    assert await dev.recv(10) == pattern(n, 100 + n), n
                assert refused == [Condition.TOO_LARGE]
                conn = proxy.connections[0]
                assert max(plaintext_length(f) for f in conn.received(S2C, T_FRAGMENT)) <= 128
                assert all(plaintext_length(f) <= 128 for f in conn.received(S2C, T_DATA))


@async_test(timeout=60)
async def test_small_device_fragments_to_a_gateway_with_small_records(c_build: CBuild, tmp_path: Path) -> None:
    """The small device sends up to 4096 bytes to a gateway whose max_record is 100 (fragments);
    with the gateway's default 65519 a message over the device's one-record buffer
    (USMP_RECORD_BUFFER_BYTES(128) - 19 = 134 bytes in stream mode) fits the gateway's record, so it
    cannot be fragmented: MESSAGE_TOO_LARGE by design (spec 6.4)."""
    async with gateway("py", c_build, tmp_path, max_record=100, max_message=4096) as gw:
        async with client("c", c_build, gw.port, small=True) as dev:
            assert isinstance(dev, CDevice)
            assert await dev.connect() == "OK"
            for n in (0, 99, 100, 101, 128, 129, 1000, 4096):
                assert await dev.send_pattern(n, 9) == "OK", n
                assert await dev.recv(10) == pattern(n, 9), n
            assert [d for _, d in gw.delivered] == [pattern(n, 9) for n in (0, 99, 100, 101, 128, 129, 1000, 4096)]
    async with gateway("py", c_build, tmp_path) as gw:
        async with client("c", c_build, gw.port, small=True) as dev:
            assert isinstance(dev, CDevice)
            assert await dev.connect() == "OK"
            limit = dev.max_single_record
            assert 128 <= limit <= 153 - 19, limit
            assert await dev.send_pattern(limit, 1) == "OK"
            assert await dev.recv(10) == pattern(limit, 1)
            assert await dev.send_pattern(limit + 1, 1) == "MESSAGE_TOO_LARGE"
            assert await dev.send_pattern(4096, 1) == "MESSAGE_TOO_LARGE"
            assert await dev.send_pattern(5, 1) == "OK"
            assert await dev.recv(10) == pattern(5, 1)
