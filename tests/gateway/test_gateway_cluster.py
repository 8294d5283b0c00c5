"""Several gateways over one PostgreSQL registry and one mosquitto (docs/gateway.md, "Several gateways").

The gateways are ``usmp gateway`` processes, so that one can be killed
with SIGKILL; the devices are Python clients in the test's process.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway_harness import Device, GatewayProcess, Mosquitto, MqttWatcher, wait_until_async

from usmp import PeerClosed, USMPClient
from usmp.errors import Condition
from usmp.registry import open_registry


def run(test: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout))


def add_devices(registry: str, count: int, prefix: str = "0300") -> dict[bytes, bytes]:
    reg = open_registry(registry)
    try:
        return {device_id: reg.add_device(device_id) for device_id in
                (bytes.fromhex(prefix + "%08x" % i) for i in range(count))}
    finally:
        reg.close()


@pytest.fixture
def two_gateways(postgres_registry: str, broker: Mosquitto, tmp_path: Path):  # type: ignore[no-untyped-def]
    gateways = [GatewayProcess(name, postgres_registry, broker, tmp_path) for name in ("gw1", "gw2")]
    try:
        for gateway in gateways:
            gateway.start()
        yield gateways
    finally:
        for gateway in gateways:
            gateway.stop()


def test_a_newer_session_at_another_gateway_replaces_the_older(two_gateways: list[GatewayProcess],
                                                               postgres_registry: str, broker: Mosquitto) -> None:
    ((device_id, psk),) = add_devices(postgres_registry, 1).items()
    gw1, gw2 = two_gateways
    status = f"usmp/{device_id.hex()}/status"
    watcher = MqttWatcher(broker.port, [status]).start()

    async def test() -> None:
        first = USMPClient(*gw1.address, device_id=device_id, psk=psk)
        await first.connect()
        await wait_until_async(lambda: any(json.loads(p)["gateway"] == "gw1" for p in watcher.on(status)), 10,
                               "the presence at gw1")
        async with USMPClient(*gw2.address, device_id=device_id, psk=psk) as second:
            with pytest.raises(PeerClosed) as closed:
                await first.recv(timeout=10)
            assert closed.value.reason is Condition.REPLACED
            await first.close()
            await second.send(b"still here")
            last = json.loads(watcher.on(status)[-1])
            assert (last["online"], last["gateway"]) == (True, "gw2")
            reg = open_registry(postgres_registry)
            try:
                assert reg.session_owner(device_id) == ("gw2", second.session_id)
            finally:
                reg.close()

    try:
        run(test)
    finally:
        watcher.stop()


def test_downlinks_reach_devices_through_whichever_gateway_holds_them_exactly_once(
        two_gateways: list[GatewayProcess], postgres_registry: str, broker: Mosquitto) -> None:
    devices = add_devices(postgres_registry, 10)
    watcher = MqttWatcher(broker.port, []).start()

    async def test() -> None:
        clients = []
        for i, (device_id, psk) in enumerate(devices.items()):
            device = Device(device_id, psk, [two_gateways[i % 2].address])
            await device.connect()
            clients.append(device)
        receivers = [asyncio.create_task(device.receive_all()) for device in clients]
        await asyncio.sleep(0.5)  # every presence out, every claim made
        for n in range(20):
            for device_id in devices:
                watcher.publish(f"usmp/{device_id.hex()}/down", b"%d" % n)
        await wait_until_async(lambda: all(len(d.received) >= 20 for d in clients), 30, "every downlink")
        await asyncio.sleep(0.5)  # time for a duplicate to show
        for device in clients:
            assert sorted(device.received, key=int) == [b"%d" % n for n in range(20)], device.device_id.hex()
            await device.close()
        await asyncio.gather(*receivers)

    try:
        run(test)
    finally:
        watcher.stop()


def test_kill_9_of_a_gateway_with_200_devices(two_gateways: list[GatewayProcess], postgres_registry: str,
                                              broker: Mosquitto) -> None:
    """200 devices on two gateways; one is killed; its devices reconnect to the other with backoff.

    Nothing the broker acknowledged before the kill is lost, and every
    downlink published while the devices were moving arrives, exactly once.
    """
    devices = add_devices(postgres_registry, 200)
    gw1, gw2 = two_gateways
    watcher = MqttWatcher(broker.port, ["usmp/+/up"], client_id="kill9-watcher", persistent=True).start()

    async def test() -> None:
        clients = [Device(device_id, psk, [two_gateways[i % 2].address, two_gateways[(i + 1) % 2].address])
                   for i, (device_id, psk) in enumerate(devices.items())]
        await asyncio.gather(*(device.connect() for device in clients))
        receivers = {device: asyncio.create_task(device.receive_all()) for device in clients}
        for device in clients:
            assert device.client is not None
            await device.client.send(b"before")
        await wait_until_async(lambda: len(watcher.messages) >= 200, 30, "200 uplinks at the subscriber")

        # A device refused as BUSY tries the other gateway next: count who is where now.
        moved = [device for device in clients if device.client is not None and device.client.peer[1] == gw1.port]
        assert moved, "no device on gw1"
        gw1.kill()
        for device_id in devices:  # while gw1's devices are moving to gw2
            watcher.publish(f"usmp/{device_id.hex()}/down", b"downlink")

        async def move(device: Device) -> None:
            await receivers[device]  # its session ended (connection reset by the kill)
            await device.connect(deadline=30)
            receivers[device] = asyncio.create_task(device.receive_all())

        await asyncio.gather(*(move(device) for device in moved))
        for device in clients:
            assert device.client is not None
            await device.client.send(b"after")
        await wait_until_async(lambda: all(d.received for d in clients), 30, "every downlink")
        await wait_until_async(lambda: len(watcher.messages) >= 400, 30, "400 uplinks at the subscriber")
        await asyncio.sleep(0.5)  # time for a duplicate to show
        uplinks = Counter((topic, payload) for topic, payload, _ in watcher.messages)
        for device in clients:
            topic = f"usmp/{device.device_id.hex()}/up"
            assert uplinks[(topic, b"before")] >= 1 and uplinks[(topic, b"after")] >= 1
            assert device.received == [b"downlink"], device.device_id.hex()
        assert all(device.client is not None and device.client.peer[1] == gw2.port for device in moved)
        retries = sum(device.attempts - device.connects for device in moved)
        duplicates = sum(uplinks.values()) - len(uplinks)
        print(f"kill -9: {len(moved)} devices moved to gw2 ({retries} failed attempts on the way), "
              f"uplink duplicates {duplicates}")
        reg = open_registry(postgres_registry)
        try:
            assert reg.queue_depth() == 0  # every queued downlink was delivered and acknowledged
        finally:
            reg.close()
        for device in clients:
            await device.close()
        await asyncio.gather(*receivers.values())

    try:
        run(test, timeout=80)
    finally:
        watcher.stop()
