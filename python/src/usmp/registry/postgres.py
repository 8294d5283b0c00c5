"""The PostgreSQL back end: one registry shared by several gateways (docs/registry.md).

Conventions:
* The connection is in autocommit mode; every write is one explicit
  transaction (READ COMMITTED), every read one or two autocommitted
  statements (see ``Registry._transaction``). A read that a write depends on locks its
  device row (``SELECT ... FOR UPDATE``); counters are bumped with
  ``UPDATE ... RETURNING`` and so commit in order.
* Migrations run under a transaction-scoped advisory lock: gateways
  starting together migrate once.
* Every change is also a NOTIFY on channel ``usmp_registry`` (payloads in
  docs/registry.md), sent at commit; :meth:`wait_for_changes` blocks on a
  second connection that LISTENs.
* A connection found broken at the start of an operation is replaced: the
  registry survives a database restart (the operation in flight fails).
* Error messages carry the location with its password replaced by ``***``.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from .base import Registry, RegistryError, Transaction, log

NOTIFY_CHANNEL = "usmp_registry"
# pg_advisory_xact_lock key for migrations: "usmp" in ASCII.
_MIGRATION_LOCK = 0x75736D70
CONNECT_TIMEOUT_S = 10


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


class _PostgresTransaction:
    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._connection.execute(sql.replace("?", "%s"), tuple(params)).rowcount

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        cursor = self._connection.execute(sql.replace("?", "%s"), tuple(params))
        return [tuple(row) for row in cursor.fetchall()]


class PostgresRegistry(Registry):
    dialect = "postgresql"
    _row_lock = " FOR UPDATE"

    def __init__(self, url: str, wrap_key: bytes | None = None) -> None:
        super().__init__(redact(url), wrap_key)
        self._url = url
        self._lock = threading.RLock()
        self._listen_lock = threading.Lock()
        self._listener: psycopg.Connection[Any] | None = None
        self._closed = False
        self._dispatchers: list[threading.Thread] = []
        self._connection = self._connect()
        # close() writes a byte here to wake a wait_for_changes blocked in select.
        self._wake_read, self._wake_write = os.pipe()
        try:
            self._open()
        except BaseException:
            self._connection.close()
            os.close(self._wake_read)
            os.close(self._wake_write)
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as error:
            raise RegistryError(f"cannot connect to registry {self.location}: {_first_line(error)}") from None

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Transaction]:
        with self._lock:
            if self._closed:
                raise RegistryError(f"registry {self.location} is closed")
            if self._connection.broken or self._connection.closed:
                self._connection = self._connect()
            try:
                if write:
                    with self._connection.transaction():
                        yield _PostgresTransaction(self._connection)
                else:
                    # Reads run each statement on its own in autocommit: one
                    # round trip instead of three (BEGIN, SELECT, COMMIT)
                    # for psk_for, which every handshake waits on.
                    yield _PostgresTransaction(self._connection)
            except psycopg.errors.UniqueViolation:
                raise RegistryError(f"registry {self.location}: the record exists already") from None
            except psycopg.Error as error:
                raise RegistryError(f"registry {self.location}: {_first_line(error)}") from None

    def _lock_schema(self, tx: Transaction) -> None:
        tx.query("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))

    def _has_table(self, tx: Transaction, name: str) -> bool:
        return bool(tx.query("SELECT to_regclass(?) IS NOT NULL", (name,))[0][0])

    def _notify(self, tx: Transaction, payload: str) -> None:
        tx.query("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, payload))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_write, b"x")  # never read: stays readable for every waiter
        for thread in self._dispatchers:
            thread.join(timeout=5)
        with self._listen_lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            os.close(self._wake_read)
            os.close(self._wake_write)
        with self._lock:
            self._connection.close()

    def listen(self, callback: Callable[[str], None]) -> None:
        """Calls ``callback(payload)`` for every notification, on a thread of its own, until :meth:`close`.

        Payloads as in docs/registry.md (``rotated:<id hex>``,
        ``session:<id hex>:<gateway>``, ...). Listening has begun when this
        returns. A lost connection is replaced (notifications sent meanwhile
        are missed: the counters are not).
        """
        connection = self._listening_connection()
        thread = threading.Thread(
            target=self._dispatch, args=(callback, connection), name="usmp-registry-listen", daemon=True
        )
        self._dispatchers.append(thread)
        thread.start()

    def _dispatch(self, callback: Callable[[str], None], connection: psycopg.Connection[Any] | None) -> None:
        while not self._closed:
            try:
                if connection is None or connection.closed or connection.broken:
                    connection = self._listening_connection()
                readable, _, _ = select.select([connection.fileno(), self._wake_read], [], [])
                if self._wake_read in readable:
                    break
                connection.pgconn.consume_input()
                while (notice := connection.pgconn.notifies()) is not None:
                    try:
                        callback(notice.extra.decode("utf-8", "replace"))
                    except Exception:
                        log.exception("registry %s: a notification callback failed", self.location)
            except (RegistryError, psycopg.Error, OSError, ValueError) as error:
                if connection is not None:
                    connection.close()
                if self._closed:
                    break
                log.warning("registry %s: notifications interrupted (%s); reconnecting", self.location, error)
                select.select([self._wake_read], [], [], 1.0)
        if connection is not None:
            connection.close()

    def _listening_connection(self) -> psycopg.Connection[Any]:
        """A new connection that LISTENs on the registry's channel."""
        connection = self._connect()
        try:
            connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except psycopg.Error as error:
            connection.close()
            raise RegistryError(f"registry {self.location}: LISTEN failed: {_first_line(error)}") from None
        return connection

    def _listening(self) -> psycopg.Connection[Any]:
        """wait_for_changes's LISTEN connection, made or replaced as needed."""
        if self._listener is None or self._listener.broken or self._listener.closed:
            self._listener = self._listening_connection()
        return self._listener

    def _drain(self, listener: psycopg.Connection[Any]) -> bool:
        """Reads what the socket holds; True if it held a notification."""
        try:
            listener.pgconn.consume_input()
        except psycopg.Error:
            listener.close()  # replaced at the next wait
            return True  # something may have been missed: the caller looks at the counters
        got = False
        while listener.pgconn.notifies() is not None:
            got = True
        return got

    def _moved(self) -> bool:
        with self._transaction(write=False) as tx:
            current = self._read_counters(tx)
        if current != self._watch_mark:
            self._watch_mark = current
            return True
        return False

    def wait_for_changes(self, timeout: float) -> bool:
        """Blocks on the LISTEN connection; False at once after :meth:`close`."""
        deadline = time.monotonic() + timeout
        with self._listen_lock:
            if self._closed:
                return False
            listener = self._listening()
            # Notifications sent before LISTEN took effect, or between two
            # calls, are covered by the counters.
            self._drain(listener)
            if self._moved():
                return True
            while (remaining := deadline - time.monotonic()) > 0:
                readable, _, _ = select.select([listener.fileno(), self._wake_read], [], [], remaining)
                if self._wake_read in readable:
                    return False
                if readable and self._drain(listener) and self._moved():
                    return True
                if listener.closed:
                    return self._moved()
            return False


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
