"""End to end firmware updates (spec/ota.md): the C device ``usmp_device --ota-dir`` (POSIX slot
files) updated by the Python gateway's OTA runner over TCP, and over UDP and a serial line through
the lossy-link simulator (tools/lossy_link.py: 20 % loss, duplication, reordering).

Each test checks the device's state directory, not only what the gateway heard: the slot that
boots holds the exact image, the boot record names it and the version, and the new session
reports that version (the job is confirmed). Every fault leaves the old image the boot image.

Sizes: 1 MiB over TCP and lossy UDP; 256 KiB over the lossy serial line, whose pty pair carries
every frame through the relay's Python event loop (the 115,200-baud figure is a benchmark,
bench/ota_throughput.py, not a test).
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from usmp import Condition, ServerConfig, USMPServer, ota
from usmp.ota import Request, SignedImage
from usmp.ota_jobs import ACTIVATED, CONFIRMED, FAILED, MemoryJobStore, OtaJob, new_job
from usmp.ota_server import OtaRunner

from interop_harness import DEVICE, PSK, REPO, CBuild, CProcess, async_test, sanitizer_env, wait_for

import importlib.util
import sys

_spec = importlib.util.spec_from_file_location("lossy_link", REPO / "tools" / "lossy_link.py")
assert _spec is not None and _spec.loader is not None
lossy_link = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("lossy_link", lossy_link)
_spec.loader.exec_module(lossy_link)

KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"usmp ota interop signing key").digest())
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"usmp ota interop other key").digest())
HARDWARE = "usmp-posix"
RUNNING_VERSION = 5
MIB = 1 << 20
LOSSY = dict(loss=0.2, duplicate=0.1, reorder=0.1, reorder_delay=0.003, jitter=0.001)
GENEROUS = ServerConfig(handshake_burst=1000, handshake_rate=1000.0)


def image_of(size: int, seed: int = 1) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"ota image %d %d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:size])


def signed_file(tmp_path: Path, image: bytes, version: int, *, key: Ed25519PrivateKey = KEY,
                hardware: str = HARDWARE, name: str = "app.signed") -> tuple[Path, SignedImage]:
    manifest = ota.sign_manifest(key, image, version, ota.hardware_id_from_text(hardware))
    signed = SignedImage(manifest=manifest, image=image)
    path = tmp_path / name
    path.write_bytes(signed.encode())
    return path, signed


class CorruptingRunner(OtaRunner):
    """The test's own gateway code: every CHUNK at offset 0 has one bit flipped."""

    def chunk_bytes(self, job: OtaJob, image: SignedImage, offset: int, length: int) -> bytes:
        data = bytearray(super().chunk_bytes(job, image, offset, length))
        if offset == 0:
            data[0] ^= 0x01
        return bytes(data)


@dataclass
class Gateway:
    server: USMPServer
    runner: OtaRunner
    store: MemoryJobStore
    sessions: list[Any] = field(default_factory=list)
    requests: list[tuple[int, int]] = field(default_factory=list)  # (session number, offset)
    on_request: Callable[[Any, Request], None] | None = None

    def job(self) -> OtaJob:
        jobs = self.store.list_jobs()
        assert len(jobs) == 1
        return jobs[0]

    async def wait_job(self, *states: str, timeout: float) -> OtaJob:
        await wait_for(lambda: self.job().state in states, timeout, f"the job to be {'/'.join(states)}")
        return self.job()


@asynccontextmanager
async def ota_gateway(store: MemoryJobStore, *, runner_class: type[OtaRunner] = OtaRunner,
                      **server_kwargs: Any) -> AsyncIterator[Gateway]:
    runner = runner_class(store, retransmit=0.1, max_retransmit=0.8, progress_interval=0.05)
    gateway: Gateway

    async def on_control(session: Any, channel: int, body: bytes) -> None:
        try:
            message = ota.parse_message(body)
        except ota.OtaFormatError:
            message = None
        if isinstance(message, Request):
            gateway.requests.append((gateway.sessions.index(session), message.offset))
            if gateway.on_request is not None:
                gateway.on_request(session, message)
        await runner.control_received(session, channel, body)

    async def on_open(session: Any) -> None:
        gateway.sessions.append(session)

    async def on_close(session: Any, reason: Condition) -> None:
        await runner.session_closed(session)

    server = USMPServer(psk={DEVICE: PSK}, on_open=on_open, on_close=on_close, on_control=on_control,
                        config=GENEROUS, **server_kwargs)
    gateway = Gateway(server=server, runner=runner, store=store)
    await server.start()
    try:
        yield gateway
    finally:
        await server.stop()


