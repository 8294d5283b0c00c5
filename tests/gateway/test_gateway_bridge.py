"""One gateway between devices and a real mosquitto, with a SQLite registry (docs/gateway.md).

Each test starts its own broker on a free loopback port; devices are
Python clients of the package, and the C device of the ASan build.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import subprocess
import sys
import threading
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway_harness import REPO, Mosquitto, MqttWatcher, free_port, make_tls_files, wait_until_async  # noqa: E402
from interop_harness import CBuild, sanitizer_env  # noqa: E402

import paho.mqtt.client as paho  # noqa: E402
from usmp import ClientConfig, PeerClosed, PeerError, SerialClient, ServerConfig, UDPClient, USMPClient  # noqa: E402
from usmp.errors import Condition  # noqa: E402
from usmp.gateway import Gateway, GatewayConfig, parse_listen, parse_serial  # noqa: E402
from usmp.gateway_metrics import GatewayMetrics  # noqa: E402
from usmp.mqtt_bridge import MqttSettings  # noqa: E402
from usmp.registry import RegistryError, open_registry  # noqa: E402

DEVICE = bytes.fromhex("020000000001")
UP = f"usmp/{DEVICE.hex()}/up"
DOWN = f"usmp/{DEVICE.hex()}/down"
STATUS = f"usmp/{DEVICE.hex()}/status"


def run(test: Callable[[], Awaitable[None]], timeout: float = 40.0) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout))


def add_device(registry: str, device_id: bytes = DEVICE) -> bytes:
    reg = open_registry(registry)
    try:
        return reg.add_device(device_id, label="test")
    finally:
        reg.close()


@asynccontextmanager
async def running_gateway(
    registry: str,
    broker: Mosquitto,
    *,
    name: str = "gw1",
    version: str = "3.1.1",
    ttl: float = 3600.0,
    buffer: int = 10000,
    metrics: GatewayMetrics | None = None,
    listeners: tuple[str, ...] = ("tcp://127.0.0.1:0",),
    watch_interval: float = 0.2,
    before_start: Callable[[Gateway], None] | None = None,
) -> AsyncIterator[Gateway]:
    gateway = Gateway(
        registry,
        [parse_listen(text) for text in listeners],
        mqtt=MqttSettings("127.0.0.1", broker.port, version=version, buffer_limit=buffer,
                          reconnect_min=0.1, reconnect_max=0.5),
        config=GatewayConfig(name=name, downlink_ttl=ttl, watch_interval=watch_interval,
                             server=ServerConfig(handshake_rate=1000.0, handshake_burst=1000)),
        metrics=metrics,
    )
    if before_start is not None:
        before_start(gateway)
    await gateway.start()
    assert gateway.bridge is not None
    assert await gateway.bridge.wait_connected(10), "the gateway did not connect to the broker"
    try:
        yield gateway
    finally:
        await gateway.stop()


def port_of(gateway: Gateway, transport: str = "tcp") -> int:
    return next(port for t, _, port in gateway.addresses() if t == transport)


@pytest.mark.parametrize("version", ["3.1.1", "5"])
def test_uplink_downlink_and_presence_with_a_python_device(broker: Mosquitto, sqlite_registry: str,
                                                           version: str) -> None:
    psk = add_device(sqlite_registry)
    watcher = MqttWatcher(broker.port, ["usmp/#"],
                          version=paho.MQTTv5 if version == "5" else paho.MQTTv311).start()

    async def test() -> None:
        async with running_gateway(sqlite_registry, broker, version=version) as gateway:
            async with USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=psk) as client:
                for i in range(3):
                    await client.send(b"reading %d" % i)
                await wait_until_async(lambda: watcher.count(UP) == 3, 10, "three uplinks")
                assert watcher.on(UP) == [b"reading 0", b"reading 1", b"reading 2"]
                online = json.loads(watcher.on(STATUS)[-1])
                assert online["online"] is True and online["gateway"] == "gw1"
                assert online["session_id"] == client.session_id.hex()  # type: ignore[union-attr]
                watcher.publish(DOWN, b"set led on")
                assert await client.recv(timeout=10) == b"set led on"
                (session,) = gateway.snapshot()["sessions"]
                assert session["device_id"] == DEVICE.hex() and session["transport"] == "tcp"
                assert (session["messages_up"], session["bytes_up"]) == (3, 27)
                assert (session["messages_down"], session["bytes_down"]) == (1, 10)
                json.dumps(gateway.snapshot())  # JSON-able
            await wait_until_async(lambda: not json.loads(watcher.on(STATUS)[-1])["online"], 10, "offline")
            assert gateway.snapshot()["sessions"] == []
        gateway_status = json.loads(watcher.on("usmp/gateways/gw1/status")[-1])
        assert gateway_status == {"online": False, "gateway": "gw1", "since": gateway_status["since"]}

    try:
        run(test)
    finally:
        watcher.stop()


def test_uplink_and_downlink_over_udp(broker: Mosquitto, sqlite_registry: str) -> None:
    psk = add_device(sqlite_registry)
    watcher = MqttWatcher(broker.port, [UP]).start()

    async def test() -> None:
        async with running_gateway(sqlite_registry, broker, listeners=("udp://127.0.0.1:0",)) as gateway:
            client = UDPClient("127.0.0.1", port_of(gateway, "udp"), device_id=DEVICE, psk=psk)
            await client.connect()
            try:
                await client.send(b"over udp")
                await wait_until_async(lambda: watcher.on(UP) == [b"over udp"], 10, "the uplink")
                watcher.publish(DOWN, b"back over udp")
                assert await client.recv(timeout=10) == b"back over udp"
                assert gateway.snapshot()["sessions"][0]["transport"] == "udp"
            finally:
                await client.close()

    try:
        run(test)
    finally:
        watcher.stop()


def test_c_device_messages_come_back_through_the_broker(broker: Mosquitto, sqlite_registry: str,
                                                        c_build: CBuild) -> None:
    """usmp_device checks every echo: here the echo is an MQTT client that answers each up with a down."""
    program = c_build.program("device")
    psk = add_device(sqlite_registry)
    echo = MqttWatcher(broker.port, ["usmp/+/up"]).start()
    echo.client.on_message = lambda client, userdata, message: client.publish(
        message.topic[: -len("up")] + "down", message.payload, qos=1)

    async def test() -> None:
        async with running_gateway(sqlite_registry, broker) as gateway:
            env = dict(sanitizer_env(), DEVICE_PSK=psk.hex())
            proc = await asyncio.create_subprocess_exec(
                str(program), "--psk-env", "DEVICE_PSK", "--device-id", DEVICE.hex(), "--host", "127.0.0.1",
                "--port", str(port_of(gateway)), "--timeout-ms", "10000", "first message", "second message",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            assert proc.returncode == 0, (out + err).decode(errors="replace")
            assert gateway.downlinks["sent"] == 2

    try:
        run(test)
    finally:
        echo.stop()


def test_offline_downlinks_are_queued_in_order_and_expire(broker: Mosquitto, sqlite_registry: str) -> None:
    psk = add_device(sqlite_registry)
    watcher = MqttWatcher(broker.port, []).start()

    async def test() -> None:
        async with running_gateway(sqlite_registry, broker, ttl=1.0) as gateway:
            watcher.publish(DOWN, b"stale")
            await wait_until_async(lambda: gateway.downlinks["queued"] == 1, 10, "the first downlink queued")
            await asyncio.sleep(1.3)  # past its time to live
            for i in range(5):
                watcher.publish(DOWN, b"fresh %d" % i)
            await wait_until_async(lambda: gateway.downlinks["queued"] == 6, 10, "five more queued")
            async with USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=psk) as client:
                got = [await client.recv(timeout=5) for _ in range(5)]
                assert got == [b"fresh %d" % i for i in range(5)]
                with pytest.raises(asyncio.TimeoutError):
                    await client.recv(timeout=0.5)  # not the expired one
        reg = open_registry(sqlite_registry)
        try:
            assert reg.queue_depth(DEVICE) == 0
        finally:
            reg.close()

    try:
        run(test)
    finally:
        watcher.stop()


def test_a_full_queue_rejects_downlinks_and_unknown_devices_get_none(broker: Mosquitto,
                                                                     sqlite_registry: str) -> None:
    psk = add_device(sqlite_registry)
    reg = open_registry(sqlite_registry)
    bound = reg.max_queue
    reg.close()
    watcher = MqttWatcher(broker.port, []).start()

    async def test() -> None:
        async with running_gateway(sqlite_registry, broker) as gateway:
            for i in range(bound + 3):
                watcher.publish(DOWN, b"%d" % i)
            watcher.publish("usmp/0200000000ff/down", b"nobody")
            await wait_until_async(lambda: gateway.downlinks["rejected"] == 4, 10, "four rejections")
            assert gateway.downlinks["queued"] == bound
            async with USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=psk) as client:
                got = [await client.recv(timeout=5) for _ in range(bound)]
                assert got == [b"%d" % i for i in range(bound)]

    try:
        run(test)
    finally:
        watcher.stop()


def test_revoking_a_connected_device_closes_its_session_and_refuses_it(broker: Mosquitto,
                                                                       sqlite_registry: str) -> None:
    psk = add_device(sqlite_registry)

    async def test() -> None:
        async with running_gateway(sqlite_registry, broker) as gateway:
            client = USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=psk)
            await client.connect()
            reg = open_registry(sqlite_registry)
            started = time.monotonic()
            reg.revoke(DEVICE)
            reg.close()
            with pytest.raises(PeerClosed) as closed:
                await client.recv(timeout=5)
            assert closed.value.reason is Condition.REKEY
            assert time.monotonic() - started < 3
            await client.close()
            again = USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=psk)
            with pytest.raises(PeerError) as refused:
                await again.connect()
            assert refused.value.code == Condition.AUTH_FAILED.code

    run(test)


def test_rotating_a_connected_device_closes_its_session_and_only_the_new_key_works(
        broker: Mosquitto, sqlite_registry: str) -> None:
    old = add_device(sqlite_registry)

    async def test() -> None:
        async with running_gateway(sqlite_registry, broker) as gateway:
            client = USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=old)
            await client.connect()
            reg = open_registry(sqlite_registry)
            new = reg.rotate(DEVICE)
            reg.close()
            with pytest.raises(PeerClosed) as closed:
                await client.recv(timeout=5)
            assert closed.value.reason is Condition.REKEY
            await client.close()
            with pytest.raises(PeerError):
                await USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=old).connect()
            async with USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=new) as fresh:
                await fresh.send(b"with the new key")

    run(test)


def test_broker_restart_mid_stream_loses_nothing(broker: Mosquitto, sqlite_registry: str) -> None:
    """Twenty devices send numbered messages while the broker restarts; every one arrives."""
    devices = [bytes.fromhex("0200000001%02x" % i) for i in range(20)]
    psks = {d: add_device(sqlite_registry, d) for d in devices}
    watcher = MqttWatcher(broker.port, ["usmp/+/up"], client_id="restart-watcher", persistent=True).start()
    sent: dict[bytes, int] = {}

    async def test() -> None:
        async with running_gateway(sqlite_registry, broker) as gateway:
            port = port_of(gateway)

            async def device(device_id: bytes) -> None:
                async with USMPClient("127.0.0.1", port, device_id=device_id, psk=psks[device_id]) as client:
                    for seq in range(60):
                        await client.send(b"%d" % seq)
                        sent[device_id] = seq + 1
                        await asyncio.sleep(0.05)

            running = asyncio.gather(*(device(d) for d in devices))
            await asyncio.sleep(1.0)
            broker.stop()
            await asyncio.sleep(0.7)
            broker.start()
            await running
            assert gateway.bridge is not None
            await wait_until_async(lambda: gateway.bridge.queued == 0, 20, "the gateway's buffer to drain")
            assert gateway.bridge.reconnects >= 1
            expected = sum(sent.values())
            try:
                await wait_until_async(lambda: len({(t, p) for t, p, _ in watcher.messages}) >= expected, 10,
                                       "every message at the subscriber")
            except AssertionError:
                pass  # counted below, with what is missing
        received = [(t, p) for t, p, _ in watcher.messages]
        lost = [(d.hex(), seq) for d in devices for seq in range(sent[d])
                if (f"usmp/{d.hex()}/up", b"%d" % seq) not in set(received)]
        duplicates = len(received) - len(set(received))
        print(f"broker restart: sent {sum(sent.values())}, received {len(received)}, "
              f"lost {len(lost)}, duplicates {duplicates}")
        assert lost == [], lost[:20]

    try:
        run(test, timeout=60)
    finally:
        watcher.stop()


def test_uplinks_beyond_the_buffer_bound_are_dropped_and_counted(broker: Mosquitto, sqlite_registry: str) -> None:
    psk = add_device(sqlite_registry)
    watcher = MqttWatcher(broker.port, [UP, STATUS], client_id="bound-watcher", persistent=True).start()
    metrics = GatewayMetrics()

    async def test() -> None:
        async with running_gateway(sqlite_registry, broker, buffer=5, metrics=metrics) as gateway:
            assert gateway.bridge is not None
            async with USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=psk) as client:
                # The presence goes through the same buffer: let it out first.
                await wait_until_async(lambda: watcher.count(STATUS) == 1, 10, "the device's presence")
                broker.stop()
                bridge = gateway.bridge
                await wait_until_async(lambda: not bridge.connected, 10, "the broker gone")
                for i in range(8):
                    await client.send(b"%d" % i)
                await wait_until_async(lambda: gateway.uplinks_dropped == 3, 10, "three drops")
                assert bridge.queued == 5
                broker.start()
                await wait_until_async(lambda: len(set(watcher.on(UP))) == 5, 20, "the five buffered uplinks")
            assert sorted(set(watcher.on(UP))) == [b"%d" % i for i in range(5)]
            values = metrics.values()
            assert values["usmp_gateway_uplinks_dropped_total"] == 3
            assert values["usmp_gateway_mqtt_publish_failures_total"] == 3
            assert values["usmp_gateway_mqtt_reconnects_total"] >= 1

    try:
        run(test)
    finally:
        watcher.stop()


def test_metrics_endpoint_counts_sessions_handshakes_and_messages(broker: Mosquitto, sqlite_registry: str) -> None:
    psk = add_device(sqlite_registry)
    metrics = GatewayMetrics()
    metrics_port = free_port()
    metrics.serve("127.0.0.1", metrics_port)

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    async def test() -> None:
        async with running_gateway(sqlite_registry, broker, metrics=metrics) as gateway:
            with pytest.raises(PeerError):
                await USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=bytes(32)).connect()
            async with USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=psk) as client:
                await client.send(b"12345")
                await wait_until_async(lambda: "usmp_gateway_messages_total{direction=\"up\"} 1.0" in scrape(), 10,
                                       "the uplink counted")
                text = await asyncio.to_thread(scrape)
                assert "usmp_gateway_sessions_open 1.0" in text
                assert 'usmp_gateway_handshakes_total{result="ok"} 1.0' in text
                assert 'usmp_gateway_handshakes_total{result="AUTH_FAILED"} 1.0' in text
                assert 'usmp_gateway_bytes_total{direction="up"} 5.0' in text
                assert "usmp_gateway_mqtt_connected 1.0" in text
                assert gateway.snapshot()["handshakes"]["failed"].get("AUTH_FAILED", 0) >= 1
            await wait_until_async(lambda: "usmp_gateway_sessions_open 0.0" in scrape(), 10, "the session closed")

    run(test)


@pytest.mark.parametrize("version", ["3.1.1", "5"])
def test_tls_and_a_password_to_the_broker(tmp_path: Path, sqlite_registry: str, version: str) -> None:
    """mqtts:// with the broker's CA and a username and password; a wrong password gets no connection."""
    ca, cert, key = make_tls_files(tmp_path)
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "gateway", "right password"], check=True)
    passwords.chmod(0o600)
    broker = Mosquitto(tmp_path / "tls-broker", [
        "allow_anonymous false", f"password_file {passwords}",
        f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"])
    broker.start()
    psk = add_device(sqlite_registry)

    async def test() -> None:
        for password, works in (("wrong password", False), ("right password", True)):
            gateway = Gateway(
                sqlite_registry, [parse_listen("tcp://127.0.0.1:0")],
                mqtt=MqttSettings("127.0.0.1", broker.port, tls=True, ca_certs=str(ca), username="gateway",
                                  password=password, version=version, reconnect_min=0.1, reconnect_max=0.2),
                config=GatewayConfig(name="tls-gw"))
            await gateway.start()
            try:
                assert gateway.bridge is not None
                assert await gateway.bridge.wait_connected(3 if not works else 10) is works, password
                if works:
                    async with USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=psk) as client:
                        await client.send(b"over tls")
                        await wait_until_async(lambda: watcher.on(UP) == [b"over tls"], 10, "the uplink")
            finally:
                await gateway.stop()

    watcher = MqttWatcher(broker.port, [UP], ca_certs=str(ca), credentials=("gateway", "right password")).start()
    try:
        run(test)
    finally:
        watcher.stop()
        broker.stop()


def test_without_the_broker_the_registry_still_replaces_sessions_and_sends_the_queue(sqlite_registry: str) -> None:
    """Two gateways over one registry and no broker: no presence and no wake messages, only the
    periodic check against the registry closes the older session and sends a queued downlink."""
    psk = add_device(sqlite_registry)

    def gateway(name: str) -> Gateway:
        return Gateway(sqlite_registry, [parse_listen("tcp://127.0.0.1:0")], mqtt=None,
                       config=GatewayConfig(name=name, reconcile_interval=0.3))

    async def test() -> None:
        gw1, gw2 = gateway("gw1"), gateway("gw2")
        await gw1.start()
        await gw2.start()
        try:
            first = USMPClient("127.0.0.1", port_of(gw1), device_id=DEVICE, psk=psk)
            await first.connect()
            reg = open_registry(sqlite_registry)
            try:
                reg.enqueue_downlink(DEVICE, b"queued while nobody was told", 60)
            finally:
                reg.close()
            assert await first.recv(timeout=5) == b"queued while nobody was told"
            async with USMPClient("127.0.0.1", port_of(gw2), device_id=DEVICE, psk=psk) as second:
                with pytest.raises(PeerClosed) as closed:
                    await first.recv(timeout=5)
                assert closed.value.reason is Condition.REPLACED
                await second.send(b"the newer session works")
            await first.close()
        finally:
            await gw1.stop()
            await gw2.stop()

    run(test)


def test_a_downlink_over_the_devices_max_message_is_rejected_and_never_blocks_the_queue(
        broker: Mosquitto, sqlite_registry: str) -> None:
    psk = add_device(sqlite_registry)
    watcher = MqttWatcher(broker.port, []).start()
    small_limits = ClientConfig(max_record=1000, max_message=1000)

    async def test() -> None:
        async with running_gateway(sqlite_registry, broker) as gateway:
            watcher.publish(DOWN, b"x" * 2000)  # queued: the gateway cannot know the limit yet
            watcher.publish(DOWN, b"queued after it")
            await wait_until_async(lambda: gateway.downlinks["queued"] == 2, 10, "two queued")
            async with USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=psk,
                                  config=small_limits) as client:
                assert await client.recv(timeout=5) == b"queued after it"
                watcher.publish(DOWN, b"y" * 2000)  # to the session: refused at once
                watcher.publish(DOWN, b"sent after it")
                assert await client.recv(timeout=5) == b"sent after it"
            assert gateway.downlinks["rejected"] == 2
        reg = open_registry(sqlite_registry)
        try:
            assert reg.queue_depth(DEVICE) == 0
        finally:
            reg.close()

    try:
        run(test)
    finally:
        watcher.stop()


