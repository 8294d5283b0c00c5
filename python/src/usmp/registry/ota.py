"""OTA jobs in the registry (migration 4): the :class:`~usmp.ota_jobs.JobStore` of a gateway cluster.

Conventions: the same rules as :class:`~usmp.ota_jobs.JobFile` (a device
has at most one unfinished job; pushing another marks the older one
``failed``/``REPLACED``; an update of a replaced job is ignored), in one
transaction each, so several gateways and ``usmp ota push`` can share the
table. A job is only queued for a device the registry knows and has not
revoked. Every push records an event (``ota:<hex id>``), so gateways
watching the registry notice it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from ..ota_jobs import FAILED, FINISHED_STATES, OtaJob
from .base import Registry, UnknownDevice

_INSERTED = "device_id, image_path, firmware_version, image_size, manifest_digest, state, acknowledged, result, created, updated"
_COLUMNS = "job_id, " + _INSERTED
REPLACED = "REPLACED"


def _job(row: tuple[Any, ...]) -> OtaJob:
    return OtaJob(
        job_id=int(row[0]),
        device_id=bytes(row[1]),
        image_path=str(row[2]),
        firmware_version=int(row[3]),
        image_size=int(row[4]),
        manifest_digest=bytes(row[5]),
        state=str(row[6]),
        offset=int(row[7]),
        result=None if row[8] is None else str(row[8]),
        created=float(row[9]),
        updated=float(row[10]),
    )


class RegistryJobStore:
    """OTA jobs kept in ``registry`` (SQLite or PostgreSQL)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def add_job(self, job: OtaJob) -> OtaJob:
        now = time.time()
        registry = self.registry
        with registry._transaction(write=True) as tx:
            row = registry._device_row(tx, job.device_id)
            if row is None:
                raise UnknownDevice(f"device {job.device_id.hex()} is not registered")
            if row[0]:
                raise UnknownDevice(f"device {job.device_id.hex()} is revoked")
            finished = tuple(sorted(FINISHED_STATES))
            tx.execute(
                "UPDATE ota_jobs SET state = ?, result = ?, updated = ? WHERE device_id = ? AND state NOT IN (?, ?)",
                (FAILED, REPLACED, now, job.device_id, *finished),
            )
            job_id = int(
                tx.query(
                    f"INSERT INTO ota_jobs ({_INSERTED})"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING job_id",
                    (
                        job.device_id,
                        job.image_path,
                        job.firmware_version,
                        job.image_size,
                        job.manifest_digest,
                        job.state,
                        job.offset,
                        job.result,
                        job.created or now,
                        now,
                    ),
                )[0][0]
            )
            registry._record_event(tx, f"ota:{job.device_id.hex()}")
        return replace(job, job_id=job_id, created=job.created or now, updated=now)

    def active_job(self, device_id: bytes) -> OtaJob | None:
        finished = tuple(sorted(FINISHED_STATES))
        with self.registry._transaction(write=False) as tx:
            rows = tx.query(
                f"SELECT {_COLUMNS} FROM ota_jobs WHERE device_id = ? AND state NOT IN (?, ?)"
                " ORDER BY job_id DESC LIMIT 1",
                (bytes(device_id), *finished),
            )
        return _job(rows[0]) if rows else None

    def update_job(self, job: OtaJob) -> None:
        with self.registry._transaction(write=True) as tx:
            tx.execute(
                "UPDATE ota_jobs SET state = ?, acknowledged = ?, result = ?, updated = ?"
                " WHERE job_id = ? AND NOT (state = ? AND result = ?)",
                (job.state, job.offset, job.result, job.updated or time.time(), job.job_id, FAILED, REPLACED),
            )

    def list_jobs(self) -> list[OtaJob]:
        with self.registry._transaction(write=False) as tx:
            rows = tx.query(f"SELECT {_COLUMNS} FROM ota_jobs ORDER BY job_id")
        return [_job(row) for row in rows]