class Device:
    """``usmp_device --ota-dir`` and its state directory."""

    def __init__(self, c_build: CBuild, state: Path, link: list[str], *, version: int = RUNNING_VERSION,
                 retry_ms: int = 100) -> None:
        env = dict(sanitizer_env(), OTA_PSK=PSK.hex())
        self.argv = [
            str(c_build.program("device")), "--psk-env", "OTA_PSK", "--device-id", DEVICE.hex(), *link,
            "--ota-dir", str(state), "--ota-pubkey", ota.public_key_bytes(KEY).hex(),
            "--hardware-id", HARDWARE, "--fw-version", str(version), "--ota-retry-ms", str(retry_ms),
            "--keepalive-ms", "2000",
        ]
        self.env = env
        self.state = state
        self.process = CProcess(self.argv, "usmp_device --ota-dir", env=env)

    async def start(self) -> None:
        await self.process.start()

    async def restart(self) -> None:
        self.process = CProcess(self.argv, "usmp_device --ota-dir (restarted)", env=self.env)
        await self.process.start()

    async def stop(self) -> None:
        await self.process.finish(signal.SIGTERM, expect=None)

    def boot_record(self) -> str | None:
        path = self.state / "boot"
        return path.read_text() if path.exists() else None

    def slot(self, name: str) -> bytes:
        path = self.state / f"slot-{name}.bin"
        return path.read_bytes() if path.exists() else b""


def check_updated(device: Device, image: bytes, version: int) -> None:
    """The update is in place: slot b boots, holds the image, and the record has the version."""
    assert device.boot_record() == f"slot b\nversion {version}\n"
    assert device.slot("b")[: len(image)] == image
    assert not (device.state / "progress").exists()


def check_untouched(device: Device) -> None:
    """The old image is still the boot image: no boot record was ever written (slot a runs)."""
    assert device.boot_record() is None
    assert not (device.state / "progress").exists()


def queue(store: MemoryJobStore, path: Path, signed: SignedImage) -> None:
    store.add_job(new_job(DEVICE, str(path), signed))


# --- complete updates ------------------------------------------------------------------------------------


@async_test(timeout=180)
async def test_one_mib_over_tcp_is_written_activated_and_confirmed(c_build: CBuild, tmp_path: Path) -> None:
    image = image_of(MIB)
    path, signed = signed_file(tmp_path, image, RUNNING_VERSION + 1)
    store = MemoryJobStore()
    queue(store, path, signed)
    async with ota_gateway(store, host="127.0.0.1", port=0) as gw:
        device = Device(c_build, tmp_path / "state", ["--port", str(gw.server.port)])
        await device.start()
        try:
            job = await gw.wait_job(CONFIRMED, FAILED, timeout=150)
            assert job.state == CONFIRMED, job
            check_updated(device, image, RUNNING_VERSION + 1)
            assert len(gw.sessions) == 2  # the update's session and the new image's
            assert gw.runner.counters.malformed == 0 and gw.runner.counters.bad_requests == 0
        finally:
            await device.stop()
        device.process.check_sanitizers()


@async_test(timeout=300)
async def test_one_mib_over_lossy_udp_is_written_activated_and_confirmed(c_build: CBuild, tmp_path: Path) -> None:
    image = image_of(MIB, seed=2)
    path, signed = signed_file(tmp_path, image, RUNNING_VERSION + 1)
    store = MemoryJobStore()
    queue(store, path, signed)
    async with ota_gateway(store, host="127.0.0.1", port=0, transport="udp") as gw:
        relay = lossy_link.UdpRelay(("127.0.0.1", gw.server.port), lossy_link.Impairment(seed=31, **LOSSY))
        await relay.start()
        host, port = relay.address
        # A REQUEST or CHUNK lost costs one retry interval: 10 ms here (loopback), 1 s by default.
        device = Device(c_build, tmp_path / "state", ["--udp", f"{host}:{port}"], retry_ms=10)
        await device.start()
        try:
            job = await gw.wait_job(CONFIRMED, FAILED, timeout=270)
            assert job.state == CONFIRMED, job
            check_updated(device, image, RUNNING_VERSION + 1)
            assert relay.up.counts.lost > 0 and relay.down.counts.lost > 0
            assert relay.up.counts.duplicated > 0 and relay.down.counts.reordered > 0
        finally:
            await device.stop()
            relay.close()
        device.process.check_sanitizers()


