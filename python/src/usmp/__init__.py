"""USMP gateway: the sans-I/O protocol engine and asyncio drivers over TCP, UDP and serial lines.

The protocol is specified in ``spec/protocol.md`` of the USMP repository;
``docs/python.md`` documents this package.
"""

from .client import USMPClient
from .config import ClientConfig, ServerConfig
from .datagram import DatagramClient, DatagramSession, LinkStats
from .engine import (
    ClientEngine,
    ControlMessage,
    CookieCheck,
    EngineConfig,
    Event,
    HandshakeComplete,
    HelloReceived,
    InputDropped,
    MessageReceived,
    ServerEngine,
    State,
)
from .errors import (
    Condition,
    ConfigurationError,
    ConnectionLost,
    HandshakeTimeout,
    LocalProtocolError,
    PeerClosed,
    PeerError,
    PeerTimeout,
    RemoteProtocolError,
    TransportClosed,
    USMPError,
)
from .serial_link import SerialClient, SerialServer
from .server import USMPServer
from .session import Session
from .udp import UDPClient, UDPServer
from .wire import Limits, Mode

__version__ = "0.1.0"

__all__ = [
    "ClientConfig",
    "ClientEngine",
    "Condition",
    "ConfigurationError",
    "ConnectionLost",
    "ControlMessage",
    "CookieCheck",
    "DatagramClient",
    "DatagramSession",
    "EngineConfig",
    "Event",
    "HandshakeComplete",
    "HandshakeTimeout",
    "HelloReceived",
    "InputDropped",
    "Limits",
    "LinkStats",
    "LocalProtocolError",
    "MessageReceived",
    "Mode",
    "PeerClosed",
    "PeerError",
    "PeerTimeout",
    "RemoteProtocolError",
    "SerialClient",
    "SerialServer",
    "ServerConfig",
    "ServerEngine",
    "Session",
    "State",
    "TransportClosed",
    "UDPClient",
    "UDPServer",
    "USMPClient",
    "USMPError",
    "USMPServer",
    "__version__",
]
