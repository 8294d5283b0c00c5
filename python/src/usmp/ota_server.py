"""The gateway side of firmware updates: runs OTA jobs over the devices' sessions (spec/ota.md 6).

Conventions: :class:`OtaRunner` does not know the transport. The gateway
calls :meth:`OtaRunner.control_received` for every CONTROL message of a
session and :meth:`OtaRunner.session_closed` when it ends; the runner
answers through the session's ``send_control(channel, body)``. Everything
runs on the gateway's event loop; the job store is synchronous and is
called through ``asyncio.to_thread``, one call at a time.

The runner only speaks on channel 0x01 to a device that has sent a STATUS
in this session (ota.md 3.1): a device without OTA never gets an OFFER.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Optional, Protocol

from .ota import (
    CONTROL_OVERHEAD,
    OTA_CHANNEL,
    Chunk,
    Offer,
    OtaFormatError,
    Request,
    Result,
    ResultCode,
    SignedImage,
    Status,
    TransferState,
    encode_message,
    parse_message,
    result_name,
)
from .ota_jobs import ACTIVATED, CONFIRMED, FAILED, QUEUED, TRANSFERRING, JobStore, JobStoreError, OtaJob
from .wire import Limits

log = logging.getLogger("usmp.ota")

DEFAULT_RETRANSMIT = 1.0  # ota.md 5: 1000 ms, doubled, at most 8000 ms
DEFAULT_MAX_RETRANSMIT = 8.0
DEFAULT_CONCURRENCY = 4
DEFAULT_PROGRESS_INTERVAL = 0.5  # seconds between progress writes to the store
DEFAULT_POLL_INTERVAL = 1.0  # seconds between looks for jobs pushed while a device is online

ROLLED_BACK = "ROLLED_BACK"  # activated, but the next session reports another version


class ControlLink(Protocol):
    """What the runner needs of a session (a TCP, UDP or serial one)."""

    @property
    def device_id(self) -> bytes | None: ...

    @property
    def peer_limits(self) -> Limits | None: ...

    async def send_control(self, channel: int, body: bytes) -> None: ...


EventCallback = Callable[[OtaJob], Optional[Awaitable[None]]]


def event_payload(job: OtaJob) -> bytes:
    """The JSON published on ``usmp/<device-id>/ota`` for a job's change (ota.md 6)."""
    return json.dumps(
        {
            "job": job.job_id,
            "device": job.device_id.hex(),
            "state": job.state,
            "firmware_version": job.firmware_version,
            "offset": job.offset,
            "size": job.image_size,
            "percent": round(job.percent, 1),
            "result": job.result,
        },
        sort_keys=True,
    ).encode()


@dataclass
class OtaCounters:
    """What the runner dropped and why (ota.md 3.6), and what it did."""

    malformed: int = 0  # bodies that are not an OTA message
    unexpected: int = 0  # well-formed messages out of place (a REQUEST without an OFFER, a device->gw op sent to us)
    bad_requests: int = 0  # REQUESTs outside the image or over the device's max_record
    offers_sent: int = 0
    chunks_sent: int = 0
    chunk_bytes: int = 0


@dataclass
class _Transfer:
    job: OtaJob
    image: SignedImage
    heard: asyncio.Event = field(default_factory=asyncio.Event)  # a REQUEST or RESULT since the last look
    finished: bool = False
    offer_task: asyncio.Task[None] | None = None
    last_progress_write: float = 0.0


@dataclass
class _Device:
    link: ControlLink
    device_id: bytes
    status: Status | None = None  # the latest STATUS of this session
    transfer: _Transfer | None = None
    waiting: bool = False
    considering: bool = False


