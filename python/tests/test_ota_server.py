"""The gateway's OTA runner (spec/ota.md 6) against a simulated device, and the job stores."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from usmp import ota
from usmp.ota import Chunk, Offer, Request, ResultCode, SignedImage
from usmp.ota_jobs import (
    ACTIVATED,
    CONFIRMED,
    FAILED,
    QUEUED,
    TRANSFERRING,
    JobFile,
    JobStoreError,
    MemoryJobStore,
    OtaJob,
    new_job,
)
from usmp.ota_server import ROLLED_BACK, OtaRunner, event_payload
from usmp.registry import Registry, UnknownDevice, open_registry
from usmp.registry.ota import RegistryJobStore

from ota_testing import DeviceStorage, LoopLink, SimulatedDevice, lossy

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = ota.public_key_bytes(KEY)
HARDWARE = ota.hardware_id_from_text("test-board")
DEVICE_ID = bytes.fromhex("a0b0c0d0e0f1")
IMAGE = os.urandom(50_000)


def signed_file(tmp_path: object, image: bytes = IMAGE, version: int = 2, hardware_id: bytes = HARDWARE,
                key: Ed25519PrivateKey = KEY, name: str = "app.bin.signed") -> tuple[str, SignedImage]:
    manifest = ota.sign_manifest(key, image, version, hardware_id)
    signed = SignedImage(manifest=manifest, image=image)
    path = os.path.join(str(tmp_path), name)
    with open(path, "wb") as f:
        f.write(signed.encode())
    return path, signed


def queue(store: MemoryJobStore | JobFile | RegistryJobStore, tmp_path: object, device_id: bytes = DEVICE_ID, **kwargs: object) -> OtaJob:
    path, signed = signed_file(tmp_path, **kwargs)  # type: ignore[arg-type]
    return store.add_job(new_job(device_id, path, signed))


def new_device(storage: DeviceStorage, **kwargs: object) -> SimulatedDevice:
    return SimulatedDevice(storage, PUBLIC, HARDWARE, **kwargs)  # type: ignore[arg-type]


async def session(runner: OtaRunner, device: SimulatedDevice, device_id: bytes = DEVICE_ID,
                  **kwargs: object) -> LoopLink:
    link = LoopLink(runner.control_received, device, device_id, **kwargs)  # type: ignore[arg-type]
    link.start()
    return link


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def only_job(store: MemoryJobStore | JobFile | RegistryJobStore) -> OtaJob:
    jobs = store.list_jobs()
    assert len(jobs) == 1
    return jobs[0]


async def run_to_restart(runner: OtaRunner, storage: DeviceStorage, **kwargs: object) -> LoopLink:
    link = await session(runner, new_device(storage), **kwargs)
    await until(lambda: not link.open)
    await link.stop()
    await runner.session_closed(link)
    return link


def test_update_is_written_activated_and_confirmed_by_the_next_session(tmp_path: object) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        queue(store, tmp_path)
        events: list[OtaJob] = []
        runner = OtaRunner(store, retransmit=0.05, on_event=events.append)
        storage = DeviceStorage(running_version=1)
        await run_to_restart(runner, storage)
        assert storage.boot_image == IMAGE
        assert only_job(store).state == ACTIVATED
        link = await session(runner, new_device(storage))
        await until(lambda: only_job(store).state == CONFIRMED)
        await link.stop()
        assert [e.state for e in events][0] == TRANSFERRING
        assert events[-1].state == CONFIRMED and events[-1].percent == 100.0
        assert b'"state": "confirmed"' in event_payload(events[-1])
        assert runner.running == 0

    asyncio.run(main())


def test_chunks_are_the_requested_length_up_to_the_devices_max_record(tmp_path: object) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        queue(store, tmp_path)
        runner = OtaRunner(store, retransmit=0.05)
        storage = DeviceStorage(running_version=1)
        link = LoopLink(runner.control_received, new_device(storage, max_chunk=294), DEVICE_ID, max_record=300)
        link.start()
        await until(lambda: not link.open)
        chunks = [ota.parse_message(b) for b in link.down if b[0] == ota.Op.CHUNK]
        assert max(len(c.data) for c in chunks if isinstance(c, Chunk)) == 294  # 300 - 6
        assert storage.boot_image == IMAGE

    asyncio.run(main())


def test_a_request_over_the_devices_max_record_is_dropped_and_counted(tmp_path: object) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        queue(store, tmp_path)
        runner = OtaRunner(store, retransmit=0.05)
        device = new_device(DeviceStorage(running_version=1), max_chunk=2000)
        link = await session(runner, device, max_record=1207)
        await until(lambda: runner.counters.bad_requests >= 2)
        await link.stop()
        assert not any(b[0] == ota.Op.CHUNK for b in link.down)

    asyncio.run(main())


def test_twenty_percent_loss_both_ways_still_delivers_the_exact_image(tmp_path: object) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        queue(store, tmp_path)
        runner = OtaRunner(store, retransmit=0.02, max_retransmit=0.1)
        storage = DeviceStorage(running_version=1)
        link = await run_to_restart(runner, storage, drop=lossy(0.2, seed=7), retransmit=0.01)
        assert storage.boot_image == IMAGE
        assert only_job(store).state == ACTIVATED
        assert runner.counters.chunks_sent > len(IMAGE) // 1000  # some were resent
        assert link.device.ignored_chunks >= 0

    asyncio.run(main())


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_a_dropped_session_resumes_from_the_persisted_offset(tmp_path: object, fraction: float) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        queue(store, tmp_path)
        runner = OtaRunner(store, retransmit=0.05)
        storage = DeviceStorage(running_version=1)
        cut = int(len(IMAGE) * fraction)
        link = LoopLink(runner.control_received, new_device(storage), DEVICE_ID)

        def drop_session_at_cut(body: bytes) -> None:
            message = ota.parse_message(body)
            if isinstance(message, Chunk) and message.offset + len(message.data) >= cut:
                link.open = False  # this CHUNK and everything after it are lost with the session

        link.on_down = drop_session_at_cut
        link.start()
        await until(lambda: not link.open)
        await link.stop()
        await runner.session_closed(link)
        resumed_at = storage.next_offset
        assert 0 < resumed_at < len(IMAGE) and storage.boot_image == b"old firmware"
        assert only_job(store).state == TRANSFERRING and only_job(store).offset > 0
        second = await run_to_restart(runner, storage)
        offsets = [m.offset for m in map(ota.parse_message, second.down) if isinstance(m, Chunk)]
        assert offsets[0] == resumed_at  # nothing before the persisted offset is sent again
        assert storage.boot_image == IMAGE and only_job(store).state == ACTIVATED

    asyncio.run(main())


class CorruptingRunner(OtaRunner):
    """The test's own gateway: flips one bit of the chunk at offset 0."""

    def chunk_bytes(self, job: OtaJob, image: SignedImage, offset: int, length: int) -> bytes:
        data = bytearray(super().chunk_bytes(job, image, offset, length))
        if offset == 0:
            data[0] ^= 0x01
        return bytes(data)


