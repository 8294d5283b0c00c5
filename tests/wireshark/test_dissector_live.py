"""tools/wireshark/usmp.lua on live sessions: the Python gateway (`usmp
serve`, echo mode) and a Python or C client on loopback, captured by
Debian's dumpcap on `lo` (live capture, as root or with the capture
capability), then decoded by tshark with the key log one side wrote:

- TCP, Python client, the gateway's key log (usmp.keylog, the engine);
- TCP, the C device API (usmp_interop_device), the C key log
  (USMP_KEYLOG, ports/posix/usmp_keylog_posix.c);
- UDP, Python client, the client's key log.

Each capture must show the whole handshake, then the message both ways in
clear, and not one record that fails to open. The port is a free one, not
9000, so the dissector's port preferences are exercised too.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from wireshark_harness import ROOT, flat, tshark_fields

PSK = bytes(range(1, 33))
DEVICE_ID = "02deadbeef07"
MESSAGE = b"wireshark sees this in clear"


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")


def wait_for_line(process: subprocess.Popen[str], stream: str, needle: str, timeout: float = 20.0) -> None:
    """Reads `stream` ("stdout" or "stderr") of `process` until a line holds `needle`."""
    pipe = getattr(process, stream)
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = pipe.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return
    process.kill()
    raise AssertionError(f"{needle!r} never came; got {seen!r}")


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def c_device() -> str | None:
    build = os.environ.get("USMP_C_BUILD") or os.path.join(ROOT, "build", "openssl-asan")
    program = os.path.join(build, "tests", "interop", "usmp_interop_device")
    return program if os.access(program, os.X_OK) else None


def python_env(keylog: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "python", "src")
    env.pop("USMP_KEYLOG_FILE", None)
    if keylog:
        env["USMP_KEYLOG_FILE"] = keylog
    return env


def live_session(tmp_path: Path, *, udp: bool, client: str, keylog_side: str) -> tuple[str, str, int]:
    """Runs one session on loopback under dumpcap; returns the capture, the key log and the port."""
    dumpcap = shutil.which("dumpcap")
    if dumpcap is None:
        pytest.skip("dumpcap not found: run tools/install-deps.sh")
    port = free_port()
    pcap, keylog, psk_file = str(tmp_path / "live.pcapng"), str(tmp_path / "keys.log"), tmp_path / "keys"
    psk_file.write_text(f"{DEVICE_ID} {PSK.hex()}\n")
    capture = subprocess.Popen(
        [dumpcap, "-i", "lo", "-f", f"{'udp' if udp else 'tcp'} port {port}", "-w", pcap],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    gateway = None
    try:
        try:
            wait_for_line(capture, "stderr", "Capturing on")
        except AssertionError as error:
            # dumpcap needs root or CAP_NET_RAW on lo; say so instead of failing elsewhere.
            if os.environ.get("CI") == "true":
                raise
            pytest.skip(f"dumpcap cannot capture on lo here: {error}")
        serve = ["/usr/bin/python3", "-m", "usmp", "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--psk-file", str(psk_file)] + (["--udp"] if udp else [])
        gateway = subprocess.Popen(serve, env=python_env(keylog if keylog_side == "gateway" else None),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        wait_for_line(gateway, "stdout", "listening on")
        client_env = python_env(keylog if keylog_side == "client" else None)
        if client == "python":
            address = f"{'udp://' if udp else ''}127.0.0.1:{port}"
            result = subprocess.run(
                ["/usr/bin/python3", "-m", "usmp", "connect", address, "--device-id", DEVICE_ID,
                 "--psk-file", str(psk_file), "--linger", "1"],
                input=MESSAGE.decode() + "\n", env=client_env, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0 and result.stdout == MESSAGE.decode() + "\n", result
        else:
            program = c_device()
            if program is None:
                if os.environ.get("CI") == "true":
                    pytest.fail("no C build: set USMP_C_BUILD")
                pytest.skip("no C build with usmp_interop_device: set USMP_C_BUILD")
            script = f"connect\nsendhex {MESSAGE.hex()}\nrecv 5000\nclose\nquit\n"
            result = subprocess.run(
                [program, "--host", "127.0.0.1", "--port", str(port), "--psk-hex", PSK.hex(),
                 "--device-id", DEVICE_ID, "--no-reconnect"],
                input=script, env=client_env, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0 and f"ok recv {len(MESSAGE)} {MESSAGE.hex()}" in result.stdout, result
        time.sleep(0.5)  # the last segments reach the capture
    finally:
        if gateway is not None:
            stop(gateway)
        time.sleep(0.3)
        stop(capture)
    return pcap, keylog, port


FIELDS = ["usmp.type", "usmp.record.direction", "usmp.plaintext", "usmp.bye.reason", "_ws.expert.message"]


def check_decoded(pcap: str, keylog: str, port: int, *, udp: bool) -> None:
    with open(keylog, encoding="ascii") as f:
        lines = f.read().splitlines()
    assert len(lines) == 1 and lines[0].startswith("USMP_SESSION ")
    prefs = [f"usmp.keylog_file:{keylog}", f"usmp.{'udp' if udp else 'tcp'}_port:{port}"]
    rows = tshark_fields(pcap, FIELDS, prefs=prefs, display_filter="usmp.type")
    types = flat(rows, "usmp.type")
    assert types[:4] == ["0x01", "0x02", "0x03", "0x04"], types
    data = [(d, p) for row in rows for d, p, t in zip(row["usmp.record.direction"], row["usmp.plaintext"],
                                                       [t for t in row["usmp.type"] if t not in
                                                        ("0x01", "0x02", "0x03", "0x04")]) if t == "0x05"]
    assert data == [("c2s", MESSAGE.hex()), ("s2c", MESSAGE.hex())]
    assert "0x08" in types and flat(rows, "usmp.bye.reason")  # the session ends with a BYE, opened too
    assert flat(rows, "_ws.expert.message") == []

    # The same capture without the key log: the records stay sealed.
    rows = tshark_fields(pcap, FIELDS, prefs=prefs[1:], display_filter="usmp.type")
    assert flat(rows, "usmp.plaintext") == []


def test_live_tcp_python_client_with_the_gateway_key_log(tmp_path: Path) -> None:
    pcap, keylog, port = live_session(tmp_path, udp=False, client="python", keylog_side="gateway")
    check_decoded(pcap, keylog, port, udp=False)


def test_live_tcp_c_client_with_the_c_key_log(tmp_path: Path) -> None:
    pcap, keylog, port = live_session(tmp_path, udp=False, client="c", keylog_side="client")
    check_decoded(pcap, keylog, port, udp=False)


def test_live_udp_python_client_with_the_client_key_log(tmp_path: Path) -> None:
    pcap, keylog, port = live_session(tmp_path, udp=True, client="python", keylog_side="client")
    check_decoded(pcap, keylog, port, udp=True)
