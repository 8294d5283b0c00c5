"""OTA jobs through USMPServer's CONTROL records on TCP, UDP and a serial line (spec/ota.md),
to a Python device (tests/ota_testing.py); the C device's end-to-end tests are in tests/interop."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from usmp import USMPClient, USMPServer
from usmp.config import ClientConfig, ServerConfig
from usmp.ota import SignedImage, hardware_id_from_text, public_key_bytes, sign_manifest
from usmp.ota_jobs import CONFIRMED, MemoryJobStore, new_job
from usmp.ota_server import OtaRunner

from ota_testing import DeviceStorage, SessionDevice, SimulatedDevice
from transport_testing import DEVICE, PSK, lossy_link

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
HARDWARE = hardware_id_from_text("test-board")
IMAGE = os.urandom(200_000)
LOSSY = dict(loss=0.2, duplicate=0.1, reorder=0.1, reorder_delay=0.003, jitter=0.001)
GENEROUS = ServerConfig(handshake_burst=1000, handshake_rate=1000.0)


def queued_store(tmp_path: Any) -> MemoryJobStore:
    manifest = sign_manifest(KEY, IMAGE, 2, HARDWARE)
    path = os.path.join(str(tmp_path), "app.signed")
    signed = SignedImage(manifest=manifest, image=IMAGE)
    with open(path, "wb") as f:
        f.write(signed.encode())
    store = MemoryJobStore()
    store.add_job(new_job(bytes.fromhex(DEVICE), path, signed))
    return store


async def update_over(server_kwargs: dict[str, Any], client_target: tuple[str, int], transport: str,
                      store: MemoryJobStore, runner: OtaRunner, retransmit: float) -> DeviceStorage:
    storage = DeviceStorage(running_version=1)
    server = USMPServer(psk=PSK, on_control=runner.control_received,
                        on_close=lambda session, reason: runner.session_closed(session), config=GENEROUS,
                        **server_kwargs)
    await server.start()
    try:
        for attempt in ("update", "confirm"):  # the update, then the session of the new image that confirms it
            host, port = client_target if transport != "tcp" else ("127.0.0.1", server.port)
            client = USMPClient(host, port, device_id=DEVICE, psk=PSK, transport=transport,  # type: ignore[arg-type]
                                config=ClientConfig(receive_queue=64))
            await client.connect()
            device = SessionDevice(SimulatedDevice(storage, public_key_bytes(KEY), HARDWARE, max_chunk=1000),
                                   client.session, retransmit=retransmit)
            await device.start()
            if attempt == "update":
                await asyncio.wait_for(device.restarted.wait(), 60)
            else:
                for _ in range(200):
                    if store.list_jobs()[0].state == CONFIRMED:
                        break
                    await asyncio.sleep(0.02)
            await device.stop()
            await client.close()
            await asyncio.sleep(0.05)
    finally:
        await server.stop()
    return storage


def run(coro: Any) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(90):
            return await coro

    return asyncio.run(bounded())


def test_update_over_tcp_is_activated_and_confirmed(tmp_path: Any) -> None:
    async def main() -> None:
        store = queued_store(tmp_path)
        runner = OtaRunner(store, retransmit=0.2)
        storage = await update_over({"host": "127.0.0.1", "port": 0}, ("", 0), "tcp", store, runner, 1.0)
        assert storage.boot_image == IMAGE and storage.running_version == 2
        assert store.list_jobs()[0].state == CONFIRMED
        assert runner.counters.chunks_sent == len(IMAGE) // 1000  # no loss: every chunk once

    run(main())


def test_update_over_lossy_udp_is_activated_and_confirmed(tmp_path: Any) -> None:
    async def main() -> None:
        store = queued_store(tmp_path)
        runner = OtaRunner(store, retransmit=0.05, max_retransmit=0.2)
        server_probe = USMPServer(psk=PSK, transport="udp", host="127.0.0.1", port=0)
        await server_probe.start()
        port = server_probe.port
        await server_probe.stop()
        relay = lossy_link.UdpRelay(("127.0.0.1", port), lossy_link.Impairment(seed=41, **LOSSY))
        await relay.start()
        try:
            storage = await update_over({"host": "127.0.0.1", "port": port, "transport": "udp"}, relay.address,
                                        "udp", store, runner, 0.03)
        finally:
            relay.close()
        assert storage.boot_image == IMAGE and store.list_jobs()[0].state == CONFIRMED
        assert runner.counters.chunks_sent > len(IMAGE) // 1000  # lost ones were asked for again

    run(main())


def test_update_over_lossy_serial_is_activated_and_confirmed(tmp_path: Any) -> None:
    async def main() -> None:
        store = queued_store(tmp_path)
        runner = OtaRunner(store, retransmit=0.05, max_retransmit=0.2)
        relay = lossy_link.PtyRelay(lossy_link.Impairment(seed=43, **LOSSY))
        await relay.start()
        try:
            storage = await update_over({"transport": "serial", "serial_port": relay.gateway_path, "baud": 921600},
                                        (relay.device_path, 921600), "serial", store, runner, 0.05)
        finally:
            relay.close()
        assert storage.boot_image == IMAGE and store.list_jobs()[0].state == CONFIRMED

    run(main())


def test_control_records_never_reach_on_data_and_unhandled_ones_are_counted() -> None:
    async def main() -> None:
        received: list[bytes] = []
        opened: list[Any] = []
        server = USMPServer("127.0.0.1", 0, psk=PSK, on_data=lambda s, d: received.append(d),
                            on_open=opened.append, config=GENEROUS)
        await server.start()
        client = USMPClient("127.0.0.1", server.port, device_id=DEVICE, psk=PSK)
        await client.connect()
        assert client.session is not None
        await client.session.send_control(0x01, b"\x01status?")
        await client.send(b"data")
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.01)
        assert received == [b"data"] and opened[0].control_discarded == 1
        await client.close()
        await server.stop()

    run(main())
