"""Prometheus metrics of a gateway (``usmp gateway --metrics HOST:PORT``; docs/gateway.md lists them).

Conventions: every metric is named ``usmp_gateway_*``, lives in a
registry of its own (not prometheus_client's global one, so that several
gateways in one process do not collide), and is updated on the asyncio
loop's thread; the gauges that read the gateway's state (MQTT buffer) are
read at scrape time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, start_http_server

if TYPE_CHECKING:
    from .gateway import Gateway
    from .mqtt_bridge import MqttBridge


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions_open = Gauge("usmp_gateway_sessions_open", "Established device sessions", registry=r)
        self.handshakes = Counter(
            "usmp_gateway_handshakes", "Handshakes by result (ok, or the condition that failed it)", ["result"],
            registry=r,
        )
        self.messages = Counter(
            "usmp_gateway_messages", "Messages by direction (up: device to broker, down: to the device)",
            ["direction"], registry=r,
        )
        self.bytes = Counter("usmp_gateway_bytes", "Message bytes by direction", ["direction"], registry=r)
        self.downlinks = Counter(
            "usmp_gateway_downlinks", "Downlinks from the broker by result (sent, queued, rejected)", ["result"],
            registry=r,
        )
        self.uplinks_dropped = Counter(
            "usmp_gateway_uplinks_dropped", "Uplinks refused because the MQTT buffer was full", registry=r
        )
        self.downlink_queue_depth = Gauge(
            "usmp_gateway_downlink_queue_depth", "Downlinks waiting in the registry's queue (all devices)", registry=r
        )
        self.mqtt_buffer = Gauge(
            "usmp_gateway_mqtt_buffer", "QoS 1 messages waiting for the broker's acknowledgement", registry=r
        )
        self.mqtt_connected = Gauge("usmp_gateway_mqtt_connected", "1 while connected to the broker", registry=r)
        self.publish_failures = Counter(
            "usmp_gateway_mqtt_publish_failures", "Publishes refused (buffer full or client error)", registry=r
        )
        self.reconnects = Counter("usmp_gateway_mqtt_reconnects", "Reconnections to the broker", registry=r)

    def bind(self, gateway: Gateway) -> None:
        """The gauges read at scrape time."""
        if gateway.bridge is not None:
            bridge: MqttBridge = gateway.bridge
            self.mqtt_buffer.set_function(lambda: float(bridge.queued))
            self.mqtt_connected.set_function(lambda: 1.0 if bridge.connected else 0.0)

    def serve(self, host: str, port: int) -> None:
        """The HTTP endpoint (``/metrics``), in prometheus_client's own thread."""
        start_http_server(port, addr=host, registry=self.registry)

    def text(self) -> str:
        return generate_latest(self.registry).decode()

    # --- updates (the gateway calls these) ---------------------------------------------------

    def session_opened(self) -> None:
        self.sessions_open.inc()
        self.handshakes.labels(result="ok").inc()

    def session_closed(self) -> None:
        self.sessions_open.dec()

    def handshake_failed(self, condition: str) -> None:
        self.handshakes.labels(result=condition).inc()

    def message(self, direction: str, size: int) -> None:
        self.messages.labels(direction=direction).inc()
        self.bytes.labels(direction=direction).inc(size)

    def downlink(self, result: str) -> None:
        self.downlinks.labels(result=result).inc()

    def uplink_dropped(self) -> None:
        self.uplinks_dropped.inc()

    def queue_depth(self, depth: int) -> None:
        self.downlink_queue_depth.set(depth)

    def publish_failed(self) -> None:
        self.publish_failures.inc()

    def reconnected(self) -> None:
        self.reconnects.inc()

    def values(self) -> dict[str, Any]:
        """Every sample as ``{"name{labels}": value}``: what the tests read."""
        found: dict[str, Any] = {}
        for metric in self.registry.collect():
            for sample in metric.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return found
