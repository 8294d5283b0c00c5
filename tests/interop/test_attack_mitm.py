"""Man-in-the-middle attacks through the proxy of interop_proxy.py, for every pairing of client
(``client``: "py" USMPClient, "c" the C device API) and gateway (``gw``: "py" USMPServer,
"c" usmp_server).

Each test rewrites, drops, duplicates, reorders, reflects, replays, truncates or injects frames and
asserts the exact condition each side reports (spec/protocol.md 4.5, 6.2, 9; state-machine.md;
security.md 4) and that no application data is delivered that should not be. Outcome strings:
"AUTH_FAILED" (this side detected it), "PEER_ERROR:AUTH_FAILED" (the peer sent ERROR with that
code), "PEER_CLOSED:BAD_RECORD" (the peer sent BYE with that code).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from usmp.engine import ClientEngine
from usmp.wire import Mode

from interop_harness import (
    CLIENTS,
    DEVICE,
    GATEWAYS,
    PSK,
    UNKNOWN_DEVICE,
    CBuild,
    CGateway,
    Client,
    PyGateway,
    Rig,
    async_test,
    client,
    gateway,
    rig,
)
from interop_proxy import (
    C2S,
    S2C,
    T_BYE,
    T_CHALLENGE,
    T_DATA,
    T_ERROR,
    T_HELLO,
    T_HELLO_ACK,
    T_SESSION_OK,
    ProxyConnection,
    Proxy,
    make_frame,
    split_frames,
    wait_for,
)


def matrix(fn):  # type: ignore[no-untyped-def]
    fn = pytest.mark.parametrize("client_kind", CLIENTS, ids=lambda k: f"client_{k}")(fn)
    return pytest.mark.parametrize("gw_kind", GATEWAYS, ids=lambda k: f"gw_{k}")(fn)


def attacker_public_key() -> bytes:
    return X25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def index_in_direction(conn: ProxyConnection, direction: str) -> int:
    """The index of the frame being handled (the hook runs after it was recorded)."""
    return len(conn.frames[direction]) - 1


def nth_of_type(conn: ProxyConnection, direction: str, ftype: int) -> int:
    """1 for the first frame of this type in this direction, 2 for the second, ..."""
    return len(conn.received(direction, ftype))


async def final_client_condition(c: Client, connect_outcome: str) -> str:
    """What the client ends with: its connect failure, or the error the next recv reports."""
    if connect_outcome != "OK":
        return connect_outcome
    result = await c.recv(10)
    assert not isinstance(result, bytes), f"application data delivered: {result!r}"
    return result


def no_echo(r: Rig) -> None:
    """Nothing reached the gateway's application: it echoes every message, and none came back."""
    assert r.conn.received(S2C, T_DATA) == [], "the gateway delivered (and echoed) a message"
    if isinstance(r.gw, PyGateway):
        assert r.gateway_delivered() == []


def handshake_frames_only(r: Rig) -> None:
    for direction in (C2S, S2C):
        assert all(f[0] in (T_HELLO, T_CHALLENGE, T_HELLO_ACK, T_SESSION_OK, T_ERROR) for f in r.conn.frames[direction])


# ------------------------------------------------------------------------------------- key swapping


@matrix
@pytest.mark.parametrize("which", ["both", "client_key", "server_key"])
@async_test(timeout=30)
async def test_swapped_ephemeral_keys_never_establish(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str, which: str
) -> None:
    """security.md 4, key-swapping MITM: e_C in HELLO and/or e_S in CHALLENGE replaced by the
    attacker's own keys. TH and dh differ on the two sides: the gateway fails the HELLO_ACK with
    AUTH_FAILED and sends ERROR(AUTH_FAILED); no SESSION_OK is ever sent."""
    m1, m2 = attacker_public_key(), attacker_public_key()

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        if direction == C2S and frame[0] == T_HELLO and which in ("both", "client_key"):
            return [frame[:11] + m1 + frame[43:]]  # HELLO body offset 8..40: e_C
        if direction == S2C and frame[0] == T_CHALLENGE and which in ("both", "server_key"):
            return [frame[:21] + m2 + frame[53:]]  # CHALLENGE body offset 18..50: e_S
        return None

    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hook) as r:
        assert await r.client.connect() == "PEER_ERROR:AUTH_FAILED"
        assert await r.gateway_view() == "AUTH_FAILED"
        assert [f[0] for f in r.conn.frames[C2S]] == [T_HELLO, T_HELLO_ACK]
        assert [f[0] for f in r.conn.frames[S2C]] == [T_CHALLENGE, T_ERROR]
        assert r.conn.frames[S2C][1] == bytes.fromhex("ff000105")
        if which != "server_key":
            assert r.conn.forwarded_frames(C2S)[0][11:43] == m1


