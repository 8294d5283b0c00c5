"""The registry's interface and the logic both back ends share (docs/registry.md).

Conventions:
* Every public method that writes is one database transaction: it either
  happens whole or raises :class:`RegistryError` and changes nothing.
* Device ids are the 6-byte ids of ``usmp.psk.parse_device_id``; PSKs are
  bytes of 16 to 64 (32 when the registry makes them).
* SQL is written once, with ``?`` placeholders; a back end translates what
  differs (placeholder style, row locks, notifications).
* Modules of this package that keep more in the registry (tables of a
  later migration) build on ``_transaction``, ``_device_row``,
  ``_record_change`` and ``_record_event``: their behaviour, and the
  lock order (device rows, then counters), stay as described here.
* Nothing here logs or returns a PSK except :meth:`Registry.psk_for`,
  :meth:`Registry.add_device` and :meth:`Registry.rotate`, whose callers
  asked for it.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ConfigurationError
from ..psk import check_psk, load_psk_file, parse_device_id
from ..wire import MAX_MESSAGE
from .schema import MIGRATIONS, SCHEMA_VERSION, statements
from .wrap import WRAP_KEY_ENV, PskWrapper, WrapError

log = logging.getLogger("usmp.registry")

NEW_PSK_BYTES = 32
DEFAULT_MAX_QUEUE = 100
CHANGE_KINDS = ("added", "revoked", "rotated")
_WRAPPING_SETTING = "psk_wrapping"
_WRAP_CHECK_SETTING = "wrap_check"
_WRAPPING_NONE = b"none"
_WRAPPING_AES_GCM = b"aes-256-gcm"


class RegistryError(Exception):
    """A registry operation that cannot be done; the message says why (never a PSK)."""


class UnknownDevice(RegistryError):
    """The device id is not in the registry (or, for a downlink, is revoked)."""


class QueueFull(RegistryError):
    """The device's downlink queue holds ``Registry.max_queue`` unexpired messages."""


@dataclass(frozen=True)
class DeviceRecord:
    """One device as ``list_devices`` shows it; never its PSK."""

    device_id: bytes
    label: str | None
    created: float
    last_seen: float | None
    online: bool
    revoked: bool
    gateway: str | None


class Transaction(Protocol):
    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one statement; the number of rows it changed."""

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows."""


def _device_id(value: bytes) -> bytes:
    try:
        return parse_device_id(value)
    except ConfigurationError as error:
        raise RegistryError(error.message) from None


