"""The Wireshark dissector's tests need Debian's tshark (tools/install-deps.sh).

Without it every test here is skipped with the reason; under ``CI=true`` it
fails instead, as the interop tests do for a missing C program.
"""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from wireshark_harness import tshark_path  # noqa: E402


@pytest.fixture(autouse=True)
def needs_tshark() -> None:
    if tshark_path() is None:
        message = "tshark not found: run tools/install-deps.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