@matrix
@async_test(timeout=30)
async def test_forged_session_ok_is_rejected_by_the_client(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str
) -> None:
    """The attacker swallows HELLO_ACK and answers the client itself with a SESSION_OK of its own
    making: the client fails with AUTH_FAILED (row 9) and sends ERROR(AUTH_FAILED), which the
    gateway (still in WAIT_HELLO_ACK) reports as PEER_ERROR."""

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        if direction == C2S and frame[0] == T_HELLO_ACK:
            conn.send_to(S2C, make_frame(T_SESSION_OK, os.urandom(24)))
            return []
        return None

    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hook) as r:
        assert await r.client.connect() == "AUTH_FAILED"
        assert await r.gateway_view() == "PEER_ERROR"
        assert r.conn.received(C2S, T_ERROR) == [bytes.fromhex("ff000105")]
        assert [f[0] for f in r.conn.frames[S2C]] == [T_CHALLENGE]


# ------------------------------------------------------------------------------------- replay


async def record_session(r: Rig, messages: list[bytes]) -> None:
    assert await r.client.connect() == "OK"
    for m in messages:
        assert await r.client.send(m) == "OK"
        assert await r.client.recv(10) == m
    await r.client.close()
    await wait_for(lambda: r.conn.done.is_set(), 10, "the recorded connection to end")


MESSAGES = [b"open the door", b"", b"x" * 300]


@matrix
@async_test(timeout=30)
async def test_recorded_client_frames_replayed_into_a_new_session(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str
) -> None:
    """Replay every frame the client sent in a recorded session (HELLO, HELLO_ACK, DATA..., BYE)
    into a new connection: the gateway answers the old HELLO with a fresh CHALLENGE (new nonce and
    key), fails the old HELLO_ACK with AUTH_FAILED, and delivers none of the old records."""
    async with rig(gw_kind, client_kind, c_build, tmp_path) as r:
        await record_session(r, MESSAGES)
        recorded_c2s = list(r.conn.frames[C2S])
        recorded_challenge = r.conn.frames[S2C][0]
        assert [f[0] for f in recorded_c2s][:2] == [T_HELLO, T_HELLO_ACK] and recorded_c2s[-1][0] == T_BYE

        reader, writer = await asyncio.open_connection("127.0.0.1", r.gw.port)
        port = writer.get_extra_info("sockname")[1]
        # As a replayer would: the old HELLO, then the rest once the (new) CHALLENGE is in.
        writer.write(recorded_c2s[0])
        buffer = bytearray()
        while not split_frames(bytearray(buffer)):
            buffer += await asyncio.wait_for(reader.read(65536), 10)
        writer.write(b"".join(recorded_c2s[1:]))
        await writer.drain()
        buffer += await asyncio.wait_for(_read_to_end(reader), 10)
        writer.close()
        answer = split_frames(buffer)
        assert not buffer
        assert [f[0] for f in answer] == [T_CHALLENGE, T_ERROR]
        assert answer[1] == bytes.fromhex("ff000105")
        assert answer[0][5:21] != recorded_challenge[5:21], "the nonce was reused"
        assert answer[0][21:53] != recorded_challenge[21:53], "the ephemeral key was reused"
        if isinstance(r.gw, PyGateway):
            assert await r.gw.handshake_failure(port) == "AUTH_FAILED"
            assert r.gw.delivered_from(port) == []
        else:
            assert await r.gw.handshake_failure(port) == "AUTH_FAILED"
            assert not r.gw.opened_from(port)