class OtaRunner:
    """Runs the OTA jobs of ``store`` for the devices whose sessions report to it.

    ``concurrency`` bounds the transfers running at once; ``retransmit`` and
    ``max_retransmit`` are the OFFER back-off (ota.md 5); ``on_event`` is
    called with the job after each change of state (and at most every
    ``progress_interval`` seconds for progress): the MQTT bridge publishes
    :func:`event_payload` on ``usmp/<device-id>/ota``.
    """

    def __init__(
        self,
        store: JobStore,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        retransmit: float = DEFAULT_RETRANSMIT,
        max_retransmit: float = DEFAULT_MAX_RETRANSMIT,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        on_event: EventCallback | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency is at least 1")
        if not 0 < retransmit <= max_retransmit:
            raise ValueError("0 < retransmit <= max_retransmit")
        self.store = store
        self.concurrency = concurrency
        self.retransmit = retransmit
        self.max_retransmit = max_retransmit
        self.progress_interval = progress_interval
        self.on_event = on_event
        self.counters = OtaCounters()
        self._devices: dict[bytes, _Device] = {}
        self._waiting: list[bytes] = []  # devices ready for an OFFER when a transfer ends, in order
        self._store_lock = asyncio.Lock()
        self._running = 0

    # --- what the gateway calls ------------------------------------------------------

    async def control_received(self, link: ControlLink, channel: int, body: bytes) -> None:
        """One CONTROL message of ``link``'s session; channels other than OTA are not ours."""
        if channel != OTA_CHANNEL:
            return
        device_id = link.device_id
        if device_id is None:
            return
        try:
            message = parse_message(body)
        except OtaFormatError as exc:
            self.counters.malformed += 1
            log.debug("device %s: dropped OTA message: %s", device_id.hex(), exc)
            return
        device = self._devices.get(device_id)
        if device is None or device.link is not link:
            if device is not None:
                await self._end_session(device)
            device = _Device(link=link, device_id=device_id)
            self._devices[device_id] = device
        if isinstance(message, Status):
            await self._on_status(device, message)
        elif isinstance(message, Request):
            await self._on_request(device, message)
        elif isinstance(message, Result):
            await self._on_result(device, message)
        else:  # OFFER and CHUNK go to devices, not to us
            self.counters.unexpected += 1

    async def session_closed(self, link: ControlLink) -> None:
        """The session ended: its transfer stops where it is and resumes in the next session."""
        device_id = link.device_id
        if device_id is None:
            return
        device = self._devices.get(device_id)
        if device is not None and device.link is link:
            await self._end_session(device)
            del self._devices[device_id]
            await self._start_waiting()

    async def poll(self) -> None:
        """Offer jobs pushed since the device's last STATUS (run every ``DEFAULT_POLL_INTERVAL``)."""
        for device in list(self._devices.values()):
            status = device.status
            if device.transfer is None and not device.waiting and status is not None:
                await self._consider(device, status, first=False)

    async def run_poller(self, interval: float = DEFAULT_POLL_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll()
            except JobStoreError as exc:
                log.warning("OTA jobs: %s", exc)

    @property
    def running(self) -> int:
        return self._running

    # --- messages ----------------------------------------------------------------------

    async def _on_status(self, device: _Device, status: Status) -> None:
        first = device.status is None
        device.status = status
        if device.transfer is not None:
            return  # a STATUS after a RESULT: _on_result has ended the transfer already
        await self._consider(device, status, first=first)

    async def _consider(self, device: _Device, status: Status, *, first: bool) -> None:
        # One look at a time per device: a STATUS and the poller must not both start it.
        if device.considering or device.transfer is not None:
            return
        device.considering = True
        try:
            await self._consider_job(device, status, first=first)
        finally:
            device.considering = False

    async def _consider_job(self, device: _Device, status: Status, *, first: bool) -> None:
        job = await self._store_call(self.store.active_job, device.device_id)
        if job is None:
            return
        # Only a new session's first STATUS tells which image the device booted
        # (the STATUS after RESULT ACTIVATED still reports the old one, ota.md 3.5).
        # A transfer whose RESULT ACTIVATED was lost with the session is confirmed
        # the same way (ota.md 6).
        booted = first and status.state == TransferState.IDLE
        if job.state in (ACTIVATED, TRANSFERRING) and booted and status.fw_version == job.firmware_version:
            await self._save(replace(job, state=CONFIRMED, offset=job.image_size), force=True)
            return
        if job.state == ACTIVATED:
            if booted:
                await self._save(replace(job, state=FAILED, result=ROLLED_BACK), force=True)
            return
        if job.state not in (QUEUED, TRANSFERRING):
            return
        if status.state == TransferState.RECEIVING and status.manifest_digest != job.manifest_digest:
            log.info("device %s was receiving another image; the job's OFFER replaces it", device.device_id.hex())
        if self._running >= self.concurrency:
            if not device.waiting:
                device.waiting = True
                self._waiting.append(device.device_id)
            return
        await self._start(device, job)

    async def _start(self, device: _Device, job: OtaJob) -> None:
        self._running += 1  # taken before the first await, so the bound holds for every device
        try:
            image = await asyncio.to_thread(job.load_image)
        except (OSError, OtaFormatError, JobStoreError) as exc:
            self._running -= 1
            await self._save(replace(job, state=FAILED, result=f"IMAGE: {exc}"), force=True)
            await self._start_waiting()
            return
        if self._devices.get(device.device_id) is not device:  # the session ended meanwhile
            self._running -= 1
            await self._start_waiting()
            return
        transfer = _Transfer(job=replace(job, state=TRANSFERRING), image=image)
        device.transfer = transfer
        await self._save(transfer.job, force=True)
        transfer.offer_task = asyncio.create_task(self._offer_while_silent(device, transfer))

    async def _offer_while_silent(self, device: _Device, transfer: _Transfer) -> None:
        """ota.md 3.2: OFFER, and again whenever the device has been silent for the back-off interval.

        Every REQUEST or RESULT resets the interval. A resent OFFER costs the
        device one REQUEST at its current offset; what it recovers is a lost
        RESULT, which the device sends once (it answers the OFFER again).
        """
        body = encode_message(Offer(manifest=transfer.image.manifest.encode()))
        interval = self.retransmit
        while not transfer.finished:
            try:
                await device.link.send_control(OTA_CHANNEL, body)
            except Exception as exc:  # the session ended under us: session_closed follows
                log.debug("device %s: OFFER not sent: %s", device.device_id.hex(), exc)
                return
            self.counters.offers_sent += 1
            while not transfer.finished:
                transfer.heard.clear()
                try:
                    await asyncio.wait_for(transfer.heard.wait(), interval)
                except asyncio.TimeoutError:
                    interval = min(interval * 2, self.max_retransmit)
                    break
                interval = self.retransmit

    async def _on_request(self, device: _Device, request: Request) -> None:
        transfer = device.transfer
        if transfer is None:
            self.counters.unexpected += 1
            return
        transfer.heard.set()
        size = transfer.job.image_size
        limits = device.link.peer_limits
        max_record = limits.max_record if limits is not None else 0
        length = min(request.length, size - request.offset)
        if request.offset >= size or CONTROL_OVERHEAD + length > max_record:
            self.counters.bad_requests += 1
            log.debug("device %s: REQUEST %d+%d outside the image or its max_record", device.device_id.hex(),
                      request.offset, request.length)
            return
        data = self.chunk_bytes(transfer.job, transfer.image, request.offset, length)
        try:
            await device.link.send_control(OTA_CHANNEL, encode_message(Chunk(offset=request.offset, data=data)))
        except Exception as exc:
            log.debug("device %s: CHUNK not sent: %s", device.device_id.hex(), exc)
            return
        self.counters.chunks_sent += 1
        self.counters.chunk_bytes += length
        if request.offset != transfer.job.offset:
            transfer.job = replace(transfer.job, offset=request.offset)
            await self._save(transfer.job, transfer=transfer)

    def chunk_bytes(self, job: OtaJob, image: SignedImage, offset: int, length: int) -> bytes:
        """The bytes of the CHUNK at ``offset`` (ota.md 3.4). A seam for tests of the device's hash check."""
        return image.image[offset : offset + length]

    async def _on_result(self, device: _Device, result: Result) -> None:
        transfer = device.transfer
        if transfer is None:
            self.counters.unexpected += 1
            return
        transfer.heard.set()
        if result.code == ResultCode.ACTIVATED:
            job = replace(transfer.job, state=ACTIVATED, offset=transfer.job.image_size, result=result_name(result.code))
        else:
            job = replace(transfer.job, state=FAILED, result=result_name(result.code))
        transfer.job = job
        await self._finish(device)
        await self._save(job, force=True)
        await self._start_waiting()

    # --- bookkeeping -------------------------------------------------------------------

    async def _finish(self, device: _Device) -> None:
        transfer = device.transfer
        if transfer is None:
            return
        device.transfer = None
        self._running -= 1
        transfer.finished = True
        transfer.heard.set()
        task = transfer.offer_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _end_session(self, device: _Device) -> None:
        if device.waiting:
            device.waiting = False
            if device.device_id in self._waiting:
                self._waiting.remove(device.device_id)
        transfer = device.transfer
        if transfer is not None:
            await self._finish(device)
            await self._save(transfer.job, force=True)  # the offset reached, for `usmp ota status`

    async def _start_waiting(self) -> None:
        while self._waiting and self._running < self.concurrency:
            device_id = self._waiting.pop(0)
            device = self._devices.get(device_id)
            if device is None or not device.waiting:
                continue
            device.waiting = False
            if device.status is not None:
                await self._consider(device, device.status, first=False)

    async def _save(self, job: OtaJob, *, force: bool = False, transfer: _Transfer | None = None) -> None:
        now = time.monotonic()
        if not force and transfer is not None:
            if now - transfer.last_progress_write < self.progress_interval:
                return
        if transfer is not None:
            transfer.last_progress_write = now
        job = replace(job, updated=time.time())
        try:
            await self._store_call(self.store.update_job, job)
        except JobStoreError as exc:
            log.warning("OTA job %d: %s", job.job_id, exc)
        log.info(
            "OTA job %d device %s: %s %d/%d%s",
            job.job_id,
            job.device_id.hex(),
            job.state,
            job.offset,
            job.image_size,
            f" {job.result}" if job.result else "",
        )
        if self.on_event is not None:
            outcome = self.on_event(job)
            if outcome is not None:
                await outcome

    async def _store_call(self, call: Callable[..., object], *args: object) -> OtaJob | None:
        async with self._store_lock:
            result = await asyncio.to_thread(call, *args)
        return result if isinstance(result, OtaJob) else None
