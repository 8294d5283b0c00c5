"""A smoke run of the loopback benchmark (bench/loopback.py --quick): every
server starts, the load generator (bench/c/usmp_loadgen, from the C build
under test, so under ASan here) completes its handshakes, echoes and idle
sessions against each without a failure, and the table comes out whole with
its reproduce command. Nothing about time is asserted: the figures of a
--quick run mean nothing (docs/performance.md has the real ones).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from interop_harness import CBuild

ROOT = Path(__file__).resolve().parents[2]
SERVERS = ["C gateway", "Python gateway", "openssl s_server", "Python TLS"]


def _row(table: str, figure: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == figure:
            return cells[1:]
    raise AssertionError(f"no row {figure!r} in:\n{table}")


def test_quick_loopback_run_completes_against_every_server(c_build: CBuild) -> None:
    loadgen = c_build.program("loadgen")
    c_build.program("server")
    if shutil.which("openssl") is None:
        pytest.skip("the openssl program is not installed (tools/install-deps.sh installs it)")
    build = loadgen.parent.parent.parent
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "loopback.py"), "--quick", "--build-dir", str(build)],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    table = run.stdout
    header = [c.strip() for c in table.split("| figure |", 1)[1].splitlines()[0].strip().strip("|").split("|")]
    assert header == SERVERS
    assert all(float(x.replace(",", "")) > 0 for x in _row(table, "handshakes/s"))
    assert _row(table, "handshake failures") == ["0"] * len(SERVERS)
    # s_server serves one connection at a time: no echo, no idle sessions.
    assert _row(table, "idle sessions held of 20") == ["20", "20", "n/a", "20"]
    assert all(float(x.replace(",", "")) > 0 for x in _row(table, "echo 64 B, 100 sessions: messages/s") if x != "n/a")
    assert "Reproduce: `/usr/bin/python3 bench/loopback.py --quick" in table