async def _read_to_end(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while chunk := await reader.read(65536):
        data += chunk
    return data


@matrix
@async_test(timeout=30)
async def test_recorded_gateway_frames_replayed_to_a_new_client_session(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str
) -> None:
    """A fake gateway answers a new handshake with the recorded CHALLENGE, SESSION_OK and records
    of an earlier session: the client's new HELLO makes TH differ, so the recorded SESSION_OK fails
    with AUTH_FAILED (row 9), ERROR(AUTH_FAILED) is sent, and no recorded record is delivered."""
    async with rig(gw_kind, client_kind, c_build, tmp_path) as r:
        await record_session(r, MESSAGES)
        recorded_s2c = list(r.conn.frames[S2C])
    assert [f[0] for f in recorded_s2c][:2] == [T_CHALLENGE, T_SESSION_OK]
    seen: list[bytes] = []

    async def fake_gateway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        replies = iter([[recorded_s2c[0]], recorded_s2c[1:]])
        while data := await reader.read(65536):
            buffer += data
            for frame in split_frames(buffer):
                seen.append(frame)
                reply = next(replies, None)
                if reply is not None:
                    writer.write(b"".join(reply))
        writer.close()

    server = await asyncio.start_server(fake_gateway, "127.0.0.1", 0)
    try:
        async with client(client_kind, c_build, server.sockets[0].getsockname()[1]) as c:
            assert await c.connect() == "AUTH_FAILED"
            await wait_for(lambda: any(f[0] == T_ERROR for f in seen), 5, "the client's ERROR")
            assert [f[0] for f in seen] == [T_HELLO, T_HELLO_ACK, T_ERROR]
            assert seen[2] == bytes.fromhex("ff000105")
    finally:
        server.close()
        await server.wait_closed()


# ------------------------------------------------------------------------------------- reflection


@matrix
@async_test(timeout=30)
async def test_gateway_record_reflected_back_to_the_gateway(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str
) -> None:
    """The gateway's echo is passed on and also sent back to the gateway: k_c2s != k_s2c, so the
    tag fails (BAD_RECORD, BYE(BAD_RECORD)); the reflected copy is never delivered (no second
    echo)."""

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        if direction == S2C and frame[0] == T_DATA and nth_of_type(conn, S2C, T_DATA) == 1:
            conn.send_to(C2S, frame)
        return None

    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hook) as r:
        assert await r.client.connect() == "OK"
        assert await r.client.send(b"m1") == "OK"
        assert await r.client.recv(10) == b"m1"
        assert await r.client.recv(10) == "PEER_CLOSED:BAD_RECORD"
        assert await r.gateway_view() == "BAD_RECORD"
        assert len(r.conn.received(S2C, T_DATA)) == 1
        if isinstance(r.gw, PyGateway):
            assert r.gateway_delivered() == [b"m1"]


@matrix
@async_test(timeout=30)
async def test_client_record_reflected_back_to_the_client(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str
) -> None:
    """The client's DATA record is also sent back to the client, ahead of any answer: BAD_RECORD on
    the client, which sends BYE(BAD_RECORD) and delivers nothing."""

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        if direction == C2S and frame[0] == T_DATA and nth_of_type(conn, C2S, T_DATA) == 1:
            conn.send_to(S2C, frame)
        return None

    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hook) as r:
        assert await r.client.connect() == "OK"
        assert await r.client.send(b"m1") == "OK"
        assert await final_client_condition(r.client, "OK") == "BAD_RECORD"
        assert await r.gateway_view() == "PEER_CLOSED:BAD_RECORD"


@matrix
@async_test(timeout=30)
async def test_hello_reflected_to_the_client(c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str) -> None:
    """The client's HELLO comes back instead of a CHALLENGE: UNEXPECTED (row 27), ERROR(UNEXPECTED),
    which the gateway (nothing received yet but that ERROR) reports as PEER_ERROR."""

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        if direction == C2S and frame[0] == T_HELLO:
            conn.send_to(S2C, frame)
            return []
        return None

    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hook) as r:
        assert await r.client.connect() == "UNEXPECTED"
        assert await r.gateway_view() == "PEER_ERROR"
        assert r.conn.received(C2S, T_ERROR) == [bytes.fromhex("ff000102")]


@matrix
@async_test(timeout=30)
async def test_challenge_reflected_to_the_gateway(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str
) -> None:
    """The gateway's CHALLENGE comes back to it instead of a HELLO_ACK: UNEXPECTED at the gateway,
    ERROR(UNEXPECTED) to the client (PEER_ERROR)."""

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        if direction == S2C and frame[0] == T_CHALLENGE:
            conn.send_to(C2S, frame)
            return []
        return None

    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hook) as r:
        assert await r.client.connect() == "PEER_ERROR:UNEXPECTED"
        assert await r.gateway_view() == "UNEXPECTED"


# ------------------------------------------------------------------------------------- reorder, drop


def hold_first_data(direction: str, mode: str):  # type: ignore[no-untyped-def]
    """Reorder: hold DATA #1 and send it after DATA #2. Drop: never send DATA #1."""

    def hook(conn: ProxyConnection, d: str, frame: bytes) -> list[bytes] | None:
        if d != direction or frame[0] != T_DATA:
            return None
        n = nth_of_type(conn, d, T_DATA)
        if n == 1:
            conn.scratch["held"] = frame
            return []
        if n == 2 and mode == "reorder":
            return [frame, conn.scratch["held"]]
        return None

    return hook


