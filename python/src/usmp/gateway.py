"""The gateway product: listeners, the device registry, the MQTT bridge and metrics (docs/gateway.md).

A :class:`Gateway` runs one :class:`~usmp.USMPServer` per listener (TCP,
UDP, serial lines), takes every device's PSK from the registry, publishes
each message a device sends to ``<prefix>/<id>/up`` and sends each message
of ``<prefix>/<id>/down`` to the device, through whichever gateway of the
cluster holds its session (the registry's downlink queue in between).

Conventions:

- The registry API is blocking (sqlite3, psycopg): every call runs on one
  worker thread of its own (``_RegistryWorker``), which also opens the
  registry, so a SQLite connection is only ever used by the thread that
  made it. The watcher thread (revocations, rotations) opens a second one.
- Cluster rules (docs/gateway.md, "Several gateways"): a session is claimed
  in the registry when it opens (``claim_session``); a gateway that sees,
  in a device's presence, another gateway holding a device it has a session
  for, checks the registry's owner and closes its own session with
  BYE(REPLACED) (spec 13, row 55). A downlink for a device without a local
  session goes into the registry's queue; if another gateway owns the
  session, that one is woken on ``<prefix>/gateways/<name>/wake``.
- A session whose device is revoked or rotated while it is open is closed
  with BYE(REKEY) (spec 13: the key it was made with is no longer valid).
- Hooks: ``on_open``, ``on_message`` and ``on_close`` lists, called after the
  gateway's own handling, for features built on the gateway (sync or async).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar, Union

from .config import ServerConfig
from .datagram import DatagramSession
from .errors import Condition, ConfigurationError, LocalProtocolError, USMPError
from .gateway_metrics import GatewayMetrics
from .mqtt_bridge import MqttBridge, MqttSettings, Topics
from .registry import Registry, RegistryError, UnknownDevice, open_registry
from .server import USMPServer
from .session import Session
from .transports import DEFAULT_BAUD, Transport, parse_target

log = logging.getLogger("usmp.gateway")

T = TypeVar("T")
AnySession = Union[Session, DatagramSession]
Hook = Callable[..., Optional[Awaitable[None]]]

# Closing a session whose key was revoked or rotated (spec 13): REKEY says
# "reconnect with a new handshake", which is the only way back in, and that
# handshake is then checked against the registry's current key.
KEY_CHANGED = Condition.REKEY


@dataclass(frozen=True)
class Listener:
    """One place devices connect to: ``tcp://HOST:PORT``, ``udp://HOST:PORT`` or a serial port."""

    transport: Transport
    host: str = ""
    port: int = 0
    path: str = ""
    baud: int = DEFAULT_BAUD

    def __str__(self) -> str:
        if self.transport == "serial":
            return f"serial {self.path}?baud={self.baud}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def parse_listen(text: str) -> Listener:
    """``tcp://HOST:PORT`` or ``udp://HOST:PORT`` (port 0: any free one)."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("tcp", "udp"):
        raise ConfigurationError(f"--listen wants tcp://HOST:PORT or udp://HOST:PORT, got {text!r}")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigurationError(f"--listen wants {scheme}://HOST:PORT, got {text!r}")
    return Listener("udp" if scheme == "udp" else "tcp", host=host.strip("[]"), port=int(port))


def parse_serial(text: str) -> Listener:
    """``PATH[?baud=N]``."""
    target = parse_target(f"serial://{text}")
    return Listener("serial", path=target.path, baud=target.baud)


@dataclass(frozen=True)
class GatewayConfig:
    """What a gateway is called and how it behaves.

    ==================  ===============  =========================================
    field               default          meaning
    ==================  ===============  =========================================
    name                the host name    unique per cluster: the registry records
                                         session owners by it
    topic_prefix        "usmp"           first level of every topic
    share_group         "usmp-gateways"  MQTT shared subscription group of the
                                         gateways of one cluster
    downlink_ttl        86400.0          seconds a queued downlink is kept
    server              ServerConfig()   limits of every listener
    watch_interval      1.0              seconds between registry change checks
                                         (SQLite; PostgreSQL wakes on NOTIFY)
    reconcile_interval  5.0              seconds between the checks that do not rely
                                         on the broker: sessions another gateway
                                         has claimed, downlinks left in the queue
    ==================  ===============  =========================================
    """

    name: str = field(default_factory=socket.gethostname)
    topic_prefix: str = "usmp"
    share_group: str = "usmp-gateways"
    downlink_ttl: float = 86400.0
    server: ServerConfig = field(default_factory=ServerConfig)
    watch_interval: float = 1.0
    reconcile_interval: float = 5.0

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/+#\0"):
            raise ConfigurationError(f"bad gateway name {self.name!r}: it goes into topics (no / + #)")
        if self.downlink_ttl <= 0 or self.watch_interval <= 0 or self.reconcile_interval <= 0:
            raise ConfigurationError("downlink_ttl, watch_interval and reconcile_interval must be positive")


@dataclass
class SessionRecord:
    """What the gateway counts per open session (``snapshot()``)."""

    session: AnySession
    transport: str
    since: float
    messages_up: int = 0
    bytes_up: int = 0
    messages_down: int = 0
    bytes_down: int = 0
    last_seen: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        assert self.session.device_id is not None and self.session.session_id is not None
        return {
            "device_id": self.session.device_id.hex(),
            "transport": self.transport,
            "session_id": self.session.session_id.hex(),
            "since": round(self.since, 3),
            "messages_up": self.messages_up,
            "bytes_up": self.bytes_up,
            "messages_down": self.messages_down,
            "bytes_down": self.bytes_down,
            "last_seen": round(self.last_seen, 3),
        }


class _RegistryWorker:
    """The registry on one thread of its own: opened there, called there, closed there."""

    def __init__(self, location: str, wrap_key: bytes | None) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="usmp-registry")
        self._location = location
        self._wrap_key = wrap_key
        self._registry: Registry | None = None

    def _get(self) -> Registry:
        if self._registry is None:
            self._registry = open_registry(self._location, wrap_key=self._wrap_key)
        return self._registry

    async def call(self, fn: Callable[[Registry], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._get()))

    async def close(self) -> None:
        def close() -> None:
            if self._registry is not None:
                self._registry.close()
                self._registry = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)


class _HandshakeFailures(logging.Filter):
    """Counts failed handshakes by condition from the servers' log records.

    USMPServer reports a handshake that fails to no callback, only to its
    log ("handshake from %s failed: %s"; the datagram gateway: "... ended:
    %s"), so the gateway reads the condition there. The loggers are set to
    INFO so that the record exists; records under the level they had before
    are counted and then dropped, so what is printed does not change.
    Process-wide: every gateway of the process counts every failure.
    """

    LOGGERS = ("usmp.server", "usmp.datagram")

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.listeners: list[Callable[[str], None]] = []
        self._shown_from = logging.WARNING

    def install(self) -> None:
        self._shown_from = min(logging.getLogger(name).getEffectiveLevel() for name in self.LOGGERS)
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
            logger.addFilter(self)

    def uninstall(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith("handshake from") and isinstance(record.args, tuple) and record.args:
            reason = str(record.args[-1])
            self.counts[reason] = self.counts.get(reason, 0) + 1
            for listener in self.listeners:
                listener(reason)
        return record.levelno >= self._shown_from


async def _call_hook(hook: Hook, *args: Any) -> None:
    try:
        result = hook(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("gateway hook %r failed", hook)


class Gateway:
    """Devices on one side, the registry and an MQTT broker on the other.

    ::

        gateway = Gateway("devices.db", [parse_listen("tcp://0.0.0.0:9000")],
                          mqtt=parse_mqtt_url("mqtt://127.0.0.1"), config=GatewayConfig(name="gw1"))
        await gateway.start()
        ...
        await gateway.stop()

    ``mqtt=None`` runs without a broker (uplinks go to the hooks only).
    ``metrics``: a :class:`~usmp.gateway_metrics.GatewayMetrics` to update (``--metrics``).
    """

    def __init__(
        self,
        registry: str,
        listeners: Sequence[Listener],
        *,
        mqtt: MqttSettings | None,
        config: GatewayConfig | None = None,
        wrap_key: bytes | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        if not listeners:
            raise ConfigurationError("a gateway needs at least one listener")
        self.config = config or GatewayConfig()
        self.name = self.config.name
        self.listeners = list(listeners)
        self.topics = Topics(self.config.topic_prefix)
        self._registry_location = registry
        self._wrap_key = wrap_key
        self._registry = _RegistryWorker(registry, wrap_key)
        self.metrics = metrics
        self.bridge: MqttBridge | None = None
        if mqtt is not None:
            self.bridge = MqttBridge(
                mqtt,
                gateway_name=self.name,
                topics=self.topics,
                share_group=self.config.share_group,
                on_publish_failure=self._count_publish_failure,
                on_reconnect=self._count_reconnect,
            )
        self.servers: list[USMPServer] = []
        self._records: dict[bytes, SessionRecord] = {}  # by session id
        self._by_device: dict[bytes, SessionRecord] = {}
        self._drain_locks: dict[bytes, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handshake_failures = _HandshakeFailures()
        self._handshakes_ok = 0
        self.downlinks = {"sent": 0, "queued": 0, "rejected": 0}
        self.uplinks_dropped = 0
        self._watcher: threading.Thread | None = None
        self._watching = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self.started: float | None = None
        self.on_open: list[Hook] = []
        self.on_message: list[Hook] = []
        self.on_close: list[Hook] = []

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Clear this gateway's stale session claims, start the broker connection and the listeners."""
        self._loop = asyncio.get_running_loop()
        released = await self._registry.call(lambda r: r.release_gateway(self.name))
        if released:
            log.info("released %d session claim(s) left by an earlier run of gateway %s", released, self.name)
        self._handshake_failures.install()
        if self.metrics is not None:
            self._handshake_failures.listeners.append(self.metrics.handshake_failed)
            self.metrics.bind(self)
        if self.bridge is not None:
            self.bridge.start(self._loop, self._on_downlink, self._on_presence, self._on_wake)
        for listener in self.listeners:
            server = USMPServer(
                listener.host or None,
                listener.port,
                psk=self._psk_for,
                on_data=self._on_data,
                on_open=self._on_open,
                on_close=self._on_close,
                config=self.config.server,
                transport=listener.transport,
                serial_port=listener.path or None,
                baud=listener.baud,
            )
            await server.start()
            self.servers.append(server)
        self._watching.set()
        self._watcher = threading.Thread(target=self._watch, name=f"usmp-watch-{self.name}", daemon=True)
        self._watcher.start()
        self._reconciler = asyncio.create_task(self._reconcile_forever())
        self.started = time.time()

    async def stop(self) -> None:
        """BYE(SHUTDOWN) to every session, then the broker's goodbye, then the registry."""
        self._watching.clear()
        if self._reconciler is not None:
            self._reconciler.cancel()
            await asyncio.gather(self._reconciler, return_exceptions=True)
            self._reconciler = None
        for server in self.servers:
            await server.stop()
        self.servers = []
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.bridge is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.bridge.stop)
        if self._watcher is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._watcher.join)
            self._watcher = None
        self._handshake_failures.uninstall()
        await self._registry.close()

    def addresses(self) -> list[tuple[str, str, int]]:
        """(transport, host, port) of every network listener; serial ones have none."""
        found: list[tuple[str, str, int]] = []
        for listener, server in zip(self.listeners, self.servers):
            for host, port in server.addresses:
                found.append((listener.transport, host, port))
        return found

    # --- state ----------------------------------------------------------------------------------

    def session_for(self, device_id: bytes) -> AnySession | None:
        record = self._by_device.get(device_id)
        return record.session if record is not None else None

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able picture of the gateway: its sessions and its counters."""
        bridge = self.bridge
        return {
            "gateway": self.name,
            "started": round(self.started, 3) if self.started is not None else None,
            "listeners": [str(listener) for listener in self.listeners],
            "sessions": [record.as_dict() for record in self._records.values()],
            "handshakes": {"ok": self._handshakes_ok, "failed": dict(self._handshake_failures.counts)},
            "downlinks": dict(self.downlinks),
            "uplinks_dropped": self.uplinks_dropped,
            "mqtt": None
            if bridge is None
            else {
                "broker": bridge.settings.describe(),
                "connected": bridge.connected,
                "queued": bridge.queued,
                "publish_failures": bridge.publish_failures,
                "reconnects": bridge.reconnects,
            },
        }

    # --- device side --------------------------------------------------------------------------

    async def _psk_for(self, device_id: bytes) -> bytes | None:
        # None (unknown or revoked) fails the handshake with AUTH_FAILED like a wrong key (spec 13).
        return await self._registry.call(lambda r: r.psk_for(device_id))

    async def _on_open(self, session: AnySession) -> None:
        assert session.device_id is not None and session.session_id is not None
        device_id: bytes = session.device_id
        session_id: bytes = session.session_id
        now = time.time()
        record = SessionRecord(session, self._transport_of(session), since=now, last_seen=now)
        older = self._by_device.get(device_id)
        self._records[session_id] = record
        self._by_device[device_id] = record
        self._handshakes_ok += 1
        if self.metrics is not None:
            self.metrics.session_opened()
        if older is not None and older.session is not session and not older.session.closed:
            # Another listener of this gateway had the device (spec 13, row 55).
            self._spawn(older.session.close(Condition.REPLACED))
        try:
            previous = await self._registry.call(lambda r: r.claim_session(device_id, self.name, session_id))
        except UnknownDevice as error:
            # Revoked (or removed) between its key lookup and now: the key is withdrawn (spec 13).
            log.info("device %s: %s; closing its new session", device_id.hex(), error)
            self._spawn(session.close(KEY_CHANGED))
            return
        except RegistryError:
            log.exception("claiming the session of device %s failed", device_id.hex())
            previous = None
        if previous is not None and previous != self.name:
            log.info("device %s moved from gateway %s to %s", device_id.hex(), previous, self.name)
        if self.bridge is not None:
            self.bridge.publish_presence(
                device_id,
                {"online": True, "gateway": self.name, "session_id": session_id.hex(), "since": round(now, 3)},
            )
        for hook in self.on_open:
            await _call_hook(hook, session)
        try:
            await self._drain(device_id)
        except RegistryError:
            # The session stays: its queue is tried again by reconcile().
            log.exception("sending the queued downlinks of device %s failed", device_id.hex())

    async def _on_data(self, session: AnySession, data: bytes) -> None:
        assert session.device_id is not None and session.session_id is not None
        record = self._records.get(session.session_id)
        if record is not None:
            record.messages_up += 1
            record.bytes_up += len(data)
            record.last_seen = time.time()
        if self.metrics is not None:
            self.metrics.message("up", len(data))
        if self.bridge is not None and not self.bridge.publish_uplink(session.device_id, data):
            self.uplinks_dropped += 1
            if self.metrics is not None:
                self.metrics.uplink_dropped()
        for hook in self.on_message:
            await _call_hook(hook, session, data)

    async def _on_close(self, session: AnySession, reason: Condition) -> None:
        assert session.device_id is not None and session.session_id is not None
        device_id: bytes = session.device_id
        session_id: bytes = session.session_id
        record = self._records.pop(session_id, None)
        if self._by_device.get(device_id) is record:
            del self._by_device[device_id]
            lock = self._drain_locks.get(device_id)
            if lock is not None and not lock.locked():
                del self._drain_locks[device_id]
        if self.metrics is not None:
            self.metrics.session_closed()
        try:
            await self._registry.call(lambda r: r.release_session(device_id, self.name, session_id))
            owner = await self._registry.call(lambda r: r.session_owner(device_id))
        except RegistryError:
            log.exception("releasing the session of device %s failed", device_id.hex())
            owner = None
        # Offline only if no gateway holds the device now: after a takeover the new owner speaks for it.
        if owner is None and self.bridge is not None and device_id not in self._by_device:
            since = record.since if record is not None else time.time()
            self.bridge.publish_presence(
                device_id,
                {
                    "online": False,
                    "gateway": self.name,
                    "session_id": session_id.hex(),
                    "since": round(since, 3),
                    "last_seen": round(time.time(), 3),
                    "reason": reason.value,
                },
            )
        for hook in self.on_close:
            await _call_hook(hook, session, reason)

    @staticmethod
    def _transport_of(session: AnySession) -> str:
        if isinstance(session, DatagramSession):
            peer = session.peer
            return "udp" if isinstance(peer, tuple) else "serial"
        return "tcp"

    # --- downlinks ------------------------------------------------------------------------------

    async def _send(self, record: SessionRecord, payload: bytes) -> str:
        """``"sent"``; ``"too large"`` (over the device's ``max_message``: it never fits); ``"failed"``
        (the session ended: the downlink can wait for the next one)."""
        device = (record.session.device_id or b"").hex()
        try:
            await record.session.send(payload)
        except LocalProtocolError as error:
            if error.condition is not Condition.TOO_LARGE:
                raise
            log.warning("downlink for device %s dropped: %s", device, error)
            return "too large"
        except USMPError as error:
            log.info("downlink to device %s not sent: %s", device, error)
            return "failed"
        record.messages_down += 1
        record.bytes_down += len(payload)
        if self.metrics is not None:
            self.metrics.message("down", len(payload))
        return "sent"

    async def _on_downlink(self, device_id: bytes, payload: bytes) -> None:
        """One QoS 1 delivery from the broker: sent to the local session, else queued in the registry."""
        record = self._by_device.get(device_id)
        if record is not None and record.session.established and not record.session.closed:
            outcome = await self._send(record, payload)
            if outcome != "failed":
                self._count_downlink("sent" if outcome == "sent" else "rejected")
                return
        try:
            await self._registry.call(lambda r: r.enqueue_downlink(device_id, payload, self.config.downlink_ttl))
        except RegistryError as error:
            # QueueFull, UnknownDevice (or revoked), over a message's size, or the database failed.
            log.warning("downlink for device %s rejected: %s", device_id.hex(), error)
            self._count_downlink("rejected")
            return
        self._count_downlink("queued")
        # Enqueue first, then look for the owner: a session opening meanwhile drains after its claim.
        owner = await self._registry.call(lambda r: r.session_owner(device_id))
        if owner is None:
            return
        if owner[0] == self.name:
            await self._drain(device_id)
        elif self.bridge is not None:
            self.bridge.publish_wake(owner[0], device_id)

    async def _on_wake(self, device_id: bytes) -> None:
        await self._drain(device_id)

    async def _drain(self, device_id: bytes) -> None:
        """Sends the device's queued downlinks in order, each acknowledged in the registry once sent."""
        # One drain per device at a time, or two could send the same queued downlink.
        lock = self._drain_locks.setdefault(device_id, asyncio.Lock())
        async with lock:
            while True:
                record = self._by_device.get(device_id)
                if record is None:
                    return
                pending = await self._registry.call(lambda r: r.pending_downlinks(device_id))
                if not pending:
                    return
                for downlink_id, payload in pending:
                    outcome = await self._send(record, payload)
                    if outcome == "failed":
                        return  # stays queued for the next session
                    if outcome == "too large":
                        self._count_downlink("rejected")
                    await self._ack(downlink_id)  # sent, or never sendable: out of the queue either way

    async def _ack(self, downlink_id: int) -> None:
        await self._registry.call(lambda r: r.ack_downlink(downlink_id))

    def _count_downlink(self, result: str) -> None:
        self.downlinks[result] += 1
        if self.metrics is not None:
            self.metrics.downlink(result)

    # --- the cluster --------------------------------------------------------------------------

    async def _on_presence(self, device_id: bytes, status: dict[str, Any]) -> None:
        """Another gateway announced a session of a device this one has: the registry decides."""
        record = self._by_device.get(device_id)
        if record is None or not status.get("online") or status.get("gateway") == self.name:
            return
        owner = await self._registry.call(lambda r: r.session_owner(device_id))
        session_id = record.session.session_id
        if owner is not None and (owner[0] != self.name or owner[1] != session_id) and not record.session.closed:
            log.info("device %s: a newer session at gateway %s replaces this one", device_id.hex(), owner[0])
            await record.session.close(Condition.REPLACED)

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.reconcile_interval)
            try:
                await self.reconcile()
            except RegistryError:
                log.exception("reconciling with the registry failed; trying again later")

    async def reconcile(self) -> None:
        """What the broker's messages normally trigger, checked against the registry itself.

        The presence and wake messages are fast but can be missed (the broker
        was down, a message raced a session opening): every
        ``reconcile_interval`` the gateway closes with BYE(REPLACED) the
        sessions whose device the registry says another gateway holds, and
        sends the queued downlinks of its devices.
        """
        if not self._by_device:
            return
        records = await self._registry.call(lambda r: r.list_devices())
        for device in records:
            record = self._by_device.get(device.device_id)
            if record is None or device.gateway is None or device.gateway == self.name or record.session.closed:
                continue
            # Confirm with the owner's session id: the claim may have moved on meanwhile.
            owner = await self._registry.call(lambda r: r.session_owner(device.device_id))
            if owner is not None and owner[0] != self.name and not record.session.closed:
                log.info("device %s: gateway %s holds a newer session; closing this one", device.device_id.hex(),
                         owner[0])
                self._spawn(record.session.close(Condition.REPLACED))
        waiting = await self._registry.call(lambda r: r.devices_with_downlinks())
        for device_id in waiting:
            if device_id in self._by_device:
                await self._drain(device_id)

    def _key_changed(self, device_id: bytes, kind: str) -> None:
        record = self._by_device.get(device_id)
        if record is None or record.session.closed:
            return
        log.info("device %s %s: closing its session", device_id.hex(), kind)
        self._spawn(record.session.close(KEY_CHANGED))

    def _watch(self) -> None:
        """The watcher thread: registry changes (revoke, rotate) to the asyncio loop."""
        loop = self._loop
        assert loop is not None
        registry: Registry | None = None
        counter: int | None = None  # kept across a reopen, so changes made meanwhile are not skipped
        depth_read = 0.0
        while self._watching.is_set():
            try:
                if registry is None:
                    registry = open_registry(self._registry_location, wrap_key=self._wrap_key)
                if counter is None:
                    counter = registry.change_counter()
                registry.wait_for_changes(self.config.watch_interval)
                counter, changes = registry.changed_since(counter)
            except Exception:
                log.exception("watching the registry failed; retrying")
                if registry is not None:
                    registry.close()
                    registry = None
                time.sleep(self.config.watch_interval)
                continue
            for device_id, kind in changes:
                if kind in ("revoked", "rotated"):
                    loop.call_soon_threadsafe(self._key_changed, device_id, kind)
            # PostgreSQL wakes the watcher on every claim and downlink: count the queue once a second at most.
            if self.metrics is not None and time.monotonic() - depth_read >= 1.0:
                depth_read = time.monotonic()
                try:
                    depth = registry.queue_depth()
                except Exception:
                    depth = -1
                if depth >= 0:
                    loop.call_soon_threadsafe(self.metrics.queue_depth, depth)
        if registry is not None:
            registry.close()

    # --- helpers --------------------------------------------------------------------------------

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _count_publish_failure(self) -> None:
        if self.metrics is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.metrics.publish_failed)

    def _count_reconnect(self) -> None:
        if self.metrics is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.metrics.reconnected)

