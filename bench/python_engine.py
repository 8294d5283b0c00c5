"""The Python engine alone, in process, against the C engine and against
Python's own raw primitives (issue 12, figure 4; docs/performance.md).

Measures a stream-mode handshake of a ClientEngine/ServerEngine pair wired in
memory and a 64-byte record sent by the client and received by the server,
next to the X25519 exchange and AES-256-GCM seal+open of ``cryptography``
(the library the engine uses), with the key objects made once. With
``--c-results`` (a file the C benchmark bench/c wrote), the C engine's
figures of the same operations are printed alongside.

Every figure is the time of one operation: minimum and median over
repetitions, each repetition the mean over a batch. Not a test: nothing here
asserts a time.

    /usr/bin/python3 bench/python_engine.py [--repetitions N] [--c-results FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python" / "src"))

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

import cryptography  # noqa: E402
from usmp.engine import (  # noqa: E402
    ClientEngine,
    EngineConfig,
    HelloReceived,
    MessageReceived,
    ServerEngine,
)
from usmp.wire import Mode  # noqa: E402

PSK = b"usmp-bench-psk-usmp-bench-psk-32"
DEVICE_ID = bytes.fromhex("be9c00000001")
RECORD_BYTES = 64
STREAM_HEADER_BYTES = 3  # the additional data of a stream record (spec section 6)


def measure(operation: Callable[[], object], batch: int, repetitions: int) -> tuple[float, float]:
    """(min, median) seconds per call of operation."""
    samples = []
    operation()  # warm-up
    for _ in range(repetitions):
        start = time.perf_counter()
        for _ in range(batch):
            operation()
        samples.append((time.perf_counter() - start) / batch)
    return min(samples), statistics.median(samples)


def handshake() -> tuple[ClientEngine, ServerEngine]:
    now = 0.0
    client = ClientEngine(mode=Mode.STREAM, device_id=DEVICE_ID, psk=PSK, config=EngineConfig())
    server = ServerEngine(mode=Mode.STREAM, now=now, config=EngineConfig())
    client.start(now)
    for _ in range(8):
        for frame in client.frames_to_send():
            for event in server.receive_data(frame, now):
                if isinstance(event, HelloReceived):
                    server.accept_hello(PSK if event.device_id == DEVICE_ID else None, now)
        for frame in server.frames_to_send():
            client.receive_data(frame, now)
        if client.established and server.established:
            return client, server
    raise RuntimeError("the in-memory handshake did not complete")


def record_round(client: ClientEngine, server: ServerEngine, message: bytes) -> None:
    client.send_message(message, 0.0)
    for frame in client.frames_to_send():
        events = server.receive_data(frame, 0.0)
        if not any(isinstance(event, MessageReceived) for event in events):
            raise RuntimeError("the record was not delivered")


def c_figures(path: Path) -> dict[str, list[str]]:
    """The rows of the C benchmark's tables, by their key column."""
    rows: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) > 2 and "." in cells[0]:
            rows[cells[0]] = cells
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=15)
    parser.add_argument("--c-results", type=Path, help="the output of bench/c's usmp_bench (OpenSSL build)")
    args = parser.parse_args()
    reps = args.repetitions

    ours, peer = X25519PrivateKey.generate(), X25519PrivateKey.generate().public_key()
    aead, nonce, aad = AESGCM(os.urandom(32)), os.urandom(12), bytes(STREAM_HEADER_BYTES)
    message = bytes(RECORD_BYTES)

    def raw_seal_open() -> bytes:
        return aead.decrypt(nonce, aead.encrypt(nonce, message, aad), aad)

    x25519 = measure(lambda: ours.exchange(peer), 200, reps)
    hs = measure(handshake, 20, reps)
    client, server = handshake()
    record = measure(lambda: record_round(client, server, message), 500, reps)
    raw_record = measure(raw_seal_open, 2000, reps)

    command = f"/usr/bin/python3 bench/python_engine.py --repetitions {reps}"
    if args.c_results:
        command += f" --c-results {args.c_results}"
    print(f"## Python engine vs cryptography {cryptography.__version__} (Python {sys.version.split()[0]})\n")
    print(f"reproduce: {command}")
    print(f"min and median over {reps} repetitions; times in microseconds per operation\n")
    print("| key | figure | min us | median us | ratio (min) | ratio (median) |")
    print("|---|---|---:|---:|---:|---:|")
    print(f"| py.x25519.raw | raw X25519 exchange (cryptography) | {x25519[0] * 1e6:.2f} | {x25519[1] * 1e6:.2f} | | |")
    print(f"| py.handshake.both | handshake, both roles / (4 x X25519) | {hs[0] * 1e6:.1f} | {hs[1] * 1e6:.1f} "
          f"| {hs[0] / (4 * x25519[0]):.2f} | {hs[1] / (4 * x25519[1]):.2f} |")
    print(f"| py.record.64 | 64-byte record seal+open: raw AES-GCM / engine | {record[0] * 1e6:.2f} "
          f"| {record[1] * 1e6:.2f} | {raw_record[0] / record[0]:.2f} | {raw_record[1] / record[1]:.2f} |")
    print(f"| py.aesgcm.64 | raw AES-256-GCM seal+open, 64 bytes (cryptography) | {raw_record[0] * 1e6:.2f} "
          f"| {raw_record[1] * 1e6:.2f} | | |")

    print("\n| per second (median) | Python engine | C engine (OpenSSL) | Python / C |")
    print("|---|---:|---:|---:|")
    c_rows = c_figures(args.c_results) if args.c_results and args.c_results.exists() else {}
    c_hs = float(c_rows["handshake.both"][3]) * 1e-6 if "handshake.both" in c_rows else None
    c_rec = float(c_rows["record.64"][3]) * 1e-6 if "record.64" in c_rows else None
    for name, py, c in (("handshakes (both roles)", hs[1], c_hs), ("64-byte records (seal+open)", record[1], c_rec)):
        if c is None:
            print(f"| {name} | {1 / py:,.0f} | not measured | |")
        else:
            print(f"| {name} | {1 / py:,.0f} | {1 / c:,.0f} | {c / py:.3f} |")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