def test_a_corrupted_chunk_is_a_hash_mismatch_and_nothing_is_activated(tmp_path: object) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        queue(store, tmp_path)
        runner = CorruptingRunner(store, retransmit=0.05)
        storage = DeviceStorage(running_version=1)
        link = await session(runner, new_device(storage))
        await until(lambda: only_job(store).state == FAILED)
        await link.stop()
        assert only_job(store).result == "HASH_MISMATCH"
        assert storage.boot_image == b"old firmware" and storage.running_version == 1

    asyncio.run(main())


@pytest.mark.parametrize(
    "kwargs, result",
    [
        ({"key": Ed25519PrivateKey.generate()}, "BAD_SIGNATURE"),
        ({"hardware_id": ota.hardware_id_from_text("other-board")}, "WRONG_HARDWARE"),
        ({"version": 1}, "NOT_NEWER"),
        ({"version": 0}, "NOT_NEWER"),
    ],
    ids=["bad-signature", "wrong-hardware", "same-version", "older-version"],
)
def test_a_refused_manifest_fails_the_job_with_the_devices_code(
    tmp_path: object, kwargs: dict[str, object], result: str
) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        queue(store, tmp_path, **kwargs)
        runner = OtaRunner(store, retransmit=0.05)
        storage = DeviceStorage(running_version=1)
        link = await session(runner, new_device(storage))
        await until(lambda: only_job(store).state == FAILED)
        await asyncio.sleep(0.1)
        await link.stop()
        assert only_job(store).result == result
        assert not any(b[0] == ota.Op.CHUNK for b in link.down)
        assert storage.boot_image == b"old firmware" and storage.slot == bytearray()

    asyncio.run(main())


