"""Unknown-device probing (spec 4.5 step 6, 13; security.md 4): a HELLO with a device id the gateway
does not know must be answered exactly like a known id with a wrong PSK: a CHALLENGE of the same
size and shape, then ERROR(AUTH_FAILED) after the HELLO_ACK, then the end of the connection. Timing
is measured and reported but not asserted beyond "the gateway answers both".
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import pytest

from usmp.engine import ClientEngine, EngineConfig
from usmp.wire import Mode

from interop_harness import (
    CLIENTS,
    DEVICE,
    GATEWAYS,
    PSK,
    UNKNOWN_DEVICE,
    WRONG_PSK,
    CBuild,
    async_test,
    client,
    gateway,
)
from interop_proxy import C2S, S2C, T_CHALLENGE, T_ERROR, T_HELLO, T_HELLO_ACK, Proxy, split_frames

PROBES = {"wrong_psk": (DEVICE, WRONG_PSK), "unknown_device": (UNKNOWN_DEVICE, PSK)}


async def probe(port: int, device: bytes, psk: bytes) -> tuple[list[bytes], float, float, int]:
    """One handshake by the Python client engine over a bare socket: the gateway's frames, the
    seconds from HELLO to CHALLENGE and from HELLO_ACK to ERROR, and our local port."""
    engine = ClientEngine(mode=Mode.STREAM, device_id=device, psk=psk, config=EngineConfig(max_record=512, max_message=512))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    local_port = writer.get_extra_info("sockname")[1]
    engine.start(0.0)
    writer.write(b"".join(engine.frames_to_send()))
    sent = time.monotonic()
    challenge = await asyncio.wait_for(reader.readexactly(57), 10)
    to_challenge = time.monotonic() - sent
    engine.receive_data(challenge, 0.0)
    (hello_ack,) = engine.frames_to_send()
    writer.write(hello_ack)
    sent = time.monotonic()
    rest = await asyncio.wait_for(reader.read(65536), 10)
    to_error = time.monotonic() - sent
    while more := await asyncio.wait_for(reader.read(65536), 10):
        rest += more
    writer.close()
    return [challenge, *split_frames(bytearray(rest))], to_challenge, to_error, local_port


@pytest.mark.parametrize("gw_kind", GATEWAYS, ids=lambda k: f"gw_{k}")
@async_test(timeout=60)
async def test_unknown_device_is_answered_like_a_wrong_psk(c_build: CBuild, tmp_path: Path, gw_kind: str) -> None:
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in PROBES}
    async with gateway(gw_kind, c_build, tmp_path) as gw:
        shapes = {}
        for _ in range(5):
            for name, (device, psk) in PROBES.items():
                frames, to_challenge, to_error, port = await probe(gw.port, device, psk)
                timings[name].append((to_challenge, to_error))
                # CHALLENGE: 57 bytes, version 1, suite 1, the gateway's limits; then ERROR(AUTH_FAILED).
                assert [len(f) for f in frames] == [57, 4], name
                assert frames[0][:5] == bytes.fromhex("0200360101"), name
                assert frames[1] == bytes.fromhex("ff000105"), name
                shapes.setdefault(name, set()).add(frames[0][53:57])
                assert await gw.handshake_failure(port) == "AUTH_FAILED"
        assert shapes["wrong_psk"] == shapes["unknown_device"] and len(shapes["wrong_psk"]) == 1
    for name, samples in timings.items():
        print(
            f"{gw_kind} gateway, {name}: HELLO->CHALLENGE median "
            f"{statistics.median(s[0] for s in samples) * 1000:.2f} ms, HELLO_ACK->ERROR median "
            f"{statistics.median(s[1] for s in samples) * 1000:.2f} ms"
        )


@pytest.mark.parametrize("client_kind", CLIENTS, ids=lambda k: f"client_{k}")
@pytest.mark.parametrize("gw_kind", GATEWAYS, ids=lambda k: f"gw_{k}")
@async_test(timeout=30)
async def test_device_with_unknown_id_or_wrong_psk_gets_the_same_answer(
    c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str
) -> None:
    """Both real clients: an unknown id and a wrong PSK both end with PEER_ERROR:AUTH_FAILED after
    the same frames, and the gateway reports AUTH_FAILED for both."""
    async with gateway(gw_kind, c_build, tmp_path) as gw:
        async with Proxy(gw.port) as proxy:
            seen = {}
            for name, (device, psk) in PROBES.items():
                async with client(client_kind, c_build, proxy.port, device_id=device, psk=psk) as c:
                    assert await c.connect() == "PEER_ERROR:AUTH_FAILED", name
                conn = proxy.connections[-1]
                assert conn.upstream_port is not None
                assert await gw.handshake_failure(conn.upstream_port) == "AUTH_FAILED"
                seen[name] = (
                    [(f[0], len(f)) for f in conn.frames[C2S]],
                    [(f[0], len(f)) for f in conn.frames[S2C]],
                    conn.frames[S2C][0][53:57],
                )
            assert seen["wrong_psk"] == seen["unknown_device"]
            assert seen["wrong_psk"][:2] == ([(T_HELLO, 47), (T_HELLO_ACK, 19)], [(T_CHALLENGE, 57), (T_ERROR, 4)])
