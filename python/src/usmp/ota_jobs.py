"""OTA jobs: what ``usmp ota push`` queues and the gateway's runner works through (spec/ota.md 6).

Conventions: a job is one signed image for one device. Its ``state`` moves
``queued -> transferring -> activated -> confirmed``, or ends ``failed``
with the RESULT code's name (or the reason the gateway gave up) in
``result``. A device has at most one job that is not finished
(``confirmed`` or ``failed``); pushing another replaces it. Stores are
synchronous (a file here, the registry's table elsewhere); the runner calls
them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from .ota import SignedImage, read_signed_image

QUEUED = "queued"
TRANSFERRING = "transferring"
ACTIVATED = "activated"
CONFIRMED = "confirmed"
FAILED = "failed"
FINISHED_STATES = frozenset({CONFIRMED, FAILED})
STATES = (QUEUED, TRANSFERRING, ACTIVATED, CONFIRMED, FAILED)

JOB_FILE_FORMAT = 1


class JobStoreError(Exception):
    """A job file or table that cannot be read or written; the message says which and why."""


@dataclass(frozen=True)
class OtaJob:
    """One signed image queued for one device."""

    job_id: int
    device_id: bytes
    image_path: str  # the signed image file (manifest || image), absolute
    firmware_version: int
    image_size: int
    manifest_digest: bytes
    state: str = QUEUED
    offset: int = 0  # bytes the device has acknowledged (its latest REQUEST's offset)
    result: str | None = None
    created: float = 0.0
    updated: float = 0.0

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def percent(self) -> float:
        if self.state in (ACTIVATED, CONFIRMED):
            return 100.0
        return 100.0 * self.offset / self.image_size if self.image_size else 0.0

    def load_image(self) -> SignedImage:
        """The signed file, checked against what was queued (a file replaced since is refused)."""
        signed = read_signed_image(self.image_path)
        if signed.manifest.digest() != self.manifest_digest:
            raise JobStoreError(f"{self.image_path} is no longer the signed image queued as job {self.job_id}")
        return signed

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["device_id"] = self.device_id.hex()
        data["manifest_digest"] = self.manifest_digest.hex()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OtaJob:
        try:
            job = cls(
                job_id=int(data["job_id"]),
                device_id=bytes.fromhex(data["device_id"]),
                image_path=str(data["image_path"]),
                firmware_version=int(data["firmware_version"]),
                image_size=int(data["image_size"]),
                manifest_digest=bytes.fromhex(data["manifest_digest"]),
                state=str(data["state"]),
                offset=int(data["offset"]),
                result=None if data.get("result") is None else str(data["result"]),
                created=float(data.get("created", 0.0)),
                updated=float(data.get("updated", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise JobStoreError(f"a job entry is malformed: {exc!r}") from None
        if job.state not in STATES:
            raise JobStoreError(f"job {job.job_id}: unknown state {job.state!r}")
        return job


def new_job(device_id: bytes, image_path: str, signed: SignedImage, job_id: int = 0) -> OtaJob:
    now = time.time()
    return OtaJob(
        job_id=job_id,
        device_id=device_id,
        image_path=os.path.abspath(image_path),
        firmware_version=signed.manifest.firmware_version,
        image_size=signed.manifest.image_size,
        manifest_digest=signed.manifest.digest(),
        created=now,
        updated=now,
    )


class JobStore(Protocol):
    """Where jobs live: a job file (:class:`JobFile`) or the registry."""

    def add_job(self, job: OtaJob) -> OtaJob:
        """Queue ``job`` (its ``job_id`` is assigned); an unfinished job of that device is replaced."""
        ...

    def active_job(self, device_id: bytes) -> OtaJob | None:
        """The device's job that is not finished, if any."""
        ...

    def update_job(self, job: OtaJob) -> None:
        """Store the job's state, offset and result (matched by ``job_id``; a replaced job is left alone)."""
        ...

    def list_jobs(self) -> list[OtaJob]: ...


class JobFile:
    """Jobs in a JSON file, shared by ``usmp ota push``/``status`` and ``usmp serve --ota-jobs``.

    Every change is a read-modify-write under an exclusive ``flock`` of
    ``PATH.lock`` and lands with an atomic rename, so a push while the
    gateway records progress loses neither. The file is created 0600.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def add_job(self, job: OtaJob) -> OtaJob:
        with self._locked() as jobs:
            next_id = max((j.job_id for j in jobs), default=0) + 1
            added = replace(job, job_id=next_id)
            for index, other in enumerate(jobs):
                if other.device_id == job.device_id and not other.finished:
                    jobs[index] = replace(other, state=FAILED, result="REPLACED", updated=time.time())
            jobs.append(added)
        return added

    def active_job(self, device_id: bytes) -> OtaJob | None:
        for job in self.list_jobs():
            if job.device_id == device_id and not job.finished:
                return job
        return None

    def update_job(self, job: OtaJob) -> None:
        with self._locked() as jobs:
            for index, other in enumerate(jobs):
                if other.job_id == job.job_id and not (other.finished and other.result == "REPLACED"):
                    jobs[index] = job
                    return

    def list_jobs(self) -> list[OtaJob]:
        with self._lock(fcntl.LOCK_SH):
            return self._read()

    @contextmanager
    def _lock(self, kind: int) -> Iterator[None]:
        lock_path = self.path + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise JobStoreError(f"{lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, kind)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def _locked(self) -> Iterator[list[OtaJob]]:
        with self._lock(fcntl.LOCK_EX):
            jobs = self._read()
            yield jobs
            self._write(jobs)

    def _read(self) -> list[OtaJob]:
        try:
            with open(self.path, encoding="utf-8") as f:
                document = json.load(f)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise JobStoreError(f"{self.path}: not a job file ({exc})") from None
        if not isinstance(document, dict) or document.get("format") != JOB_FILE_FORMAT:
            raise JobStoreError(f"{self.path}: not a job file of format {JOB_FILE_FORMAT}")
        entries = document.get("jobs")
        if not isinstance(entries, list):
            raise JobStoreError(f"{self.path}: 'jobs' is not a list")
        return [OtaJob.from_json(entry) for entry in entries]

    def _write(self, jobs: list[OtaJob]) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        document = {"format": JOB_FILE_FORMAT, "jobs": [job.to_json() for job in jobs]}
        fd, temporary = tempfile.mkstemp(prefix=".ota-jobs-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(document, f, indent=1)
                f.write("\n")
            os.replace(temporary, self.path)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise


class MemoryJobStore:
    """Jobs in a list, for a gateway embedded in a program (and for tests)."""

    def __init__(self) -> None:
        self._jobs: list[OtaJob] = []

    def add_job(self, job: OtaJob) -> OtaJob:
        added = replace(job, job_id=len(self._jobs) + 1)
        self._jobs = [
            replace(j, state=FAILED, result="REPLACED") if j.device_id == job.device_id and not j.finished else j
            for j in self._jobs
        ]
        self._jobs.append(added)
        return added

    def active_job(self, device_id: bytes) -> OtaJob | None:
        for job in self._jobs:
            if job.device_id == device_id and not job.finished:
                return job
        return None

    def update_job(self, job: OtaJob) -> None:
        for index, other in enumerate(self._jobs):
            if other.job_id == job.job_id and other.result != "REPLACED":
                self._jobs[index] = job

    def list_jobs(self) -> list[OtaJob]:
        return list(self._jobs)
