"""Fixtures of the gateway tests: a real mosquitto per test, a SQLite registry in a temporary file."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
for path in (HERE, os.path.join(os.path.dirname(HERE), "interop")):
    if path not in sys.path:
        sys.path.insert(0, path)

from gateway_harness import Mosquitto  # noqa: E402
from interop_harness import CBuild, locate_c_build  # noqa: E402

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
