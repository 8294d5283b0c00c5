"""A small LAN of two network namespaces for the discovery tests.

``gateway`` and ``device`` namespaces joined by a veth pair (10.213.N.1 and
10.213.N.2, multicast on, a route for 224.0.0.0/4 so that mDNS leaves by
the veth), each with its own loopback. Everything a test starts in them runs
through ``ip netns exec``; the test process itself stays where it is. The
namespaces (and with them the veth pair) are deleted by :meth:`Lan.close`.

avahi-daemon needs a D-Bus system bus (libavahi-client talks to the daemon
over D-Bus) and writes /run/avahi-daemon: :meth:`Lan.start_avahi` gives it a
private bus in the test's directory and a private /run (a tmpfs in a mount
namespace of its own), so it never meets the host's bus or daemon.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Optional

_DBUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
"""

_AVAHI_CONFIG = """[server]
host-name=usmp-test-device
use-ipv4=yes
use-ipv6=no
allow-interfaces={interface}
enable-dbus=yes
[publish]
disable-publishing=yes
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def namespaces_unavailable() -> Optional[str]:
    """Why this machine cannot run the test, or None."""
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    probe = f"usmp-probe-{os.getpid()}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return f"ip netns add is not permitted here: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Lan:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        tag = os.getpid() % 10000
        self.subnet = 10 + os.getpid() % 240
        self.gateway_ns = f"usmp-gw-{tag}"
        self.device_ns = f"usmp-dev-{tag}"
        self.gateway_if = f"usmpg{tag}"
        self.device_if = f"usmpd{tag}"
        self.gateway_address = f"10.213.{self.subnet}.1"
        self.device_address = f"10.213.{self.subnet}.2"
        self.bus = directory / "system_bus"
        self._processes: list[subprocess.Popen[Any]] = []
        self._logs: list[IO[str]] = []

    def open(self) -> Lan:
        _ip("netns", "add", self.gateway_ns)
        _ip("netns", "add", self.device_ns)
        _ip("link", "add", self.gateway_if, "type", "veth", "peer", "name", self.device_if)
        for ns, interface, address in ((self.gateway_ns, self.gateway_if, self.gateway_address),
                                       (self.device_ns, self.device_if, self.device_address)):
            _ip("link", "set", interface, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", interface)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", interface, "multicast", "on")
            _ip("-n", ns, "link", "set", interface, "up")
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", interface)
        return self

    def close(self) -> None:
        for proc in reversed(self._processes):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for log in self._logs:
            log.close()
        for ns in (self.gateway_ns, self.device_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def start(self, ns: str, argv: Sequence[str], name: str, env: Optional[dict[str, str]] = None,
              stdout_pipe: bool = False) -> subprocess.Popen[str]:
        """A process in ``ns``; its stderr (and stdout unless piped) go to ``<name>.log``."""
        log = open(self.directory / f"{name}.log", "w", encoding="utf-8")
        self._logs.append(log)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], env=env, text=True, stderr=log,
                                stdout=subprocess.PIPE if stdout_pipe else log)
        self._processes.append(proc)
        return proc

    def run(self, ns: str, argv: Sequence[str], env: Optional[dict[str, str]] = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], env=env, text=True, capture_output=True,
                              timeout=timeout)

    def log(self, name: str) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def start_avahi(self) -> dict[str, str]:
        """dbus-daemon and avahi-daemon in the device namespace; returns the environment of their clients."""
        (self.directory / "dbus.conf").write_text(_DBUS_CONFIG.format(socket=self.bus))
        (self.directory / "avahi.conf").write_text(_AVAHI_CONFIG.format(interface=self.device_if))
        self.start(self.device_ns, ["dbus-daemon", "--nofork", f"--config-file={self.directory / 'dbus.conf'}"],
                   "dbus")
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={self.bus}")
        deadline = time.monotonic() + 10
        while not self.bus.exists():
            assert time.monotonic() < deadline, f"dbus-daemon did not start: {self.log('dbus')}"
            time.sleep(0.05)
        daemon = (f"mount -t tmpfs tmpfs /run && mkdir /run/avahi-daemon && exec avahi-daemon "
                  f"-f {self.directory / 'avahi.conf'} --no-drop-root --no-chroot --no-rlimits")
        self.start(self.device_ns, ["unshare", "--mount", "sh", "-c", daemon], "avahi", env=env)
        deadline = time.monotonic() + 15
        while "Server startup complete" not in self.log("avahi"):
            assert time.monotonic() < deadline, f"avahi-daemon did not start: {self.log('avahi')}"
            time.sleep(0.05)
        return env