@matrix
@pytest.mark.parametrize("mode", ["reorder", "drop"])
@async_test(timeout=30)
async def test_client_records_reordered_or_dropped(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str, mode: str
) -> None:
    """The client sends two messages; the first record is held back and sent after the second
    (reorder) or never (drop). The gateway expects record counter 0 and gets a record sealed with
    counter 1: BAD_RECORD (security.md 4, stream mode), BYE(BAD_RECORD); neither message is delivered."""
    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hold_first_data(C2S, mode)) as r:
        assert await r.client.connect() == "OK"
        assert await r.client.send(b"first") == "OK"
        assert await r.client.send(b"second") == "OK"
        assert await final_client_condition(r.client, "OK") == "PEER_CLOSED:BAD_RECORD"
        assert await r.gateway_view() == "BAD_RECORD"
        no_echo(r)


@matrix
@pytest.mark.parametrize("mode", ["reorder", "drop"])
@async_test(timeout=30)
async def test_gateway_records_reordered_or_dropped(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str, mode: str
) -> None:
    """The same on the way back: the echoes of two messages reordered or the first dropped; the
    client reports BAD_RECORD, sends BYE(BAD_RECORD), and delivers neither echo."""
    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hold_first_data(S2C, mode)) as r:
        assert await r.client.connect() == "OK"
        assert await r.client.send(b"first") == "OK"
        assert await r.client.send(b"second") == "OK"
        assert await final_client_condition(r.client, "OK") == "BAD_RECORD"
        assert await r.gateway_view() == "PEER_CLOSED:BAD_RECORD"


DROP_DEVICES = {
    "HELLO": bytes.fromhex("0200000000a1"),
    "CHALLENGE": bytes.fromhex("0200000000a2"),
    "HELLO_ACK": bytes.fromhex("0200000000a3"),
    "SESSION_OK": bytes.fromhex("0200000000a4"),
}
DROP_TYPE = {"HELLO": T_HELLO, "CHALLENGE": T_CHALLENGE, "HELLO_ACK": T_HELLO_ACK, "SESSION_OK": T_SESSION_OK}


@matrix
@async_test(timeout=30)
async def test_dropped_handshake_frames_time_out_on_both_sides(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str
) -> None:
    """Each of the four handshake frames dropped (four devices at once, told apart by device id),
    the connections kept open: the gateway fails with TIMEOUT after its handshake timeout (0.8 s),
    the client after its own (1.2 s); when SESSION_OK is dropped the gateway's session is open but
    receives nothing, and ends with TRANSPORT_CLOSED when the connection goes."""
    by_device = {v: k for k, v in DROP_DEVICES.items()}

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        if direction == C2S and index_in_direction(conn, C2S) == 0:
            conn.scratch["drop"] = by_device[frame[5:11]]
        drop = conn.scratch.get("drop")
        return [] if drop is not None and frame[0] == DROP_TYPE[drop] else None

    psks = {d: PSK for d in DROP_DEVICES.values()}
    async with gateway(gw_kind, c_build, tmp_path, psks=psks, handshake_timeout=0.8) as gw:
        async with Proxy(gw.port, hook, hold_open=True) as proxy:

            async def one(kind: str) -> tuple[str, str]:
                async with client(
                    client_kind, c_build, proxy.port, device_id=DROP_DEVICES[kind], handshake_timeout=1.2
                ) as c:
                    return kind, await c.connect()

            results = await asyncio.gather(*(one(kind) for kind in DROP_DEVICES))
            assert dict(results) == {k: "TIMEOUT" for k in DROP_DEVICES}
            views = {}
            for conn in proxy.connections:
                kind = conn.scratch["drop"]
                assert conn.upstream_port is not None
                if kind == "SESSION_OK":
                    assert gw.opened_from(conn.upstream_port)
                    conn.abort()
                    views[kind] = await gw.session_end(conn.upstream_port)
                    assert conn.received(S2C, T_DATA) == []
                else:
                    views[kind] = await gw.handshake_failure(conn.upstream_port)
            assert views == {"HELLO": "TIMEOUT", "CHALLENGE": "TIMEOUT", "HELLO_ACK": "TIMEOUT",
                             "SESSION_OK": "TRANSPORT_CLOSED"}


# ------------------------------------------------------------------------------------- duplicates


@matrix
@async_test(timeout=30)
async def test_duplicated_client_record(c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str) -> None:
    """The client's first DATA record is sent twice (in one write): the gateway delivers it once,
    the copy fails with BAD_RECORD (implicit counter), BYE(BAD_RECORD); the client receives at most
    the one echo, then PEER_CLOSED:BAD_RECORD.

    (The C gateway echoes before it reads the copy. The Python gateway runs the whole read through
    the engine before it calls on_data, so its echo finds the session already failed and is not
    sent: the message is still delivered exactly once.)"""

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        if direction == C2S and frame[0] == T_DATA and nth_of_type(conn, C2S, T_DATA) == 1:
            return [frame + frame]
        return None

    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hook) as r:
        assert await r.client.connect() == "OK"
        assert await r.client.send(b"once") == "OK"
        received = []
        while isinstance(result := await r.client.recv(10), bytes):
            received.append(result)
        assert result == "PEER_CLOSED:BAD_RECORD"
        assert await r.gateway_view() == "BAD_RECORD"
        echoes = r.conn.received(S2C, T_DATA)
        assert received == [b"once"] * len(echoes)
        if isinstance(r.gw, PyGateway):
            assert r.gateway_delivered() == [b"once"]
            assert len(echoes) <= 1
        else:
            assert len(echoes) == 1


