"""mDNS discovery end to end on a LAN of two network namespaces (netns.py).

The gateway namespace runs mosquitto, an MQTT echo and ``usmp gateway``
(advertising by default) plus a second gateway started with ``--no-mdns``;
the device namespace runs ``usmp scan``, avahi-daemon and the C demo device
(``usmp_device`` of USMP_C_BUILD), which is given no address and finds the
gateway through libavahi-client.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from interop_harness import CBuild
from netns import Lan

from usmp.registry import open_registry

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "python" / "src"
DEVICE = bytes.fromhex("deadbeef0042")
BROKER_PORT = 1883  # the gateway namespace's own loopback: nothing else listens there


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(SRC))


def _usmp(*args: str) -> list[str]:
    return [sys.executable, "-m", "usmp", *args]


def _add_device(registry: str) -> bytes:
    reg = open_registry(registry)
    try:
        return reg.add_device(DEVICE, label="discovery test")
    finally:
        reg.close()


def _start_gateway_side(lan: Lan, tmp_path: Path) -> bytes:
    """mosquitto, the echo, the advertised gateway lab-gw and the quiet one; returns the device's PSK."""
    registry = str(tmp_path / "devices.db")
    psk = _add_device(registry)
    (tmp_path / "mosquitto.conf").write_text(
        f"listener {BROKER_PORT} 127.0.0.1\nallow_anonymous true\nuser root\n")
    lan.start(lan.gateway_ns, ["mosquitto", "-c", str(tmp_path / "mosquitto.conf")], "mosquitto")
    echo = lan.start(lan.gateway_ns, [sys.executable, str(HERE / "mqtt_echo.py"), str(BROKER_PORT)], "echo",
                     stdout_pipe=True)
    assert echo.stdout is not None
    assert echo.stdout.readline().strip() == "ready", f"the MQTT echo did not start: {lan.log('echo')}"
    common = ["--registry", registry, "--mqtt", f"mqtt://127.0.0.1:{BROKER_PORT}"]
    for name, extra in (("lab-gw", ["--listen", "tcp://0.0.0.0:9000", "--listen", "udp://0.0.0.0:9001"]),
                        ("quiet-gw", ["--listen", "tcp://0.0.0.0:9100", "--no-mdns"])):
        gateway = lan.start(lan.gateway_ns, _usmp("gateway", "--name", name, *common, *extra), name,
                            env=_env(), stdout_pipe=True)
        assert gateway.stdout is not None
        line = gateway.stdout.readline()
        assert "listening on" in line, f"gateway {name} did not start: {line!r} {lan.log(name)}"
        assert ("mDNS lab-gw._usmp._tcp.local." in line) == (name == "lab-gw"), line
    return psk


def test_scan_finds_the_advertised_gateway_and_the_c_device_connects_through_avahi(
        lan: Lan, tmp_path: Path, c_build: CBuild) -> None:
    device = c_build.program("device")
    psk = _start_gateway_side(lan, tmp_path)

    scan = lan.run(lan.device_ns, _usmp("scan", "--json", "--timeout", "3"), env=_env())
    assert scan.returncode == 0, scan.stderr
    gateways = json.loads(scan.stdout)
    print("usmp scan --json:", scan.stdout)
    # quiet-gw (--no-mdns) listens on the same LAN but is not announced.
    assert gateways == [{
        "name": "lab-gw",
        "version": "1",
        "suites": "1",
        "transports": {"tcp": 9000, "udp": 9001},
        "addresses": [lan.gateway_address],  # the loopback address is not announced to the LAN
    }]

    table = lan.run(lan.device_ns, _usmp("scan", "--timeout", "2"), env=_env())
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines() == [
        "NAME    VERSION  TRANSPORTS          ADDRESSES",
        f"lab-gw  1        tcp 9000, udp 9001  {lan.gateway_address}",
    ], table.stdout

    env = dict(lan.start_avahi(), DEVICE_PSK=psk.hex(), ASAN_OPTIONS="detect_leaks=1")
    for flags, transport in (([], "tcp"), (["--discover-udp"], "udp")):
        run = lan.run(lan.device_ns, [str(device), "--psk-env", "DEVICE_PSK", "--device-id", DEVICE.hex(),
                                      *flags, "--timeout-ms", "10000", "found without an address"], env=env)
        output = run.stdout + run.stderr
        print(output)
        assert run.returncode == 0, output
        port = 9000 if transport == "tcp" else 9001
        assert f"device: found lab-gw at {lan.gateway_address}:{port}" in output
        assert f"connecting to {'udp://' if transport == 'udp' else ''}{lan.gateway_address}:{port}" in output
        assert '"found without an address"' in output  # the echo came back through the broker


def test_scan_and_the_c_device_say_so_when_no_gateway_answers(lan: Lan, c_build: CBuild) -> None:
    device = c_build.program("device")
    for args, expected in ((["--json"], "[]\n"), ([], "no gateway answered within 1 s\n")):
        scan = lan.run(lan.device_ns, _usmp("scan", "--timeout", "1", *args), env=_env())
        assert (scan.returncode, scan.stdout) == (0, expected), scan.stdout + scan.stderr
    env = dict(lan.start_avahi(), DEVICE_PSK="00" * 32)
    started = time.monotonic()
    run = lan.run(lan.device_ns, [str(device), "--psk-env", "DEVICE_PSK", "--discover"], env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "no gateway answered for _usmp._tcp within 5000 ms" in run.stderr
    assert time.monotonic() - started < 30


def test_the_c_device_names_a_missing_avahi_daemon(lan: Lan, c_build: CBuild, tmp_path: Path) -> None:
    device = c_build.program("device")
    env = dict(os.environ, DEVICE_PSK="00" * 32, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={tmp_path / 'no_bus'}")
    run = lan.run(lan.device_ns, [str(device), "--psk-env", "DEVICE_PSK", "--discover"], env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "usmp_device: cannot reach avahi-daemon: " in run.stderr