def test_offer_is_resent_with_backoff_until_answered(tmp_path: object) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        queue(store, tmp_path)
        runner = OtaRunner(store, retransmit=0.02, max_retransmit=0.08)
        offers: list[float] = []
        loop = asyncio.get_running_loop()

        def drop(direction: str, body: bytes) -> bool:
            if body[0] == ota.Op.OFFER:
                offers.append(loop.time())
                return len(offers) <= 4  # the first four are lost
            return False

        storage = DeviceStorage(running_version=1)
        await run_to_restart(runner, storage, drop=drop)
        assert len(offers) == 5 and storage.boot_image == IMAGE
        gaps = [b - a for a, b in zip(offers, offers[1:])]
        assert gaps[0] < gaps[2] and gaps[3] < 0.2  # doubled, then capped

    asyncio.run(main())


def test_a_device_that_never_sent_status_gets_nothing(tmp_path: object) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        queue(store, tmp_path)
        runner = OtaRunner(store, retransmit=0.02)
        device = new_device(DeviceStorage(running_version=1))
        link = LoopLink(runner.control_received, device, DEVICE_ID)
        await runner.poll()
        await runner.control_received(link, 0x02, b"\x01")  # another channel: not ours
        await asyncio.sleep(0.1)
        assert link.down == [] and only_job(store).state == QUEUED

    asyncio.run(main())


def test_malformed_and_misdirected_messages_are_counted_not_fatal(tmp_path: object) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        queue(store, tmp_path)
        runner = OtaRunner(store, retransmit=0.05)
        storage = DeviceStorage(running_version=1)
        link = LoopLink(runner.control_received, new_device(storage), DEVICE_ID)
        for body in (b"", b"\x06", b"\x01" + bytes(10), b"\x03\x00\x00\x00\x00\x00\x00"):
            await runner.control_received(link, ota.OTA_CHANNEL, body)
        await runner.control_received(link, ota.OTA_CHANNEL, ota.encode_message(Offer(manifest=bytes(124))))
        await runner.control_received(link, ota.OTA_CHANNEL, ota.encode_message(Request(offset=0, length=10)))
        assert runner.counters.malformed == 4 and runner.counters.unexpected == 2
        link.start()  # the same session goes on to a complete update
        await until(lambda: not link.open)
        assert storage.boot_image == IMAGE

    asyncio.run(main())


def test_concurrency_limit_bounds_transfers_and_all_devices_finish(tmp_path: object) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        ids = [bytes([0xA0, 0, 0, 0, 0, n]) for n in range(4)]
        for n, device_id in enumerate(ids):
            queue(store, tmp_path, device_id=device_id, name=f"app{n}.signed")
        runner = OtaRunner(store, concurrency=2, retransmit=0.05)
        highest = 0

        def watch(job: OtaJob) -> None:
            nonlocal highest
            highest = max(highest, runner.running)

        runner.on_event = watch
        storages = [DeviceStorage(running_version=1) for _ in ids]
        links = [await session(runner, new_device(s), device_id=d) for s, d in zip(storages, ids)]
        await until(lambda: all(not link.open for link in links))
        for link in links:
            await link.stop()
            await runner.session_closed(link)
        assert highest == 2
        assert all(s.boot_image == IMAGE for s in storages)
        assert {j.state for j in store.list_jobs()} == {ACTIVATED}

    asyncio.run(main())


