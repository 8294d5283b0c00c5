"""The `usmp` command, run as `python3 -m usmp` in a subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")


def usmp(*args: str, env: dict[str, str] | None = None, stdin: str = "", timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "usmp", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_env(env),
        timeout=timeout,
    )


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=SRC)
    env.update(extra or {})
    return env


# --- keygen ---------------------------------------------------------------------------------------


def test_keygen_prints_a_fresh_32_byte_hex_key_by_default() -> None:
    first, second = usmp("keygen"), usmp("keygen")
    assert first.returncode == 0 and second.returncode == 0
    assert re.fullmatch(r"[0-9a-f]{64}\n", first.stdout)
    assert first.stdout != second.stdout


def test_keygen_bytes_option_and_its_bounds() -> None:
    result = usmp("keygen", "--bytes", "16")
    assert result.returncode == 0 and re.fullmatch(r"[0-9a-f]{32}\n", result.stdout)
    for bad in ("15", "65"):
        refused = usmp("keygen", "--bytes", bad)
        assert refused.returncode == 2 and refused.stdout == ""
        assert "--bytes must be 16 to 64" in refused.stderr


# --- serve: configuration errors ------------------------------------------------------------------


def test_serve_refuses_to_start_without_a_psk() -> None:
    result = usmp("serve", "--port", "0")
    assert result.returncode == 2
    assert "no PSK" in result.stderr and "--psk-file" in result.stderr and "--psk-env" in result.stderr
    assert "listening" not in result.stdout


def test_serve_names_the_bad_line_of_a_psk_file(tmp_path: Path) -> None:
    psk_file = tmp_path / "keys"
    psk_file.write_text(
        "# device keys\n"
        "deadbeef0001 " + "11" * 32 + "\n"
        "\n"
        "deadbeef0002 " + "22" * 8 + "   # too short\n"
    )
    result = usmp("serve", "--port", "0", "--psk-file", str(psk_file))
    assert result.returncode == 2
    assert f"{psk_file}, line 4" in result.stderr and "8 bytes" in result.stderr


@pytest.mark.parametrize(
    "line, message",
    [
        ("deadbeef0001", "expected 'device_id_hex psk_hex'"),
        ("nothex000001 " + "11" * 32, "12 hex digits"),
        ("deadbeef0001 xyz", "not valid hex"),
    ],
)
def test_serve_psk_file_errors_exit_2(tmp_path: Path, line: str, message: str) -> None:
    psk_file = tmp_path / "keys"
    psk_file.write_text(line + "\n")
    result = usmp("serve", "--port", "0", "--psk-file", str(psk_file))
    assert result.returncode == 2 and "line 1" in result.stderr and message in result.stderr


def test_serve_psk_env_must_be_set_and_valid() -> None:
    missing = usmp("serve", "--port", "0", "--psk-env", "USMP_TEST_NO_SUCH_VAR")
    assert missing.returncode == 2 and "USMP_TEST_NO_SUCH_VAR is not set" in missing.stderr
    short = usmp("serve", "--port", "0", "--psk-env", "KEY", env={"KEY": "00" * 15})
    assert short.returncode == 2 and "15 bytes" in short.stderr


def test_help_documents_the_commands_and_exit_codes() -> None:
    result = usmp("--help")
    assert result.returncode == 0
    for word in ("serve", "connect", "keygen", "Exit codes"):
        assert word in result.stdout
    assert usmp("serve", "--help").returncode == 0


# --- serve + connect ----------------------------------------------------------------------------------


def test_serve_and_connect_round_trip(tmp_path: Path) -> None:
    key = "5a" * 32
    psk_file = tmp_path / "keys"
    psk_file.write_text(f"deadbeef0001 {key}\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "usmp", "serve", "--host", "127.0.0.1", "--port", "0", "--psk-file", str(psk_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert server.stdout is not None
        status = server.stdout.readline()
        match = re.match(r"listening on 127\.0\.0\.1:(\d+) \(echo mode, 1 device\(s\) from ", status)
        assert match, status
        address = f"127.0.0.1:{match.group(1)}"
        result = usmp(
            "connect", address, "--device-id", "de:ad:be:ef:00:01", "--psk-env", "KEY", "--linger", "0.3",
            env={"KEY": key},
            stdin="hello\nworld\n",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "hello\nworld\n"
        assert "connected to 127.0.0.1" in result.stderr

        wrong = usmp("connect", address, "--device-id", "deadbeef0001", "--psk-env", "KEY", env={"KEY": "00" * 32})
        assert wrong.returncode == 1 and "AUTH_FAILED" in wrong.stderr

        opened = server.stdout.readline()
        closed = server.stdout.readline()
        assert re.match(r"open [0-9a-f]{16} device deadbeef0001 from 127\.0\.0\.1:\d+$", opened), opened
        assert re.match(r"close [0-9a-f]{16}: BYE from the device \(NONE\)$", closed), closed
        server.send_signal(signal.SIGINT)
        remaining, errors = server.communicate(timeout=10)
        assert server.returncode == 0, errors
        assert "stopping" in remaining
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_connect_argument_errors_exit_2() -> None:
    bad_address = usmp("connect", "nowhere", "--device-id", "deadbeef0001", "--psk-env", "KEY", env={"KEY": "00" * 32})
    assert bad_address.returncode == 2 and "HOST:PORT" in bad_address.stderr
    no_psk = usmp("connect", "127.0.0.1:9", "--device-id", "deadbeef0001")
    assert no_psk.returncode == 2 and "no PSK" in no_psk.stderr
    bad_id = usmp("connect", "127.0.0.1:9", "--device-id", "xyz", "--psk-env", "KEY", env={"KEY": "00" * 32})
    assert bad_id.returncode == 2 and "12 hex digits" in bad_id.stderr


def test_connect_to_nothing_is_a_runtime_failure() -> None:
    result = usmp("connect", "127.0.0.1:9", "--device-id", "deadbeef0001", "--psk-env", "KEY", env={"KEY": "00" * 32})
    assert result.returncode == 1 and "could not connect" in result.stderr
