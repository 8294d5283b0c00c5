"""Helpers shared by the test modules: the spec vectors and engine pairs built from them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from usmp.engine import (
    ClientEngine,
    EngineConfig,
    Event,
    HandshakeComplete,
    HelloReceived,
    ServerEngine,
)
from usmp.wire import SESSION_INDEX_BYTES, Mode

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VECTORS = os.path.join(REPO, "spec", "vectors")


def load_vectors(name: str) -> Any:
    with open(os.path.join(VECTORS, name), encoding="utf-8") as f:
        return json.load(f)


def handshake_case(name: str) -> dict[str, Any]:
    for case in load_vectors("handshake.json")["cases"]:
        if case["name"] == name:
            return dict(case)
    raise KeyError(name)


def mode_of(case: dict[str, Any]) -> Mode:
    return Mode.STREAM if case["mode"] == "stream" else Mode.DATAGRAM


class ScriptedRandom:
    """A random source that returns given byte strings in order, each exactly as long as asked for.

    ``then``: where requests beyond the script go (e.g. ``os.urandom`` for a
    server's stand-in PSK); without it such a request fails the test.
    """

    def __init__(self, *outputs: bytes, then: Callable[[int], bytes] | None = None) -> None:
        self._outputs = list(outputs)
        self._then = then

    def __call__(self, n: int) -> bytes:
        if not self._outputs and self._then is not None:
            return self._then(n)
        assert self._outputs, "the random source was asked for more than the script holds"
        output = self._outputs.pop(0)
        assert len(output) == n, (len(output), n)
        return output


def client_for(case: dict[str, Any], **overrides: Any) -> ClientEngine:
    """The client of a handshake vector: its random output R and its counters (spec 5.8)."""
    kwargs: dict[str, Any] = dict(
        mode=mode_of(case),
        device_id=bytes.fromhex(case["device_id"]),
        psk=bytes.fromhex(case["psk"]),
        config=EngineConfig(max_record=case["client_max_record"], max_message=case["client_max_message"]),
        random=ScriptedRandom(bytes.fromhex(case["client_random"])),
        boot_counter=case["client_boot_counter"],
        connection_counter=case["client_connection_counter"],
    )
    kwargs.update(overrides)
    return ClientEngine(**kwargs)


def server_for(case: dict[str, Any], now: float = 0.0, **overrides: Any) -> ServerEngine:
    """The server of a handshake vector, with its fixed ephemeral key, nonce and session id."""
    session_id = bytes.fromhex(case["session_id"])
    kwargs: dict[str, Any] = dict(
        mode=mode_of(case),
        now=now,
        config=EngineConfig(max_record=case["server_max_record"], max_message=case["server_max_message"]),
        # A server draws its ephemeral key, its nonce, then its session id (index
        # first), then, for an unknown device, its stand-in PSK.
        random=ScriptedRandom(
            bytes.fromhex(case["server_ephemeral_private"]),
            bytes.fromhex(case["server_nonce"]),
            session_id[:SESSION_INDEX_BYTES],
            session_id[SESSION_INDEX_BYTES:],
            then=os.urandom,
        ),
    )
    kwargs.update(overrides)
    return ServerEngine(**kwargs)


def psk_table(case: dict[str, Any]) -> dict[bytes, bytes]:
    return {bytes.fromhex(case["device_id"]): bytes.fromhex(case["psk"])}


def server_receive(
    server: ServerEngine, data: bytes, now: float, psks: dict[bytes, bytes]
) -> list[Event]:
    """Feed a server and answer a HELLO the way a driver does: the PSK, or None for an unknown device."""
    events = server.receive_data(data, now)
    for event in list(events):
        if isinstance(event, HelloReceived):
            events += server.accept_hello(psks.get(event.device_id), now)
    return events


@dataclass
class Pair:
    client: ClientEngine
    server: ServerEngine
    psks: dict[bytes, bytes]
    now: float = 0.0

    def to_server(self, frames: list[bytes]) -> list[Event]:
        events: list[Event] = []
        for frame in frames:
            events += server_receive(self.server, frame, self.now, self.psks)
        return events

    def to_client(self, frames: list[bytes]) -> list[Event]:
        events: list[Event] = []
        for frame in frames:
            events += self.client.receive_data(frame, self.now)
        return events

    def pump(self) -> tuple[list[Event], list[Event]]:
        """Deliver everything both sides have queued until both are quiet."""
        client_events: list[Event] = []
        server_events: list[Event] = []
        while True:
            c2s = self.client.frames_to_send()
            s2c = self.server.frames_to_send()
            if not c2s and not s2c:
                return client_events, server_events
            server_events += self.to_server(c2s)
            client_events += self.to_client(s2c)

    def handshake(self) -> None:
        self.client.start(self.now)
        client_events, server_events = self.pump()
        assert any(isinstance(e, HandshakeComplete) for e in client_events)
        assert any(isinstance(e, HandshakeComplete) for e in server_events)


def vector_pair(name: str, **client_overrides: Any) -> Pair:
    case = handshake_case(name)
    return Pair(client_for(case, **client_overrides), server_for(case), psk_table(case))