# kind -> (client's final condition, gateway's view, the frames that must cross: direction and types)
DUPLICATES: dict[str, tuple[str, str, str, list[int]]] = {
    # The gateway, in WAIT_HELLO_ACK, gets a second HELLO (stream: UNEXPECTED, fatal): it has
    # answered the first with a CHALLENGE (row 13), then ERROR(UNEXPECTED) (row 27).
    "HELLO": ("PEER_ERROR:UNEXPECTED", "UNEXPECTED", S2C, [T_CHALLENGE, T_ERROR]),
    # The client, in WAIT_SESSION_OK, gets a second CHALLENGE: it has sent HELLO_ACK for the first
    # (row 2), then ERROR(UNEXPECTED); that ERROR reaches a gateway that has already sent
    # SESSION_OK, where a plaintext ERROR is UNEXPECTED too (9.2).
    "CHALLENGE": ("UNEXPECTED", "UNEXPECTED", C2S, [T_HELLO, T_HELLO_ACK, T_ERROR]),
    # The gateway gets a second HELLO_ACK after accepting the first: SESSION_OK (row 20), then
    # UNEXPECTED (6.2 check 1), BYE(UNEXPECTED).
    "HELLO_ACK": ("PEER_CLOSED:UNEXPECTED", "UNEXPECTED", S2C, [T_CHALLENGE, T_SESSION_OK, T_BYE]),
    # The client, ESTABLISHED, gets a second SESSION_OK: UNEXPECTED, BYE(UNEXPECTED).
    "SESSION_OK": ("UNEXPECTED", "PEER_CLOSED:UNEXPECTED", C2S, [T_HELLO, T_HELLO_ACK, T_BYE]),
}


@matrix
@pytest.mark.parametrize("kind", list(DUPLICATES))
@async_test(timeout=30)
async def test_duplicated_handshake_frame(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str, kind: str
) -> None:
    """A handshake frame sent twice, in one write: in stream mode a duplicate is a violation (8.2),
    UNEXPECTED; the receiver has still answered the first copy (the state table is per frame, it
    does not depend on how the bytes were cut into reads). The connections are held open so that
    each side's last word gets through."""
    ftype = DROP_TYPE[kind]

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        return [frame + frame] if frame[0] == ftype else None

    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hook, hold_open=True) as r:
        client_final, gateway_view, direction, types = DUPLICATES[kind]
        assert await final_client_condition(r.client, await r.client.connect()) == client_final
        assert await r.gateway_view() == gateway_view
        await wait_for(lambda: r.conn.done.is_set(), 5, "both sides to close")
        assert [f[0] for f in r.conn.frames[direction]] == types
        assert r.conn.frames[direction][-1][0] != T_ERROR or r.conn.frames[direction][-1] == bytes.fromhex("ff000102")
        no_echo(r)


@pytest.mark.parametrize("gw_kind", GATEWAYS, ids=lambda k: f"gw_{k}")
@async_test(timeout=30)
async def test_gateway_answers_a_hello_before_failing_on_what_follows_it(
    c_build: CBuild, tmp_path: Path, gw_kind: str
) -> None:
    """HELLO and an undefined frame in one TCP segment: the gateway sends the CHALLENGE for the HELLO
    (row 13) and then ERROR(MALFORMED) (row 28), exactly as when they come in two reads."""
    async with gateway(gw_kind, c_build, tmp_path) as gw:
        for pipelined in (False, True):
            engine_hello = _hello()
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            garbage = make_frame(0x42, b"")
            first = b""
            if pipelined:
                writer.write(engine_hello + garbage)
            else:
                writer.write(engine_hello)
                first = await asyncio.wait_for(reader.readexactly(57), 10)
                writer.write(garbage)
            data = first + await asyncio.wait_for(_read_to_end(reader), 10)
            writer.close()
            frames = split_frames(bytearray(data))
            assert [f[0] for f in frames] == [T_CHALLENGE, T_ERROR], (pipelined, [f.hex() for f in frames])
            assert frames[1] == bytes.fromhex("ff000101")


def _hello() -> bytes:
    return (
        bytes.fromhex("01002c0101")
        + DEVICE
        + attacker_public_key()
        + struct.pack(">HH", 512, 512)
    )


