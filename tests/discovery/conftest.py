"""Fixtures of the discovery tests: a two-namespace LAN (netns.py), the C build of USMP_C_BUILD."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for path in (HERE, os.path.join(ROOT, "tests", "gateway"), os.path.join(ROOT, "tests", "interop"),
             os.path.join(ROOT, "python", "src")):
    if path not in sys.path:
        sys.path.insert(0, path)

from interop_harness import CBuild, locate_c_build  # noqa: E402
from netns import Lan, namespaces_unavailable  # noqa: E402

_BUILD = locate_c_build()


@pytest.fixture(scope="session")
def c_build() -> CBuild:
    return _BUILD


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[Lan]:
    """Skips, printing why, only when this machine does not permit network namespaces."""
    reason = namespaces_unavailable()
    if reason is not None:
        print(f"DISCOVERY NOT RUN: {reason}")
        pytest.skip(reason)
    network = Lan(tmp_path)
    try:
        yield network.open()
    finally:
        network.close()