def test_uplink_and_downlink_over_a_serial_line(broker: Mosquitto, sqlite_registry: str) -> None:
    """The gateway's --serial listener, joined to the device by tools/lossy_link.py's two ptys."""
    psk = add_device(sqlite_registry)
    relay = subprocess.Popen([sys.executable, str(REPO / "tools" / "lossy_link.py"), "pty"],
                             stdout=subprocess.PIPE, text=True)
    watcher = MqttWatcher(broker.port, [UP]).start()

    async def test() -> None:
        assert relay.stdout is not None
        device_end = relay.stdout.readline().split()[1]
        gateway_end = relay.stdout.readline().split()[1]
        gateway = Gateway(sqlite_registry, [parse_serial(f"{gateway_end}?baud=115200")],
                          mqtt=MqttSettings("127.0.0.1", broker.port), config=GatewayConfig(name="serial-gw"))
        await gateway.start()
        try:
            assert gateway.bridge is not None and await gateway.bridge.wait_connected(10)
            client = SerialClient(device_end, 115200, device_id=DEVICE, psk=psk)
            await client.connect()
            try:
                await client.send(b"over the line")
                await wait_until_async(lambda: watcher.on(UP) == [b"over the line"], 10, "the uplink")
                watcher.publish(DOWN, b"back over the line")
                assert await client.recv(timeout=10) == b"back over the line"
                assert gateway.snapshot()["sessions"][0]["transport"] == "serial"
            finally:
                await client.close()
        finally:
            await gateway.stop()

    try:
        run(test)
    finally:
        watcher.stop()
        relay.kill()
        relay.communicate()


