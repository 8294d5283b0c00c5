"""What the gateway tests share: a real mosquitto, an MQTT watcher, devices that reconnect.

Every server runs on a free loopback port with its files in the test's
temporary directory, and is stopped after the test.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

import paho.mqtt.client as paho

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "python" / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from usmp import USMPClient, USMPError  # noqa: E402
from usmp.config import ClientConfig  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


async def wait_until_async(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


class Mosquitto:
    """Debian's mosquitto on a free loopback port, with persistence in ``directory``.

    Persistence keeps the subscribers' sessions and queued QoS 1 messages
    across a graceful restart (SIGTERM saves the database).
    """

    def __init__(self, directory: Path, extra_config: Sequence[str] = ()) -> None:
        if shutil.which("mosquitto") is None:
            raise RuntimeError("mosquitto is not installed: run tools/install-deps.sh")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        self.extra_config = list(extra_config)
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def write_config(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.directory}/",
            "autosave_interval 0",
            "max_queued_messages 0",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            # Run as root, mosquitto would switch to its own user, who cannot write here.
            f"user {getpass.getuser()}",
        ] + self.extra_config
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        self.write_config()
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start: {self.log.read_text() if self.log.exists() else ''}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


class MqttWatcher:
    """A paho client in its own thread that records every message of its subscriptions.

    ``client_id`` with ``persistent=True``: a persistent session (clean
    session off), so QoS 1 messages that arrive while it is disconnected
    (a broker restart) are kept for it by the broker.
    """

    def __init__(self, port: int, topics: Sequence[str], client_id: str = "", persistent: bool = False,
                 version: int = paho.MQTTv311, ca_certs: str | None = None,
                 credentials: tuple[str, str] | None = None) -> None:
        self.port = port
        self.topics = list(topics)
        self.messages: list[tuple[str, bytes, float]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        if version == paho.MQTTv5:
            self.client = paho.Client(client_id=client_id, protocol=version)
        else:
            self.client = paho.Client(client_id=client_id, clean_session=not persistent, protocol=version)
        self.client.reconnect_delay_set(0.1, 1.0)
        if ca_certs is not None:
            self.client.tls_set_context(ssl.create_default_context(cafile=ca_certs))
        if credentials is not None:
            self.client.username_pw_set(*credentials)
        self.client.on_connect = self._connected
        self.client.on_disconnect = lambda *args: self.connected.clear()
        self.client.on_message = self._message

    def _connected(self, client: Any, userdata: Any, flags: Any, rc: Any, properties: Any = None) -> None:
        if rc == 0:
            if self.topics:
                client.subscribe([(topic, 1) for topic in self.topics])
            self.connected.set()

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.lock:
            self.messages.append((str(message.topic), bytes(message.payload), time.time()))

    def start(self) -> MqttWatcher:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        wait_until(self.connected.is_set, 10, "the watcher's connection")
        time.sleep(0.1)  # the SUBACK
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def count(self, topic: str) -> int:
        return len(self.on(topic))


class Device:
    """A Python device (USMPClient) that reconnects with backoff to any of ``addresses``."""

    def __init__(self, device_id: bytes, psk: bytes, addresses: Sequence[tuple[str, int]]) -> None:
        self.device_id = device_id
        self.psk = psk
        self.addresses = list(addresses)
        self.received: list[bytes] = []
        self.client: Optional[USMPClient] = None
        self.connects = 0
        self.attempts = 0
        self._next = 0

    async def connect(self, deadline: float = 30.0, backoff: float = 0.05, backoff_max: float = 1.0) -> None:
        """Tries the addresses in turn, doubling the pause after each failure (with jitter)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        delay = backoff
        while True:
            host, port = self.addresses[self._next % len(self.addresses)]
            client = USMPClient(host, port, device_id=self.device_id, psk=self.psk,
                                config=ClientConfig(handshake_timeout=5.0))
            self.attempts += 1
            try:
                await client.connect()
            except (USMPError, OSError):
                self._next += 1
                if loop.time() > end:
                    raise
                await asyncio.sleep(delay * (0.5 + os.urandom(1)[0] / 255))
                delay = min(delay * 2, backoff_max)
                continue
            self.client = client
            self.connects += 1
            return

    async def receive_all(self) -> None:
        """Collects messages until the session ends."""
        assert self.client is not None
        try:
            while True:
                self.received.append(await self.client.recv())
        except (USMPError, OSError):
            return

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None


class GatewayProcess:
    """``usmp gateway`` as a process of its own (so that it can be killed with SIGKILL)."""

    def __init__(self, name: str, registry: str, broker: Mosquitto, directory: Path,
                 extra: Sequence[str] = ()) -> None:
        self.name = name
        self.argv = [sys.executable, "-m", "usmp", "gateway", "--name", name, "--registry", registry,
                     "--mqtt", broker.url, "--listen", "tcp://127.0.0.1:0",
                     "--handshake-rate", "10000", "--handshake-burst", "10000", *extra]
        self.log_path = directory / f"gateway-{name}.log"
        self.proc: Optional[subprocess.Popen[str]] = None
        self.port = 0

    def start(self, timeout: float = 20.0) -> GatewayProcess:
        env = dict(os.environ, PYTHONPATH=str(SRC))
        log = open(self.log_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen(self.argv, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on tcp 127.0.0.1:" not in line:
            self.proc.kill()
            raise RuntimeError(f"gateway {self.name} did not start: {line!r} {self.log_path.read_text()}")
        self.port = int(line.split("listening on tcp 127.0.0.1:")[1].split(";")[0].split(",")[0])
        return self

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def kill(self) -> None:
        """SIGKILL: no BYE, no goodbye to the broker, no release in the registry."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a broker certificate for 127.0.0.1 signed by it: (ca.crt, broker.crt, broker.key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "usmp test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (directory / "ca.crt", directory / "broker.crt", directory / "broker.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths
