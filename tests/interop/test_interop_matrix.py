"""Every client against every gateway over loopback TCP: the C device API (usmp_interop_device) and
the Python USMPClient, against the Python USMPServer and the C usmp_server. A transparent proxy
sits in between, so each test can also check what crossed the wire.

Parameters: ``gw`` is the gateway ("py": USMPServer, "c": usmp_server), ``client`` the client
("py": USMPClient, "c": the C device API).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from usmp import Session

from interop_harness import (
    CLIENTS,
    GATEWAYS,
    CBuild,
    CDevice,
    PyDevice,
    PyGateway,
    async_test,
    client,
    pattern,
    rig,
)
from interop_proxy import C2S, S2C, T_BYE, T_DATA, T_PING, T_PONG, plaintext_length, wait_for

matrix = [pytest.mark.parametrize("client_kind", CLIENTS, ids=lambda k: f"client_{k}"), pytest.mark.parametrize("gw_kind", GATEWAYS, ids=lambda k: f"gw_{k}")]


def parametrize_matrix(fn):  # type: ignore[no-untyped-def]
    for mark in matrix:
        fn = mark(fn)
    return fn


SIZES = list(range(0, 301)) + [400, 500, 510, 511, 512]


@parametrize_matrix
@async_test(timeout=90)
async def test_echo_every_small_size(c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str) -> None:
    """Sizes 0..300 and up to 512 (what every pairing accepts in one record), each echoed intact,
    each as exactly one DATA record each way (spec 6.4)."""
    async with rig(gw_kind, client_kind, c_build, tmp_path) as r:
        assert await r.client.connect() == "OK"
        if isinstance(r.client, CDevice):
            for start, stop in ((0, 300), (400, 400), (500, 500), (510, 512)):
                line = await r.client.command(f"echo {start} {stop} 1 5 10000", timeout=120)
                assert line == f"ok echo {stop - start + 1}", line
            expected = [pattern(n, 5 + n) for n in SIZES]
        else:
            expected = [pattern(n, 5 + n) for n in SIZES]
            for message in expected:
                assert await r.client.send(message) == "OK"
                assert await r.client.recv(10) == message
        if isinstance(r.gw, PyGateway):
            assert r.gateway_delivered() == expected
        assert [plaintext_length(f) for f in r.conn.received(C2S, T_DATA)] == [len(m) for m in expected]
        assert [plaintext_length(f) for f in r.conn.received(S2C, T_DATA)] == [len(m) for m in expected]
        assert all(f[0] in (T_DATA, T_PING, T_PONG) for f in r.conn.frames[C2S][2:])


@parametrize_matrix
@async_test(timeout=60)
async def test_both_sides_send_at_once(c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str) -> None:
    """The client sends 100 messages back to back without reading while the gateway echoes them and
    (Python gateway) pushes 60 messages of its own at the same time; every message arrives once,
    in order, on both sides."""
    count, size, pushes = 100, 300, 60 if gw_kind == "py" else 0

    async def on_open(session: Session) -> None:
        async def push() -> None:
            for j in range(pushes):
                await session.send(pattern(50 + j, 1000 + j))
                await asyncio.sleep(0)

        asyncio.get_running_loop().create_task(push())

    gw_options = {"on_open": on_open} if gw_kind == "py" else {}
    async with rig(gw_kind, client_kind, c_build, tmp_path, gw_options=gw_options) as r:
        assert await r.client.connect() == "OK"
        others: list[bytes] = []
        if isinstance(r.client, CDevice):
            line = await r.client.command(f"burst {count} {size} {pushes} 30000", timeout=60)
            assert line == f"ok burst {count} {pushes}", line
            others = [bytes.fromhex(e.split()[2]) for e in r.client.events if e.startswith("event other ")]
        else:
            assert isinstance(r.client, PyDevice)

            async def sender() -> None:
                for i in range(count):
                    assert await r.client.send(pattern(size, i)) == "OK"

            async def receiver() -> list[bytes]:
                got = []
                while len(got) < count + pushes:
                    message = await r.client.recv(20)
                    assert isinstance(message, bytes), message
                    got.append(message)
                return got

            _, received = await asyncio.gather(sender(), receiver())
            echoes = [m for m in received if len(m) == size]
            others = [m for m in received if len(m) != size]
            assert echoes == [pattern(size, i) for i in range(count)]
        assert others == [pattern(50 + j, 1000 + j) for j in range(pushes)]
        if isinstance(r.gw, PyGateway):
            assert r.gateway_delivered() == [pattern(size, i) for i in range(count)]


@parametrize_matrix
@async_test(timeout=30)
async def test_bye_from_the_client(c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str) -> None:
    """The client closes: its last frame is one BYE record (payload 1 byte) and the gateway reports
    PEER_CLOSED with reason NONE."""
    async with rig(gw_kind, client_kind, c_build, tmp_path) as r:
        assert await r.client.connect() == "OK"
        assert await r.client.send(b"before bye") == "OK"
        assert await r.client.recv(10) == b"before bye"
        await r.client.close()
        assert await r.gateway_view() == "PEER_CLOSED:NONE"
        last = r.conn.frames[C2S][-1]
        assert last[0] == T_BYE and plaintext_length(last) == 1
        assert r.conn.received(S2C, T_BYE) == []


@parametrize_matrix
@async_test(timeout=30)
async def test_bye_from_the_gateway(c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str) -> None:
    """The gateway closes: Python with BYE(NONE) (session.close()), then at shutdown (both gateways)
    with BYE(SHUTDOWN); the client reports PEER_CLOSED with that reason; the C gateway exits 0."""
    async with rig(gw_kind, client_kind, c_build, tmp_path) as r:
        if isinstance(r.gw, PyGateway):
            assert await r.client.connect() == "OK"
            await r.gw.opened[0].close()
            assert await r.client.recv(10) == "PEER_CLOSED:NONE"
            assert await r.gw.session_end(r.conn.upstream_port or 0) == "NONE"
            assert r.conn.received(C2S, T_BYE) == []
        async with client(client_kind, c_build, r.proxy.port) as second:
            assert await second.connect() == "OK"
            await wait_for(lambda: len(r.proxy.connections) >= (2 if isinstance(r.gw, PyGateway) else 1), 5, "conn")
            conn = r.proxy.connections[-1]
            await r.gw.stop()
            assert await second.recv(10) == "PEER_CLOSED:SHUTDOWN"
            bye = conn.received(S2C, T_BYE)
            assert len(bye) == 1 and plaintext_length(bye[0]) == 1


@parametrize_matrix
@async_test(timeout=30)
async def test_idle_session_is_closed_by_the_gateway(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str
) -> None:
    """No keepalive and no traffic: after idle_timeout (0.5 s) the gateway sends BYE(IDLE_TIMEOUT)."""
    async with rig(gw_kind, client_kind, c_build, tmp_path, gw_options={"idle_timeout": 0.5}) as r:
        assert await r.client.connect() == "OK"
        assert await r.client.recv(10) == "PEER_CLOSED:IDLE_TIMEOUT"
        assert await r.gateway_view() == "IDLE_TIMEOUT"


@parametrize_matrix
@async_test(timeout=30)
async def test_keepalive_keeps_an_idle_session_open(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str
) -> None:
    """Client keepalive 0.2 s against a gateway idle timeout of 1 s: for 2.5 s the client PINGs, the
    gateway answers PONG, the session stays open, and messages still pass afterwards."""
    async with rig(
        gw_kind, client_kind, c_build, tmp_path, gw_options={"idle_timeout": 1.0}, client_options={"keepalive": 0.2}
    ) as r:
        assert await r.client.connect() == "OK"
        if isinstance(r.client, CDevice):
            assert (await r.client.command("tick 2500 none 20")).startswith("ok tick")
        else:
            await asyncio.sleep(2.5)
        pings, pongs = r.conn.received(C2S, T_PING), r.conn.received(S2C, T_PONG)
        assert len(pings) >= 5, len(pings)
        assert len(pongs) >= len(pings) - 1
        assert await r.client.send(b"still here") == "OK"
        assert await r.client.recv(10) == b"still here"
        if isinstance(r.gw, PyGateway):
            assert r.gw.ends == {}
        else:
            assert not any(" closed: " in line for line in r.gw.process.lines)


@parametrize_matrix
@async_test(timeout=30)
async def test_gateway_at_its_session_limit_answers_busy(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str
) -> None:
    """max_sessions 1: a second device gets ERROR(BUSY) (PEER_ERROR:BUSY); the first goes on."""
    async with rig(gw_kind, client_kind, c_build, tmp_path, gw_options={"max_sessions": 1}) as r:
        assert await r.client.connect() == "OK"
        async with client(client_kind, c_build, r.proxy.port) as second:
            assert await second.connect() == "PEER_ERROR:BUSY"
        assert await r.client.send(b"first") == "OK"
        assert await r.client.recv(10) == b"first"
