"""The session key log (USMP_KEYLOG, docs/wireshark.md) exists in host builds only.

It is never compiled for ESP32 (usmp_options.h and the key log's source stop
such a build) nor into the device profile (the same check in usmp_options.h,
and CMake refuses the combination and defaults to OFF there), and a POSIX
host build has it by default.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INCLUDES = ["-I", str(ROOT / "include" / "usmp"), "-I", str(ROOT / "src"), "-I", str(ROOT / "crypto" / "common")]
ENGINE = str(ROOT / "src" / "usmp_engine.c")
KEYLOG = str(ROOT / "ports" / "posix" / "usmp_keylog_posix.c")


def compile_only(source: str, *defines: str) -> subprocess.CompletedProcess[str]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler is not None
    return subprocess.run([compiler, "-std=c99", "-fsyntax-only", *INCLUDES, *defines, source],
                          capture_output=True, text=True, timeout=120)


def test_host_build_compiles_the_key_log() -> None:
    """The control for the two refusals below: the same command without them compiles."""
    assert compile_only(ENGINE, "-DUSMP_KEYLOG=1").returncode == 0
    assert compile_only(KEYLOG, "-DUSMP_KEYLOG=1").returncode == 0


def test_an_esp32_build_with_the_key_log_fails() -> None:
    for source in (ENGINE, KEYLOG):
        result = compile_only(source, "-DESP_PLATFORM", "-DUSMP_KEYLOG=1")
        assert result.returncode != 0 and "never compiled for ESP32" in result.stderr, result.stderr


def test_a_device_profile_build_with_the_key_log_fails() -> None:
    result = compile_only(ENGINE, "-DUSMP_SERVER=0", "-DUSMP_DATAGRAM=0", "-DUSMP_KEYLOG=1")
    assert result.returncode != 0 and "never compiled into the device profile" in result.stderr, result.stderr


def test_the_esp32_component_lists_no_key_log_source() -> None:
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    esp32_block = text[text.index("if(ESP_PLATFORM)"):text.index("project(usmp")]
    assert "keylog" not in esp32_block.lower()
    for path in (ROOT / "ports" / "esp32").rglob("*"):
        if path.is_file():
            assert "KEYLOG" not in path.read_text(encoding="utf-8", errors="replace").upper(), path


def configure(build: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DUSMP_BUILD_TESTS=OFF", *options],
                          capture_output=True, text=True, timeout=300)


def cached(build: Path, name: str) -> str:
    match = re.search(rf"^{name}:BOOL=(\w+)$", (build / "CMakeCache.txt").read_text(), re.MULTILINE)
    assert match is not None
    return match.group(1)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found")
def test_cmake_defaults_on_for_the_host_and_off_for_the_device_profile(tmp_path: Path) -> None:
    assert configure(tmp_path / "host").returncode == 0
    assert cached(tmp_path / "host", "USMP_KEYLOG") == "ON"
    device = ("-DUSMP_SERVER=OFF", "-DUSMP_DATAGRAM=OFF")
    assert configure(tmp_path / "device", *device).returncode == 0
    assert cached(tmp_path / "device", "USMP_KEYLOG") == "OFF"
    refused = configure(tmp_path / "refused", *device, "-DUSMP_KEYLOG=ON")
    assert refused.returncode != 0 and "never compiled into the device profile" in refused.stderr


def test_usmp_keylog_is_off_in_the_options_header_by_default() -> None:
    """Builds that do not go through CMake (cross builds, footprint) get no key log."""
    header = (ROOT / "include" / "usmp" / "usmp_options.h").read_text(encoding="utf-8")
    assert re.search(r"#ifndef USMP_KEYLOG\n#define USMP_KEYLOG 0\n#endif", header)
    assert os.path.basename(KEYLOG) not in (ROOT / "cmake" / "usmp_sources.cmake").read_text(encoding="utf-8")
