"""Driver configuration: every limit in one place, with the defaults of spec sections 11 and 13.

Times are in seconds. Both classes extend :class:`~usmp.engine.EngineConfig`
(``max_record``, ``max_message``, ``handshake_timeout``,
``keepalive_interval``, ``pong_timeout``, ``idle_timeout``) and are validated at
construction.
"""

from __future__ import annotations

from dataclasses import dataclass

from .engine import EngineConfig, check_positive
from .errors import ConfigurationError


@dataclass(frozen=True)
class ServerConfig(EngineConfig):
    """Limits of a :class:`~usmp.USMPServer` (TCP, stream mode).

    =====================  ========  ==================================================
    field                  default   meaning
    =====================  ========  ==================================================
    max_record             65519     largest record plaintext accepted (announced)
    max_message            65535     largest reassembled message accepted (announced)
    handshake_timeout      10.0      a connection must finish its handshake in this
                                     time, counted from the accept (TIMEOUT)
    idle_timeout           90.0      no authenticated record for this long:
                                     BYE(IDLE_TIMEOUT); ``None``: never
    keepalive_interval     None      the server does not PING by default
    pong_timeout           None      (= keepalive_interval)
    max_sessions           1024      established sessions; a HELLO beyond: ERROR(BUSY)
    max_handshakes         64        connections past their HELLO and still in their
                                     handshake; a HELLO while this many others are:
                                     ERROR(BUSY)
    hello_timeout          2.0       a connection that has not sent a complete HELLO
                                     within this time is closed without a word
    max_pending            256       connections that have not sent a complete HELLO
                                     yet; one more evicts the oldest of them (closed
                                     without a word) instead of being refused
    handshake_rate         10.0      new connections per second per source prefix
    handshake_burst        20        ... with bursts up to this; excess connections
                                     are closed at once, before any X25519
    rate_prefix_v4         32        the source prefix the rate counts per: IPv4 /32
    rate_prefix_v6         64        ... and IPv6 /64 (one host usually owns a /64)
    write_timeout          10.0      output that makes no progress for this long ends
                                     the connection (no BYE if none can be written)
    shutdown_grace         5.0       ``stop()`` waits this long for running
                                     ``on_data`` calls before sending BYE(SHUTDOWN)
    =====================  ========  ==================================================
    """

    idle_timeout: float | None = 90.0
    max_sessions: int = 1024
    max_handshakes: int = 64
    hello_timeout: float = 2.0
    max_pending: int = 256
    handshake_rate: float = 10.0
    handshake_burst: int = 20
    rate_prefix_v4: int = 32
    rate_prefix_v6: int = 64
    write_timeout: float = 10.0
    shutdown_grace: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(
            self,
            "idle_timeout",
            "max_sessions",
            "max_handshakes",
            "hello_timeout",
            "max_pending",
            "handshake_rate",
            "handshake_burst",
            "write_timeout",
        )
        if not 0 < self.rate_prefix_v4 <= 32:
            raise ConfigurationError(f"rate_prefix_v4 must be 1 to 32, got {self.rate_prefix_v4}")
        if not 0 < self.rate_prefix_v6 <= 128:
            raise ConfigurationError(f"rate_prefix_v6 must be 1 to 128, got {self.rate_prefix_v6}")
        if self.shutdown_grace < 0:
            raise ConfigurationError(f"shutdown_grace must not be negative, got {self.shutdown_grace}")


@dataclass(frozen=True)
class ClientConfig(EngineConfig):
    """Settings of a :class:`~usmp.USMPClient`.

    ``keepalive_interval`` defaults to 30 s (a PING when nothing arrived for
    that long, PEER_TIMEOUT if still nothing after ``pong_timeout``), which
    keeps a session alive under the server's default 90 s ``idle_timeout``.
    ``handshake_timeout`` bounds the TCP connect and the handshake together.
    ``receive_queue`` is how many received messages wait for ``recv()``
    before the client stops reading from the socket.
    """

    keepalive_interval: float | None = 30.0
    receive_queue: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "receive_queue")