def test_a_device_revoked_during_its_handshake_gets_no_session(broker: Mosquitto, sqlite_registry: str) -> None:
    """Revoked after its key was read, before its session was claimed: the claim fails, the session closes
    (BYE(REKEY)) at once; the watcher, which would also see it, is set to look only every 60 s."""
    psk = add_device(sqlite_registry)

    def revoke_after_the_key_lookup(gateway: Gateway) -> None:
        lookup = gateway._psk_for

        async def lookup_then_revoke(device_id: bytes) -> bytes | None:
            key = await lookup(device_id)
            reg = open_registry(sqlite_registry)
            try:
                reg.revoke(device_id)
            finally:
                reg.close()
            return key

        gateway._psk_for = lookup_then_revoke  # type: ignore[method-assign]

    async def test() -> None:
        async with running_gateway(sqlite_registry, broker, watch_interval=60.0,
                                   before_start=revoke_after_the_key_lookup) as gateway:
            async with USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=psk) as client:
                with pytest.raises(PeerClosed) as closed:
                    await client.recv(timeout=5)
                assert closed.value.reason is Condition.REKEY
            assert gateway.snapshot()["sessions"] == []

    run(test)


def test_a_revocation_while_the_watcher_reconnects_is_not_missed(broker: Mosquitto, sqlite_registry: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher's registry fails once, and the device is revoked before the watcher has it again:
    the watcher goes on from the counter it had, so the revocation still closes the session."""
    import usmp.gateway

    psk = add_device(sqlite_registry)
    failed = []

    class FailingOnce:
        def __init__(self, registry: Any) -> None:
            self._registry = registry

        def __getattr__(self, name: str) -> Any:
            return getattr(self._registry, name)

        def wait_for_changes(self, timeout: float) -> bool:
            if not failed and connected.is_set():
                failed.append(True)
                other = open_registry(sqlite_registry)
                try:
                    other.revoke(DEVICE)
                finally:
                    other.close()
                raise RegistryError("the database went away")
            return bool(self._registry.wait_for_changes(timeout))

    opener = usmp.gateway.open_registry
    monkeypatch.setattr(usmp.gateway, "open_registry", lambda *a, **k: FailingOnce(opener(*a, **k)))
    connected = threading.Event()

    async def test() -> None:
        async with running_gateway(sqlite_registry, broker) as gateway:
            async with USMPClient("127.0.0.1", port_of(gateway), device_id=DEVICE, psk=psk) as client:
                connected.set()
                with pytest.raises(PeerClosed) as closed:
                    await client.recv(timeout=5)
                assert closed.value.reason is Condition.REKEY
            assert failed

    run(test)