@async_test(timeout=300)
async def test_256_kib_over_a_lossy_serial_line_is_written_activated_and_confirmed(
    c_build: CBuild, tmp_path: Path
) -> None:
    image = image_of(256 * 1024, seed=3)
    path, signed = signed_file(tmp_path, image, RUNNING_VERSION + 1)
    store = MemoryJobStore()
    queue(store, path, signed)
    relay = lossy_link.PtyRelay(lossy_link.Impairment(seed=37, **LOSSY))
    await relay.start()
    try:
        async with ota_gateway(store, transport="serial", serial_port=relay.gateway_path, baud=921600) as gw:
            device = Device(c_build, tmp_path / "state", ["--serial", relay.device_path, "--baud", "921600"],
                            retry_ms=30)
            await device.start()
            try:
                job = await gw.wait_job(CONFIRMED, FAILED, timeout=270)
                assert job.state == CONFIRMED, job
                check_updated(device, image, RUNNING_VERSION + 1)
            finally:
                await device.stop()
            device.process.check_sanitizers()
    finally:
        relay.close()


# --- faults: each leaves the old image bootable and active ------------------------------------------------


async def drop_session_at(c_build: CBuild, tmp_path: Path, fraction: float) -> None:
    image = image_of(MIB, seed=4)
    path, signed = signed_file(tmp_path, image, RUNNING_VERSION + 1)
    store = MemoryJobStore()
    queue(store, path, signed)
    async with ota_gateway(store, host="127.0.0.1", port=0) as gw:
        cut = int(len(image) * fraction)
        dropped: list[int] = []

        def drop_once(session: Any, request: Request) -> None:
            if not dropped and request.offset >= cut:
                dropped.append(request.offset)
                session.abort()  # the connection goes without a BYE, mid-transfer

        gw.on_request = drop_once
        device = Device(c_build, tmp_path / "state", ["--port", str(gw.server.port)])
        await device.start()
        try:
            await wait_for(lambda: len(gw.sessions) >= 2, 120, "the device to reconnect")
            assert device.boot_record() is None, "nothing is activated by a dropped session"
            assert (device.state / "progress").exists(), "the transfer was persisted"
            job = await gw.wait_job(CONFIRMED, FAILED, timeout=150)
            assert job.state == CONFIRMED, job
            check_updated(device, image, RUNNING_VERSION + 1)
            resumed = [offset for session, offset in gw.requests if session == 1]
            # The device asks from its persisted offset (a multiple of the POSIX port's 64 KiB sync),
            # not from 0, and not past what the gateway had sent.
            assert 0 < resumed[0] <= dropped[0] or (fraction < 0.07 and resumed[0] == 0), (resumed[0], dropped)
        finally:
            await device.stop()
        device.process.check_sanitizers()


@async_test(timeout=200)
async def test_a_session_dropped_at_10_percent_resumes_and_completes(c_build: CBuild, tmp_path: Path) -> None:
    await drop_session_at(c_build, tmp_path, 0.10)


@async_test(timeout=200)
async def test_a_session_dropped_at_50_percent_resumes_and_completes(c_build: CBuild, tmp_path: Path) -> None:
    await drop_session_at(c_build, tmp_path, 0.50)


@async_test(timeout=200)
async def test_a_session_dropped_at_99_percent_resumes_and_completes(c_build: CBuild, tmp_path: Path) -> None:
    await drop_session_at(c_build, tmp_path, 0.99)


