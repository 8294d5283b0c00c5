"""`usmp gateway` as a command: usage errors, the snapshot on SIGUSR1, the metrics endpoint, SIGTERM."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from gateway_harness import GatewayProcess, Mosquitto, free_port, wait_until

from usmp.cli import main


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--mqtt", "mqtt://gateway:secret@127.0.0.1"], "no password in the broker URL"),
        (["--mqtt", "http://127.0.0.1"], "expected mqtt://"),
        (["--mqtt", "mqtt://127.0.0.1", "--listen", "127.0.0.1:9000"], "--listen wants"),
        (["--mqtt", "mqtt://127.0.0.1", "--metrics", "9100"], "--metrics wants HOST:PORT"),
        (["--mqtt", "mqtt://127.0.0.1", "--mqtt-ca", "ca.crt"], "need an mqtts:// broker URL"),
        (["--mqtt", "mqtt://127.0.0.1", "--name", "a/b"], "bad gateway name"),
        (["--mqtt", "mqtt://127.0.0.1", "--mqtt-password-env", "USMP_TEST_NOT_SET"], "is not set"),
    ],
)
def test_usage_errors_exit_2_with_one_line(arguments: list[str], message: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gateway", "--registry", str(tmp_path / "devices.db"), *arguments]) == 2
    errors = capsys.readouterr().err
    assert message in errors and errors.count("\n") == 1, errors
    assert not (tmp_path / "devices.db").exists()  # refused before anything was opened


def test_snapshot_on_sigusr1_metrics_and_a_clean_stop(tmp_path: Path, broker: Mosquitto,
                                                      sqlite_registry: str) -> None:
    snapshot = tmp_path / "snapshot.json"
    metrics_port = free_port()
    gateway = GatewayProcess("cli-gw", sqlite_registry, broker, tmp_path,
                             ["--snapshot-file", str(snapshot), "--metrics", f"127.0.0.1:{metrics_port}"]).start()
    try:
        assert gateway.proc is not None
        gateway.proc.send_signal(signal.SIGUSR1)
        wait_until(snapshot.exists, 10, "the snapshot file")
        state = json.loads(snapshot.read_text())
        assert state["gateway"] == "cli-gw" and state["sessions"] == []
        assert state["listeners"] == ["tcp://127.0.0.1:0"]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        assert "usmp_gateway_sessions_open 0.0" in text
        deadline = time.monotonic() + 10
        while "usmp_gateway_mqtt_connected 1.0" not in text and time.monotonic() < deadline:
            time.sleep(0.1)
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
                text = response.read().decode()
        assert "usmp_gateway_mqtt_connected 1.0" in text
        gateway.proc.terminate()
        out, _ = gateway.proc.communicate(timeout=15)
        assert gateway.proc.returncode == 0
        assert "stopping" in out
    finally:
        gateway.stop()