@pytest.mark.parametrize("client_kind", CLIENTS, ids=lambda k: f"client_{k}")
@async_test(timeout=30)
async def test_client_answers_a_challenge_before_failing_on_what_follows_it(
    c_build: CBuild, tmp_path: Path, client_kind: str
) -> None:
    """A valid CHALLENGE and an undefined frame in one TCP segment: the client sends HELLO_ACK for
    the CHALLENGE (row 2) and then ERROR(MALFORMED) (row 28)."""
    seen: list[bytes] = []

    async def fake_gateway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        while data := await reader.read(65536):
            buffer += data
            for frame in split_frames(buffer):
                seen.append(frame)
                if frame[0] == T_HELLO:
                    challenge = make_frame(
                        T_CHALLENGE,
                        bytes([1, 1]) + os.urandom(16) + attacker_public_key() + struct.pack(">HH", 4096, 16384),
                    )
                    writer.write(challenge + make_frame(0x42, b""))
        writer.close()

    server = await asyncio.start_server(fake_gateway, "127.0.0.1", 0)
    try:
        async with client(client_kind, c_build, server.sockets[0].getsockname()[1]) as c:
            assert await c.connect() == "MALFORMED"
            await wait_for(lambda: any(f[0] == T_ERROR for f in seen), 5, "the client's ERROR")
            assert [f[0] for f in seen] == [T_HELLO, T_HELLO_ACK, T_ERROR]
            assert seen[-1] == bytes.fromhex("ff000101")
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("client_kind", CLIENTS, ids=lambda k: f"client_{k}")
@async_test(timeout=30)
async def test_client_reports_the_reason_of_a_bye_that_comes_with_session_ok(
    c_build: CBuild, tmp_path: Path, client_kind: str
) -> None:
    """The gateway closes the session (BYE(SHUTDOWN)) right after SESSION_OK, and both arrive in one
    segment: the client reports PEER_CLOSED with reason SHUTDOWN (9.3), whether from connect or
    from the first recv."""

    async def on_open(session: Any) -> None:
        from usmp import Condition

        await session.close(Condition.SHUTDOWN)

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        if direction == S2C and frame[0] == T_SESSION_OK:
            conn.scratch["held"] = frame
            return []
        if direction == S2C and "held" in conn.scratch:
            return [conn.scratch.pop("held") + frame]
        return None

    async with rig("py", client_kind, c_build, tmp_path, hook=hook, gw_options={"on_open": on_open}) as r:
        assert await final_client_condition(r.client, await r.client.connect()) == "PEER_CLOSED:SHUTDOWN"
        assert [f[0] for f in r.conn.frames[S2C]] == [T_CHALLENGE, T_SESSION_OK, T_BYE]


@pytest.mark.parametrize("gw_kind", GATEWAYS, ids=lambda k: f"gw_{k}")
@async_test(timeout=60)
async def test_peer_reset_while_gateway_output_is_pending_frees_the_session(
    c_build: CBuild, tmp_path: Path, gw_kind: str
) -> None:
    """A device sends messages without reading the echoes until the gateway stops reading (its
    echo output is stuck in a full socket), then resets the connection. The gateway must end that
    session (TRANSPORT_CLOSED) and free its slot: with max_sessions 1 the next device connects.
    The C gateway must not spin meanwhile."""
    async with gateway(gw_kind, c_build, tmp_path, max_sessions=1) as gw:
        engine, reader, writer = await _raw_session(gw.port)
        message = bytes(4000)
        for _ in range(100000):
            engine.send_message(message, 0.0)
            writer.write(b"".join(engine.frames_to_send()))
            try:
                await asyncio.wait_for(writer.drain(), 0.5)
            except TimeoutError:
                break  # the gateway stopped reading: its echoes are stuck
        else:
            raise AssertionError("the gateway kept reading")
        port = writer.get_extra_info("sockname")[1]
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST
        assert await gw.session_end(port, timeout=5.0) == "TRANSPORT_CLOSED"
        if gw_kind == "c":
            assert isinstance(gw, CGateway) and gw.process.proc is not None
            before = _cpu_seconds(gw.process.proc.pid)
            await asyncio.sleep(1.0)
            assert _cpu_seconds(gw.process.proc.pid) - before < 0.5, "the C gateway spins"
        async with client("py", c_build, gw.port) as c:
            assert await c.connect() == "OK"


