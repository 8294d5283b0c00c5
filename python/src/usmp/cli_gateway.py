"""``usmp gateway``: devices to an MQTT broker, keys from the device registry (docs/gateway.md).

Registered by cli.py (``add_parser`` and ``run``). Exit codes as for the
other commands: 0 success, 1 runtime failure, 2 usage or configuration error.
The gateway's modules (paho-mqtt, prometheus_client) are imported by
``run`` only, so the other commands do not need them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from . import cli_discovery
from .config import ServerConfig
from .errors import ConfigurationError, ConnectionLost
from .registry import DEFAULT_LOCATION, LOCATION_ENV, WRAP_KEY_ENV, RegistryError, parse_wrap_key

if TYPE_CHECKING:
    from .gateway import GatewayConfig, Listener
    from .mqtt_bridge import MqttSettings

EXIT_OK = 0
EXIT_FAILURE = 1


def add_parser(commands: Any) -> None:
    gateway = commands.add_parser(
        "gateway",
        help="run the gateway: devices to an MQTT broker, keys from the device registry",
        description="Run a USMP gateway that takes every device's PSK from the registry (see `usmp device`), "
        "publishes each message of a device to <prefix>/<id>/up and sends each message of <prefix>/<id>/down "
        "to the device, queueing it in the registry while the device is offline. Several gateways may share "
        "one PostgreSQL registry and one broker. SIGINT or SIGTERM stops it (BYE(SHUTDOWN) to every session). "
        "docs/gateway.md has every topic and payload.",
    )
    gateway.add_argument(
        "--registry",
        metavar="LOCATION",
        help=f"a file (SQLite), sqlite:///PATH or postgresql://... (default: ${LOCATION_ENV}, else "
        f"{DEFAULT_LOCATION}); PSKs wrapped at rest are opened with the key in ${WRAP_KEY_ENV}",
    )
    gateway.add_argument(
        "--mqtt",
        required=True,
        metavar="URL",
        help="the broker: mqtt://[USER@]HOST[:PORT] or mqtts://... (TLS; port 8883 by default)",
    )
    gateway.add_argument("--mqtt-version", choices=("3.1.1", "5"), default="3.1.1", help="(default: %(default)s)")
    gateway.add_argument("--mqtt-username", metavar="NAME", help="MQTT username (or USER@ in the URL)")
    gateway.add_argument("--mqtt-password-env", metavar="VAR", help="environment variable holding the MQTT password")
    gateway.add_argument(
        "--mqtt-ca", metavar="FILE", help="TLS: CA certificates for the broker (default: the system's)"
    )
    gateway.add_argument("--mqtt-cert", metavar="FILE", help="TLS: client certificate")
    gateway.add_argument("--mqtt-key", metavar="FILE", help="TLS: client certificate's key")
    gateway.add_argument(
        "--mqtt-buffer",
        type=int,
        metavar="N",
        help="messages kept for the broker while it is away; beyond, uplinks are dropped and counted "
        "(default: 10000)",
    )
    gateway.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="URL",
        help="tcp://HOST:PORT or udp://HOST:PORT, repeatable (default: tcp://0.0.0.0:9000)",
    )
    gateway.add_argument(
        "--serial", action="append", default=[], metavar="PATH[?baud=N]", help="a serial port, repeatable"
    )
    gateway.add_argument("--name", help="this gateway's name, unique in the cluster (default: the host name)")
    gateway.add_argument("--topic-prefix", default="usmp", metavar="PREFIX", help="(default: %(default)s)")
    gateway.add_argument(
        "--share-group",
        default="usmp-gateways",
        metavar="GROUP",
        help="MQTT shared subscription group (default: %(default)s)",
    )
    gateway.add_argument(
        "--downlink-ttl",
        type=float,
        default=86400.0,
        metavar="SECONDS",
        help="how long a queued downlink is kept (default: %(default)s)",
    )
    gateway.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics at http://HOST:PORT/metrics")
    gateway.add_argument(
        "--snapshot-file",
        metavar="FILE",
        help="write snapshot() as JSON to FILE on SIGUSR1 (sessions, counters)",
    )
    gateway.add_argument(
        "--max-sessions", type=int, default=ServerConfig.max_sessions, metavar="N", help="(default: %(default)s)"
    )
    gateway.add_argument(
        "--idle-timeout",
        type=float,
        default=ServerConfig.idle_timeout,
        metavar="SECONDS",
        help="(default: %(default)s)",
    )
    gateway.add_argument(
        "--handshake-rate",
        type=float,
        metavar="PER_SECOND",
        default=ServerConfig.handshake_rate,
        help="new connections per second per source address (default: %(default)s)",
    )
    gateway.add_argument(
        "--handshake-burst", type=int, default=ServerConfig.handshake_burst, metavar="N", help="(default: %(default)s)"
    )
    gateway.add_argument(
        "--ota",
        action="store_true",
        help="run the registry's OTA jobs (usmp ota push --registry) for the devices whose sessions this "
        "gateway holds; job changes go to <prefix>/<id>/ota",
    )
    gateway.add_argument(
        "--ota-concurrency", type=int, default=4, metavar="N", help="OTA: at most N transfers at once (default: 4)"
    )
    cli_discovery.add_announce_options(gateway)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"--metrics wants HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _wrap_key() -> bytes | None:
    text = os.environ.get(WRAP_KEY_ENV)
    if not text:
        return None
    try:
        return parse_wrap_key(text)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None


def _settings(args: argparse.Namespace) -> MqttSettings:
    from .mqtt_bridge import parse_mqtt_url

    options: dict[str, Any] = {"version": args.mqtt_version}
    if args.mqtt_buffer is not None:
        options["buffer_limit"] = args.mqtt_buffer
    if args.mqtt_username:
        options["username"] = args.mqtt_username
    if args.mqtt_password_env:
        password = os.environ.get(args.mqtt_password_env)
        if password is None:
            raise ConfigurationError(f"environment variable {args.mqtt_password_env} is not set")
        options["password"] = password
    for option, name in (("ca_certs", "mqtt_ca"), ("certfile", "mqtt_cert"), ("keyfile", "mqtt_key")):
        value = getattr(args, name)
        if value:
            options[option] = value
    settings = parse_mqtt_url(args.mqtt, **options)
    if (args.mqtt_ca or args.mqtt_cert) and not settings.tls:
        raise ConfigurationError("--mqtt-ca and --mqtt-cert need an mqtts:// broker URL")
    return settings


def run(args: argparse.Namespace) -> int:
    from .gateway import GatewayConfig, parse_listen, parse_serial

    if args.ota_concurrency < 1:
        raise ConfigurationError(f"--ota-concurrency must be at least 1, got {args.ota_concurrency}")

    listeners: list[Listener] = [parse_listen(text) for text in args.listen]
    listeners += [parse_serial(text) for text in args.serial]
    if not listeners:
        listeners = [parse_listen("tcp://0.0.0.0:9000")]
    server_config = ServerConfig(
        max_sessions=args.max_sessions,
        idle_timeout=args.idle_timeout if args.idle_timeout and args.idle_timeout > 0 else None,
        handshake_rate=args.handshake_rate,
        handshake_burst=args.handshake_burst,
    )
    options: dict[str, Any] = {
        "topic_prefix": args.topic_prefix,
        "share_group": args.share_group,
        "downlink_ttl": args.downlink_ttl,
        "server": server_config,
    }
    if args.name:
        options["name"] = args.name
    config = GatewayConfig(**options)
    metrics_at = _host_port(args.metrics) if args.metrics else None
    return asyncio.run(_run(args, listeners, config, _settings(args), metrics_at))


async def _run(
    args: argparse.Namespace,
    listeners: list[Listener],
    config: GatewayConfig,
    settings: MqttSettings,
    metrics_at: tuple[str, int] | None,
) -> int:
    from .gateway import Gateway
    from .gateway_metrics import GatewayMetrics

    metrics = GatewayMetrics() if metrics_at is not None else None
    location = args.registry or os.environ.get(LOCATION_ENV) or DEFAULT_LOCATION
    gateway = Gateway(location, listeners, mqtt=settings, config=config, wrap_key=_wrap_key(), metrics=metrics)
    ota = None
    if args.ota:
        from .gateway_ota import GatewayOta

        try:
            ota = GatewayOta(gateway, location, _wrap_key(), args.ota_concurrency)
        except RegistryError as error:
            print(f"usmp gateway: registry {location}: {error}", file=sys.stderr)
            return EXIT_FAILURE
    try:
        await gateway.start()
    except OSError as error:
        print(f"usmp gateway: cannot listen: {error.strerror or error}", file=sys.stderr)
        await gateway.stop()
        return EXIT_FAILURE
    except ConnectionLost as error:
        print(f"usmp gateway: {error.message}", file=sys.stderr)
        await gateway.stop()
        return EXIT_FAILURE
    except RegistryError as error:
        print(f"usmp gateway: registry {location}: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if metrics is not None and metrics_at is not None:
        try:
            metrics.serve(*metrics_at)
        except OSError as error:
            print(f"usmp gateway: cannot serve metrics on {args.metrics}: {error.strerror}", file=sys.stderr)
            await gateway.stop()
            return EXIT_FAILURE
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if args.snapshot_file:
        path = args.snapshot_file

        def write_snapshot() -> None:
            with open(path + ".tmp", "w", encoding="utf-8") as out:
                json.dump(gateway.snapshot(), out, indent=1)
            os.replace(path + ".tmp", path)

        loop.add_signal_handler(signal.SIGUSR1, write_snapshot)
    try:
        announcements = await cli_discovery.start_announcements(args, config.name, gateway.addresses(), gateway.snapshot)
    except (OSError, ConfigurationError) as error:
        print(f"usmp gateway: {error}", file=sys.stderr)
        await gateway.stop()
        return EXIT_FAILURE
    where = ", ".join(f"{transport} {_address(host, port)}" for transport, host, port in gateway.addresses())
    serial = [str(listener) for listener in listeners if listener.transport == "serial"]
    where = ", ".join([where] + serial if where else serial)
    extra = f", metrics on http://{_address(*metrics_at)}/metrics" if metrics_at is not None else ""
    if ota is not None:
        ota.start()
        extra += ", OTA jobs from the registry"
    print(f"gateway {config.name} listening on {where}; broker {settings.describe()}{extra}"
          f"{announcements.describe()}", flush=True)
    await stop.wait()
    print("stopping", flush=True)
    if ota is not None:
        await ota.stop()
    await announcements.stop()
    await gateway.stop()
    return EXIT_OK


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