@async_test(timeout=240)
async def test_a_device_killed_mid_write_resumes_after_restart(c_build: CBuild, tmp_path: Path) -> None:
    image = image_of(MIB, seed=5)
    path, signed = signed_file(tmp_path, image, RUNNING_VERSION + 1)
    store = MemoryJobStore()
    queue(store, path, signed)
    async with ota_gateway(store, host="127.0.0.1", port=0) as gw:
        device = Device(c_build, tmp_path / "state", ["--port", str(gw.server.port)])
        await device.start()
        try:
            await wait_for(lambda: any(offset >= len(image) // 2 for _, offset in gw.requests), 120,
                           "half the image to be asked for")
            assert device.process.proc is not None
            device.process.proc.kill()  # kill -9, in the middle of writing
            await device.process.kill()
            assert device.boot_record() is None, "a killed transfer is never activated"
            persisted = (device.state / "progress").read_bytes()
            assert persisted[: ota.MANIFEST_BYTES] == signed.manifest.encode()
            next_offset = int.from_bytes(persisted[ota.MANIFEST_BYTES : ota.MANIFEST_BYTES + 4], "big")
            assert 0 < next_offset < len(image)
            await device.restart()
            job = await gw.wait_job(CONFIRMED, FAILED, timeout=150)
            assert job.state == CONFIRMED, job
            check_updated(device, image, RUNNING_VERSION + 1)
            second = [offset for session, offset in gw.requests if session == 1]
            assert second[0] == next_offset, "the restarted device asks from its persisted offset"
        finally:
            await device.stop()
        device.process.check_sanitizers()


async def refused(c_build: CBuild, tmp_path: Path, signed_path: Path, signed: SignedImage,
                  runner_class: type[OtaRunner] = OtaRunner) -> tuple[OtaJob, Device, Gateway]:
    store = MemoryJobStore()
    queue(store, signed_path, signed)
    async with ota_gateway(store, host="127.0.0.1", port=0, runner_class=runner_class) as gw:
        device = Device(c_build, tmp_path / "state", ["--port", str(gw.server.port)])
        await device.start()
        try:
            job = await gw.wait_job(FAILED, ACTIVATED, CONFIRMED, timeout=150)
            await asyncio.sleep(0.3)  # anything the device would still do
            check_untouched(device)
            assert len(gw.sessions) == 1, "the device did not restart"
            assert device.process.returncode is None, "the device still runs its old image"
        finally:
            await device.stop()
        device.process.check_sanitizers()
        return job, device, gw


@async_test(timeout=200)
async def test_a_corrupted_chunk_is_a_hash_mismatch_and_is_not_activated(c_build: CBuild, tmp_path: Path) -> None:
    image = image_of(MIB // 4, seed=6)
    path, signed = signed_file(tmp_path, image, RUNNING_VERSION + 1)
    job, device, gw = await refused(c_build, tmp_path, path, signed, CorruptingRunner)
    assert (job.state, job.result) == (FAILED, "HASH_MISMATCH")
    assert device.slot("b")[: len(image)] != image  # written, with the flipped bit, never activated


@async_test(timeout=60)
async def test_a_bad_signature_is_refused_before_anything_is_written(c_build: CBuild, tmp_path: Path) -> None:
    path, signed = signed_file(tmp_path, image_of(4096), RUNNING_VERSION + 1, key=OTHER_KEY)
    job, device, gw = await refused(c_build, tmp_path, path, signed)
    assert (job.state, job.result) == (FAILED, "BAD_SIGNATURE")
    assert device.slot("b") == b"" or set(device.slot("b")) <= {0, 0xFF}
    assert gw.runner.counters.chunks_sent == 0


@async_test(timeout=60)
async def test_a_manifest_for_other_hardware_is_refused(c_build: CBuild, tmp_path: Path) -> None:
    path, signed = signed_file(tmp_path, image_of(4096), RUNNING_VERSION + 1, hardware="usmp-esp32c3")
    job, device, gw = await refused(c_build, tmp_path, path, signed)
    assert (job.state, job.result) == (FAILED, "WRONG_HARDWARE")
    assert gw.runner.counters.chunks_sent == 0


@async_test(timeout=60)
async def test_an_older_version_is_refused(c_build: CBuild, tmp_path: Path) -> None:
    path, signed = signed_file(tmp_path, image_of(4096), RUNNING_VERSION - 2)
    job, device, gw = await refused(c_build, tmp_path, path, signed)
    assert (job.state, job.result) == (FAILED, "NOT_NEWER")
    assert gw.runner.counters.chunks_sent == 0
