"""`usmp serve --udp`, `usmp serve --serial`, `usmp connect udp://` and `serial://`, as subprocesses.

The serial test joins the two ends with the simulator's command
(`tools/lossy_link.py pty`), without impairment.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from test_cli import _env, usmp
from transport_testing import REPO

KEY = "5a" * 32


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    out, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors
    return out


def _round_trip(server: subprocess.Popen[str], address: str) -> None:
    result = usmp(
        "connect", address, "--device-id", "deadbeef0001", "--psk-env", "KEY", "--linger", "0.3",
        env={"KEY": KEY}, stdin="hello\nworld\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\nworld\n"
    assert "connected to" in result.stderr
    assert server.stdout is not None
    assert re.match(r"open [0-9a-f]{16} device deadbeef0001 from ", server.stdout.readline())
    assert re.match(r"close [0-9a-f]{16}: BYE from the device \(NONE\)$", server.stdout.readline())


def _psk_file(tmp_path: Path) -> str:
    path = tmp_path / "devices.psk"
    path.write_text(f"deadbeef0001 {KEY}\n")
    return str(path)


def test_serve_udp_and_connect_udp(tmp_path: Path) -> None:
    server = _start(
        "-m", "usmp", "serve", "--udp", "--host", "127.0.0.1", "--port", "0", "--psk-file", _psk_file(tmp_path)
    )
    try:
        assert server.stdout is not None
        status = server.stdout.readline()
        match = re.match(r"listening on udp 127\.0\.0\.1:(\d+) \(echo mode, 1 device", status)
        assert match, status
        _round_trip(server, f"udp://127.0.0.1:{match.group(1)}")
        assert "stopping" in _stop(server)
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()


def test_serve_serial_and_connect_serial_through_two_ptys(tmp_path: Path) -> None:
    relay = _start(str(Path(REPO) / "tools" / "lossy_link.py"), "pty")
    server = None
    try:
        assert relay.stdout is not None
        device = relay.stdout.readline().split()[1]
        gateway = relay.stdout.readline().split()[1]
        server = _start(
            "-m", "usmp", "serve", "--serial", gateway, "--baud", "115200", "--psk-file", _psk_file(tmp_path)
        )
        assert server.stdout is not None
        status = server.stdout.readline()
        assert status.startswith(f"listening on serial {gateway} at 115200 baud"), status
        _round_trip(server, f"serial://{device}?baud=115200")
        assert "stopping" in _stop(server)
    finally:
        for process in (server, relay):
            if process is not None:
                if process.poll() is None:
                    process.kill()
                process.communicate()  # and close its pipes


def test_connect_rejects_an_unknown_transport() -> None:
    result = usmp("connect", "sctp://127.0.0.1:9", "--device-id", "deadbeef0001", "--psk-env", "KEY", env={"KEY": KEY})
    assert result.returncode == 2 and "unknown transport" in result.stderr
    help_text = usmp("serve", "--help").stdout
    assert "--udp" in help_text and "--serial" in help_text and "--baud" in help_text
    assert "udp://" in usmp("connect", "--help").stdout
