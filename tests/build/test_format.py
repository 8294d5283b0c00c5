"""The C sources are in the style .clang-format writes down (issue: one style,
kept mechanically). The ESP-IDF stand-ins, which imitate ESP-IDF's own headers,
and targets/everest (a unit that includes sources of a Debian package) are left
out."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def c_sources() -> list[str]:
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "*.c", "*.h"],
                            capture_output=True, text=True, check=True).stdout.split()
    return [f for f in listed if "/stand-ins/" not in f and not f.startswith("targets/everest/")]


def test_c_sources_are_formatted_as_clang_format_says() -> None:
    tool = shutil.which("clang-format")
    if tool is None:
        pytest.skip("clang-format is not installed (tools/install-deps.sh installs it)")
    files = c_sources()
    assert len(files) > 50
    result = subprocess.run([tool, "--dry-run", "--Werror", *files], cwd=ROOT, capture_output=True, text=True)
    unformatted = sorted({line.split(":", 1)[0] for line in result.stderr.splitlines() if ": error:" in line})
    assert result.returncode == 0, f"not formatted (run clang-format -i on them): {unformatted}"
