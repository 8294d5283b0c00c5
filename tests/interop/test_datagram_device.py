"""C device over UDP and a serial line <-> Python gateway, through the lossy-link simulator.

The program is ``usmp_datagram_device`` (tests/interop/datagram_device.c):
the device API (usmp.h) in datagram mode, built with 128-byte records so
that the gateway's longer messages arrive fragmented. Between it and the
gateway (``UDPServer`` / ``SerialServer``) runs tools/lossy_link.py with a
fixed seed: 20% loss, duplication and reordering; on the serial line also
bit errors. 1,000 numbered messages go each way, each with a length and
content derived from its number, so that a duplicate, a damaged message or
fragments joined out of order are all caught on arrival. Datagram mode
delivers at most once and never a damaged or partial message (spec 8.5);
how many arrive is printed, not required, beyond a floor that only a
broken link would miss.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from interop_harness import DEVICE, PSK, REPO, CBuild, CProcess, async_test

sys.path.insert(0, str(REPO / "tools"))
lossy_link = pytest.importorskip("lossy_link", reason="needs tools/lossy_link.py (the lossy-link simulator)")
udp = pytest.importorskip("usmp.udp", reason="needs the Python UDP gateway (usmp.udp)")
serial_link = pytest.importorskip("usmp.serial_link", reason="needs the Python serial gateway (usmp.serial_link)")

COUNT = 1000
DATAGRAM_OVERHEAD = 25  # spec 6.2: a 9-byte header (type, session index, sequence) and the 16-byte tag
T_DATA = 0x05
HANDSHAKE_TIMEOUT_MS = 10000  # usmp_options.h USMP_HANDSHAKE_TIMEOUT_MS
LENGTHS = (6, 40, 100, 1300, 1500)


def message_length(i: int) -> int:
    return LENGTHS[i % 5] + i % 7


def message(i: int) -> bytes:
    length = message_length(i)
    return i.to_bytes(4, "big") + length.to_bytes(2, "big") + bytes((i * 31 + k * 7) & 0xFF for k in range(6, length))


class Tally:
    """What the gateway received from the device: each message once, intact."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.duplicates = 0
        self.corrupt = 0
        self.sender: asyncio.Task[None] | None = None
        self.sent = 0

    def on_data(self, session: Any, data: bytes) -> None:
        i = int.from_bytes(data[:4], "big") if len(data) >= 6 else -1
        if not 0 <= i < COUNT or data != message(i):
            self.corrupt += 1
        elif i in self.seen:
            self.duplicates += 1
        else:
            self.seen.add(i)

    def on_open(self, session: Any) -> None:
        async def send_all() -> None:
            for j in range(COUNT):
                await session.send(message(j))
                self.sent += 1
                await asyncio.sleep(0.002)

        self.sender = asyncio.get_running_loop().create_task(send_all())


async def run_device(c_build: CBuild, transport: list[str]) -> tuple[dict[str, str], list[str]]:
    device = CProcess(
        [str(c_build.program("datagram_device")), *transport, "--device-id", DEVICE.hex(), "--count", str(COUNT)],
        "usmp_datagram_device",
        env=dict(os.environ, INTEROP_PSK=PSK.hex()),
    )
    await device.start()
    rc = await device._wait_exit(150.0)
    device.finished = True
    device.check_sanitizers()
    output = "\n".join(device.lines) + device.stderr
    done = next((line for line in device.lines if line.startswith("done ")), None)
    assert done is not None, f"exit {rc}:\n{output[-3000:]}"
    fields = dict(item.split("=", 1) for item in done.split()[1:])
    assert rc == 0, f"exit {rc}: {done}\n" + "\n".join(line for line in device.lines if line.startswith("bad"))
    return fields, device.lines


def check_exchange(name: str, fields: dict[str, str], lines: list[str], tally: Tally) -> None:
    handshake = next(line for line in lines if line.startswith("handshake"))
    match = re.match(r"handshake ms=(\d+) session=[0-9a-f]{16}$", handshake)
    assert match, handshake
    assert int(match.group(1)) < HANDSHAKE_TIMEOUT_MS
    # Device -> gateway: at most once, intact.
    assert tally.duplicates == 0 and tally.corrupt == 0
    # Gateway -> device: the device's own checks (exit status 0 says none failed).
    assert fields["duplicates"] == "0" and fields["corrupt"] == "0" and fields["state"] == "ESTABLISHED"
    up = len(tally.seen) / COUNT
    down = int(fields["received"]) / COUNT
    print(f"\n{name}: handshake {match.group(1)} ms; delivered device->gateway {up:.3f}, "
          f"gateway->device {down:.3f} of {COUNT}; device dropped {fields['dropped']} datagrams "
          f"(last {fields['last_drop']}), {fields['framing']} framing errors")
    # 20% loss: a one-record message arrives ~80% of the time, a
    # fragmented one less; far below that means the link, not chance.
    assert up > 0.3 and down > 0.3, (up, down)
    assert int(fields["dropped"]) > 0  # the relay's duplicates reached the device and were refused


@async_test(timeout=240)
async def test_c_device_python_gateway_over_udp_with_loss_duplication_reordering(c_build: CBuild) -> None:
    """UDP: handshake within its timeout; 1,000 messages each way, none twice, none damaged, fragments in order."""
    program = c_build.program("datagram_device")
    assert program.exists()
    tally = Tally()
    server = udp.UDPServer("127.0.0.1", 0, psk={DEVICE: PSK}, on_data=tally.on_data, on_open=tally.on_open)
    await server.start()
    relay = lossy_link.UdpRelay(
        server.address, lossy_link.Impairment(loss=0.2, duplicate=0.1, reorder=0.1, seed=17)
    )
    await relay.start()
    try:
        host, port = relay.address
        fields, lines = await run_device(c_build, ["--udp", f"{host}:{port}"])
    finally:
        relay.close()
        await server.stop()
    check_exchange("udp", fields, lines, tally)
    assert relay.up.counts.lost > 0 and relay.up.counts.duplicated > 0 and relay.up.counts.reordered > 0
    # The wire overhead of a datagram DATA record: every unfragmented
    # message left the device as exactly its length + 25 bytes.
    single = {message_length(i) for i in range(COUNT) if message_length(i) < 128}
    data = [d for direction, _, d in relay.captured if direction == "up" and d[0] == T_DATA]
    assert data and {len(d) - DATAGRAM_OVERHEAD for d in data} == single


@async_test(timeout=240)
async def test_c_device_python_gateway_over_serial_with_loss_duplication_reordering_bit_errors(
    c_build: CBuild,
) -> None:
    """Serial (pty, COBS): the same, with bit errors: damaged frames are dropped and counted, the session survives."""
    c_build.program("datagram_device")
    tally = Tally()
    link = lossy_link.PtyRelay(
        lossy_link.Impairment(loss=0.2, duplicate=0.1, reorder=0.1, bit_error=0.0005, seed=23)
    )
    await link.start()
    server = serial_link.SerialServer(fd=link.gateway_fd, psk={DEVICE: PSK}, on_data=tally.on_data, on_open=tally.on_open)
    await server.start()
    try:
        fields, lines = await run_device(c_build, ["--serial", link.device_path])
    finally:
        await server.stop()
        link.close()
    check_exchange("serial", fields, lines, tally)
    assert link.to_device.counts.corrupted > 0
    # Every damaged frame that reached the device was dropped by the
    # deframer (framing) or by the engine (tag), none delivered.
    assert int(fields["framing"]) > 0
