"""The device registry (usmp.registry) against SQLite in a temporary file and a real PostgreSQL cluster."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pg_cluster import PostgresCluster

from usmp.registry import (
    MIGRATIONS,
    SCHEMA_VERSION,
    QueueFull,
    Registry,
    RegistryError,
    UnknownDevice,
    open_registry,
)
from usmp.registry.postgres import redact
from usmp.registry.schema import Migration

DEVICE = bytes.fromhex("deadbeef0001")
OTHER = bytes.fromhex("deadbeef0002")
WRAP_KEY = bytes(range(32))


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh registry location of each kind."""
    if request.param == "sqlite":
        return str(tmp_path / "devices.db")
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return cluster.new_database()


@pytest.fixture
def opened(location: str) -> Iterator[Callable[..., Registry]]:
    """Opens registries at ``location`` and closes them all after the test."""
    registries: list[Registry] = []

    def open_one(wrap_key: bytes | None = None) -> Registry:
        registry = open_registry(location, wrap_key=wrap_key)
        registries.append(registry)
        return registry

    yield open_one
    for registry in registries:
        registry.close()


@pytest.fixture
def registry(opened: Callable[..., Registry]) -> Registry:
    return opened()


# --- devices ---------------------------------------------------------------------------------------


def test_add_device_returns_a_fresh_32_byte_psk_that_psk_for_finds(registry: Registry) -> None:
    first = registry.add_device(DEVICE, "kitchen")
    second = registry.add_device(OTHER)
    assert len(first) == 32 and len(second) == 32 and first != second
    assert registry.psk_for(DEVICE) == first
    assert registry.psk_for(OTHER) == second


def test_add_device_keeps_a_given_psk_and_refuses_a_short_one(registry: Registry) -> None:
    assert registry.add_device(DEVICE, psk=b"\x11" * 32) == b"\x11" * 32
    assert registry.psk_for(DEVICE) == b"\x11" * 32
    with pytest.raises(RegistryError, match="15 bytes"):
        registry.add_device(OTHER, psk=b"\x22" * 15)
    assert registry.psk_for(OTHER) is None


def test_add_device_twice_is_refused_and_keeps_the_first_psk(registry: Registry) -> None:
    psk = registry.add_device(DEVICE)
    with pytest.raises(RegistryError, match="already registered"):
        registry.add_device(DEVICE)
    assert registry.psk_for(DEVICE) == psk


def test_add_device_refuses_an_id_that_is_not_6_bytes(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="6 bytes"):
        registry.add_device(b"\x01\x02\x03")


def test_psk_for_is_none_for_unknown_and_revoked_devices(registry: Registry) -> None:
    registry.add_device(DEVICE)
    assert registry.psk_for(OTHER) is None
    assert registry.psk_for(b"short") is None
    registry.revoke(DEVICE)
    assert registry.psk_for(DEVICE) is None


def test_list_devices_shows_every_field_but_never_the_psk(registry: Registry) -> None:
    before = time.time()
    psk = registry.add_device(DEVICE, "kitchen")
    registry.add_device(OTHER)
    registry.revoke(OTHER)
    records = registry.list_devices()
    assert [r.device_id for r in records] == [DEVICE, OTHER]
    kitchen, revoked = records
    assert kitchen.label == "kitchen" and revoked.label is None
    assert before - 1 <= kitchen.created <= time.time() + 1
    assert kitchen.last_seen is None and not kitchen.online and kitchen.gateway is None
    assert not kitchen.revoked and revoked.revoked
    assert psk not in repr(records).encode() and psk.hex() not in repr(records)
    assert not any(isinstance(value, bytes) and value == psk for value in vars(kitchen).values())


def test_rotate_gives_a_new_psk_and_the_old_one_stops_working(registry: Registry) -> None:
    old = registry.add_device(DEVICE)
    new = registry.rotate(DEVICE)
    assert new != old and len(new) == 32
    assert registry.psk_for(DEVICE) == new


