"""mDNS/DNS-SD: gateways advertise ``_usmp._tcp`` and ``_usmp._udp``; ``usmp scan`` finds them (docs/bring-up.md).

Conventions:

- One DNS-SD service per transport a gateway listens on: instance name
  ``<gateway name>._usmp._tcp.local.`` (and ``._udp``), port the listener's,
  TXT keys (docs/bring-up.md, "What is advertised"): ``v`` protocol version
  (spec 4), ``suites`` the cipher suites (spec 4, comma separated),
  ``name`` the gateway name, ``transports`` every transport this gateway
  advertises (comma separated), so that one answer tells a scanner the
  whole gateway.
- Discovery is a convenience, never a trust decision: whoever answers on
  the LAN can claim to be a gateway. The handshake (spec 6, mutual PSK
  authentication) is what tells a device it reached a gateway that holds
  its key; a device that resolved an impostor fails with AUTH_FAILED.
- python3-zeroconf is imported by the functions that need it only, so the
  commands that do not advertise or scan do not need it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .wire import PROTOCOL_VERSION, SUITE

if TYPE_CHECKING:
    from zeroconf import ServiceInfo
    from zeroconf.asyncio import AsyncZeroconf

SERVICE_TYPES = {"tcp": "_usmp._tcp.local.", "udp": "_usmp._udp.local."}


@dataclass
class FoundGateway:
    """One gateway as ``usmp scan`` reports it (the union of its services' answers)."""

    name: str
    version: str = ""
    suites: str = ""
    transports: dict[str, int] = field(default_factory=dict)  # transport -> port
    addresses: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "suites": self.suites,
            "transports": dict(sorted(self.transports.items())),
            "addresses": list(self.addresses),
        }


def txt_record(gateway_name: str, transports: Iterable[str]) -> dict[str, str]:
    """The TXT keys every service of one gateway carries (docs/bring-up.md)."""
    return {
        "v": str(PROTOCOL_VERSION),
        "suites": str(SUITE),
        "name": gateway_name,
        "transports": ",".join(sorted(set(transports))),
    }


def _local_ipv4_addresses() -> list[str]:
    """Every IPv4 address of this host's interfaces, for a listener bound to the wildcard address."""
    import ifaddr  # type: ignore[import]  # a dependency of python3-zeroconf, without type hints

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and ip.ip not in found:
                found.append(ip.ip)
    return found


def _advertised_addresses(host: str) -> list[str]:
    if host in ("", "0.0.0.0", "::"):
        # A loopback address in an answer sent to the LAN would point a device
        # at itself: it is left out unless the host has nothing else.
        every = _local_ipv4_addresses()
        routable = [address for address in every if not ipaddress.ip_address(address).is_loopback]
        return routable or every
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return [socket.gethostbyname(host)]
    return [str(address)]


def _mdns_label(name: str) -> str:
    # A DNS label is at most 63 octets (RFC 1035 2.3.4); the host name record
    # must be a plain label, so anything else becomes '-'.
    label = "".join(c if c.isalnum() or c == "-" else "-" for c in name)[:50]
    return f"usmp-{label or 'gateway'}"


def service_infos(gateway_name: str, listeners: Sequence[tuple[str, str, int]]) -> list[ServiceInfo]:
    """One ServiceInfo per (transport, host, port) of a TCP or UDP listener."""
    from zeroconf import ServiceInfo

    network = [(transport, host, port) for transport, host, port in listeners if transport in SERVICE_TYPES]
    properties = txt_record(gateway_name, (transport for transport, _, _ in network))
    infos: list[ServiceInfo] = []
    seen: set[str] = set()
    for transport, host, port in network:
        if transport in seen:  # one service per transport: the first listener of each
            continue
        seen.add(transport)
        service_type = SERVICE_TYPES[transport]
        infos.append(
            ServiceInfo(
                service_type,
                f"{gateway_name}.{service_type}",
                port=port,
                properties=dict(properties),
                server=f"{_mdns_label(gateway_name)}.local.",
                parsed_addresses=_advertised_addresses(host),
            )
        )
    return infos


class Advertiser:
    """Announces a gateway's listeners on mDNS until :meth:`stop` (RFC 6762 goodbye packets)."""

    def __init__(self, gateway_name: str, listeners: Sequence[tuple[str, str, int]]) -> None:
        self.gateway_name = gateway_name
        self.infos = service_infos(gateway_name, listeners)
        self._zeroconf: AsyncZeroconf | None = None

    @property
    def names(self) -> list[str]:
        """The instance names actually registered (zeroconf renames on a conflict)."""
        return [info.name for info in self.infos]

    async def start(self) -> None:
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncZeroconf

        if not self.infos:
            return
        self._zeroconf = AsyncZeroconf(ip_version=IPVersion.V4Only)
        for info in self.infos:
            # allow_name_change: a second gateway of the same name gets "name (2)"
            # instead of failing to start (RFC 6762 9, conflict resolution).
            await (await self._zeroconf.async_register_service(info, allow_name_change=True))

    async def stop(self) -> None:
        if self._zeroconf is None:
            return
        await self._zeroconf.async_unregister_all_services()
        await self._zeroconf.async_close()
        self._zeroconf = None


def _text(properties: dict[bytes, bytes | None], key: str) -> str:
    value = properties.get(key.encode())
    return value.decode("utf-8", "replace") if value is not None else ""


def scan(timeout: float) -> list[FoundGateway]:
    """Browse both service types for ``timeout`` seconds; gateways by name, sorted."""
    from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

    zeroconf = Zeroconf(ip_version=IPVersion.V4Only)
    found: set[tuple[str, str]] = set()
    lock = threading.Lock()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is not ServiceStateChange.Removed:
            with lock:
                found.add((service_type, name))

    try:
        browser = ServiceBrowser(zeroconf, list(SERVICE_TYPES.values()), handlers=[on_change])
        time.sleep(timeout)
        browser.cancel()
        with lock:
            services = sorted(found)
        gateways: dict[str, FoundGateway] = {}
        for service_type, name in services:
            info = ServiceInfo(service_type, name)
            if not info.request(zeroconf, 1000):
                continue
            properties = info.properties
            gateway_name = _text(properties, "name") or name[: -len(service_type) - 1]
            gateway = gateways.setdefault(gateway_name, FoundGateway(gateway_name))
            gateway.version = _text(properties, "v") or gateway.version
            gateway.suites = _text(properties, "suites") or gateway.suites
            transport = next(t for t, kind in SERVICE_TYPES.items() if kind == service_type)
            if info.port is not None:
                gateway.transports[transport] = info.port
            for address in info.parsed_addresses():
                if address not in gateway.addresses:
                    gateway.addresses.append(address)
        return [gateways[name] for name in sorted(gateways)]
    finally:
        zeroconf.close()
