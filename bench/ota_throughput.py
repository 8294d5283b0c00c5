"""Firmware update throughput (issue 14; docs/ota.md): the C device ``usmp_device --ota-dir``
updated by the Python gateway's OTA runner, timed from the device's first REQUEST to its RESULT.

Two figures:

* **TCP loopback**: a 1 MiB image (``--tcp-size``), the time of the transfer and of the whole
  update (job offered to confirmed by the new image's session).
* **UART at 115,200 baud**: the device and the gateway on a pty pair paced by
  tools/lossy_link.py (``baud``: 10 bits a byte, no loss), a 256 KiB image by default
  (``--uart-size``; 1 MiB takes about 100 s), and the effective throughput (image bytes per
  second) against the line rate of 11,520 bytes/s. The goal is at least 80 %.

Every transfer uses a fresh state directory. Minimum and median over ``--repetitions``. Not a
test: nothing here asserts a time.

    /usr/bin/python3 bench/ota_throughput.py --c-build build/bench-ota [--repetitions N]

``make bench-ota`` builds that Release tree and runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python" / "src"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from usmp import Condition, ServerConfig, USMPServer, ota  # noqa: E402
from usmp.ota_jobs import CONFIRMED, FAILED, MemoryJobStore, new_job  # noqa: E402
from usmp.ota_server import OtaRunner  # noqa: E402

_spec = importlib.util.spec_from_file_location("lossy_link", ROOT / "tools" / "lossy_link.py")
assert _spec is not None and _spec.loader is not None
lossy_link = importlib.util.module_from_spec(_spec)
sys.modules["lossy_link"] = lossy_link
_spec.loader.exec_module(lossy_link)

DEVICE = bytes.fromhex("020000000001")
PSK = hashlib.sha256(b"usmp ota benchmark psk").digest()
KEY = Ed25519PrivateKey.generate()
HARDWARE = "usmp-posix"


def image_of(size: int) -> bytes:
    return os.urandom(size)


class Run:
    """One update: the gateway, the device program, and the times of its OTA messages."""

    def __init__(self, device_program: Path, image: bytes, link: str, baud: int) -> None:
        self.device_program = device_program
        self.image = image
        self.link = link
        self.baud = baud
        self.first_request: float | None = None
        self.result: float | None = None
        self.offered: float | None = None
        self.confirmed: float | None = None
        self.max_chunk = 0

    async def go(self) -> None:
        loop = asyncio.get_running_loop()
        directory = Path(tempfile.mkdtemp(prefix="usmp-ota-bench-"))
        signed = ota.SignedImage(ota.sign_manifest(KEY, self.image, 2, ota.hardware_id_from_text(HARDWARE)), self.image)
        path = directory / "app.signed"
        path.write_bytes(signed.encode())
        store = MemoryJobStore()
        store.add_job(new_job(DEVICE, str(path), signed))
        runner = OtaRunner(store)

        async def on_control(session: Any, channel: int, body: bytes) -> None:
            now = loop.time()
            if body[:1] == bytes((ota.Op.REQUEST,)) and self.first_request is None:
                self.first_request = now
                self.max_chunk = int.from_bytes(body[5:7], "big")
            elif body[:1] == bytes((ota.Op.RESULT,)) and self.result is None:
                self.result = now
            elif body[:1] == bytes((ota.Op.STATUS,)) and self.offered is None:
                self.offered = now
            await runner.control_received(session, channel, body)

        async def on_close(session: Any, reason: Condition) -> None:
            await runner.session_closed(session)

        relay = None
        config = ServerConfig(handshake_burst=100, handshake_rate=100.0)
        if self.link == "tcp":
            server = USMPServer("127.0.0.1", 0, {DEVICE: PSK}, on_control=on_control, on_close=on_close, config=config)
        else:
            relay = lossy_link.PtyRelay(lossy_link.Impairment(baud=self.baud))
            await relay.start()
            server = USMPServer(psk={DEVICE: PSK}, on_control=on_control, on_close=on_close, config=config,
                                transport="serial", serial_port=relay.gateway_path, baud=self.baud)
        await server.start()
        link = ["--port", str(server.port)] if relay is None else ["--serial", relay.device_path, "--baud",
                                                                     str(self.baud)]
        process = await asyncio.create_subprocess_exec(
            str(self.device_program), "--psk-env", "BENCH_PSK", "--device-id", DEVICE.hex(), *link,
            "--ota-dir", str(directory / "state"), "--ota-pubkey", ota.public_key_bytes(KEY).hex(),
            "--hardware-id", HARDWARE, "--fw-version", "1",
            env=dict(os.environ, BENCH_PSK=PSK.hex()),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            deadline = loop.time() + 600
            while store.list_jobs()[0].state not in (CONFIRMED, FAILED):
                if loop.time() > deadline:
                    raise RuntimeError("the update did not finish within 600 s")
                await asyncio.sleep(0.01)
            self.confirmed = loop.time()
            job = store.list_jobs()[0]
            if job.state != CONFIRMED:
                raise RuntimeError(f"the update failed: {job.result}")
        finally:
            process.kill()
            await process.wait()
            await server.stop()
            if relay is not None:
                relay.close()

    @property
    def transfer_seconds(self) -> float:
        assert self.first_request is not None and self.result is not None
        return self.result - self.first_request

    @property
    def update_seconds(self) -> float:
        assert self.offered is not None and self.confirmed is not None
        return self.confirmed - self.offered


def summary(values: list[float]) -> tuple[float, float]:
    return min(values), statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--c-build", required=True, type=Path, action="append",
                        help="a build tree with usmp_device (Release); repeat to compare builds")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--tcp-size", type=int, default=1 << 20)
    parser.add_argument("--uart-size", type=int, default=256 * 1024)
    parser.add_argument("--baud", type=int, default=115200)
    args = parser.parse_args()
    programs = [build / "usmp_device" for build in args.c_build]
    for program in programs:
        if not os.access(program, os.X_OK):
            print(f"{program} is missing: build the usmp_device_demo target of {program.parent}", file=sys.stderr)
            return 2

    line_rate = args.baud / 10  # 8N1
    builds = " ".join(f"--c-build {b}" for b in args.c_build)
    print(f"OTA throughput, {args.repetitions} repetitions each")
    print(f"command: /usr/bin/python3 bench/ota_throughput.py {builds} --repetitions {args.repetitions}")
    print()
    print("| device | link | image | transfer (min / median) | throughput (median) "
          "| whole update, offer to confirmed (median) |")
    print("|---|---|---|---|---|---|")
    for program in programs:
        tcp_runs, uart_runs = [], []
        for _ in range(args.repetitions):
            run = Run(program, image_of(args.tcp_size), "tcp", 0)
            asyncio.run(run.go())
            tcp_runs.append(run)
        for _ in range(args.repetitions):
            run = Run(program, image_of(args.uart_size), "serial", args.baud)
            asyncio.run(run.go())
            uart_runs.append(run)
        device = f"{program.parent.name}, chunk {tcp_runs[0].max_chunk} B"
        t_min, t_med = summary([r.transfer_seconds for r in tcp_runs])
        _, u_med = summary([r.update_seconds for r in tcp_runs])
        print(f"| {device} | TCP loopback | {args.tcp_size} bytes | {t_min:.2f} s / {t_med:.2f} s | "
              f"{args.tcp_size / t_med / 1e6:.2f} MB/s | {u_med:.2f} s |")
        t_min, t_med = summary([r.transfer_seconds for r in uart_runs])
        _, u_med = summary([r.update_seconds for r in uart_runs])
        rate = args.uart_size / t_med
        print(f"| {device} | UART {args.baud} baud (paced pty) | {args.uart_size} bytes | "
              f"{t_min:.2f} s / {t_med:.2f} s | {rate:.0f} B/s = {100 * rate / line_rate:.1f} % of "
              f"{line_rate:.0f} B/s | {u_med:.2f} s |", flush=True)
    return 0


if __name__ == "__main__":
    start = time.monotonic()
    code = main()
    print(f"\n({time.monotonic() - start:.0f} s)", file=sys.stderr)
    sys.exit(code)