def test_a_job_pushed_while_the_device_is_online_is_offered_by_poll(tmp_path: object) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        runner = OtaRunner(store, retransmit=0.05)
        storage = DeviceStorage(running_version=1)
        link = await session(runner, new_device(storage))
        await asyncio.sleep(0.05)
        assert link.down == []
        queue(store, tmp_path)
        await runner.poll()
        await until(lambda: not link.open)
        assert storage.boot_image == IMAGE

    asyncio.run(main())


def test_an_activated_image_that_does_not_come_up_is_reported_rolled_back(tmp_path: object) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        queue(store, tmp_path)
        runner = OtaRunner(store, retransmit=0.05)
        storage = DeviceStorage(running_version=1)
        await run_to_restart(runner, storage)
        storage.running_version = 1  # the bootloader went back to the old image
        link = await session(runner, new_device(storage))
        await until(lambda: only_job(store).state == FAILED)
        await link.stop()
        assert only_job(store).result == ROLLED_BACK

    asyncio.run(main())


def test_a_signed_file_changed_after_push_is_not_sent(tmp_path: object) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        job = queue(store, tmp_path)
        signed_file(tmp_path, version=3)  # same name, other contents
        runner = OtaRunner(store, retransmit=0.05)
        link = await session(runner, new_device(DeviceStorage(running_version=1)))
        await until(lambda: only_job(store).state == FAILED)
        await link.stop()
        assert "no longer the signed image" in (only_job(store).result or "")
        assert link.down == [] and job.job_id == 1

    asyncio.run(main())


# --- job file ------------------------------------------------------------------------------


def test_job_file_is_private_and_push_replaces_an_unfinished_job(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "jobs.json")
    store = JobFile(path)
    first = queue(store, tmp_path)
    second = queue(store, tmp_path, version=3, name="v3.signed")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    jobs = {j.job_id: j for j in store.list_jobs()}
    assert jobs[first.job_id].state == FAILED and jobs[first.job_id].result == "REPLACED"
    assert store.active_job(DEVICE_ID) == second and second.firmware_version == 3
    store.update_job(OtaJob(**{**jobs[first.job_id].__dict__, "state": TRANSFERRING}))  # a late write
    assert {j.job_id: j for j in store.list_jobs()}[first.job_id].state == FAILED


def test_job_file_keeps_every_job_under_concurrent_writers(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "jobs.json")
    _, signed = signed_file(tmp_path)
    errors: list[BaseException] = []

    def push(n: int) -> None:
        try:
            for k in range(10):
                JobFile(path).add_job(new_job(bytes([n, k, 0, 0, 0, 0]), "x", signed))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(j.job_id for j in JobFile(path).list_jobs()) == list(range(1, 41))


def test_a_damaged_job_file_is_a_clear_error(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "jobs.json")
    with open(path, "w") as f:
        f.write("{not json")
    with pytest.raises(JobStoreError, match="not a job file"):
        JobFile(path).list_jobs()
    with open(path, "w") as f:
        f.write('{"format": 1, "jobs": [{"job_id": 1}]}')
    with pytest.raises(JobStoreError, match="malformed"):
        JobFile(path).list_jobs()


