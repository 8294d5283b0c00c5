"""The C gateway (``usmp_server``) over UDP and a serial line, with the Python client, through the
lossy-link simulator (tools/lossy_link.py).

Every run is seeded and bounded. Under 20% loss plus duplication and reordering the handshake
completes within its timeout, and of 1,000 messages each way none is delivered twice, none
corrupted, none out of order within a fragmented message (spec 8.5); the delivered fractions are
printed. Bit errors on the serial line are dropped and counted and the session survives; replay,
reflection and a spoofed ERROR through the relay change nothing; a HELLO flood from many source
ports gets COOKIEs and honest clients still connect (spec 8.3, 8.4).

The Python UDP and serial clients and the simulator come with the Python datagram transports; where
they are absent these tests are skipped with that reason.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from interop_harness import CBuild, CProcess, async_test, pattern

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "tools") not in sys.path:
    sys.path.insert(0, str(REPO / "tools"))

if importlib.util.find_spec("usmp.udp") is None or not (REPO / "tools" / "lossy_link.py").exists():
    pytest.skip("needs the Python UDP and serial transports and tools/lossy_link.py", allow_module_level=True)

from lossy_link import Impairment, PtyRelay, UdpRelay  # noqa: E402
from usmp.config import ClientConfig  # noqa: E402
from usmp.datagram import datagram_config  # noqa: E402
from usmp.engine import ClientEngine, Mode  # noqa: E402
from usmp.serial_link import SerialClient  # noqa: E402
from usmp.udp import UDPClient  # noqa: E402

DEVICE = bytes.fromhex("deadbeef0001")
PSK = bytes(range(1, 33))
MESSAGES = 1000
LOSSY = dict(loss=0.2, duplicate=0.1, reorder=0.1)


def message(index: int) -> bytes:
    """Message index: its number, then a pattern; every 10th spans 3 records of 1207 bytes."""
    length = 2500 if index % 10 == 0 else 16 + (index * 37) % 600
    return struct.pack(">I", index) + pattern(length, index)


class DatagramGateway:
    """``usmp_server --udp 0`` or ``--serial PATH`` with a PSK file."""

    def __init__(self, build: CBuild, workdir: Path, transport: list[str], extra: list[str] | None = None):
        workdir.mkdir(parents=True, exist_ok=True)
        psk_file = workdir / "devices.psk"
        psk_file.write_text(
            "".join(f"{d.hex()} {PSK.hex()}\n" for d in [DEVICE] + [bytes([0xAB, 0, 0, 0, 0, n]) for n in range(8)])
        )
        argv = [str(build.program("server")), "--psk-file", str(psk_file), *transport, *(extra or [])]
        self.process = CProcess(argv, "usmp_server")
        self.port = 0

    async def start(self) -> None:
        await self.process.start()
        m = await self.process.wait_line(r"(?:udp on 127\.0\.0\.1:(\d+)|serving )", 10.0)
        if m.group(1):
            self.port = int(m.group(1))

    async def stop(self) -> dict[str, int]:
        """Stops it (exit status 0, no sanitizer report) and returns the counters of its last lines."""
        await self.process.finish(signal.SIGTERM, expect=0)
        text = "\n".join(self.process.lines)
        counts: dict[str, int] = {}
        m = re.search(r"messages: (\d+) in, (\d+) out", text)
        assert m, text
        counts["messages_in"], counts["messages_out"] = int(m.group(1)), int(m.group(2))
        m = re.search(
            r"dropped: (\d+) corrupt frames, (\d+) records, (\d+) for no session, (\d+) handshake frames; "
            r"(\d+) cookies, (\d+) BUSY, (\d+) rebinds",
            text,
        )
        assert m, text
        for i, key in enumerate(
            ["cobs_errors", "records_dropped", "unknown_session", "handshake_dropped", "cookies", "busy", "rebinds"]
        ):
            counts[key] = int(m.group(i + 1))
        return counts

    def closed_sessions(self) -> list[str]:
        return [line for line in self.process.lines if re.search(r"session \w+ closed", line)]


async def exchange(client: Any, count: int, pace: int = 20) -> tuple[dict[int, int], int]:
    """Sends count messages and collects the echoes until 2 s pass without one. Returns how often
    each message came back, and the number of echoes that matched no message (corrupted)."""
    received: dict[int, int] = {}
    corrupted = 0

    async def collect() -> None:
        nonlocal corrupted
        while True:
            try:
                data = await client.recv(timeout=2.0)
            except TimeoutError:
                return
            index = struct.unpack(">I", data[:4])[0] if len(data) >= 4 else -1
            if 0 <= index < count and data == message(index):
                received[index] = received.get(index, 0) + 1
            else:
                corrupted += 1

    collector = asyncio.create_task(collect())
    for i in range(count):
        await client.send(message(i))
        if i % pace == pace - 1:
            await asyncio.sleep(0.01)  # a device's pace, not a burst that overflows socket buffers
    await collector
    return received, corrupted


def report(name: str, sent: int, gateway: dict[str, int], received: dict[int, int]) -> None:
    print(
        f"{name}: device->gateway delivered {gateway['messages_in']}/{sent} "
        f"({gateway['messages_in'] / sent:.1%}); gateway->device delivered {len(received)}/{gateway['messages_out']} "
        f"({len(received) / max(1, gateway['messages_out']):.1%})"
    )


def check_at_most_once(sent: int, gateway: dict[str, int], received: dict[int, int], corrupted: int) -> None:
    assert corrupted == 0, f"{corrupted} echoes matched no message: corrupted or reordered fragments"
    twice = {i: n for i, n in received.items() if n > 1}
    assert not twice, f"delivered more than once: {twice}"
    assert gateway["messages_in"] <= sent, "the gateway delivered a message twice"
    assert len(received) <= gateway["messages_out"]
    assert len(received) > 0


@async_test(timeout=180)
async def test_udp_lossy_link_1000_messages_each_way(c_build: CBuild, tmp_path: Path) -> None:
    gateway = DatagramGateway(c_build, tmp_path, ["--udp", "0"])
    await gateway.start()
    relay = UdpRelay(("127.0.0.1", gateway.port), Impairment(**LOSSY, seed=17))
    await relay.start()
    client = UDPClient(*relay.address, device_id=DEVICE, psk=PSK)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.connect()
        assert loop.time() - started < ClientConfig().handshake_timeout
        received, corrupted = await exchange(client, MESSAGES)
        await client.close()
    finally:
        relay.close()
    counts = await gateway.stop()
    report("udp", MESSAGES, counts, received)
    print(f"udp relay: up {relay.up.counts}, down {relay.down.counts}")
    check_at_most_once(MESSAGES, counts, received, corrupted)
    assert relay.up.counts.duplicated > 0 and relay.up.counts.reordered > 0 and relay.up.counts.lost > 0
    # Duplicates are dropped by the replay window (spec 6.5), not delivered.
    assert counts["records_dropped"] > 0


@async_test(timeout=180)
async def test_serial_lossy_link_1000_messages_each_way(c_build: CBuild, tmp_path: Path) -> None:
    link = PtyRelay(Impairment(**LOSSY, seed=23))
    await link.start()
    gateway = DatagramGateway(c_build, tmp_path, ["--serial", link.gateway_path])
    try:
        await gateway.start()
        client = SerialClient(link.device_path, device_id=DEVICE, psk=PSK)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.connect()
        assert loop.time() - started < ClientConfig().handshake_timeout
        received, corrupted = await exchange(client, MESSAGES)
        await client.close()
        counts = await gateway.stop()
    finally:
        link.close()
    report("serial", MESSAGES, counts, received)
    check_at_most_once(MESSAGES, counts, received, corrupted)
    assert counts["cookies"] == 0, "a serial line never uses cookies (spec 8.4 rule 4)"


@async_test(timeout=120)
async def test_serial_bit_errors_dropped_counted_session_survives(c_build: CBuild, tmp_path: Path) -> None:
    link = PtyRelay(Impairment(bit_error=0.0005, seed=5))
    await link.start()
    gateway = DatagramGateway(c_build, tmp_path, ["--serial", link.gateway_path])
    try:
        await gateway.start()
        client = SerialClient(link.device_path, device_id=DEVICE, psk=PSK, config=ClientConfig(handshake_timeout=30))
        await client.connect()
        received, corrupted = await exchange(client, 300, pace=5)
        assert client.connected, "bit errors ended the session"
        await client.close()
        counts = await gateway.stop()
    finally:
        link.close()
    corrupted_frames = link.to_gateway.counts.corrupted + link.to_device.counts.corrupted
    print(f"serial bit errors: {corrupted_frames} frames corrupted on the line; gateway dropped "
          f"{counts['cobs_errors']} COBS frames and {counts['records_dropped']} records; "
          f"client dropped {client.stats.dropped_total} and {client.stats.framing_errors} COBS frames")
    assert corrupted == 0
    assert corrupted_frames > 0
    assert counts["cobs_errors"] + counts["records_dropped"] + counts["handshake_dropped"] > 0
    assert client.stats.dropped_total + client.stats.framing_errors > 0
    # One session, ended only by the client's BYE or, when bit errors ate that BYE, by the stop.
    assert sum(" open: device " in line for line in gateway.process.lines) == 1
    assert all(
        "BYE from the device" in line or "gateway shutting down" in line for line in gateway.closed_sessions()
    ), gateway.closed_sessions()


@async_test(timeout=120)
async def test_udp_replay_reflection_spoofed_error_change_nothing(c_build: CBuild, tmp_path: Path) -> None:
    gateway = DatagramGateway(c_build, tmp_path, ["--udp", "0"])
    await gateway.start()
    relay = UdpRelay(("127.0.0.1", gateway.port), Impairment(seed=1))
    await relay.start()
    client = UDPClient(*relay.address, device_id=DEVICE, psk=PSK)
    try:
        await client.connect()
        for i in range(5):
            await client.send(message(i))
            assert await client.recv(timeout=5) == message(i)
        device = relay.captured[0][1]
        up = [d for direction, _, d in relay.captured if direction == "up"]
        down = [d for direction, _, d in relay.captured if direction == "down"]
        # A late duplicate HELLO (spec 8.4 rule 1): dropped, nothing sent, no new handshake.
        assert up[0][0] == 0x01
        answers_before = sum(direction == "down" for direction, _, _ in relay.captured)
        await relay.inject_up(device, up[0])
        await asyncio.sleep(0.3)
        assert sum(direction == "down" for direction, _, _ in relay.captured) == answers_before, "late HELLO answered"
        for datagram in up:  # replay: every datagram the device sent, again
            await relay.inject_up(device, datagram)
        for datagram in up:  # reflection: the device's own datagrams sent back to it
            relay.inject_down(device, datagram)
        for datagram in down:  # the gateway's datagrams replayed to the device
            relay.inject_down(device, datagram)
        for code in (0x05, 0x07, 0x0D):  # spoofed ERROR from the device's address
            await relay.inject_up(device, bytes([0xFF, code]))
        spoof = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # ... and from elsewhere
        spoof.sendto(bytes([0xFF, 0x05]), ("127.0.0.1", gateway.port))
        spoof.close()
        await asyncio.sleep(0.5)
        with pytest.raises(TimeoutError):
            extra = await client.recv(timeout=0.5)
            pytest.fail(f"a replayed or reflected datagram was delivered: {extra[:8]!r}")
        for i in range(5, 10):
            await client.send(message(i))
            assert await client.recv(timeout=5) == message(i)
        assert client.connected
        await client.close()
        await gateway.process.wait_line(r"session \w+ closed", 5.0)  # the BYE has passed the relay
    finally:
        relay.close()
    counts = await gateway.stop()
    assert counts["messages_in"] == 10, "a replayed record was delivered to the application"
    assert counts["records_dropped"] + counts["handshake_dropped"] >= len(up)
    assert all("BYE from the device" in line for line in gateway.closed_sessions()), gateway.closed_sessions()


def genuine_hello(device: bytes) -> bytes:
    """A datagram HELLO as a real device sends it."""
    engine = ClientEngine(mode=Mode.DATAGRAM, device_id=device, psk=PSK, config=datagram_config(ClientConfig()))
    engine.start(0.0)
    frames = list(engine.frames_to_send())
    assert len(frames) == 1 and frames[0][0] == 0x01
    return bytes(frames[0])


@async_test(timeout=120)
async def test_udp_hello_flood_gets_cookies_honest_clients_connect(c_build: CBuild, tmp_path: Path) -> None:
    gateway = DatagramGateway(c_build, tmp_path, ["--udp", "0"], ["--max-sessions", "8"])
    await gateway.start()
    flooders = []
    cookies = 0
    try:
        for n in range(200):  # 200 source ports, none of which ever answers
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.bind(("127.0.0.1", 0))
            s.sendto(genuine_hello(bytes([0xAB, 0, 0, 0, 0, n % 8])), ("127.0.0.1", gateway.port))
            flooders.append(s)
        answered: set[int] = set()
        deadline = asyncio.get_running_loop().time() + 20.0  # a slow gateway (valgrind) answers late
        while len(answered) < len(flooders) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            for n, s in enumerate(flooders):
                try:
                    while True:
                        answer = s.recv(2048)
                        answered.add(n)
                        if answer[0] == 0x0A and len(answer) == 17:
                            cookies += 1
                except BlockingIOError:
                    pass
        # Handshakes start until more than cookie_threshold (4) are in progress; every later HELLO
        # gets a COOKIE (spec 8.3), not BUSY, not a slot.
        assert cookies >= 200 - 5, cookies
        clients = [UDPClient("127.0.0.1", gateway.port, device_id=bytes([0xAB, 0, 0, 0, 0, n]), psk=PSK)
                   for n in range(3)]
        for client in clients:
            await client.connect()
        for n, client in enumerate(clients):
            await client.send(message(n))
            assert await client.recv(timeout=5) == message(n)
        for client in clients:
            await client.close()
    finally:
        for s in flooders:
            s.close()
    counts = await gateway.stop()
    assert counts["cookies"] >= cookies
    assert counts["busy"] == 0, "a HELLO without a valid cookie was answered with BUSY (spec 8.4 rule 3)"
    assert counts["messages_in"] == 3


@async_test(timeout=60)
async def test_udp_nat_rebinding_moves_the_session(c_build: CBuild, tmp_path: Path) -> None:
    """Spec 6.5: a record that authenticates from a new source address moves its session there."""
    gateway = DatagramGateway(c_build, tmp_path, ["--udp", "0"])
    await gateway.start()
    relay = UdpRelay(("127.0.0.1", gateway.port), Impairment(seed=2))
    await relay.start()
    client = UDPClient(*relay.address, device_id=DEVICE, psk=PSK)
    try:
        await client.connect()
        await client.send(message(0))
        assert await client.recv(timeout=5) == message(0)
        device = relay.captured[0][1]
        before = relay.gateway_side_address(device)
        await relay.rebind(device)
        after = relay.gateway_side_address(device)
        assert before != after
        for i in range(1, 4):  # the echoes now go to the new address, or the client would not get them
            await client.send(message(i))
            assert await client.recv(timeout=5) == message(i)
        await client.close()
        await gateway.process.wait_line(r"session \w+ closed", 5.0)
    finally:
        relay.close()
    counts = await gateway.stop()
    assert counts["rebinds"] == 1
    assert any(f"moved to 127.0.0.1:{after[1]}" in line for line in gateway.process.lines)


@async_test(timeout=60)
async def test_udp_cookie_before_busy_at_the_limit(c_build: CBuild, tmp_path: Path) -> None:
    """Spec 8.4 rule 3: at the session limit a HELLO without a valid cookie gets COOKIE, not
    ERROR(BUSY); only a HELLO with a valid cookie is refused with BUSY."""
    gateway = DatagramGateway(c_build, tmp_path, ["--udp", "0"], ["--max-sessions", "2", "--cookie-threshold", "1"])
    await gateway.start()
    sockets = []
    try:
        for n in range(3):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2.0)
            s.bind(("127.0.0.1", 0))
            s.sendto(genuine_hello(bytes([0xAB, 0, 0, 0, 0, n])), ("127.0.0.1", gateway.port))
            sockets.append(s)
        answers = [s.recv(2048) for s in sockets]
        assert [a[0] for a in answers[:2]] == [0x02, 0x02], "the first two HELLOs fill the table with handshakes"
        assert answers[2][0] == 0x0A and len(answers[2]) == 17, f"at the limit: {answers[2][:2].hex()}, not COOKIE"
        client = UDPClient("127.0.0.1", gateway.port, device_id=DEVICE, psk=PSK,
                           config=ClientConfig(handshake_timeout=2.0))
        with pytest.raises(Exception) as refused:
            await client.connect()
        assert "BUSY" in repr(refused.value) or "BUSY" in str(getattr(refused.value, "condition", "")), refused.value
    finally:
        for s in sockets:
            s.close()
    counts = await gateway.stop()
    assert counts["cookies"] >= 2  # the third flooder and the honest client
    assert counts["busy"] >= 1
