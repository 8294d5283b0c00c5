"""Keepalive, dead-peer detection, reconnect with backoff, and gateway restarts.

The C device runs ``tick`` (usmp_keepalive_tick every 10-20 ms) and reports, with CLOCK_MONOTONIC
timestamps (the clock of ``time.monotonic()``), each connection attempt (``event connect``), each
close with the engine's state and error (``event closed``), and each change of the tick's result
(``event tick``). "The gateway stops answering" is a proxy that stops forwarding without closing
anything (``freeze``), or SIGSTOP of the C gateway; "the gateway is down" is a proxy that closes
every new connection (``refuse``).

Spec section 11: PING after ``keepalive_ms`` without an authenticated record, PEER_TIMEOUT when
nothing authenticated arrives within ``pong_timeout_ms`` after it; reconnect attempt *k* waits
``d/2 + random(0 .. d/2)`` with ``d = min(30000, 500 * 2^k)``, *k* reset once established.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import pytest

from interop_harness import (
    GATEWAYS,
    CBuild,
    CDevice,
    CGateway,
    async_test,
    client,
    gateway,
    pattern,
)
from interop_proxy import C2S, S2C, T_PING, T_PONG, Proxy, wait_for

KEEPALIVE = 0.3
PONG_TIMEOUT = 0.3
# How late a detection may come on a loaded 2-core machine, beyond keepalive + pong timeout.
SLACK = 0.6


def events(dev: CDevice, kind: str) -> list[tuple[float, str]]:
    """(time in s, rest of line) of every ``event <kind>`` line the device printed so far."""
    out = []
    for line in dev.process.lines:
        m = re.match(rf"event {kind} (\d+) ?(.*)$", line)
        if m:
            out.append((int(m.group(1)) / 1000.0, m.group(2)))
    return out


def connects_after(dev: CDevice, t: float) -> list[float]:
    return [ts for ts, _ in events(dev, "connect") if ts >= t]


def closes_after(dev: CDevice, t: float) -> list[tuple[float, str]]:
    return [(ts, rest) for ts, rest in events(dev, "closed") if ts >= t]


def check_backoff(gap: float, attempt: int) -> None:
    """Attempt ``attempt`` came ``gap`` s after the previous failure: d/2 <= gap <= d (+ slack)."""
    d = min(30.0, 0.5 * 2**attempt)
    assert d / 2 - 0.005 <= gap <= d + SLACK, f"reconnect attempt {attempt} after {gap:.3f} s, expected {d / 2}..{d}"


@pytest.mark.parametrize("gw_kind", GATEWAYS, ids=lambda k: f"gw_{k}")
@async_test(timeout=60)
async def test_frozen_gateway_is_detected_and_device_reconnects_with_backoff(
    c_build: CBuild, tmp_path: Path, gw_kind: str
) -> None:
    """The proxy stops forwarding: the device reports PEER_TIMEOUT within keepalive + pong timeout
    (0.3 + 0.3 s) and closes; while the gateway is down its reconnect attempts come after
    0.25..0.5 s, then 0.5..1 s, then 1..2 s; once it is back the device reconnects and the new
    session works."""
    async with gateway(gw_kind, c_build, tmp_path) as gw:
        async with Proxy(gw.port) as proxy:
            async with client(
                "c",
                c_build,
                proxy.port,
                keepalive=KEEPALIVE,
                pong_timeout=PONG_TIMEOUT,
                handshake_timeout=2.0,
                reconnect=True,
            ) as dev:
                assert isinstance(dev, CDevice)
                assert await dev.connect() == "OK"
                # The session lives through a few keepalive periods: PINGs answered by PONGs.
                assert (await dev.command("tick 1000 none 10")).startswith("ok tick")
                first = proxy.connections[0]
                assert len(first.received(C2S, T_PING)) >= 2
                assert len(first.received(S2C, T_PONG)) >= len(first.received(C2S, T_PING)) - 1

                frozen_at = time.monotonic()
                proxy.freeze()
                line = await dev.command("tick 10000 lost 10", timeout=20)
                assert line.startswith("ok tick"), line
                lost = closes_after(dev, frozen_at)
                assert lost, dev.process.lines[-10:]
                lost_at, how = lost[0]
                assert "state=FAILED err=PEER_TIMEOUT" in how, how
                detection = lost_at - frozen_at
                assert PONG_TIMEOUT - 0.05 <= detection <= KEEPALIVE + PONG_TIMEOUT + SLACK, detection

                # The gateway is down: every attempt is refused.
                proxy.mode = "refuse"
                ticking = asyncio.create_task(dev.command("tick 20000 up 10", timeout=40))
                await wait_for(lambda: len(closes_after(dev, lost_at + 0.001)) >= 2, 10, "two refused attempts")
                proxy.mode = "forward"
                line = await ticking
                assert line.startswith("ok tick"), line

                attempts = connects_after(dev, lost_at)
                failures = [lost_at] + [ts for ts, _ in closes_after(dev, lost_at + 0.001)]
                assert len(attempts) == 3, (attempts, dev.process.lines[-20:])
                for k in range(3):
                    check_backoff(attempts[k] - failures[k], k)
                # Refused: the stream ends (TRANSPORT_CLOSED), or is reset when the HELLO reaches a
                # socket the proxy already closed (TRANSPORT).
                for _, rest in closes_after(dev, lost_at + 0.001)[:2]:
                    assert re.search(r"err=TRANSPORT(_CLOSED)? ", rest), rest
                stats = await dev.stats()
                assert stats["reconnects"] == 1
                assert await dev.send_pattern(200, 3) == "OK"
                assert await dev.recv(10) == pattern(200, 3)
                assert (await dev.state())[0] == "ESTABLISHED"

                # Once a session is established the attempt count starts again at 0 (spec 11): the
                # first attempt after the next loss comes after 0.25..0.5 s again, not 2..4 s.
                frozen_again_at = time.monotonic()
                proxy.freeze()
                assert (await dev.command("tick 10000 lost 10", timeout=20)).startswith("ok tick")
                proxy.mode = "refuse"
                second_loss, how = closes_after(dev, frozen_again_at)[0]
                assert "err=PEER_TIMEOUT" in how, how
                assert (await dev.command("tick 1200 none 10", timeout=20)).startswith("ok tick")
                check_backoff(connects_after(dev, second_loss)[0] - second_loss, 0)


@async_test(timeout=60)
async def test_stopped_c_gateway_is_detected_and_device_reconnects_after_sigcont(
    c_build: CBuild, tmp_path: Path
) -> None:
    """SIGSTOP the C gateway: the device detects PEER_TIMEOUT within keepalive + pong timeout; its
    reconnect attempts reach the kernel's accept queue but get no CHALLENGE (handshake TIMEOUT);
    after SIGCONT the device reconnects, and the gateway cleans up every stale connection."""
    async with gateway("c", c_build, tmp_path) as gw:
        assert isinstance(gw, CGateway)
        async with client(
            "c", c_build, gw.port, keepalive=KEEPALIVE, pong_timeout=PONG_TIMEOUT, handshake_timeout=0.8, reconnect=True
        ) as dev:
            assert isinstance(dev, CDevice)
            assert await dev.connect() == "OK"
            assert (await dev.command("tick 700 none 10")).startswith("ok tick")
            stopped_at = time.monotonic()
            gw.process.send_signal(signal.SIGSTOP)
            try:
                line = await dev.command("tick 10000 lost 10", timeout=20)
                assert line.startswith("ok tick"), line
                lost_at, how = closes_after(dev, stopped_at)[0]
                assert "state=FAILED err=PEER_TIMEOUT" in how, how
                assert PONG_TIMEOUT - 0.05 <= lost_at - stopped_at <= KEEPALIVE + PONG_TIMEOUT + SLACK
                ticking = asyncio.create_task(dev.command("tick 20000 up 10", timeout=40))
                await wait_for(
                    lambda: any("err=TIMEOUT" in rest for _, rest in closes_after(dev, lost_at + 0.001)),
                    10,
                    "a reconnect attempt to time out",
                )
            finally:
                gw.process.send_signal(signal.SIGCONT)
            assert (await ticking).startswith("ok tick")
            assert await dev.send_pattern(100, 1) == "OK"
            assert await dev.recv(10) == pattern(100, 1)
            opened = [line for line in gw.process.lines if " open: device " in line]
            assert len(opened) == 2
            # The session of the stopped period ended without a BYE (the device just closed).
            first_sid = opened[0].split()[2]
            closed = await gw.process.wait_line(rf"session {first_sid} closed: (\S+)")
            assert closed.group(1) == "TRANSPORT_CLOSED"
            await gw.process.wait_line(r"connection from 127\.0\.0\.1:\d+ failed: TRANSPORT_CLOSED")


@pytest.mark.parametrize("gw_kind", GATEWAYS, ids=lambda k: f"gw_{k}")
@async_test(timeout=30)
async def test_python_client_detects_a_frozen_gateway(c_build: CBuild, tmp_path: Path, gw_kind: str) -> None:
    """USMPClient with keepalive 0.3 s, pong timeout 0.3 s: recv() raises PeerTimeout within
    keepalive + pong timeout of the proxy freezing."""
    async with gateway(gw_kind, c_build, tmp_path) as gw:
        async with Proxy(gw.port) as proxy:
            async with client("py", c_build, proxy.port, keepalive=KEEPALIVE, pong_timeout=PONG_TIMEOUT) as c:
                assert await c.connect() == "OK"
                await asyncio.sleep(0.8)
                assert len(proxy.connections[0].received(S2C, T_PONG)) >= 1
                frozen_at = time.monotonic()
                proxy.freeze()
                assert await c.recv(10) == "PEER_TIMEOUT"
                assert time.monotonic() - frozen_at <= KEEPALIVE + PONG_TIMEOUT + SLACK


@async_test(timeout=30)
async def test_python_client_detects_a_stopped_c_gateway(c_build: CBuild, tmp_path: Path) -> None:
    async with gateway("c", c_build, tmp_path) as gw:
        assert isinstance(gw, CGateway)
        async with client("py", c_build, gw.port, keepalive=KEEPALIVE, pong_timeout=PONG_TIMEOUT) as c:
            assert await c.connect() == "OK"
            stopped_at = time.monotonic()
            gw.process.send_signal(signal.SIGSTOP)
            try:
                assert await c.recv(10) == "PEER_TIMEOUT"
                assert time.monotonic() - stopped_at <= KEEPALIVE + PONG_TIMEOUT + SLACK
            finally:
                gw.process.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("gw_kind", GATEWAYS, ids=lambda k: f"gw_{k}")
@async_test(timeout=60)
async def test_gateway_restart_device_reconnects(c_build: CBuild, tmp_path: Path, gw_kind: str) -> None:
    """The gateway stops (BYE(SHUTDOWN) to the device), stays down for a while (attempts refused),
    and a new gateway process/instance comes up behind the same address: the device reconnects to it."""
    async with Proxy(None) as proxy:
        first = gateway(gw_kind, c_build, tmp_path / "first")
        gw1 = await first.__aenter__()
        proxy.upstream_port = gw1.port
        async with client("c", c_build, proxy.port, keepalive=KEEPALIVE, handshake_timeout=2.0, reconnect=True) as dev:
            assert isinstance(dev, CDevice)
            assert await dev.connect() == "OK"
            assert await dev.send_pattern(10, 1) == "OK"
            assert await dev.recv(10) == pattern(10, 1)
            proxy.mode = "refuse"
            await first.__aexit__(None, None, None)  # stop: BYE(SHUTDOWN), checked exit status
            assert await dev.recv(10) == "PEER_CLOSED:SHUTDOWN"
            down_at = time.monotonic()
            ticking = asyncio.create_task(dev.command("tick 20000 up 10", timeout=40))
            await wait_for(lambda: closes_after(dev, down_at), 10, "a refused reconnect attempt")
            async with gateway(gw_kind, c_build, tmp_path / "second") as gw2:
                proxy.upstream_port = gw2.port
                proxy.mode = "forward"
                assert (await ticking).startswith("ok tick")
                assert await dev.send_pattern(20, 2) == "OK"
                assert await dev.recv(10) == pattern(20, 2)
                if gw_kind == "py":
                    assert [d for _, d in gw2.delivered] == [pattern(20, 2)]  # type: ignore[union-attr]
                else:
                    assert any(" open: device " in line for line in gw2.process.lines)  # type: ignore[union-attr]
                await dev.close()


@async_test(timeout=30)
async def test_python_gateway_pings_are_answered_by_the_c_device(c_build: CBuild, tmp_path: Path) -> None:
    """The gateway PINGs (keepalive 0.2 s, PEER_TIMEOUT if unanswered); the device, keepalive off,
    answers each with a PONG from usmp_keepalive_tick, so the session outlives many periods."""
    async with gateway("py", c_build, tmp_path, keepalive=0.2) as gw:
        async with Proxy(gw.port) as proxy:
            async with client("c", c_build, proxy.port) as dev:
                assert isinstance(dev, CDevice)
                assert await dev.connect() == "OK"
                assert (await dev.command("tick 1500 none 20")).startswith("ok tick")
                conn = proxy.connections[0]
                pings, pongs = conn.received(S2C, T_PING), conn.received(C2S, T_PONG)
                assert len(pings) >= 4 and len(pongs) == len(pings), (len(pings), len(pongs))
                assert conn.received(C2S, T_PING) == []
                assert gw.ends == {}  # type: ignore[union-attr]
                assert await dev.send_pattern(30, 0) == "OK"
                assert await dev.recv(10) == pattern(30, 0)