def test_revoke_and_rotate_of_unknown_or_revoked_devices_are_clear_errors(registry: Registry) -> None:
    with pytest.raises(UnknownDevice, match="deadbeef0001 is not registered"):
        registry.revoke(DEVICE)
    with pytest.raises(UnknownDevice):
        registry.rotate(DEVICE)
    registry.add_device(DEVICE)
    registry.revoke(DEVICE)
    with pytest.raises(RegistryError, match="already revoked"):
        registry.revoke(DEVICE)
    with pytest.raises(RegistryError, match="revoked"):
        registry.rotate(DEVICE)
    with pytest.raises(RegistryError, match="already registered .revoked."):
        registry.add_device(DEVICE)


def test_change_counter_and_changed_since_report_each_change_in_order(registry: Registry) -> None:
    start = registry.change_counter()
    registry.add_device(DEVICE)
    registry.add_device(OTHER)
    registry.rotate(DEVICE)
    registry.revoke(OTHER)
    counter, changes = registry.changed_since(start)
    assert counter == registry.change_counter() == start + 4
    assert changes == [(DEVICE, "added"), (OTHER, "added"), (DEVICE, "rotated"), (OTHER, "revoked")]
    assert registry.changed_since(counter) == (counter, [])
    assert registry.changed_since(start + 3) == (counter, [(OTHER, "revoked")])


