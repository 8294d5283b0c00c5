"""A device side of spec/ota.md in Python, for testing the gateway's runner without a C build.

It follows ota.md section 4 to the letter (checks in order, persist after
write, hash before activate) with an in-memory slot; ``persisted`` survives
a "reboot" (a new :class:`SimulatedDevice` given the old one's storage).
The C device is the product; this one is a test double.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from usmp import ota
from usmp.ota import Chunk, Offer, Request, Result, ResultCode, Status, TransferState
from usmp.wire import Limits


@dataclass
class DeviceStorage:
    """What survives a restart: both slots, which one boots, and the persisted transfer."""

    running_version: int
    boot_image: bytes = b"old firmware"
    slot: bytearray = field(default_factory=bytearray)
    manifest: ota.Manifest | None = None
    next_offset: int = 0


class SimulatedDevice:
    def __init__(
        self,
        storage: DeviceStorage,
        public_key: bytes,
        hardware_id: bytes,
        *,
        slot_size: int = 1 << 21,
        max_chunk: int = 1000,
    ) -> None:
        self.storage = storage
        self.public_key = public_key
        self.hardware_id = hardware_id
        self.slot_size = slot_size
        self.max_chunk = max_chunk
        self.results: list[int] = []
        self.restart_requested = False
        self.ignored_chunks = 0
        self.malformed = 0

    def status(self) -> bytes:
        s = self.storage
        if s.manifest is None:
            message = ota.idle_status(s.running_version, self.hardware_id, self.max_chunk)
        else:
            message = Status(
                fw_version=s.running_version,
                hardware_id=self.hardware_id,
                state=TransferState.RECEIVING,
                manifest_digest=s.manifest.digest(),
                next_offset=s.next_offset,
                max_chunk=self.max_chunk,
            )
        return ota.encode_message(message)

    def current_request(self) -> bytes | None:
        s = self.storage
        if s.manifest is None or s.next_offset >= s.manifest.image_size:
            return None
        length = min(self.max_chunk, s.manifest.image_size - s.next_offset)
        return ota.encode_message(Request(offset=s.next_offset, length=length))

    def handle(self, body: bytes) -> list[bytes]:
        """The bodies this device sends in answer to one OTA message from the gateway."""
        try:
            message = ota.parse_message(body)
        except ota.OtaFormatError:
            self.malformed += 1
            return []
        if isinstance(message, Offer):
            return self._on_offer(message.manifest)
        if isinstance(message, Chunk):
            return self._on_chunk(message)
        self.malformed += 1
        return []

    def _result(self, code: ResultCode) -> list[bytes]:
        self.results.append(code)
        body = ota.encode_message(Result(code=code, fw_version=self.storage.running_version))
        return [body, self.status()]

    def _on_offer(self, raw: bytes) -> list[bytes]:
        s = self.storage
        manifest = ota.parse_manifest(raw)
        if s.manifest is not None and s.manifest.digest() == manifest.digest():  # ota.md 4.1 step 1
            request = self.current_request()
            return [request] if request is not None else []
        refusal = ota.check_offer(manifest, self.public_key, s.running_version, self.hardware_id, self.slot_size)
        if refusal is not None:
            return self._result(refusal)
        s.slot = bytearray()
        s.manifest = manifest
        s.next_offset = 0
        request = self.current_request()
        assert request is not None
        return [request]

    def _on_chunk(self, chunk: Chunk) -> list[bytes]:
        s = self.storage
        if s.manifest is None:
            self.ignored_chunks += 1
            return []
        expected = min(self.max_chunk, s.manifest.image_size - s.next_offset)
        if chunk.offset != s.next_offset or len(chunk.data) != expected:
            self.ignored_chunks += 1
            return []
        s.slot[chunk.offset : chunk.offset + len(chunk.data)] = chunk.data  # write, then persist
        s.next_offset += len(chunk.data)
        if s.next_offset < s.manifest.image_size:
            request = self.current_request()
            assert request is not None
            return [request]
        manifest = s.manifest
        s.manifest = None
        s.next_offset = 0
        if hashlib.sha256(bytes(s.slot)).digest() != manifest.image_sha256:
            return self._result(ResultCode.HASH_MISMATCH)
        s.boot_image = bytes(s.slot)
        answer = self._result(ResultCode.ACTIVATED)
        s.running_version = manifest.firmware_version  # after the restart
        self.restart_requested = True
        return answer


class LoopLink:
    """A session between a runner and a :class:`SimulatedDevice`, with optional loss.

    ``drop(direction, body)`` decides per message whether it is lost
    (direction ``"down"`` gateway->device, ``"up"`` device->gateway). The
    device resends its REQUEST after ``retransmit`` seconds of silence.
    """

    def __init__(
        self,
        runner_control: Callable[[LoopLink, int, bytes], object],
        device: SimulatedDevice,
        device_id: bytes,
        *,
        max_record: int = 1207,
        drop: Callable[[str, bytes], bool] | None = None,
        retransmit: float = 0.02,
    ) -> None:
        self._runner_control = runner_control
        self.device = device
        self._device_id = device_id
        self._limits = Limits(max_record=max_record, max_message=65535)
        self._drop = drop or (lambda direction, body: False)
        self.retransmit = retransmit
        self.open = True
        self.down: list[bytes] = []  # every body the gateway sent
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.on_down: Callable[[bytes], None] | None = None

    @property
    def device_id(self) -> bytes | None:
        return self._device_id

    @property
    def peer_limits(self) -> Limits | None:
        return self._limits

    async def send_control(self, channel: int, body: bytes) -> None:
        if not self.open:
            raise ConnectionError("session closed")
        assert channel == ota.OTA_CHANNEL
        assert 1 + len(body) <= self._limits.max_record
        self.down.append(body)
        if self.on_down is not None:
            self.on_down(body)
        if self.open and not self._drop("down", body):
            self._inbox.put_nowait(body)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_device())

    async def stop(self) -> None:
        self.open = False
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _up(self, body: bytes) -> None:
        if self.open and not self._drop("up", body):
            result = self._runner_control(self, ota.OTA_CHANNEL, body)
            if asyncio.iscoroutine(result):
                await result

    async def _run_device(self) -> None:
        await self._up(self.device.status())
        while self.open:
            try:
                body = await asyncio.wait_for(self._inbox.get(), self.retransmit)
            except asyncio.TimeoutError:
                request = self.device.current_request()
                if request is not None:  # ota.md 3.3: resend until the CHUNK arrives
                    await self._up(request)
                continue
            for answer in self.device.handle(body):
                await self._up(answer)
            if self.device.restart_requested:
                self.open = False
                return


def lossy(rate: float, seed: int) -> Callable[[str, bytes], bool]:
    generator = random.Random(seed)
    return lambda direction, body: generator.random() < rate


class SessionDevice:
    """A :class:`SimulatedDevice` on a real client session (TCP, UDP or serial): the ota.md 3.1 STATUS
    at open, every answer as a CONTROL record, and the REQUEST resent after ``retransmit`` seconds."""

    def __init__(self, device: SimulatedDevice, session: object, *, retransmit: float = 0.05) -> None:
        self.device = device
        self.session = session
        self.retransmit = retransmit
        self.progress = asyncio.Event()
        self.restarted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.session.control_handler = self._on_control  # type: ignore[attr-defined]
        await self._send(self.device.status())
        self._task = asyncio.create_task(self._resend_requests())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _send(self, body: bytes) -> None:
        await self.session.send_control(ota.OTA_CHANNEL, body)  # type: ignore[attr-defined]

    async def _on_control(self, session: object, channel: int, body: bytes) -> None:
        if channel != ota.OTA_CHANNEL or self.restarted.is_set():
            return
        self.progress.set()
        for answer in self.device.handle(body):
            await self._send(answer)
        if self.device.restart_requested:
            self.restarted.set()

    async def _resend_requests(self) -> None:
        while not self.restarted.is_set():
            self.progress.clear()
            try:
                await asyncio.wait_for(self.progress.wait(), self.retransmit)
            except asyncio.TimeoutError:
                request = self.device.current_request()
                if request is not None:
                    await self._send(request)
