"""The gateway's MQTT side: uplinks, downlinks and presence through a broker (docs/gateway.md).

Built on paho-mqtt 1.6 (Debian's ``python3-paho-mqtt``). paho's network loop
runs in paho's own thread (``loop_start``), so the asyncio loop never waits
on the broker: ``publish`` only appends to paho's outgoing queue, and
messages from the broker are handed to the asyncio loop with
``run_coroutine_threadsafe``.

Conventions:

- Topics: ``<prefix>/<device-id>/up``, ``<prefix>/<device-id>/down``,
  ``<prefix>/<device-id>/status``, ``<prefix>/gateways/<name>/status`` and
  ``<prefix>/gateways/<name>/wake``; device ids are 12 lowercase hex digits.
- Every publish and subscription is QoS 1. paho keeps a QoS 1 message in its
  outgoing queue until the broker's PUBACK, and sends it again (DUP) after a
  reconnect: at least once, within ``buffer_limit`` messages. A publish into
  a full queue is refused and counted (``publish_failures``), never blocks.
- A downlink is acknowledged to the broker when the handler given to
  :meth:`MqttBridge.start` has returned: paho sends the PUBACK after
  ``on_message`` returns, and ``on_message`` waits for the handler (it runs
  on the asyncio loop). So a downlink the broker saw acknowledged was handed
  to a session or written to the registry's queue, unless the handler
  reported an error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Optional

import paho.mqtt.client as paho  # type: ignore[import]

from .errors import ConfigurationError
from .psk import parse_device_id

log = logging.getLogger("usmp.mqtt")

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
# How long paho's thread waits for the asyncio loop to handle one downlink
# before it acknowledges it anyway (logged as an error).
DOWNLINK_HANDLER_TIMEOUT = 30.0

DownlinkHandler = Callable[[bytes, bytes], Awaitable[None]]
PresenceHandler = Callable[[bytes, dict[str, Any]], Awaitable[None]]
WakeHandler = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True)
class MqttSettings:
    """How to reach the broker.

    =================  =========  ==================================================
    field              default    meaning
    =================  =========  ==================================================
    host, port         -, 1883    the broker (8883 for ``mqtts://``)
    tls                False      TLS to the broker (``mqtts://``)
    ca_certs           None       CA file for the broker's certificate (TLS); None:
                                  the system's CAs
    certfile, keyfile  None       client certificate and key (TLS), optional
    username           None       MQTT username (from the URL or an option)
    password           None       MQTT password (from an environment variable)
    version            "3.1.1"    "3.1.1" or "5"
    keepalive          30         seconds, MQTT keep alive
    buffer_limit       10000      QoS 1 messages kept for the broker (in flight
                                  and waiting) before a publish is refused
    reconnect_min/max  0.5, 30.0  reconnect backoff in seconds (paho doubles the
                                  delay from min up to max)
    =================  =========  ==================================================
    """

    host: str
    port: int = DEFAULT_PORT
    tls: bool = False
    ca_certs: Optional[str] = None
    certfile: Optional[str] = None
    keyfile: Optional[str] = None
    username: Optional[str] = None
    password: Optional[str] = None
    version: str = "3.1.1"
    keepalive: int = 30
    buffer_limit: int = 10000
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0

    def __post_init__(self) -> None:
        if self.version not in ("3.1.1", "5"):
            raise ConfigurationError(f"MQTT version must be 3.1.1 or 5, got {self.version!r}")
        if self.buffer_limit < 1:
            raise ConfigurationError(f"the uplink buffer must hold at least 1 message, got {self.buffer_limit}")
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ConfigurationError("reconnect backoff: need 0 < min <= max")

    def describe(self) -> str:
        """The broker's address for logs: never the password."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port} (MQTT {self.version})"


def parse_mqtt_url(url: str, **options: Any) -> MqttSettings:
    """``mqtt://[USER@]HOST[:PORT]`` or ``mqtts://...`` (TLS); ``options`` are the other fields.

    A password in the URL is refused: it would show in the process list and
    in shell history (give it through an environment variable instead).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigurationError(f"expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got {url!r}")
    if parts.password is not None:
        raise ConfigurationError("put no password in the broker URL: give it in an environment variable")
    if not parts.hostname:
        raise ConfigurationError(f"the broker URL has no host: {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"the broker URL has a bad port: {url!r}") from None
    if parts.path not in ("", "/") or parts.query:
        raise ConfigurationError(f"the broker URL takes no path or query: {url!r}")
    tls = parts.scheme == "mqtts"
    if parts.username and "username" not in options:
        options["username"] = urllib.parse.unquote(parts.username)
    return MqttSettings(
        host=parts.hostname, port=port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT), tls=tls, **options
    )


class Topics:
    """The topic names under one prefix (docs/gateway.md lists them with their payloads)."""

    def __init__(self, prefix: str) -> None:
        if not prefix or any(c in prefix for c in "+#\0") or prefix.startswith("$") or prefix.endswith("/"):
            raise ConfigurationError(f"bad topic prefix {prefix!r}: no wildcards, no leading $, no trailing /")
        self.prefix = prefix

    def up(self, device_id: bytes) -> str:
        return f"{self.prefix}/{device_id.hex()}/up"

    def down(self, device_id: bytes) -> str:
        return f"{self.prefix}/{device_id.hex()}/down"

    def status(self, device_id: bytes) -> str:
        return f"{self.prefix}/{device_id.hex()}/status"

    def ota(self, device_id: bytes) -> str:
        return f"{self.prefix}/{device_id.hex()}/ota"

    def gateway_status(self, name: str) -> str:
        return f"{self.prefix}/gateways/{name}/status"

    def gateway_wake(self, name: str) -> str:
        return f"{self.prefix}/gateways/{name}/wake"

    def device_of(self, topic: str, leaf: str) -> bytes | None:
        """The device id of ``<prefix>/<id>/<leaf>``, or None if the topic is not one."""
        head = f"{self.prefix}/"
        if not topic.startswith(head) or not topic.endswith(f"/{leaf}"):
            return None
        middle = topic[len(head) : -len(leaf) - 1]
        if len(middle) != 12:
            return None
        try:
            return parse_device_id(middle)
        except (ConfigurationError, ValueError):
            return None


class MqttBridge:
    """One paho client: the gateway's connection to the broker.

    ``share_group``: downlinks are subscribed as
    ``$share/<share_group>/<prefix>/+/down``, so that of several gateways in
    the group the broker gives each downlink to one.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        gateway_name: str,
        topics: Topics,
        share_group: str = "usmp-gateways",
        on_publish_failure: Callable[[], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.gateway_name = gateway_name
        self.topics = topics
        self.share_group = share_group
        self._on_publish_failure = on_publish_failure
        self._on_reconnect = on_reconnect
        self.publish_failures = 0
        self.reconnects = 0
        self.connects = 0
        self._connected = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._downlink: DownlinkHandler | None = None
        self._presence: PresenceHandler | None = None
        self._wake: WakeHandler | None = None
        self._stopping = False
        self.since = time.time()
        version = paho.MQTTv5 if settings.version == "5" else paho.MQTTv311
        client_id = f"usmp-gateway-{gateway_name}"
        if version == paho.MQTTv5:
            self._client = paho.Client(client_id=client_id, protocol=version)
        else:
            # clean_session: the gateway's own subscriptions are made again at every connect.
            self._client = paho.Client(client_id=client_id, clean_session=True, protocol=version)
        if settings.tls:
            context = ssl.create_default_context(cafile=settings.ca_certs)
            if settings.certfile:
                context.load_cert_chain(settings.certfile, settings.keyfile)
            self._client.tls_set_context(context)
        if settings.username is not None:
            self._client.username_pw_set(settings.username, settings.password)
        self._client.max_queued_messages_set(settings.buffer_limit)
        self._client.max_inflight_messages_set(100)
        self._client.reconnect_delay_set(settings.reconnect_min, settings.reconnect_max)
        # The last will: the broker publishes this when the gateway vanishes without a goodbye.
        self._client.will_set(
            topics.gateway_status(gateway_name), self._gateway_status(online=False), qos=1, retain=True
        )
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.enable_logger(logging.getLogger("usmp.mqtt.paho"))

    # --- lifecycle ----------------------------------------------------------------------------

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        on_downlink: DownlinkHandler,
        on_presence: PresenceHandler,
        on_wake: WakeHandler,
    ) -> None:
        """Connect in the background (paho's thread) and keep reconnecting; never raises for the broker."""
        self._loop = loop
        self._downlink = on_downlink
        self._presence = on_presence
        self._wake = on_wake
        if self.settings.version == "5":
            self._client.connect_async(
                self.settings.host, self.settings.port, self.settings.keepalive, clean_start=True
            )
        else:
            self._client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive)
        self._client.loop_start()

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Publish the gateway's offline status, wait up to ``flush_timeout`` for the broker to take
        what is queued, disconnect and end paho's thread. Blocking: call it from a worker thread."""
        self._stopping = True
        if self._connected.is_set():
            self._client.publish(
                self.topics.gateway_status(self.gateway_name), self._gateway_status(online=False), qos=1, retain=True
            )
            deadline = time.monotonic() + flush_timeout
            while self.queued > 0 and self._connected.is_set() and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.queued > 0:
                log.warning("stopping with %d message(s) the broker has not acknowledged", self.queued)
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._connected.wait, timeout)

    @property
    def queued(self) -> int:
        """QoS 1 messages paho holds for the broker: in flight and waiting (bounded by ``buffer_limit``)."""
        return len(self._client._out_messages)

    # --- publishing (any thread; never blocks) -----------------------------------------------

    def publish_uplink(self, device_id: bytes, data: bytes) -> bool:
        return self._publish(self.topics.up(device_id), data, retain=False)

    def publish_presence(self, device_id: bytes, status: dict[str, Any]) -> bool:
        return self._publish(self.topics.status(device_id), json.dumps(status, sort_keys=True).encode(), retain=True)

    def publish_ota(self, device_id: bytes, event: bytes) -> bool:
        """A change of the device's OTA job (spec/ota.md 6; usmp.ota_server.event_payload), retained."""
        return self._publish(self.topics.ota(device_id), event, retain=True)

    def publish_wake(self, gateway: str, device_id: bytes) -> bool:
        return self._publish(self.topics.gateway_wake(gateway), device_id.hex().encode(), retain=False)

    def _publish(self, topic: str, payload: bytes, *, retain: bool) -> bool:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        # NO_CONN: queued by paho and sent at the next connect (still at least once).
        if info.rc in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            return True
        self.publish_failures += 1
        if self._on_publish_failure is not None:
            self._on_publish_failure()
        log.warning("publish to %s refused: %s (%d queued)", topic, paho.error_string(info.rc), self.queued)
        return False

    def _gateway_status(self, *, online: bool) -> bytes:
        status = {"online": online, "gateway": self.gateway_name, "since": round(self.since, 3)}
        return json.dumps(status, sort_keys=True).encode()

    # --- paho's thread -----------------------------------------------------------------------

    def _handle_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, properties: Any = None) -> None:
        if rc != 0:
            # MQTT 3.1.1 gives a CONNACK code, MQTT 5 a reason code object.
            reason = paho.connack_string(rc) if isinstance(rc, int) else str(rc)
            log.warning("broker %s refused the connection: %s", self.settings.describe(), reason)
            return
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
            if self._on_reconnect is not None:
                self._on_reconnect()
        log.info("connected to %s", self.settings.describe())
        prefix = self.topics.prefix
        client.subscribe(
            [
                (f"$share/{self.share_group}/{prefix}/+/down", 1),
                (f"{prefix}/+/status", 1),
                (self.topics.gateway_wake(self.gateway_name), 1),
            ]
        )
        client.publish(
            self.topics.gateway_status(self.gateway_name), self._gateway_status(online=True), qos=1, retain=True
        )
        self._connected.set()

    def _handle_disconnect(self, client: Any, userdata: Any, rc: Any, properties: Any = None) -> None:
        self._connected.clear()
        if not self._stopping:
            log.warning("disconnected from %s (%s); reconnecting", self.settings.describe(), rc)

    def _handle_message(self, client: Any, userdata: Any, message: Any) -> None:
        """Runs in paho's thread; the PUBACK goes out when this returns (paho 1.6)."""
        try:
            self._dispatch(str(message.topic), bytes(message.payload))
        except Exception:
            log.exception("handling a message on %s failed", message.topic)

    def _dispatch(self, topic: str, payload: bytes) -> None:
        loop = self._loop
        assert loop is not None and self._downlink is not None and self._presence is not None and self._wake is not None
        if topic == self.topics.gateway_wake(self.gateway_name):
            try:
                woken = parse_device_id(payload.decode("ascii"))
            except (ConfigurationError, UnicodeDecodeError, ValueError):
                log.warning("ignored a wake with a bad device id")
                return
            asyncio.run_coroutine_threadsafe(self._wake(woken), loop).add_done_callback(_log_failure)
            return
        target = self.topics.device_of(topic, "down")
        if target is not None:
            future = asyncio.run_coroutine_threadsafe(self._downlink(target, payload), loop)
            try:
                future.result(DOWNLINK_HANDLER_TIMEOUT)
            except concurrent.futures.TimeoutError:
                log.error("downlink for %s not handled within %.0f s", target.hex(), DOWNLINK_HANDLER_TIMEOUT)
            except Exception:
                log.exception("downlink for %s failed", target.hex())
            return
        about = self.topics.device_of(topic, "status")
        if about is not None and payload:
            try:
                status = json.loads(payload)
            except ValueError:
                return
            if isinstance(status, dict):
                future = asyncio.run_coroutine_threadsafe(self._presence(about, status), loop)
                future.add_done_callback(_log_failure)
            return
        if topic.endswith("/down"):
            log.warning("ignored a downlink on %s: not <prefix>/<12 hex digits>/down", topic)


def _log_failure(future: concurrent.futures.Future[None]) -> None:
    """A handler whose result nobody waits for: its exception is logged, not lost."""
    if not future.cancelled() and future.exception() is not None:
        log.error("handling a broker message failed", exc_info=future.exception())