def test_import_psk_file_adds_devices_and_skips_ones_already_there_with_the_same_key(
    registry: Registry, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# devices\n{DEVICE.hex()} {'11' * 32}\n{OTHER.hex()} {'22' * 16}  # short but valid\n")
    assert registry.import_psk_file(str(keys)) == 2
    assert registry.psk_for(DEVICE) == b"\x11" * 32 and registry.psk_for(OTHER) == b"\x22" * 16
    counter = registry.change_counter()
    assert registry.import_psk_file(str(keys)) == 0
    assert registry.change_counter() == counter


def test_import_psk_file_with_a_conflicting_key_imports_nothing(registry: Registry, tmp_path: Path) -> None:
    registry.add_device(OTHER, psk=b"\x33" * 32)
    keys = tmp_path / "keys"
    keys.write_text(f"{DEVICE.hex()} {'11' * 32}\n{OTHER.hex()} {'22' * 32}\n")
    with pytest.raises(RegistryError, match="deadbeef0002 is registered with another PSK"):
        registry.import_psk_file(str(keys))
    assert registry.psk_for(DEVICE) is None and registry.psk_for(OTHER) == b"\x33" * 32


def test_import_psk_file_names_the_bad_line(registry: Registry, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"{DEVICE.hex()} {'11' * 32}\nnothex000001 {'22' * 32}\n")
    with pytest.raises(RegistryError, match="line 2"):
        registry.import_psk_file(str(keys))
    assert registry.list_devices() == []


# --- presence ----------------------------------------------------------------------------------------


def test_claim_session_records_the_owner_and_returns_the_previous_gateway(registry: Registry) -> None:
    registry.add_device(DEVICE)
    assert registry.claim_session(DEVICE, "gw-a", b"\x01" * 8) is None
    assert registry.session_owner(DEVICE) == ("gw-a", b"\x01" * 8)
    # The same gateway again (a reconnect it handles itself): no other gateway to tell.
    assert registry.claim_session(DEVICE, "gw-a", b"\x02" * 8) is None
    assert registry.claim_session(DEVICE, "gw-b", b"\x03" * 8) == "gw-a"
    assert registry.session_owner(DEVICE) == ("gw-b", b"\x03" * 8)
    (record,) = registry.list_devices()
    assert record.online and record.gateway == "gw-b" and record.last_seen is not None


def test_claim_session_of_an_unknown_or_revoked_device_raises(registry: Registry) -> None:
    with pytest.raises(UnknownDevice):
        registry.claim_session(DEVICE, "gw-a", b"\x01" * 8)
    registry.add_device(DEVICE)
    registry.revoke(DEVICE)
    with pytest.raises(UnknownDevice, match="revoked"):
        registry.claim_session(DEVICE, "gw-a", b"\x01" * 8)
    assert registry.session_owner(DEVICE) is None


def test_release_session_only_by_the_owner_and_sets_last_seen(registry: Registry) -> None:
    registry.add_device(DEVICE)
    registry.claim_session(DEVICE, "gw-a", b"\x01" * 8)
    registry.claim_session(DEVICE, "gw-b", b"\x02" * 8)
    registry.release_session(DEVICE, "gw-a", b"\x01" * 8)  # the replaced session ends late
    assert registry.session_owner(DEVICE) == ("gw-b", b"\x02" * 8)
    registry.release_session(DEVICE, "gw-b", b"\x09" * 8)  # not its session id
    assert registry.session_owner(DEVICE) == ("gw-b", b"\x02" * 8)
    before = time.time()
    registry.release_session(DEVICE, "gw-b", b"\x02" * 8)
    assert registry.session_owner(DEVICE) is None
    (record,) = registry.list_devices()
    assert not record.online and record.gateway is None
    assert record.last_seen is not None and record.last_seen >= before - 1


def test_release_gateway_clears_only_that_gateways_sessions(registry: Registry) -> None:
    registry.add_device(DEVICE)
    registry.add_device(OTHER)
    registry.claim_session(DEVICE, "gw-a", b"\x01" * 8)
    registry.claim_session(OTHER, "gw-b", b"\x02" * 8)
    assert registry.release_gateway("gw-a") == 1
    assert registry.release_gateway("gw-a") == 0
    assert registry.session_owner(DEVICE) is None
    assert registry.session_owner(OTHER) == ("gw-b", b"\x02" * 8)


def test_claims_releases_and_downlinks_move_the_event_counter_not_the_change_counter(registry: Registry) -> None:
    registry.add_device(DEVICE)
    changes, events = registry.change_counter(), registry.event_counter()
    registry.claim_session(DEVICE, "gw-a", b"\x01" * 8)
    assert registry.event_counter() == events + 1
    registry.enqueue_downlink(DEVICE, b"x", 60)
    assert registry.event_counter() == events + 2
    registry.release_session(DEVICE, "gw-a", b"\x01" * 8)
    assert registry.event_counter() == events + 3
    assert registry.change_counter() == changes


# --- the downlink queue ----------------------------------------------------------------------------


def test_downlinks_come_out_in_order_until_acknowledged(registry: Registry) -> None:
    registry.add_device(DEVICE)
    registry.add_device(OTHER)
    ids = [registry.enqueue_downlink(DEVICE, f"m{i}".encode(), 60) for i in range(5)]
    other = registry.enqueue_downlink(OTHER, b"other", 60)
    assert ids == sorted(ids) and other not in ids
    assert registry.pending_downlinks(DEVICE) == [(i, f"m{n}".encode()) for n, i in enumerate(ids)]
    assert registry.queue_depth(DEVICE) == 5 and registry.queue_depth() == 6
    registry.ack_downlink(ids[0])
    registry.ack_downlink(ids[0])  # twice: no error (at-least-once delivery)
    assert [payload for _, payload in registry.pending_downlinks(DEVICE)] == [b"m1", b"m2", b"m3", b"m4"]
    assert registry.devices_with_downlinks() == [DEVICE, OTHER]


def test_expired_downlinks_are_dropped_not_delivered(registry: Registry) -> None:
    registry.add_device(DEVICE)
    registry.enqueue_downlink(DEVICE, b"short", 5)
    keep = registry.enqueue_downlink(DEVICE, b"long", 3600)
    later = time.time() + 10
    assert registry.pending_downlinks(DEVICE, now=later) == [(keep, b"long")]
    assert registry.pending_downlinks(DEVICE) == [(keep, b"long")]  # the expired one is gone for good


def test_enqueue_beyond_max_queue_raises_queue_full_and_queues_nothing(registry: Registry) -> None:
    registry.add_device(DEVICE)
    registry.max_queue = 3
    for i in range(3):
        registry.enqueue_downlink(DEVICE, bytes([i]), 60)
    with pytest.raises(QueueFull, match="full .3 of 3."):
        registry.enqueue_downlink(DEVICE, b"one too many", 60)
    assert registry.queue_depth(DEVICE) == 3
    first_id = registry.pending_downlinks(DEVICE)[0][0]
    registry.ack_downlink(first_id)
    registry.enqueue_downlink(DEVICE, b"room again", 60)
    assert registry.queue_depth(DEVICE) == 3


def test_enqueue_refuses_a_downlink_larger_than_a_usmp_message(registry: Registry) -> None:
    registry.add_device(DEVICE)
    registry.enqueue_downlink(DEVICE, b"\x00" * 65535, 60)
    with pytest.raises(RegistryError, match="65536 bytes is larger than a USMP message can be .65535."):
        registry.enqueue_downlink(DEVICE, b"\x00" * 65536, 60)
    assert registry.queue_depth(DEVICE) == 1


def test_enqueue_for_an_unknown_or_revoked_device_raises_unknown_device(registry: Registry) -> None:
    with pytest.raises(UnknownDevice):
        registry.enqueue_downlink(DEVICE, b"x", 60)
    registry.add_device(DEVICE)
    registry.enqueue_downlink(DEVICE, b"x", 60)
    registry.revoke(DEVICE)
    assert registry.queue_depth(DEVICE) == 0  # revoking drops the queue
    with pytest.raises(UnknownDevice, match="revoked"):
        registry.enqueue_downlink(DEVICE, b"x", 60)
    with pytest.raises(RegistryError, match="positive"):
        registry.enqueue_downlink(OTHER, b"x", 0)


# --- two users of one database -----------------------------------------------------------------------


def test_a_second_connection_sees_the_first_ones_changes(opened: Callable[..., Registry]) -> None:
    writer, reader = opened(), opened()
    psk = writer.add_device(DEVICE)
    assert reader.psk_for(DEVICE) == psk
    assert reader.changed_since(0) == (writer.change_counter(), [(DEVICE, "added")])


def test_wait_for_changes_wakes_on_another_connections_change_and_times_out_otherwise(
    opened: Callable[..., Registry],
) -> None:
    writer, watcher = opened(), opened()
    writer.add_device(DEVICE)
    assert watcher.wait_for_changes(1.0)  # the add happened after the watcher opened
    started = time.monotonic()
    assert not watcher.wait_for_changes(0.3)
    assert time.monotonic() - started >= 0.25
    for action in (
        lambda: writer.rotate(DEVICE),
        lambda: writer.claim_session(DEVICE, "gw-a", b"\x01" * 8),
        lambda: writer.enqueue_downlink(DEVICE, b"x", 60),
    ):
        timer = threading.Timer(0.2, action)
        timer.start()
        started = time.monotonic()
        assert watcher.wait_for_changes(5.0)
        assert time.monotonic() - started < 2.0
        timer.join()


def test_listen_delivers_every_notification_on_postgresql_and_is_refused_on_sqlite(
    opened: Callable[..., Registry], location: str
) -> None:
    listener, writer = opened(), opened()
    if not location.startswith("postgresql://"):
        with pytest.raises(RegistryError, match="sends no notifications: use wait_for_changes"):
            listener.listen(lambda payload: None)
        return
    received: list[str] = []
    listener.listen(received.append)  # listening when it returns
    writer.add_device(DEVICE)
    writer.claim_session(DEVICE, "gw-a", b"\x01" * 8)
    writer.enqueue_downlink(DEVICE, b"x", 60)
    writer.release_session(DEVICE, "gw-a", b"\x01" * 8)
    writer.rotate(DEVICE)
    writer.revoke(DEVICE)
    expected = [
        f"added:{DEVICE.hex()}",
        f"session:{DEVICE.hex()}:gw-a",
        f"downlink:{DEVICE.hex()}",
        f"release:{DEVICE.hex()}:gw-a",
        f"rotated:{DEVICE.hex()}",
        f"revoked:{DEVICE.hex()}",
    ]
    deadline = time.monotonic() + 10
    while len(received) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert received == expected
    listener.close()
    assert not any(t.name == "usmp-registry-listen" and t.is_alive() for t in threading.enumerate())


def test_close_wakes_a_wait_for_changes_at_once(opened: Callable[..., Registry]) -> None:
    watcher = opened()
    assert not watcher.wait_for_changes(0.05)  # a PostgreSQL watcher is now LISTENing
    timer = threading.Timer(0.3, watcher.close)
    timer.start()
    started = time.monotonic()
    assert not watcher.wait_for_changes(30.0)
    assert time.monotonic() - started < 5.0
    timer.join()


def test_a_closed_registry_refuses_every_call(location: str) -> None:
    registry = open_registry(location)
    registry.add_device(DEVICE)
    registry.close()
    with pytest.raises(RegistryError):
        registry.psk_for(DEVICE)
    with pytest.raises(RegistryError):
        registry.add_device(OTHER)
    with open_registry(location) as again:
        assert again.psk_for(OTHER) is None


def test_concurrent_enqueues_never_exceed_the_bound(opened: Callable[..., Registry]) -> None:
    setup = opened()
    setup.add_device(DEVICE)
    writers = [opened() for _ in range(4)]
    accepted: list[int] = []
    refused: list[int] = []
    barrier = threading.Barrier(len(writers))

    def enqueue(registry: Registry) -> None:
        registry.max_queue = 10
        barrier.wait()
        for _ in range(8):
            try:
                accepted.append(registry.enqueue_downlink(DEVICE, b"x", 60))
            except QueueFull:
                refused.append(1)

    threads = [threading.Thread(target=enqueue, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(accepted) == 10 and len(refused) == 22
    assert setup.queue_depth(DEVICE) == 10
    assert [i for i, _ in setup.pending_downlinks(DEVICE)] == sorted(accepted)


def test_concurrent_claims_from_four_gateways_all_succeed_and_leave_one_of_them_the_owner(
    opened: Callable[..., Registry],
) -> None:
    setup = opened()
    setup.add_device(DEVICE)
    gateways = [opened() for _ in range(4)]
    previous: list[str | None] = []
    barrier = threading.Barrier(len(gateways))

    def claim(number: int, registry: Registry) -> None:
        barrier.wait()
        for round_ in range(5):
            previous.append(registry.claim_session(DEVICE, f"gw-{number}", bytes([number, round_]) * 4))

    threads = [threading.Thread(target=claim, args=(n, g)) for n, g in enumerate(gateways)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    owner = setup.session_owner(DEVICE)
    assert owner is not None and owner[0] in {f"gw-{n}" for n in range(4)}
    assert len(previous) == 20 and set(previous) <= {None, "gw-0", "gw-1", "gw-2", "gw-3"}
    assert setup.event_counter() == 20  # one event per claim, none lost to a race


# --- opening: migrations ------------------------------------------------------------------------


# Version 1 of the schema as released, written out here rather than taken
# from MIGRATIONS: a later edit of a released step would make databases in
# the field differ from what the code expects, and this test then fails.
SCHEMA_V1 = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version (version) VALUES (1)",
    "CREATE TABLE devices (device_id {blob} PRIMARY KEY, label TEXT, psk {blob} NOT NULL,"
    " created DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION, revoked INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "INSERT INTO counters (name, value) VALUES ('changes', 0)",
    "CREATE TABLE changes (counter BIGINT PRIMARY KEY, device_id {blob} NOT NULL, kind TEXT NOT NULL,"
    " at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE settings (name TEXT PRIMARY KEY, value {blob} NOT NULL)",
    "INSERT INTO settings (name, value) VALUES ('psk_wrapping', 'none')",
    "INSERT INTO devices (device_id, label, psk, created) VALUES ({device}, 'old', {psk}, 1000.0)",
)


def _make_version_1(location: str) -> None:
    """A registry as the first schema version left it, one device in it, made without the Registry class."""
    if location.startswith("postgresql://"):
        import psycopg

        words = {"blob": "BYTEA", "device": f"'\\x{DEVICE.hex()}'", "psk": f"'\\x{'44' * 32}'"}
        with psycopg.connect(location, autocommit=True) as connection:
            for statement in SCHEMA_V1:
                connection.execute(statement.format(**words).replace("'none'", "'none'::bytea"))
        return
    words = {"blob": "BLOB", "device": f"X'{DEVICE.hex()}'", "psk": f"X'{'44' * 32}'"}
    connection = sqlite3.connect(location)
    with connection:
        for statement in SCHEMA_V1:
            connection.execute(statement.format(**words).replace("'none'", "CAST('none' AS BLOB)"))
    connection.close()


def _schema_version(location: str) -> int:
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location) as connection:
            row = connection.execute("SELECT version FROM schema_version").fetchone()
    else:
        with sqlite3.connect(location) as connection:
            row = connection.execute("SELECT version FROM schema_version").fetchone()
    assert row is not None
    return int(row[0])


def test_open_migrates_a_version_1_database_and_keeps_its_devices(location: str) -> None:
    assert SCHEMA_VERSION >= 2
    _make_version_1(location)
    with open_registry(location) as registry:
        assert _schema_version(location) == SCHEMA_VERSION
        assert registry.psk_for(DEVICE) == b"\x44" * 32
        (record,) = registry.list_devices()
        assert record.label == "old" and record.created == 1000.0 and not record.online
        # What the later migrations added works on the migrated database.
        registry.claim_session(DEVICE, "gw-a", b"\x01" * 8)
        registry.enqueue_downlink(DEVICE, b"queued", 60)
        assert registry.pending_downlinks(DEVICE)[0][1] == b"queued"
    with open_registry(location) as again:  # a second open migrates nothing
        assert again.session_owner(DEVICE) == ("gw-a", b"\x01" * 8)
        assert _schema_version(location) == SCHEMA_VERSION


def _has_table(location: str, name: str) -> bool:
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location) as connection:
            row = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
            return bool(row and row[0])
    with sqlite3.connect(location) as connection:
        found = connection.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    connection.close()
    return found is not None


def test_a_failing_migration_changes_nothing_and_the_next_open_retries_it(
    location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import usmp.registry.base as base

    with open_registry(location) as registry:
        registry.add_device(DEVICE)
    broken = Migration(SCHEMA_VERSION + 1, "a step that fails half-way", ("CREATE TABLE extra (x INTEGER)", "NOT SQL"))
    monkeypatch.setattr(base, "MIGRATIONS", (*MIGRATIONS, broken))
    monkeypatch.setattr(base, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(RegistryError):
        open_registry(location)
    assert _schema_version(location) == SCHEMA_VERSION and not _has_table(location, "extra")
    fixed = Migration(SCHEMA_VERSION + 1, "the step, fixed", ("CREATE TABLE extra (x INTEGER)",))
    monkeypatch.setattr(base, "MIGRATIONS", (*MIGRATIONS, fixed))
    with open_registry(location) as registry:
        assert registry.psk_for(DEVICE) is not None
    assert _schema_version(location) == SCHEMA_VERSION + 1 and _has_table(location, "extra")


def test_open_refuses_a_database_from_a_newer_version(location: str) -> None:
    open_registry(location).close()
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as connection:
            connection.execute("UPDATE schema_version SET version = version + 1")
    else:
        with sqlite3.connect(location) as connection:
            connection.execute("UPDATE schema_version SET version = version + 1")
        connection.close()
    with pytest.raises(RegistryError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        open_registry(location)


def test_docs_list_every_migration_and_the_current_schema_version() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "registry.md").read_text()
    migrations = text.split("## Migrations", 1)[1].split("\n## ", 1)[0]
    listed = [int(n) for n in re.findall(r"^\| (\d+) \|", migrations, re.M)]
    assert listed == [m.version for m in MIGRATIONS]
    assert f"Version {SCHEMA_VERSION}." in text.split("## Schema", 1)[1]


def test_concurrent_first_opens_migrate_once(location: str) -> None:
    errors: list[BaseException] = []
    registries: list[Registry] = []

    def open_one() -> None:
        try:
            registries.append(open_registry(location))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(registries) == 4
    registries[0].add_device(DEVICE)
    assert all(r.psk_for(DEVICE) is not None for r in registries)
    for registry in registries:
        registry.close()
    assert _schema_version(location) == SCHEMA_VERSION


# --- PSK wrapping at rest --------------------------------------------------------------------------


def _stored_psk(location: str, device_id: bytes) -> bytes:
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location) as connection:
            row = connection.execute("SELECT psk FROM devices WHERE device_id = %s", (device_id,)).fetchone()
    else:
        with sqlite3.connect(location) as connection:
            row = connection.execute("SELECT psk FROM devices WHERE device_id = ?", (device_id,)).fetchone()
    assert row is not None
    return bytes(row[0])


def test_a_wrapped_registry_stores_no_plaintext_psk_and_gives_it_back(
    opened: Callable[..., Registry], location: str
) -> None:
    registry = opened(WRAP_KEY)
    psk = registry.add_device(DEVICE)
    stored = _stored_psk(location, DEVICE)
    assert psk not in stored and len(stored) == 12 + 32 + 16
    assert registry.psk_for(DEVICE) == psk
    assert opened(WRAP_KEY).psk_for(DEVICE) == psk
    rotated = registry.rotate(DEVICE)
    assert rotated not in _stored_psk(location, DEVICE) and registry.psk_for(DEVICE) == rotated


def test_a_wrapped_psk_moved_to_another_device_does_not_decrypt(
    opened: Callable[..., Registry], location: str
) -> None:
    registry = opened(WRAP_KEY)
    registry.add_device(DEVICE)
    registry.add_device(OTHER)
    stolen = _stored_psk(location, DEVICE)
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as connection:
            connection.execute("UPDATE devices SET psk = %s WHERE device_id = %s", (stolen, OTHER))
    else:
        with sqlite3.connect(location) as connection:
            connection.execute("UPDATE devices SET psk = ? WHERE device_id = ?", (stolen, OTHER))
        connection.close()
    with pytest.raises(RegistryError, match="deadbeef0002 does not decrypt"):
        registry.psk_for(OTHER)


def test_opening_a_wrapped_registry_without_the_key_or_with_another_is_a_clear_error(location: str) -> None:
    open_registry(location, wrap_key=WRAP_KEY).close()
    with pytest.raises(RegistryError, match="wrapped .AES-256-GCM.: set USMP_REGISTRY_WRAP_KEY"):
        open_registry(location)
    with pytest.raises(RegistryError, match="USMP_REGISTRY_WRAP_KEY is not the wrap key"):
        open_registry(location, wrap_key=b"\x01" * 32)


def test_opening_a_registry_with_an_unknown_wrapping_is_refused_not_read_as_plain(location: str) -> None:
    open_registry(location).close()
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as connection:
            connection.execute("UPDATE settings SET value = %s WHERE name = 'psk_wrapping'", (b"future-aead",))
    else:
        with sqlite3.connect(location) as connection:
            connection.execute("UPDATE settings SET value = ? WHERE name = 'psk_wrapping'", (b"future-aead",))
        connection.close()
    with pytest.raises(RegistryError, match="does not know .'future-aead'."):
        open_registry(location)


def test_opening_an_unwrapped_registry_with_a_key_is_a_clear_error(location: str) -> None:
    open_registry(location).close()
    with pytest.raises(RegistryError, match="does not wrap its PSKs: unset USMP_REGISTRY_WRAP_KEY, or wrap them with `usmp device rewrap`"):
        open_registry(location, wrap_key=WRAP_KEY)


@pytest.mark.parametrize(
    "old_key, new_key",
    [(None, WRAP_KEY), (WRAP_KEY, b"\x07" * 32), (WRAP_KEY, None)],
    ids=["wrap", "change-key", "unwrap"],
)
def test_rewrap_stores_every_psk_under_the_new_key_and_the_registry_then_needs_it(
    location: str, old_key: bytes | None, new_key: bytes | None
) -> None:
    with open_registry(location, wrap_key=old_key) as registry:
        psks = {DEVICE: registry.add_device(DEVICE), OTHER: registry.add_device(OTHER)}
        assert registry.rewrap(new_key) == 2
        assert registry.psk_for(DEVICE) == psks[DEVICE]  # this object follows the change
    for device_id, psk in psks.items():
        assert (_stored_psk(location, device_id) == psk) == (new_key is None)
    with open_registry(location, wrap_key=new_key) as registry:
        assert all(registry.psk_for(d) == psk for d, psk in psks.items())
    with pytest.raises(RegistryError, match="USMP_REGISTRY_WRAP_KEY"):
        open_registry(location, wrap_key=old_key)


# --- back-end specifics -------------------------------------------------------------------------------


def test_sqlite_file_and_its_journal_files_are_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "devices.db"
    old_umask = os.umask(0o022)
    try:
        registry = open_registry(str(path))
        registry.add_device(DEVICE)
        journal = [p for p in tmp_path.iterdir() if p.name != "devices.db"]
        assert journal, "WAL mode keeps a -wal and a -shm file while open"
        for file in [path, *journal]:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
        registry.close()
    finally:
        os.umask(old_umask)


def test_sqlite_url_and_plain_path_name_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with open_registry("sqlite:///devices.db") as registry:
        registry.add_device(DEVICE)
    with open_registry(str(tmp_path / "devices.db")) as registry:
        assert registry.psk_for(DEVICE) is not None
    with open_registry(f"sqlite:///{tmp_path}/devices.db") as registry:
        assert registry.psk_for(DEVICE) is not None


def test_an_unknown_location_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="use a file path, sqlite:///PATH or postgresql://"):
        open_registry("mysql://localhost/devices")


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "devices.db"
    path.write_bytes(b"not a database, just text" * 100)
    with pytest.raises(RegistryError, match="cannot open registry .*not a database"):
        open_registry(str(path))


def test_postgres_registry_reconnects_after_its_connection_is_killed(postgres_cluster: PostgresCluster) -> None:
    import psycopg

    url = postgres_cluster.new_database()
    with open_registry(url) as registry:
        psk = registry.add_device(DEVICE)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        # The operation that meets the dead connection fails with a clear error, the next reconnects.
        try:
            first = registry.psk_for(DEVICE)
        except RegistryError as error:
            assert "registry postgresql://" in str(error)
            first = registry.psk_for(DEVICE)
        assert first == psk
        registry.add_device(OTHER)
        assert registry.psk_for(OTHER) is not None


def test_a_failed_postgres_connection_leaves_no_file_descriptor_open() -> None:
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(RegistryError, match="cannot connect"):
            open_registry("postgresql://usmp@127.0.0.1:1/registry?connect_timeout=2")
    assert len(os.listdir("/proc/self/fd")) == before


def test_postgres_errors_never_show_the_password() -> None:
    assert redact("postgresql://u:s3cret@db.example:5433/reg") == "postgresql://u:***@db.example:5433/reg"
    assert redact("postgresql://u@db/reg") == "postgresql://u@db/reg"
    with pytest.raises(RegistryError) as raised:
        open_registry("postgresql://usmp:s3cret@127.0.0.1:1/registry?connect_timeout=2")
    assert "s3cret" not in str(raised.value) and "***" in str(raised.value)
