"""``usmp monitor`` in a real terminal: tmux, 160 x 40, its pane captured while devices come and go.

A ``usmp gateway --admin PATH`` (mosquitto on loopback, mDNS off: nothing
to find here) and ``usmp monitor --admin PATH`` in a detached tmux session;
Python devices connect, send and leave; a device with a wrong key fails its
handshake; the gateway stops. Each step waits until the pane shows it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_harness import GatewayProcess, Mosquitto

from usmp import USMPClient, USMPError
from usmp.registry import open_registry

SRC = Path(__file__).resolve().parents[2] / "python" / "src"
FIRST = bytes.fromhex("deadbeef0001")
SECOND = bytes.fromhex("deadbeef0002")


@pytest.fixture
def tmux_session(tmp_path: Path) -> Iterator[str]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (tools/install-deps.sh installs it)")
    name = f"usmp-monitor-{os.getpid()}"
    # A server of its own (-L): the test never touches a user's tmux sessions.
    yield name
    subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True)


def _pane(session: str) -> str:
    return subprocess.run(["tmux", "-L", session, "capture-pane", "-p", "-t", session], check=True,
                          capture_output=True, text=True).stdout


def _wait_for_pane(session: str, predicate: "object", what: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while True:
        pane = _pane(session)
        if predicate(pane):  # type: ignore[operator]
            return pane
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; the pane shows:\n{pane}")
        time.sleep(0.2)


def _cells(pane: str, device: bytes) -> list[str]:
    """The device's row: device, transport, session, since, msgs up, bytes up, msgs down, bytes down, last seen."""
    line = next((line for line in pane.splitlines() if device.hex() in line), "")
    return [cell.strip() for cell in line.strip().strip("│").split("│")] if line else []


def test_monitor_shows_devices_come_and_go_and_failed_handshakes(tmp_path: Path, tmux_session: str) -> None:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    registry = str(tmp_path / "devices.db")
    reg = open_registry(registry)
    try:
        keys = {device: reg.add_device(device, label="monitor test") for device in (FIRST, SECOND)}
    finally:
        reg.close()
    admin = tmp_path / "admin.sock"
    gateway = GatewayProcess("mon-gw", registry, broker, tmp_path, extra=["--admin", str(admin), "--no-mdns"])
    try:
        gateway.start()
        assert stat.S_IMODE(os.stat(admin).st_mode) == 0o600
        monitor = f"PYTHONPATH={SRC} {sys.executable} -m usmp monitor --admin {admin} --interval 0.3"
        subprocess.run(["tmux", "-L", tmux_session, "new-session", "-d", "-s", tmux_session, "-x", "160",
                        "-y", "40", monitor], check=True)
        pane = _wait_for_pane(tmux_session, lambda p: "gateway mon-gw" in p, "the gateway's header")
        assert "0 session(s)" in pane and FIRST.hex() not in pane

        async def scenario() -> None:
            port = gateway.port
            async with USMPClient("127.0.0.1", port, device_id=FIRST, psk=keys[FIRST]) as first:
                for reading in (b"temp=21.5", b"temp=21.6"):
                    await first.send(reading)
                async with USMPClient("127.0.0.1", port, device_id=SECOND, psk=keys[SECOND]) as second:
                    await second.send(b"hello")
                    pane = await asyncio.to_thread(
                        _wait_for_pane, tmux_session,
                        lambda p: _cells(p, FIRST)[4:5] == ["2"] and _cells(p, SECOND)[4:5] == ["1"],
                        "both devices with their messages up")
                    assert "2 session(s)" in pane
                    first_row = _cells(pane, FIRST)
                    assert first_row[1:3] == ["tcp", first.session_id.hex()]  # type: ignore[union-attr]
                    assert first_row[4:8] == ["2", "18", "0", "0"], first_row  # messages, bytes up and down
                    assert first_row[8].endswith("s ago"), first_row
                    second_row = _cells(pane, SECOND)
                    assert second_row[1:3] == ["tcp", second.session_id.hex()]  # type: ignore[union-attr]
                    assert second_row[4:6] == ["1", "5"], second_row
                pane = await asyncio.to_thread(
                    _wait_for_pane, tmux_session, lambda p: SECOND.hex() not in p, "the second device to go")
                assert "1 session(s)" in pane and FIRST.hex() in pane
            await asyncio.to_thread(_wait_for_pane, tmux_session, lambda p: FIRST.hex() not in p,
                                    "the first device to go")
            with pytest.raises(USMPError):
                await USMPClient("127.0.0.1", port, device_id=FIRST, psk=bytes(32)).connect()

        asyncio.run(scenario())
        pane = _wait_for_pane(tmux_session, lambda p: "auth_failed" in p.lower(), "the failed handshake")
        line = next(line for line in pane.splitlines() if "auth_failed" in line.lower())
        assert [cell.strip() for cell in line.strip().strip("│").split("│")][1] == "1", line
        print(pane)
        gateway.stop()  # the socket goes with it: the monitor says so and keeps trying
        pane = _wait_for_pane(tmux_session, lambda p: f"gateway at {admin} not reachable" in p.replace("\n", ""),
                              "the monitor to notice the gateway is gone")
        assert "retrying" in pane
    finally:
        gateway.stop()
        broker.stop()