@pytest.mark.parametrize("gw_kind", GATEWAYS, ids=lambda k: f"gw_{k}")
@async_test(timeout=60)
async def test_bad_hello_then_reset_frees_the_slot(c_build: CBuild, tmp_path: Path, gw_kind: str) -> None:
    """No PSK needed: a HELLO the gateway must refuse (no version 1), then at once a TCP reset, five
    times, one after the other. Each connection must end (UNSUPPORTED_VERSION, or TRANSPORT_CLOSED
    if the reset was seen first) and free its slot; with max_sessions 2 a device then still
    connects. The C gateway must not spin meanwhile."""
    async with gateway(gw_kind, c_build, tmp_path, max_sessions=2) as gw:
        for _ in range(5):
            sock = socket.socket()
            sock.connect(("127.0.0.1", gw.port))
            port = sock.getsockname()[1]
            hello = bytes.fromhex("01002c0001") + UNKNOWN_DEVICE + attacker_public_key() + struct.pack(">HH", 512, 512)
            sock.sendall(hello)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST
            assert await gw.handshake_failure(port, timeout=5.0) in ("UNSUPPORTED_VERSION", "TRANSPORT_CLOSED")
        if gw_kind == "c":
            assert isinstance(gw, CGateway) and gw.process.proc is not None
            before = _cpu_seconds(gw.process.proc.pid)
            await asyncio.sleep(1.0)
            assert _cpu_seconds(gw.process.proc.pid) - before < 0.5, "the C gateway spins"
        async with client("py", c_build, gw.port) as c:
            assert await c.connect() == "OK"


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _raw_session(port: int) -> tuple[ClientEngine, asyncio.StreamReader, asyncio.StreamWriter]:
    """A handshake by the Python client engine over a bare socket."""
    engine = ClientEngine(mode=Mode.STREAM, device_id=DEVICE, psk=PSK)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    engine.start(0.0)
    writer.write(b"".join(engine.frames_to_send()))
    while not engine.established:
        data = await asyncio.wait_for(reader.read(65536), 10)
        assert data, "the gateway closed during the handshake"
        engine.receive_data(data, 0.0)
        writer.write(b"".join(engine.frames_to_send()))
    return engine, reader, writer


# ------------------------------------------------------------------------------------- truncation


@matrix
@async_test(timeout=30)
async def test_client_record_cut_in_the_middle(c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str) -> None:
    """Half of the client's DATA record, then the connection to the gateway is closed: the gateway
    reports TRANSPORT_CLOSED (not a clean close) and delivers nothing; the client sees the stream
    end without a BYE."""

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        if direction == C2S and frame[0] == T_DATA:
            conn.send_to(C2S, frame[: len(frame) // 2])
            conn.close_toward(C2S)
            return []
        return None

    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hook) as r:
        assert await r.client.connect() == "OK"
        assert await r.client.send(b"z" * 100) == "OK"
        assert await r.gateway_view() == "TRANSPORT_CLOSED"
        assert await final_client_condition(r.client, "OK") == "TRANSPORT_CLOSED"
        no_echo(r)


@matrix
@async_test(timeout=30)
async def test_gateway_record_cut_in_the_middle(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str
) -> None:
    """Half of the echo, then the connection to the client is closed: the client reports
    TRANSPORT_CLOSED and delivers no part of it."""

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        if direction == S2C and frame[0] == T_DATA:
            conn.send_to(S2C, frame[: len(frame) // 2])
            conn.close_toward(S2C)
            return []
        return None

    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hook) as r:
        assert await r.client.connect() == "OK"
        assert await r.client.send(b"z" * 100) == "OK"
        assert await final_client_condition(r.client, "OK") == "TRANSPORT_CLOSED"
        assert await r.gateway_view() == "TRANSPORT_CLOSED"


def drop_bye_and_close(direction: str):  # type: ignore[no-untyped-def]
    def hook(conn: ProxyConnection, d: str, frame: bytes) -> list[bytes] | None:
        if d == direction and frame[0] == T_BYE:
            conn.close_toward(d)
            return []
        return None

    return hook


@matrix
@async_test(timeout=30)
async def test_client_bye_cut_off(c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str) -> None:
    """The client closes, the attacker drops its BYE and ends the stream: the gateway reports
    TRANSPORT_CLOSED, never a clean close (9.3)."""
    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=drop_bye_and_close(C2S)) as r:
        assert await r.client.connect() == "OK"
        assert await r.client.send(b"hi") == "OK"
        assert await r.client.recv(10) == b"hi"
        await r.client.close()
        assert await r.gateway_view() == "TRANSPORT_CLOSED"
        assert len(r.conn.received(C2S, T_BYE)) == 1


@matrix
@async_test(timeout=30)
async def test_gateway_bye_cut_off(c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str) -> None:
    """The gateway shuts down, the attacker drops its BYE(SHUTDOWN) and ends the stream: the client
    reports TRANSPORT_CLOSED, never PEER_CLOSED (9.3)."""
    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=drop_bye_and_close(S2C)) as r:
        assert await r.client.connect() == "OK"
        assert await r.client.send(b"hi") == "OK"
        assert await r.client.recv(10) == b"hi"
        await r.gw.stop()
        assert await r.client.recv(10) == "TRANSPORT_CLOSED"
        assert len(r.conn.received(S2C, T_BYE)) == 1


