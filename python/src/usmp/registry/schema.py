"""The registry's schema as a numbered list of migrations (docs/registry.md, "Schema").

Conventions:
* ``MIGRATIONS[n - 1]`` takes a database from version ``n - 1`` to ``n``;
  a step is never edited once released, a change of schema is a new step.
* The one table created outside the list is ``schema_version`` itself
  (one row: the version the database is at), made by the first open.
* Statements are written once for both back ends; ``{blob}`` and
  ``{serial}`` are the two spellings that differ (BLOB / BYTEA, and an
  auto-incrementing integer key).
* Times are seconds since the epoch (``time.time()``) as DOUBLE PRECISION;
  flags are INTEGER 0/1, the same in both back ends.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


DIALECTS = {
    "sqlite": {"blob": "BLOB", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgresql": {"blob": "BYTEA", "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"},
}

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "devices and their change log",
        (
            # psk is the raw key, or nonce || AES-256-GCM(key) when the
            # registry wraps keys at rest (settings row psk_wrapping).
            "CREATE TABLE devices ("
            " device_id {blob} PRIMARY KEY,"
            " label TEXT,"
            " psk {blob} NOT NULL,"
            " created DOUBLE PRECISION NOT NULL,"
            " last_seen DOUBLE PRECISION,"
            " revoked INTEGER NOT NULL DEFAULT 0)",
            # One row per counter; UPDATE ... RETURNING takes the row lock,
            # so counter values commit in order (a watcher never skips one).
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            "INSERT INTO counters (name, value) VALUES ('changes', 0)",
            "CREATE TABLE changes ("
            " counter BIGINT PRIMARY KEY,"
            " device_id {blob} NOT NULL,"
            " kind TEXT NOT NULL,"
            " at DOUBLE PRECISION NOT NULL)",
            "CREATE TABLE settings (name TEXT PRIMARY KEY, value {blob} NOT NULL)",
        ),
    ),
    Migration(
        2,
        "session ownership (presence, one session per device across gateways)",
        (
            "ALTER TABLE devices ADD COLUMN gateway TEXT",
            "ALTER TABLE devices ADD COLUMN session_id {blob}",
            "ALTER TABLE devices ADD COLUMN session_since DOUBLE PRECISION",
            "CREATE INDEX devices_by_gateway ON devices (gateway)",
            "INSERT INTO counters (name, value) VALUES ('events', 0)",
        ),
    ),
    Migration(
        3,
        "downlink queue",
        (
            "CREATE TABLE downlinks ("
            " id {serial},"
            " device_id {blob} NOT NULL REFERENCES devices (device_id),"
            " payload {blob} NOT NULL,"
            " enqueued DOUBLE PRECISION NOT NULL,"
            " expires DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX downlinks_by_device ON downlinks (device_id, id)",
        ),
    ),
    Migration(
        4,
        "OTA jobs (spec/ota.md 6; usmp ota push --registry)",
        (
            # One row per job; a device's unfinished one is the job its gateway
            # runs. image_path is the signed file (manifest || image) on the
            # gateways' file system; manifest_digest pins its contents.
            "CREATE TABLE ota_jobs ("
            " job_id {serial},"
            " device_id {blob} NOT NULL REFERENCES devices (device_id),"
            " image_path TEXT NOT NULL,"
            " firmware_version BIGINT NOT NULL,"
            " image_size BIGINT NOT NULL,"
            " manifest_digest {blob} NOT NULL,"
            " state TEXT NOT NULL,"
            " acknowledged BIGINT NOT NULL,"
            " result TEXT,"
            " created DOUBLE PRECISION NOT NULL,"
            " updated DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX ota_jobs_by_device ON ota_jobs (device_id, job_id)",
        ),
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)

assert all(m.version == n for n, m in enumerate(MIGRATIONS, start=1)), "migrations are numbered 1, 2, ..."


def statements(migration: Migration, dialect: str) -> list[str]:
    """The statements of ``migration`` in the spelling of ``dialect``."""
    words = DIALECTS[dialect]
    return [s.format(**words) for s in migration.statements]
