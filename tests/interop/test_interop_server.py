"""Python client -> C server: USMPClient (and the ``usmp connect`` command) against ``usmp_server``,
the C gateway (max record 4096, max message 16384 by default), over loopback TCP through a
transparent proxy that checks what crossed the wire.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from interop_harness import (
    DEVICE,
    PSK,
    REPO,
    CBuild,
    CGateway,
    PyDevice,
    async_test,
    gateway,
    pattern,
    rig,
)
from interop_proxy import C2S, S2C, T_DATA, T_FRAGMENT, plaintext_length

C_MAX_RECORD, C_MAX_MESSAGE = 4096, 16384


@async_test(timeout=90)
async def test_every_size_up_to_the_c_server_max_record(c_build: CBuild, tmp_path: Path) -> None:
    """Sizes 0..700 one by one, then every 61st up to 4096 and the boundaries: one DATA record
    each way, echoed intact."""
    sizes = list(range(0, 701)) + list(range(701, 4096, 61)) + [4095, 4096]
    async with rig("c", "py", c_build, tmp_path) as r:
        assert await r.client.connect() == "OK"
        for n in sizes:
            message = pattern(n, n)
            assert await r.client.send(message) == "OK"
            assert await r.client.recv(10) == message, n
        assert [plaintext_length(f) for f in r.conn.received(C2S, T_DATA)] == sizes
        assert [plaintext_length(f) for f in r.conn.received(S2C, T_DATA)] == sizes
        assert r.conn.received(C2S, T_FRAGMENT) == r.conn.received(S2C, T_FRAGMENT) == []


@async_test(timeout=60)
async def test_fragmented_messages_up_to_the_c_server_max_message(c_build: CBuild, tmp_path: Path) -> None:
    """4097..16384 bytes go to the C server as DATA_FRAGMENTs of at most 4096 bytes and are
    reassembled; the echo comes back as one DATA record (the client accepts 65519); 16385 bytes are
    over the server's max_message: TOO_LARGE locally, nothing sent, the session goes on."""
    sizes = [4097, 4098, 5000, 8188, 8191, 8192, 8193, 12288, 16383, 16384]
    async with rig("c", "py", c_build, tmp_path) as r:
        assert await r.client.connect() == "OK"
        assert isinstance(r.client, PyDevice) and r.client.client is not None
        limits = r.client.client.server_limits
        assert limits is not None and (limits.max_record, limits.max_message) == (C_MAX_RECORD, C_MAX_MESSAGE)
        for n in sizes:
            message = pattern(n, n)
            assert await r.client.send(message) == "OK"
            assert await r.client.recv(10) == message, n
        fragments = r.conn.received(C2S, T_FRAGMENT)
        assert max(plaintext_length(f) for f in fragments) == C_MAX_RECORD
        # Each message is ceil(n / (4096 - 4)) fragments (4-byte fragment header).
        assert len(fragments) == sum(-(-n // (C_MAX_RECORD - 4)) for n in sizes)
        assert r.conn.received(C2S, T_DATA) == []
        assert [plaintext_length(f) for f in r.conn.received(S2C, T_DATA)] == sizes
        before = len(r.conn.frames[C2S])
        assert await r.client.send(pattern(C_MAX_MESSAGE + 1, 0)) == "TOO_LARGE"
        await asyncio.sleep(0.1)
        assert len(r.conn.frames[C2S]) == before
        assert await r.client.send(b"after") == "OK"
        assert await r.client.recv(10) == b"after"


@pytest.mark.parametrize("client_max_record", [16, 100, 1000])
@async_test(timeout=60)
async def test_c_server_fragments_its_echo_to_a_client_with_small_records(
    c_build: CBuild, tmp_path: Path, client_max_record: int
) -> None:
    """The client announces a small max_record (max_message 16384): the C server sends every echo
    longer than that as DATA_FRAGMENTs no larger than it; the client reassembles them."""
    sizes = [0, client_max_record, client_max_record + 1, 1001, 4096, 4097, 16384]
    async with rig(
        "c", "py", c_build, tmp_path, client_options={"max_record": client_max_record, "max_message": 16384}
    ) as r:
        assert await r.client.connect() == "OK"
        for n in sizes:
            message = pattern(n, 3)
            assert await r.client.send(message) == "OK"
            assert await r.client.recv(20) == message, n
        fragments = r.conn.received(S2C, T_FRAGMENT)
        assert fragments and max(plaintext_length(f) for f in fragments) == client_max_record
        assert all(plaintext_length(f) <= client_max_record for f in r.conn.received(S2C, T_DATA))


@async_test(timeout=60)
async def test_concurrent_large_messages_both_ways(c_build: CBuild, tmp_path: Path) -> None:
    """The client sends 60 messages (up to 16384 bytes, fragmented) while it receives the echoes of
    the earlier ones: no deadlock, every echo intact and in order."""
    sizes = [16384, 1, 4096, 4097, 0, 9000] * 10
    async with rig("c", "py", c_build, tmp_path) as r:
        assert await r.client.connect() == "OK"

        async def sender() -> None:
            for i, n in enumerate(sizes):
                assert await r.client.send(pattern(n, i)) == "OK"

        async def receiver() -> list[bytes]:
            return [await r.client.recv(20) for _ in sizes]  # type: ignore[misc]

        _, got = await asyncio.gather(sender(), receiver())
        assert got == [pattern(n, i) for i, n in enumerate(sizes)]


@async_test(timeout=60)
async def test_usmp_connect_command_against_the_c_gateway(c_build: CBuild, tmp_path: Path) -> None:
    """``python -m usmp connect`` (the Python CLI) sends each stdin line to usmp_server and prints the
    echoes; exit status 0; the gateway sees the BYE."""
    lines = [f"line {i} " + "y" * i for i in range(30)]
    async with gateway("c", c_build, tmp_path) as gw:
        assert isinstance(gw, CGateway)
        env = dict(os.environ, INTEROP_PSK=PSK.hex(), PYTHONPATH=str(REPO / "python" / "src"))
        proc = await asyncio.create_subprocess_exec(
            "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable,
            "-m",
            "usmp",
            "connect",
            f"127.0.0.1:{gw.port}",
            "--device-id",
            DEVICE.hex(),
            "--psk-env",
            "INTEROP_PSK",
            "--linger",
            "1.0",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(proc.communicate("\n".join(lines).encode() + b"\n"), 30)
        assert proc.returncode == 0, err.decode()
        assert out.decode().splitlines() == lines
        assert b"connected to 127.0.0.1" in err
        await gw.process.wait_line(r"session \w+ closed: BYE from the device \(code 0\)")
