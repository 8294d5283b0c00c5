"""Fixtures of the interop and attack tests.

The C programs come from the build directory named by ``USMP_C_BUILD``
(tools/run-tests.sh sets it to the ASan+UBSan build), else from
``build/openssl-asan`` if it exists. A test that needs a missing program is
skipped with the reason (and the run ends with a warning listing it);
under ``CI=true`` it fails instead. Tests that need no C program (the
in-process Python ones) always run.
"""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(os.path.dirname(HERE)), "python", "src")
for path in (SRC, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from interop_harness import CBuild, locate_c_build  # noqa: E402

_BUILD = locate_c_build()
_SKIPPED: list[str] = []


@pytest.fixture(scope="session")
def c_build() -> CBuild:
    return _BUILD


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and isinstance(report.longrepr, tuple) and "INTEROP NOT RUN" in str(report.longrepr[2]):
        _SKIPPED.append(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SKIPPED:
        terminalreporter.section("USMP interop: C programs missing", sep="!", red=True, bold=True)
        reason = _BUILD.problem or "see the skip reasons (pytest -rs)"
        terminalreporter.write_line(f"{len(_SKIPPED)} interop/attack tests were SKIPPED: {reason}")
        terminalreporter.write_line("Set USMP_C_BUILD to a build directory (tools/run-tests.sh does).")
