"""Gateway hardening in the Python gateway alone: the per-prefix rate limit, pending connections,
which sessions can trust their device id, and what the CLI says in shared-key mode (spec section
13, spec/security.md). The cross-gateway tests are in tests/interop/test_gateway_hardening.py."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from usmp import ConfigurationError, ServerConfig, Session, USMPClient, USMPServer
from usmp.ratelimit import HandshakeRateLimiter, source_prefix

PSK = bytes(range(100, 132))
DEVICE = bytes.fromhex("deadbeef0001")
LOCALHOST = "127.0.0.1"
SRC = str(Path(__file__).resolve().parents[1] / "src")


def run(test: Callable[[], Awaitable[None]], timeout: float = 20.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await test()

    asyncio.run(bounded())


# --- rate limit per prefix ------------------------------------------------------------------------


def test_rate_limiter_folds_an_ipv6_64_into_one_bucket_and_keeps_ipv4_32_separate() -> None:
    limiter = HandshakeRateLimiter(rate=1.0, burst=3)
    # Three addresses of one /64 use up one bucket; a fourth address of that /64 is refused.
    for address in ("2001:db8:0:5::1", "2001:db8:0:5::2", "2001:db8:0:5:ffff:ffff:ffff:ffff"):
        assert limiter.allow(address, 0.0)
    assert not limiter.allow("2001:db8:0:5::77", 0.0)
    assert limiter.allow("2001:db8:0:6::1", 0.0)  # the next /64 has its own
    # IPv4 counts per /32: a neighbour is not affected; an IPv4-mapped address is the same host.
    for _ in range(3):
        assert limiter.allow("192.0.2.1", 0.0)
    assert not limiter.allow("192.0.2.1", 0.0)
    assert not limiter.allow("::ffff:192.0.2.1", 0.0)
    assert limiter.allow("192.0.2.2", 0.0)
    assert limiter.allow("192.0.2.1", 1.0)  # refilled at one per second


def test_rate_limiter_prefix_lengths_are_configurable() -> None:
    assert source_prefix("198.51.100.7", v4_prefix=24) == "198.51.100.0/24"
    assert source_prefix("2001:db8::1", v6_prefix=128) == "2001:db8::1/128"
    assert source_prefix("fe80::1%eth0") == "fe80::/64"
    limiter = HandshakeRateLimiter(rate=1.0, burst=1, v4_prefix=24, v6_prefix=128)
    assert limiter.allow("198.51.100.1", 0.0)
    assert not limiter.allow("198.51.100.200", 0.0)
    assert limiter.allow("2001:db8::1", 0.0)
    assert limiter.allow("2001:db8::2", 0.0)


@pytest.mark.parametrize(
    "field, value",
    [("hello_timeout", 0.0), ("max_pending", 0), ("write_timeout", 0.0), ("rate_prefix_v4", 33), ("rate_prefix_v6", 0)],
)
def test_server_config_refuses_bad_hardening_limits(field: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=field):
        ServerConfig(**{field: value})


# --- pending connections ----------------------------------------------------------------------------


def test_pending_connections_do_not_count_as_handshakes() -> None:
    """Connections that have sent no HELLO are pending, not handshakes: max_handshakes 1 still lets a
    device in while five idle connections are open."""

    async def main() -> None:
        config = ServerConfig(max_handshakes=1, hello_timeout=10.0)
        async with USMPServer(LOCALHOST, 0, PSK, config=config) as server:
            idle = [await asyncio.open_connection(LOCALHOST, server.port) for _ in range(5)]
            for _ in range(100):
                if server.pending_connections == 5:
                    break
                await asyncio.sleep(0.01)
            assert server.pending_connections == 5 and server.handshakes_in_progress == 0
            async with USMPClient(LOCALHOST, server.port, device_id=DEVICE, psk=PSK) as device:
                assert device.session_id is not None
            for _, writer in idle:
                writer.close()

    run(main)


# --- device_authenticated -------------------------------------------------------------------------


async def _lookup(device_id: bytes) -> bytes | None:
    return PSK if device_id == DEVICE else None


@pytest.mark.parametrize(
    "psk, authenticated",
    [(PSK, False), ({DEVICE: PSK}, True), (_lookup, True)],
    ids=["shared_key", "mapping", "callable"],
)
def test_session_device_authenticated_only_with_per_device_keys(psk: Any, authenticated: bool) -> None:
    async def main() -> None:
        seen: list[bool] = []

        async def on_open(session: Session) -> None:
            seen.append(session.device_authenticated)

        async with USMPServer(LOCALHOST, 0, psk, on_open=on_open) as server:
            assert server.device_ids_authenticated is authenticated
            async with USMPClient(LOCALHOST, server.port, device_id=DEVICE, psk=PSK):
                for _ in range(100):
                    if seen:
                        break
                    await asyncio.sleep(0.01)
        assert seen == [authenticated]

    run(main)


# --- the CLI ---------------------------------------------------------------------------------------


def _first_lines(args: list[str], env: dict[str, str], count: int) -> list[str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "usmp", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=SRC, **env),
    )
    try:
        assert server.stdout is not None
        lines = []
        while len(lines) < count:
            line = server.stdout.readline()
            assert line, f"usmp serve ended early: {server.stderr.read() if server.stderr else ''}"
            lines.append(line.rstrip("\n"))
            if line.startswith("listening on"):
                break
        return lines
    finally:
        server.terminate()
        server.wait(10)


def test_cli_serve_with_one_key_for_every_device_warns_that_ids_are_not_authenticated(tmp_path: Path) -> None:
    shared = _first_lines(
        ["serve", "--host", LOCALHOST, "--port", "0", "--psk-env", "KEY"], {"KEY": PSK.hex()}, 2
    )
    assert any(re.match(r"warning: .*device ids are not authenticated", line) for line in shared), shared
    psk_file = tmp_path / "keys"
    psk_file.write_text(f"{DEVICE.hex()} {PSK.hex()}\n")
    per_device = _first_lines(["serve", "--host", LOCALHOST, "--port", "0", "--psk-file", str(psk_file)], {}, 2)
    assert not any("not authenticated" in line for line in per_device), per_device
    assert per_device[0].startswith("listening on")