@matrix
@async_test(timeout=30)
async def test_hello_cut_short(c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str) -> None:
    """20 bytes of the HELLO, then the end of the stream: TRANSPORT_CLOSED at the gateway, which
    sends nothing; the client sees the end of the stream (TRANSPORT_CLOSED)."""

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        if direction == C2S and frame[0] == T_HELLO:
            conn.send_to(C2S, frame[:20])
            conn.close_toward(C2S)
            return []
        return None

    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hook) as r:
        assert await r.client.connect() == "TRANSPORT_CLOSED"
        assert await r.gateway_view() == "TRANSPORT_CLOSED"
        assert r.conn.frames[S2C] == []


# kind -> (client's final condition, gateway's view) when the frame loses its last byte and its
# length field says so (a well-framed frame of the wrong length: MALFORMED, 4.5).
SHORTENED = {
    "HELLO": ("PEER_ERROR:MALFORMED", "MALFORMED"),
    "CHALLENGE": ("MALFORMED", "PEER_ERROR"),
    "HELLO_ACK": ("PEER_ERROR:MALFORMED", "MALFORMED"),
    "SESSION_OK": ("MALFORMED", "UNEXPECTED"),
}


@matrix
@pytest.mark.parametrize("kind", list(SHORTENED))
@async_test(timeout=30)
async def test_handshake_frame_shortened_by_one_byte(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str, kind: str
) -> None:
    ftype = DROP_TYPE[kind]

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        if frame[0] == ftype:
            return [make_frame(ftype, frame[3:-1])]
        return None

    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hook) as r:
        client_final, gateway_view = SHORTENED[kind]
        assert await final_client_condition(r.client, await r.client.connect()) == client_final
        assert await r.gateway_view() == gateway_view
        no_echo(r)


# ------------------------------------------------------------------------------------- injection

# name -> (frame replacing the first record of the direction, condition at its receiver)
INJECTIONS: dict[str, tuple[bytes, str]] = {
    # 6.2 check 3, from the 3-byte header alone (5.1): the body is never waited for.
    "oversize_length": (bytes([T_DATA, 0xFF, 0xFF]) + bytes(10), "TOO_LARGE"),
    # 6.2 check 2: shorter than a tag.
    "shorter_than_tag": (make_frame(T_DATA, bytes(15)), "MALFORMED"),
    # 6.2 check 1: an undefined type.
    "undefined_type": (make_frame(0x42, bytes(20)), "MALFORMED"),
    # 9.2: a plaintext ERROR after SESSION_OK.
    "plaintext_error": (bytes.fromhex("ff000105"), "UNEXPECTED"),
    # 6.2 check 1: a handshake type.
    "hello_after_handshake": (make_frame(T_HELLO, bytes(44)), "UNEXPECTED"),
    # 6.2 check 7: a well-formed record that was never sealed with this key.
    "forged_record": (make_frame(T_DATA, os.urandom(40)), "BAD_RECORD"),
}


@matrix
@pytest.mark.parametrize("injection", list(INJECTIONS))
@pytest.mark.parametrize("direction", [C2S, S2C])
@async_test(timeout=30)
async def test_injected_frame_after_the_handshake(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str, injection: str, direction: str
) -> None:
    """The first record of one direction replaced by an injected frame: the receiver fails with the
    exact condition, sends BYE(condition) (row 34-35, 9.2), and delivers nothing. Both sides
    announce max_record 4096 here so that a 65535-byte length is over the limit."""
    frame, condition = INJECTIONS[injection]

    def hook(conn: ProxyConnection, d: str, f: bytes) -> list[bytes] | None:
        if d == direction and f[0] == T_DATA and nth_of_type(conn, d, T_DATA) == 1:
            return [frame]
        return None

    async with rig(
        gw_kind,
        client_kind,
        c_build,
        tmp_path,
        hook=hook,
        gw_options={"max_record": 4096, "max_message": 16384},
        client_options={"max_record": 4096, "max_message": 16384},
    ) as r:
        assert await r.client.connect() == "OK"
        assert await r.client.send(b"payload") == "OK"
        if direction == C2S:
            assert await final_client_condition(r.client, "OK") == f"PEER_CLOSED:{condition}"
            assert await r.gateway_view() == condition
            no_echo(r)
        else:
            assert await final_client_condition(r.client, "OK") == condition
            assert await r.gateway_view() == f"PEER_CLOSED:{condition}"
