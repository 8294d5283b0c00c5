"""Tampering with the handshake: one bit of HELLO, CHALLENGE, HELLO_ACK or SESSION_OK flipped.

The expected outcome of each flip is computed here, from the spec alone (protocol.md 4.5 check
order, 5.1 stream header checks, 9.2, state-machine.md rows 3-10, 14-22, 25, 27-28), by
:func:`expected_outcome`; the implementations are only observed:

- exhaustively (every bit of the four frames, 1200 runs each) on the Python engine pair and on the
  C engine pair (``usmp_interop_flip``), in process;
- over TCP through the MITM proxy, for every pairing of client (Python, C device API) and gateway
  (Python, C): every bit of the three header bytes and one bit of every body byte of each frame.

Every run must end without a session on the client, with the exact condition on the side that
detects the flip and the matching ERROR code on the other side, and with no application data.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from usmp.engine import (
    ClientEngine,
    EngineConfig,
    HandshakeComplete,
    HelloReceived,
    MessageReceived,
    ServerEngine,
    State,
)
from usmp.errors import PeerError
from usmp.wire import Mode

from interop_harness import (
    CLIENTS,
    DEVICE,
    GATEWAYS,
    PSK,
    CBuild,
    PyDevice,
    async_test,
    condition_name,
    rig,
)
from interop_proxy import C2S, S2C, T_DATA, T_ERROR, T_FRAGMENT, ProxyConnection

KINDS = ("HELLO", "CHALLENGE", "HELLO_ACK", "SESSION_OK")
FRAME_TYPE = {"HELLO": 0x01, "CHALLENGE": 0x02, "HELLO_ACK": 0x03, "SESSION_OK": 0x04}
BODY_LENGTH = {"HELLO": 44, "CHALLENGE": 54, "HELLO_ACK": 16, "SESSION_OK": 24}
DEFINED_TYPES = frozenset({0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0xFF})
# Direction and index of each handshake frame in its direction's stream.
POSITION = {"HELLO": (C2S, 0), "HELLO_ACK": (C2S, 1), "CHALLENGE": (S2C, 0), "SESSION_OK": (S2C, 1)}
# A v1 client offers versions bitmap 0x01 and suites bitmap 0x01 (4.1).
CLIENT_VERSIONS, CLIENT_SUITES = 0x01, 0x01


def flip(frame: bytes, byte: int, bit: int) -> bytes:
    out = bytearray(frame)
    out[byte] ^= 1 << bit
    return bytes(out)


def low_order(public_key: bytes) -> bool:
    """X25519 with this key gives all zero for every private key (RFC 7748 6.1)."""
    try:
        shared = X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(public_key))
    except ValueError:
        return True
    return not any(shared)


def limits_valid(max_record: int, max_message: int) -> bool:
    return 16 <= max_record <= 65519 and max_record <= max_message <= 65535


def offered(bitmap: int, number: int) -> bool:
    return 1 <= number <= 8 and bool(bitmap & (1 << (number - 1)))


def detected_condition(kind: str, frame: bytes) -> str:
    """The condition the receiver of this (tampered) frame reports: spec 5.1, 6.2 check 1, 4.5.

    ``AUTH_FAILED`` for a frame that passes every check of its receiver: a changed HELLO or
    CHALLENGE changes TH (5.3), so the server's HELLO_ACK check fails (rows 21, 9).
    """
    ftype = frame[0]
    (length,) = struct.unpack(">H", frame[1:3])
    # 5.1: type and length are judged from the 3-byte header, before the body.
    if ftype not in DEFINED_TYPES:
        return "MALFORMED"  # row 28
    if ftype == 0xFF:
        return "PEER_ERROR" if length == 1 else "MALFORMED"
    if ftype != FRAME_TYPE[kind]:
        return "UNEXPECTED"  # row 27 (a record type during the handshake too: 6.2 check 1)
    if length != BODY_LENGTH[kind]:
        return "MALFORMED"
    b = frame[3:]
    if kind == "HELLO":
        if not b[0] & 0x01:
            return "UNSUPPORTED_VERSION"
        if not b[1] & 0x01:
            return "UNSUPPORTED_SUITE"
        if not limits_valid(*struct.unpack(">HH", b[40:44])):
            return "MALFORMED"
        if low_order(b[8:40]):
            return "BAD_KEY"
        return "AUTH_FAILED"
    if kind == "CHALLENGE":
        if not offered(CLIENT_VERSIONS, b[0]):
            return "UNSUPPORTED_VERSION"
        if not offered(CLIENT_SUITES, b[1]):
            return "UNSUPPORTED_SUITE"
        if not limits_valid(*struct.unpack(">HH", b[50:54])):
            return "MALFORMED"
        if low_order(b[18:50]):
            return "BAD_KEY"
        return "AUTH_FAILED"
    return "AUTH_FAILED"  # HELLO_ACK, SESSION_OK: a MAC (or the session id under it) changed


@dataclass(frozen=True)
class Expected:
    server: str  # the gateway's condition ("PEER_ERROR:X": it received ERROR(X))
    client: str
    server_established: bool  # only when SESSION_OK was tampered: the server had sent it


def expected_outcome(kind: str, tampered: bytes) -> Expected:
    cond = detected_condition(kind, tampered)
    if cond == "AUTH_FAILED" and kind in ("HELLO", "CHALLENGE", "HELLO_ACK"):
        # The server fails the HELLO_ACK (row 21) and says so (9.2); the client gets PEER_ERROR (row 25).
        return Expected("AUTH_FAILED", "PEER_ERROR:AUTH_FAILED", False)
    if kind in ("HELLO", "HELLO_ACK"):
        return Expected(cond, f"PEER_ERROR:{cond}", False)
    if kind == "CHALLENGE":
        return Expected(f"PEER_ERROR:{cond}", cond, False)
    # SESSION_OK: the client fails and sends ERROR(cond); the server, already ESTABLISHED, takes a
    # plaintext ERROR as UNEXPECTED (6.2 check 1, 9.2) and ends the session.
    return Expected("UNEXPECTED", cond, True)


# ----------------------------------------------------------------------------- the oracle itself


def test_oracle_covers_every_condition_a_flip_can_cause() -> None:
    """The oracle is not trivially AUTH_FAILED: it yields each check-order condition somewhere."""
    hello = bytes.fromhex("01002c") + bytes([1, 1]) + DEVICE + bytes(range(1, 33)) + struct.pack(">HH", 512, 512)
    challenge = bytes.fromhex("020036") + bytes([1, 1]) + bytes(16) + bytes(range(1, 33)) + struct.pack(">HH", 4096, 16384)
    seen = set()
    for kind, frame in (("HELLO", hello), ("CHALLENGE", challenge)):
        for byte in range(len(frame)):
            for bit in range(8):
                seen.add(detected_condition(kind, flip(frame, byte, bit)))
    assert seen == {"MALFORMED", "UNEXPECTED", "UNSUPPORTED_VERSION", "UNSUPPORTED_SUITE", "AUTH_FAILED"}
    # A low-order key (here: u = 0) is caught before AUTH_FAILED.
    assert detected_condition("HELLO", hello[:11] + bytes(32) + hello[43:]) == "BAD_KEY"
    # The top bit of an X25519 key is ignored by X25519 (RFC 7748 5) but not by TH: still AUTH_FAILED.
    assert detected_condition("HELLO", flip(hello, 3 + 39, 7)) == "AUTH_FAILED"


# ----------------------------------------------------------------------------- Python engine pair


PY_CLIENT_RANDOM = bytes.fromhex("77" * 32)  # R of spec 5.8; with fixed counters, a fixed HELLO
PY_SERVER_PRIVATE = bytes.fromhex("5d" * 32)


def _py_outcome(engine: ClientEngine | ServerEngine) -> str:
    if engine.state is not State.FAILED:
        return engine.state.value
    if isinstance(engine.error, PeerError):
        return f"PEER_ERROR:{condition_name(engine.error.code)}"
    assert engine.end_condition is not None
    return engine.end_condition.value


def scripted_server_random() -> Callable[[int], bytes]:
    """The server's ephemeral key, nonce, session index (3 bytes) and rest of the session id, in the
    order the engine draws them; then fresh bytes (the stand-in PSK of a device id a flip changed)."""
    outputs = iter((PY_SERVER_PRIVATE, bytes(range(16)), bytes(range(3)), bytes(range(3, 8))))

    def random(n: int) -> bytes:
        output = next(outputs, None)
        if output is None:
            return os.urandom(n)
        assert len(output) == n, (len(output), n)
        return output

    return random


def py_pair_run(target: tuple[str, int, int] | None) -> tuple[dict[str, bytes], str, str, bool, bool, int]:
    """One stream handshake between the Python engines, flipping ``target`` = (kind, byte, bit)."""
    client = ClientEngine(
        mode=Mode.STREAM,
        device_id=DEVICE,
        psk=PSK,
        config=EngineConfig(max_record=512, max_message=512),
        random=lambda n: PY_CLIENT_RANDOM[:n],
        boot_counter=0,
        connection_counter=0,
    )
    server = ServerEngine(
        mode=Mode.STREAM,
        now=0.0,
        config=EngineConfig(max_record=4096, max_message=16384),
        random=scripted_server_random(),
    )
    seen: dict[str, bytes] = {}
    counts = {C2S: 0, S2C: 0}
    established = {"client": False, "server": False}
    messages = 0
    client.start(0.0)
    for _ in range(16):
        moved = False
        for direction, sender, receiver in ((C2S, client, server), (S2C, server, client)):
            for frame in sender.frames_to_send():
                moved = True
                kind = {(C2S, 0): "HELLO", (C2S, 1): "HELLO_ACK", (S2C, 0): "CHALLENGE", (S2C, 1): "SESSION_OK"}.get(
                    (direction, counts[direction])
                )
                counts[direction] += 1
                if kind is not None:
                    seen[kind] = frame
                    if target is not None and target[0] == kind:
                        frame = flip(frame, target[1], target[2])
                events = receiver.receive_data(frame, 0.0)
                for event in list(events):
                    if isinstance(event, HelloReceived):
                        assert isinstance(receiver, ServerEngine)
                        psk = PSK if event.device_id == DEVICE else None
                        events += receiver.accept_hello(psk, 0.0)
                for event in events:
                    if isinstance(event, HandshakeComplete):
                        established["server" if receiver is server else "client"] = True
                    elif isinstance(event, MessageReceived):
                        messages += 1
        if not moved:
            break
    return seen, _py_outcome(server), _py_outcome(client), established["client"], established["server"], messages


def test_every_bit_of_every_handshake_frame_python_engines() -> None:
    frames, server, client, c_est, s_est, _ = py_pair_run(None)
    assert (server, client, c_est, s_est) == ("ESTABLISHED", "ESTABLISHED", True, True)
    mismatches = []
    runs = 0
    for kind in KINDS:
        frame = frames[kind]
        assert len(frame) == 3 + BODY_LENGTH[kind]
        for byte in range(len(frame)):
            for bit in range(8):
                runs += 1
                _, server, client, c_est, s_est, messages = py_pair_run((kind, byte, bit))
                want = expected_outcome(kind, flip(frame, byte, bit))
                got = Expected(server, client, s_est)
                if got != want or c_est or messages:
                    mismatches.append(f"{kind} byte {byte} bit {bit}: got {got} client_established={c_est} "
                                      f"messages={messages}, expected {want}")
    assert runs == 8 * (47 + 57 + 19 + 27) == 1200
    assert not mismatches, f"{len(mismatches)} of {runs} flips differ:\n" + "\n".join(mismatches[:40])


# ----------------------------------------------------------------------------- C engine pair


def test_every_bit_of_every_handshake_frame_c_engines(c_build: CBuild) -> None:
    program = c_build.program("flip")
    result = subprocess.run([str(program)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for marker in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        assert marker not in result.stderr, result.stderr
    frames = {}
    mismatches = []
    runs = 0
    for line in result.stdout.splitlines():
        m = re.match(r"frame (\S+) ([0-9a-f]+)$", line)
        if m:
            frames[m.group(1)] = bytes.fromhex(m.group(2))
            continue
        m = re.match(
            r"flip (\S+) (\d+) (\d) server=(\w+):(\w+|-):(\d+|-) client=(\w+):(\w+|-):(\d+|-) "
            r"established=(\d+)/(\d+) messages=(\d+)$",
            line,
        )
        assert m, line
        kind, byte, bit = m.group(1), int(m.group(2)), int(m.group(3))

        def outcome(state: str, cond: str, peer: str) -> str:
            if state != "FAILED":
                return state
            return f"{cond}:{condition_name(int(peer))}" if peer != "-" else cond

        server = outcome(m.group(4), m.group(5), m.group(6))
        client = outcome(m.group(7), m.group(8), m.group(9))
        c_est, s_est, messages = int(m.group(10)), int(m.group(11)), int(m.group(12))
        runs += 1
        want = expected_outcome(kind, flip(frames[kind], byte, bit))
        got = Expected(server, client, bool(s_est))
        if got != want or c_est or messages:
            mismatches.append(f"{kind} byte {byte} bit {bit}: got {got} client_established={c_est} "
                              f"messages={messages}, expected {want}")
    assert sorted(frames) == sorted(KINDS)
    assert runs == 1200
    assert not mismatches, f"{len(mismatches)} of {runs} flips differ:\n" + "\n".join(mismatches[:40])


# ----------------------------------------------------------------------------- over TCP


def tcp_targets() -> list[tuple[str, int, int]]:
    """Every bit of the 3 header bytes, one bit of every body byte, and bit 0 of the first two
    body bytes (HELLO: the versions and suites bitmaps; CHALLENGE: the selection)."""
    targets = []
    for kind in KINDS:
        for byte in range(3 + BODY_LENGTH[kind]):
            bits = range(8) if byte < 3 else sorted({byte % 8} | ({0} if byte in (3, 4) else set()))
            targets += [(kind, byte, bit) for bit in bits]
    return targets


class Flipper:
    """Proxy hook: flips the target bit of the target frame of each new connection."""

    def __init__(self) -> None:
        self.target: tuple[str, int, int] | None = None
        self.originals: dict[int, bytes] = {}  # connection index -> the frame before the flip

    def on_connect(self, conn: ProxyConnection) -> None:
        conn.scratch["target"] = self.target

    def __call__(self, conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        target = conn.scratch.get("target")
        if target is None:
            return None
        kind, byte, bit = target
        want_direction, index = POSITION[kind]
        if direction == want_direction and len(conn.frames[direction]) == index + 1:
            self.originals[conn.index] = frame
            return [flip(frame, byte, bit)]
        return None


@pytest.mark.parametrize("client_kind", CLIENTS, ids=lambda k: f"client_{k}")
@pytest.mark.parametrize("gw_kind", GATEWAYS, ids=lambda k: f"gw_{k}")
@async_test(timeout=150)
async def test_handshake_bit_flips_over_tcp(c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str) -> None:
    flipper = Flipper()
    targets = tcp_targets()
    assert len(targets) == 4 * 24 + (44 + 54 + 16 + 24) + 4 * 2
    mismatches = []
    async with rig(
        gw_kind,
        client_kind,
        c_build,
        tmp_path,
        hook=flipper,
        gw_options={"handshake_timeout": 5.0},
        client_options={"handshake_timeout": 5.0},
    ) as r:
        r.proxy.on_connect = flipper.on_connect
        for target in targets:
            flipper.target = target
            count = len(r.proxy.connections)
            client = await r.client.connect()
            assert len(r.proxy.connections) == count + 1
            conn = r.conn
            if client == "OK":
                mismatches.append(f"{target}: a session was established")
                await r.client.close()
                continue
            server = await r.gateway_view()
            original = flipper.originals.get(conn.index)
            assert original is not None, f"{target}: the proxy never saw the target frame"
            kind, byte, bit = target
            want = expected_outcome(kind, flip(original, byte, bit))
            # The gateways log PEER_ERROR without the code: the code is checked on the wire.
            want_server = want.server.split(":")[0]
            errors = conn.received(C2S, T_ERROR)
            records = conn.received(C2S, T_DATA) + conn.received(S2C, T_DATA) + conn.received(C2S, T_FRAGMENT)
            problems = []
            if client != want.client:
                problems.append(f"client {client} != {want.client}")
            if server != want_server:
                problems.append(f"gateway {server} != {want_server}")
            if want.server.startswith("PEER_ERROR:") or want.server_established:
                code = want.client.split(":")[0]
                if [e[3:] for e in errors] != [bytes([_code_of(code)])]:
                    problems.append(f"client ERROR frames {[e.hex() for e in errors]}, expected code of {code}")
            if records:
                problems.append("application data crossed")
            if problems:
                mismatches.append(f"{target}: " + "; ".join(problems))
            if isinstance(r.client, PyDevice):
                await r.client.aclose()
    assert not mismatches, f"{len(mismatches)} of {len(targets)} flips differ:\n" + "\n".join(mismatches[:40])


def _code_of(name: str) -> int:
    from usmp import Condition

    code = Condition(name).code
    assert code is not None
    return code
