"""Fixtures of the gateway tests: a real mosquitto per test, a SQLite registry in a temporary file,
a PostgreSQL database per test in one throw-away cluster (python/tests/pg_cluster.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for path in (HERE, os.path.join(ROOT, "tests", "interop"), os.path.join(ROOT, "python", "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)

from gateway_harness import Mosquitto  # noqa: E402
from interop_harness import CBuild, locate_c_build  # noqa: E402
from pg_cluster import PostgresCluster, find_bindir  # noqa: E402

_BUILD = locate_c_build()


@pytest.fixture(scope="session")
def c_build() -> CBuild:
    """The C programs of USMP_C_BUILD (tests/interop/conftest.py says how they are found)."""
    return _BUILD


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "mosquitto")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sqlite_registry(tmp_path: Path) -> str:
    return str(tmp_path / "devices.db")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One cluster for the session; the test fails (not skips) without PostgreSQL: make deps installs it."""
    bindir = find_bindir()
    assert bindir is not None, "PostgreSQL is not installed (tools/install-deps.sh installs postgresql)"
    with PostgresCluster(bindir) as cluster:
        yield cluster


@pytest.fixture
def postgres_registry(postgres_cluster: PostgresCluster) -> str:
    """The URL of an empty database of its own."""
    return postgres_cluster.new_database()