class Registry:
    """The device registry: devices and PSKs, session ownership, the downlink queue.

    Open one with :func:`usmp.registry.open_registry`. Methods block (they
    talk to a database): asyncio callers use ``asyncio.to_thread``. One
    object may be used from several threads; its calls are serialized.
    """

    max_queue: int = DEFAULT_MAX_QUEUE
    # The largest USMP message (spec 4.1): no device could take a larger
    # downlink, and with max_queue it bounds a device's queue in bytes.
    max_downlink_bytes: int = MAX_MESSAGE
    dialect: str = ""
    # Appended to the SELECT that reads a device row before changing it:
    # PostgreSQL locks the row (" FOR UPDATE"); SQLite's BEGIN IMMEDIATE
    # already holds the database's write lock.
    _row_lock: str = ""

    def __init__(self, location: str, wrap_key: bytes | None) -> None:
        self.location = location
        self._wrapper = PskWrapper(wrap_key) if wrap_key is not None else None
        self._watch_mark: tuple[int, int] = (0, 0)

    # --- what a back end provides ------------------------------------------------------------

    def _transaction(self, write: bool) -> AbstractContextManager[Transaction]:
        """A transaction; with ``write=False`` a back end may run each statement on its own.

        Every read below is one statement, or (``changed_since``) two whose
        result is consistent without a common snapshot.
        """
        raise NotImplementedError

    def _lock_schema(self, tx: Transaction) -> None:
        """Keeps two processes from migrating the same database at once."""

    def _has_table(self, tx: Transaction, name: str) -> bool:
        raise NotImplementedError

    def _notify(self, tx: Transaction, payload: str) -> None:
        """Tells listeners of ``payload`` when ``tx`` commits (PostgreSQL NOTIFY; SQLite: nothing)."""

    def close(self) -> None:
        raise NotImplementedError

    def wait_for_changes(self, timeout: float) -> bool:
        """Blocks until a counter moves past what the previous call saw (True) or ``timeout`` passes (False).

        "A counter" is :meth:`change_counter` or :meth:`event_counter`: a
        device added, revoked or rotated, a session claimed or released, a
        downlink queued. The first call compares with the counters at open.
        """
        raise NotImplementedError

    def listen(self, callback: Callable[[str], None]) -> None:
        """PostgreSQL only: ``callback(payload)`` for every notification (docs/registry.md), until close.

        SQLite has no notifications: watch with :meth:`wait_for_changes`.
        """
        raise RegistryError(f"registry {self.location} sends no notifications: use wait_for_changes")

    # --- opening: migrations and the wrapping mode ------------------------------------------------

    def _open(self) -> None:
        """Applies the migrations the database lacks and checks the wrap key against it."""
        with self._transaction(write=True) as tx:
            self._lock_schema(tx)
            if not self._has_table(tx, "schema_version"):
                # The one CREATE outside MIGRATIONS: where the version is kept.
                tx.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                tx.execute("INSERT INTO schema_version (version) VALUES (0)")
            version = int(tx.query("SELECT version FROM schema_version")[0][0])
            if version > SCHEMA_VERSION:
                raise RegistryError(
                    f"registry {self.location} is at schema version {version}, newer than this "
                    f"usmp understands ({SCHEMA_VERSION}): upgrade usmp"
                )
            for migration in MIGRATIONS[version:]:
                log.info("registry %s: migration %d (%s)", self.location, migration.version, migration.summary)
                for statement in statements(migration, self.dialect):
                    tx.execute(statement)
                tx.execute("UPDATE schema_version SET version = ?", (migration.version,))
            self._check_wrapping(tx)
            self._watch_mark = self._read_counters(tx)

    def _check_wrapping(self, tx: Transaction) -> None:
        settings: dict[str, bytes] = {
            str(name): bytes(value) for name, value in tx.query("SELECT name, value FROM settings")
        }
        mode = settings.get(_WRAPPING_SETTING)
        if mode is None:
            # A new registry: the key (or its absence) at creation decides for good.
            mode = _WRAPPING_AES_GCM if self._wrapper is not None else _WRAPPING_NONE
            tx.execute("INSERT INTO settings (name, value) VALUES (?, ?)", (_WRAPPING_SETTING, mode))
            if self._wrapper is not None:
                tx.execute(
                    "INSERT INTO settings (name, value) VALUES (?, ?)",
                    (_WRAP_CHECK_SETTING, self._wrapper.check_value()),
                )
            return
        if mode not in (_WRAPPING_NONE, _WRAPPING_AES_GCM):
            raise RegistryError(
                f"registry {self.location} wraps its PSKs in a way this usmp does not know "
                f"({mode.decode('ascii', 'replace')!r}): upgrade usmp"
            )
        if mode == _WRAPPING_AES_GCM:
            if self._wrapper is None:
                raise RegistryError(
                    f"registry {self.location} keeps its PSKs wrapped (AES-256-GCM): "
                    f"set {WRAP_KEY_ENV} to its wrap key"
                )
            if not self._wrapper.matches(settings.get(_WRAP_CHECK_SETTING, b"")):
                raise RegistryError(f"{WRAP_KEY_ENV} is not the wrap key of registry {self.location}")
        elif self._wrapper is not None:
            raise RegistryError(
                f"registry {self.location} does not wrap its PSKs: unset {WRAP_KEY_ENV}, "
                "or wrap them with `usmp device rewrap` (docs/registry.md)"
            )

    def _store_psk(self, device_id: bytes, psk: bytes) -> bytes:
        return self._wrapper.wrap(device_id, psk) if self._wrapper is not None else psk

    def _load_psk(self, device_id: bytes, stored: bytes) -> bytes:
        if self._wrapper is None:
            return stored
        try:
            return self._wrapper.unwrap(device_id, stored)
        except WrapError as error:
            raise RegistryError(f"registry {self.location}: {error}") from None

    def rewrap(self, new_key: bytes | None) -> int:
        """Stores every PSK again under ``new_key`` (None: unwrapped); the number of keys rewritten.

        Turns wrapping on, changes the wrap key, or turns wrapping off, in
        one transaction. Other processes keep the key they opened the
        registry with: stop the gateways first, start them with the new key
        after (a gateway on the old key fails every handshake).
        """
        new_wrapper = PskWrapper(new_key) if new_key is not None else None
        with self._transaction(write=True) as tx:
            rows = tx.query("SELECT device_id, psk FROM devices WHERE revoked = 0 ORDER BY device_id" + self._row_lock)
            for device_id, stored in rows:
                psk = self._load_psk(bytes(device_id), bytes(stored))
                again = new_wrapper.wrap(bytes(device_id), psk) if new_wrapper is not None else psk
                tx.execute("UPDATE devices SET psk = ? WHERE device_id = ?", (again, bytes(device_id)))
            tx.execute("DELETE FROM settings WHERE name IN (?, ?)", (_WRAPPING_SETTING, _WRAP_CHECK_SETTING))
            mode = _WRAPPING_AES_GCM if new_wrapper is not None else _WRAPPING_NONE
            tx.execute("INSERT INTO settings (name, value) VALUES (?, ?)", (_WRAPPING_SETTING, mode))
            if new_wrapper is not None:
                tx.execute(
                    "INSERT INTO settings (name, value) VALUES (?, ?)", (_WRAP_CHECK_SETTING, new_wrapper.check_value())
                )
        self._wrapper = new_wrapper
        return len(rows)

    # --- counters -------------------------------------------------------------------------------------

    def _bump(self, tx: Transaction, counter: str) -> int:
        # UPDATE takes the counter row's lock until commit: values commit in order.
        return int(tx.query("UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value", (counter,))[0][0])

    def _record_change(self, tx: Transaction, device_id: bytes, kind: str) -> None:
        counter = self._bump(tx, "changes")
        tx.execute(
            "INSERT INTO changes (counter, device_id, kind, at) VALUES (?, ?, ?, ?)",
            (counter, device_id, kind, time.time()),
        )
        self._notify(tx, f"{kind}:{device_id.hex()}")

    def _record_event(self, tx: Transaction, payload: str) -> None:
        self._bump(tx, "events")
        self._notify(tx, payload)

    def _read_counters(self, tx: Transaction) -> tuple[int, int]:
        values = {str(name): int(value) for name, value in tx.query("SELECT name, value FROM counters")}
        return values["changes"], values["events"]

    def change_counter(self) -> int:
        """Moves on every add, revoke, rotate and import (one step per device)."""
        with self._transaction(write=False) as tx:
            return self._read_counters(tx)[0]

    def event_counter(self) -> int:
        """Moves on every session claim or release and every downlink queued."""
        with self._transaction(write=False) as tx:
            return self._read_counters(tx)[1]

    def changed_since(self, counter: int) -> tuple[int, list[tuple[bytes, str]]]:
        """The device changes after ``counter``, oldest first, and the counter they bring it to."""
        with self._transaction(write=False) as tx:
            now = self._read_counters(tx)[0]
            rows = tx.query(
                "SELECT device_id, kind FROM changes WHERE counter > ? AND counter <= ? ORDER BY counter",
                (counter, now),
            )
        return now, [(bytes(device_id), str(kind)) for device_id, kind in rows]

    # --- devices ----------------------------------------------------------------------------------

    def _device_row(self, tx: Transaction, device_id: bytes) -> tuple[Any, ...] | None:
        rows = tx.query(
            "SELECT revoked, psk, gateway, session_id FROM devices WHERE device_id = ?" + self._row_lock,
            (device_id,),
        )
        return rows[0] if rows else None

    def add_device(self, device_id: bytes, label: str | None = None, psk: bytes | None = None) -> bytes:
        """Registers a device; returns its PSK (fresh from the OS CSPRNG unless given)."""
        device_id = _device_id(device_id)
        key = os.urandom(NEW_PSK_BYTES) if psk is None else self._checked_psk(psk, device_id)
        with self._transaction(write=True) as tx:
            self._insert_device(tx, device_id, label, key)
        return key

    def _checked_psk(self, psk: bytes, device_id: bytes) -> bytes:
        try:
            return check_psk(psk, f"the PSK of device {device_id.hex()}")
        except ConfigurationError as error:
            raise RegistryError(error.message) from None

    def _insert_device(self, tx: Transaction, device_id: bytes, label: str | None, psk: bytes) -> None:
        row = self._device_row(tx, device_id)
        if row is not None:
            state = " (revoked)" if row[0] else ""
            raise RegistryError(f"device {device_id.hex()} is already registered{state}")
        tx.execute(
            "INSERT INTO devices (device_id, label, psk, created) VALUES (?, ?, ?, ?)",
            (device_id, label, self._store_psk(device_id, psk), time.time()),
        )
        self._record_change(tx, device_id, "added")

    def import_psk_file(self, path: str) -> int:
        """Adds every device of a PSK file (``usmp.psk.load_psk_file`` format); the number added.

        A device already registered with the same key is left as it is; one
        registered with another key, or revoked, stops the import, which then
        adds nothing.
        """
        try:
            table = load_psk_file(path)
        except ConfigurationError as error:
            raise RegistryError(error.message) from None
        added = 0
        with self._transaction(write=True) as tx:
            # Every device row first, in id order, then the counters (in
            # _insert_device): the lock order of every write, so two
            # transactions never wait on each other in a cycle.
            existing = {}
            for device_id in sorted(table):
                row = self._device_row(tx, device_id)
                if row is not None:
                    existing[device_id] = row
            for device_id, row in existing.items():
                if row[0]:
                    raise RegistryError(
                        f"{path}: device {device_id.hex()} is revoked in the registry; nothing imported"
                    )
                if not hmac.compare_digest(self._load_psk(device_id, bytes(row[1])), table[device_id]):
                    raise RegistryError(
                        f"{path}: device {device_id.hex()} is registered with another PSK; nothing imported"
                    )
            for device_id in sorted(table):
                if device_id not in existing:
                    self._insert_device(tx, device_id, None, table[device_id])
                    added += 1
        return added

    def psk_for(self, device_id: bytes) -> bytes | None:
        """The device's PSK; None when it is unknown or revoked."""
        if len(device_id) != 6:
            return None
        with self._transaction(write=False) as tx:
            rows = tx.query("SELECT revoked, psk FROM devices WHERE device_id = ?", (bytes(device_id),))
        if not rows or rows[0][0]:
            return None
        return self._load_psk(bytes(device_id), bytes(rows[0][1]))

    def list_devices(self) -> list[DeviceRecord]:
        with self._transaction(write=False) as tx:
            rows = tx.query(
                "SELECT device_id, label, created, last_seen, revoked, gateway FROM devices ORDER BY created, device_id"
            )
        return [
            DeviceRecord(
                device_id=bytes(device_id),
                label=label,
                created=float(created),
                last_seen=None if last_seen is None else float(last_seen),
                online=gateway is not None,
                revoked=bool(revoked),
                gateway=gateway,
            )
            for device_id, label, created, last_seen, revoked, gateway in rows
        ]

    def revoke(self, device_id: bytes) -> None:
        """The device's key stops working at once; its stored key is erased and its queue dropped.

        A gateway holding its session sees the "revoked" change and closes it.
        """
        device_id = _device_id(device_id)
        with self._transaction(write=True) as tx:
            row = self._device_row(tx, device_id)
            if row is None:
                raise UnknownDevice(f"device {device_id.hex()} is not registered")
            if row[0]:
                raise RegistryError(f"device {device_id.hex()} is already revoked")
            tx.execute("UPDATE devices SET revoked = 1, psk = ? WHERE device_id = ?", (b"", device_id))
            tx.execute("DELETE FROM downlinks WHERE device_id = ?", (device_id,))
            self._record_change(tx, device_id, "revoked")

    def rotate(self, device_id: bytes) -> bytes:
        """Replaces the device's PSK with a fresh one and returns it; the old one stops working at once."""
        device_id = _device_id(device_id)
        psk = os.urandom(NEW_PSK_BYTES)
        with self._transaction(write=True) as tx:
            row = self._device_row(tx, device_id)
            if row is None:
                raise UnknownDevice(f"device {device_id.hex()} is not registered")
            if row[0]:
                raise RegistryError(f"device {device_id.hex()} is revoked")
            tx.execute("UPDATE devices SET psk = ? WHERE device_id = ?", (self._store_psk(device_id, psk), device_id))
            self._record_change(tx, device_id, "rotated")
        return psk

    # --- presence: the cluster-wide one-session rule ------------------------------------------------

    def claim_session(self, device_id: bytes, gateway: str, session_id: bytes) -> str | None:
        """Records ``gateway`` as holding the device's session; the previous holder if another gateway.

        The newer session wins: the gateway named in the return value closes
        its older session when it sees the "session" event.
        """
        device_id = _device_id(device_id)
        now = time.time()
        with self._transaction(write=True) as tx:
            row = self._device_row(tx, device_id)
            if row is None:
                raise UnknownDevice(f"device {device_id.hex()} is not registered")
            if row[0]:
                # Revoked between its handshake and this claim: the gateway closes the session.
                raise UnknownDevice(f"device {device_id.hex()} is revoked")
            previous = row[2]
            tx.execute(
                "UPDATE devices SET gateway = ?, session_id = ?, session_since = ?, last_seen = ? WHERE device_id = ?",
                (gateway, bytes(session_id), now, now, device_id),
            )
            self._record_event(tx, f"session:{device_id.hex()}:{gateway}")
        return previous if previous is not None and previous != gateway else None

    def release_session(self, device_id: bytes, gateway: str, session_id: bytes) -> None:
        """Clears the ownership if ``gateway`` and ``session_id`` still hold it, and sets last_seen."""
        device_id = _device_id(device_id)
        with self._transaction(write=True) as tx:
            changed = tx.execute(
                "UPDATE devices SET gateway = NULL, session_id = NULL, session_since = NULL, last_seen = ?"
                " WHERE device_id = ? AND gateway = ? AND session_id = ?",
                (time.time(), device_id, gateway, bytes(session_id)),
            )
            if changed:
                self._record_event(tx, f"release:{device_id.hex()}:{gateway}")

    def session_owner(self, device_id: bytes) -> tuple[str, bytes] | None:
        """(gateway, session id) holding the device's session, or None."""
        with self._transaction(write=False) as tx:
            rows = tx.query("SELECT gateway, session_id FROM devices WHERE device_id = ?", (bytes(device_id),))
        if not rows or rows[0][0] is None:
            return None
        return str(rows[0][0]), bytes(rows[0][1])

    def release_gateway(self, gateway: str) -> int:
        """Clears every ownership recorded for ``gateway`` (its sessions died with it); how many."""
        with self._transaction(write=True) as tx:
            changed = tx.execute(
                "UPDATE devices SET gateway = NULL, session_id = NULL, session_since = NULL, last_seen = ?"
                " WHERE gateway = ?",
                (time.time(), gateway),
            )
            if changed:
                self._record_event(tx, f"release:*:{gateway}")
        return changed

    # --- the downlink queue -------------------------------------------------------------------------

    def enqueue_downlink(self, device_id: bytes, payload: bytes, ttl_s: float) -> int:
        """Queues ``payload`` for the device for ``ttl_s`` seconds; its id.

        Raises :class:`UnknownDevice` for an unknown or revoked device,
        :class:`QueueFull` when ``max_queue`` unexpired messages wait already,
        and :class:`RegistryError` for a payload over ``max_downlink_bytes``.
        """
        device_id = _device_id(device_id)
        if not ttl_s > 0:
            raise RegistryError(f"a downlink's time to live must be positive, got {ttl_s}")
        if len(payload) > self.max_downlink_bytes:
            raise RegistryError(
                f"a downlink of {len(payload)} bytes is larger than a USMP message can be ({self.max_downlink_bytes})"
            )
        now = time.time()
        with self._transaction(write=True) as tx:
            row = self._device_row(tx, device_id)
            if row is None:
                raise UnknownDevice(f"device {device_id.hex()} is not registered")
            if row[0]:
                raise UnknownDevice(f"device {device_id.hex()} is revoked")
            tx.execute("DELETE FROM downlinks WHERE device_id = ? AND expires <= ?", (device_id, now))
            depth = int(tx.query("SELECT COUNT(*) FROM downlinks WHERE device_id = ?", (device_id,))[0][0])
            if depth >= self.max_queue:
                raise QueueFull(
                    f"the downlink queue of device {device_id.hex()} is full ({depth} of {self.max_queue})"
                )
            downlink_id = int(
                tx.query(
                    "INSERT INTO downlinks (device_id, payload, enqueued, expires) VALUES (?, ?, ?, ?) RETURNING id",
                    (device_id, bytes(payload), now, now + ttl_s),
                )[0][0]
            )
            self._record_event(tx, f"downlink:{device_id.hex()}")
        return downlink_id

    def pending_downlinks(self, device_id: bytes, now: float | None = None) -> list[tuple[int, bytes]]:
        """The device's unexpired downlinks (id, payload) in the order queued; expired ones are dropped."""
        device_id = _device_id(device_id)
        when = time.time() if now is None else now
        with self._transaction(write=True) as tx:
            dropped = tx.execute("DELETE FROM downlinks WHERE device_id = ? AND expires <= ?", (device_id, when))
            rows = tx.query("SELECT id, payload FROM downlinks WHERE device_id = ? ORDER BY id", (device_id,))
        if dropped:
            log.info("device %s: %d queued downlink(s) expired undelivered", device_id.hex(), dropped)
        return [(int(downlink_id), bytes(payload)) for downlink_id, payload in rows]

    def ack_downlink(self, downlink_id: int) -> None:
        """Removes a delivered downlink (an id already gone is no error: delivery is at least once)."""
        with self._transaction(write=True) as tx:
            tx.execute("DELETE FROM downlinks WHERE id = ?", (int(downlink_id),))

    def queue_depth(self, device_id: bytes | None = None) -> int:
        """Unexpired downlinks waiting, for one device or all."""
        now = time.time()
        with self._transaction(write=False) as tx:
            if device_id is None:
                rows = tx.query("SELECT COUNT(*) FROM downlinks WHERE expires > ?", (now,))
            else:
                rows = tx.query(
                    "SELECT COUNT(*) FROM downlinks WHERE device_id = ? AND expires > ?", (bytes(device_id), now)
                )
        return int(rows[0][0])

    def devices_with_downlinks(self) -> list[bytes]:
        """The devices with unexpired downlinks waiting (one query, for a gateway's rescan)."""
        with self._transaction(write=False) as tx:
            rows = tx.query("SELECT DISTINCT device_id FROM downlinks WHERE expires > ?", (time.time(),))
        return sorted(bytes(row[0]) for row in rows)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
