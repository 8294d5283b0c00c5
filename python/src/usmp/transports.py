"""Choosing a transport by name or by address: what ``usmp serve`` and ``usmp connect`` use.

======  ================================  =========  ==========================================
name    address                           mode       driver
======  ================================  =========  ==========================================
tcp     ``host:port``, ``tcp://host:port``  stream     :class:`~usmp.USMPServer`, :class:`~usmp.USMPClient`
udp     ``udp://host:port``                 datagram   :class:`~usmp.udp.UDPServer`, :class:`~usmp.udp.UDPClient`
serial  ``serial:///dev/ttyUSB0?baud=N``    datagram   :class:`~usmp.serial_link.SerialServer`,
                                                       :class:`~usmp.serial_link.SerialClient`
======  ================================  =========  ==========================================
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Literal, Union

from .errors import ConfigurationError

Transport = Literal["tcp", "udp", "serial"]
TRANSPORTS: tuple[Transport, ...] = ("tcp", "udp", "serial")
DEFAULT_BAUD = 115200


@dataclass(frozen=True)
class Target:
    """Where to connect: ``transport`` and either ``host``/``port`` or ``path``/``baud``."""

    transport: Transport
    host: str = ""
    port: int = 0
    path: str = ""
    baud: int = DEFAULT_BAUD

    def __str__(self) -> str:
        if self.transport == "serial":
            return f"serial://{self.path}?baud={self.baud}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def parse_target(text: str) -> Target:
    """``HOST:PORT`` or ``tcp://HOST:PORT`` (TCP), ``udp://HOST:PORT``, ``serial:///dev/ttyX[?baud=N]``.

    Raises :class:`~usmp.ConfigurationError` with a one-line reason.
    """
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    if scheme == "serial":
        path, _, query = rest.partition("?")
        if not path.startswith("/"):
            raise ConfigurationError(f"expected serial:///dev/ttyX, got {text!r}")
        params = urllib.parse.parse_qs(query)
        baud = params.get("baud", [str(DEFAULT_BAUD)])[0]
        if not baud.isdigit() or int(baud) <= 0:
            raise ConfigurationError(f"baud must be a positive number, got {baud!r}")
        return Target("serial", path=path, baud=int(baud))
    if scheme not in ("tcp", "udp"):
        raise ConfigurationError(f"unknown transport {scheme!r}: use tcp://, udp:// or serial://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"expected {scheme}://HOST:PORT, got {text!r}")
    return Target("udp" if scheme == "udp" else "tcp", host=host.strip("[]"), port=int(port))


def transport_name(value: Union[str, None]) -> Transport:
    if value is None:
        return "tcp"
    for name in TRANSPORTS:
        if value == name:
            return name
    raise ConfigurationError(f"transport must be one of {', '.join(TRANSPORTS)}, got {value!r}")
