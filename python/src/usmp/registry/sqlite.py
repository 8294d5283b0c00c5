"""The SQLite back end: one file, created mode 0600, shared by the CLI and gateways on one machine.

Conventions:
* The connection is in autocommit mode; every operation is an explicit
  ``BEGIN IMMEDIATE`` (writes: the database's write lock, so reads of a row
  and the write that depends on them cannot interleave with another
  process) or ``BEGIN`` (reads) ... ``COMMIT``.
* WAL journal: the CLI can write while a gateway reads. SQLite creates the
  -wal and -shm files with the database file's mode.
* Watchers poll the counters (:meth:`wait_for_changes`): one indexed
  SELECT every ``poll_interval`` seconds.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .base import Registry, RegistryError, Transaction, log

BUSY_TIMEOUT_S = 10.0


class _SqliteTransaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._connection.execute(sql, tuple(params)).rowcount

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._connection.execute(sql, tuple(params)).fetchall()]


def _create_private(path: str) -> None:
    """Creates ``path`` empty with mode 0600 unless it exists (O_EXCL: no race with another creator)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as error:
        raise RegistryError(f"cannot create registry {path}: {error.strerror}") from None
    os.close(fd)


class SqliteRegistry(Registry):
    dialect = "sqlite"
    poll_interval: float = 0.2

    def __init__(self, path: str, wrap_key: bytes | None = None) -> None:
        super().__init__(path, wrap_key)
        self.path = path
        self._lock = threading.RLock()
        self._closed = threading.Event()
        _create_private(path)
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("registry %s is readable by other users (mode %o): chmod 600 it", path, mode & 0o777)
        try:
            self._connection = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise RegistryError(f"cannot open registry {path}: {error}") from None
        try:
            self._connection.execute("PRAGMA journal_mode = WAL")
            self._connection.execute("PRAGMA foreign_keys = ON")
            self._open()
        except sqlite3.Error as error:
            self._connection.close()
            raise RegistryError(f"cannot open registry {path}: {error}") from None
        except RegistryError:
            self._connection.close()
            raise

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Transaction]:
        with self._lock:
            try:
                self._connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.Error as error:
                raise RegistryError(f"registry {self.path}: {error}") from None
            try:
                yield _SqliteTransaction(self._connection)
                self._connection.execute("COMMIT")
            except sqlite3.Error as error:
                self._connection.execute("ROLLBACK")
                raise RegistryError(f"registry {self.path}: {error}") from None
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise

    def _has_table(self, tx: Transaction, name: str) -> bool:
        return bool(tx.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def close(self) -> None:
        self._closed.set()  # wakes wait_for_changes
        with self._lock:
            self._connection.close()

    def wait_for_changes(self, timeout: float) -> bool:
        """Polls the counters every ``poll_interval`` seconds; False at once after :meth:`close`."""
        deadline = time.monotonic() + timeout
        while not self._closed.is_set():
            with self._transaction(write=False) as tx:
                current = self._read_counters(tx)
            if current != self._watch_mark:
                self._watch_mark = current
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._closed.wait(min(self.poll_interval, remaining))
        return False