def test_a_lost_result_activated_is_confirmed_by_the_next_session(tmp_path: object) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        queue(store, tmp_path)
        runner = OtaRunner(store, retransmit=0.05)
        storage = DeviceStorage(running_version=1)

        def drop_result(direction: str, body: bytes) -> bool:
            return direction == "up" and body[0] in (ota.Op.RESULT, ota.Op.STATUS) and storage.running_version == 2

        await run_to_restart(runner, storage, drop=drop_result)
        assert storage.boot_image == IMAGE and only_job(store).state == TRANSFERRING
        link = await session(runner, new_device(storage))
        await until(lambda: only_job(store).state == CONFIRMED)
        await asyncio.sleep(0.1)
        await link.stop()
        assert link.down == []  # confirmed from STATUS alone, nothing offered again

    asyncio.run(main())


def test_a_lost_hash_mismatch_result_is_recovered_by_the_offer_resent_after_silence(tmp_path: object) -> None:
    async def main() -> None:
        store = MemoryJobStore()
        queue(store, tmp_path)
        runner = CorruptingRunner(store, retransmit=0.05)
        results: list[bytes] = []

        def drop_first_result(direction: str, body: bytes) -> bool:
            if direction == "up" and body[0] == ota.Op.RESULT:
                results.append(body)
                return len(results) == 1
            return False

        storage = DeviceStorage(running_version=1)
        link = await session(runner, new_device(storage), drop=drop_first_result)
        await until(lambda: only_job(store).state == FAILED)
        await link.stop()
        assert only_job(store).result == "HASH_MISMATCH" and len(results) == 2
        assert storage.boot_image == b"old firmware"

    asyncio.run(main())


# --- the registry's OTA jobs (migration 4) ---------------------------------------------------------------


def registry_store(tmp_path: object) -> tuple[RegistryJobStore, Registry]:
    registry = open_registry(os.path.join(str(tmp_path), "devices.db"))
    registry.add_device(DEVICE_ID)
    return RegistryJobStore(registry), registry


def test_registry_jobs_follow_the_job_file_rules(tmp_path: object) -> None:
    store, registry = registry_store(tmp_path)
    counter = registry.event_counter()
    first = queue(store, tmp_path)
    assert registry.event_counter() > counter, "a push is an event gateways notice"
    second = queue(store, tmp_path, version=3, name="v3.signed")
    jobs = {j.job_id: j for j in store.list_jobs()}
    assert (jobs[first.job_id].state, jobs[first.job_id].result) == (FAILED, "REPLACED")
    assert store.active_job(DEVICE_ID) == second
    store.update_job(OtaJob(**{**jobs[first.job_id].__dict__, "state": TRANSFERRING}))  # a late write
    assert {j.job_id: j for j in store.list_jobs()}[first.job_id].state == FAILED
    store.update_job(OtaJob(**{**second.__dict__, "state": TRANSFERRING, "offset": 4000}))
    active = store.active_job(DEVICE_ID)
    assert active is not None and (active.state, active.offset) == (TRANSFERRING, 4000)
    with pytest.raises(UnknownDevice):
        queue(store, tmp_path, device_id=bytes.fromhex("0000000000aa"))
    registry.revoke(DEVICE_ID)
    with pytest.raises(UnknownDevice, match="revoked"):
        queue(store, tmp_path)
    registry.close()


def test_runner_on_registry_jobs_updates_a_device(tmp_path: object) -> None:
    async def main() -> None:
        store, registry = registry_store(tmp_path)
        queue(store, tmp_path)
        runner = OtaRunner(store, retransmit=0.05)
        storage = DeviceStorage(running_version=1)
        await run_to_restart(runner, storage)
        link = await session(runner, new_device(storage))
        await until(lambda: only_job(store).state == CONFIRMED)  # type: ignore[arg-type]
        await link.stop()
        assert storage.boot_image == IMAGE
        reopened = RegistryJobStore(open_registry(os.path.join(str(tmp_path), "devices.db")))
        assert reopened.list_jobs()[0].state == CONFIRMED
        reopened.registry.close()
        registry.close()

    asyncio.run(main())
