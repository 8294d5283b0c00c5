"""`usmp device` (add, list, revoke, rotate, import), run as `python3 -m usmp` in a subprocess."""

from __future__ import annotations

import csv
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pg_cluster import PostgresCluster

from usmp.registry import open_registry

SRC = str(Path(__file__).resolve().parents[1] / "src")
REPO = Path(__file__).resolve().parents[2]
DEVICE = bytes.fromhex("deadbeef0001")
WRAP_KEY_HEX = "42" * 32


def usmp(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("USMP_REGISTRY")}
    full_env.update(PYTHONPATH=SRC, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "usmp", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=30
    )


def test_device_add_prints_the_psk_once_and_stores_it(tmp_path: Path) -> None:
    result = usmp("device", "add", "--id", "de:ad:be:ef:00:01", "--label", "kitchen", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"[0-9a-f]{64}\n", result.stdout)
    assert "deadbeef0001 added to devices.db" in result.stderr and result.stdout.strip() not in result.stderr
    path = tmp_path / "devices.db"  # the default location, in the current directory
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with open_registry(str(path)) as registry:
        assert registry.psk_for(DEVICE) == bytes.fromhex(result.stdout)
    again = usmp("device", "add", "--id", "deadbeef0001", cwd=tmp_path)
    assert again.returncode == 1 and again.stdout == ""
    assert "usmp device add: device deadbeef0001 is already registered" in again.stderr


def test_device_add_refuses_a_bad_id_with_a_usage_error(tmp_path: Path) -> None:
    result = usmp("device", "add", "--id", "12", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "12 hex digits" in result.stderr


def _esp32_example_nvs_names() -> tuple[str, str]:
    source = (REPO / "examples/esp32_echo/main/main.c").read_text()
    namespace = re.search(r'#define PSK_NVS_NAMESPACE\s+"([^"]+)"', source)
    key = re.search(r'#define PSK_NVS_KEY\s+"([^"]+)"', source)
    assert namespace and key, "the ESP32 example names its NVS namespace and key"
    return namespace.group(1), key.group(1)


def test_device_add_nvs_csv_holds_the_psk_under_the_names_the_esp32_example_reads(tmp_path: Path) -> None:
    result = usmp("device", "add", "--id", "deadbeef0001", "--nvs-csv", "nvs_psk.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    csv_path = tmp_path / "nvs_psk.csv"
    assert stat.S_IMODE(csv_path.stat().st_mode) == 0o600
    rows = list(csv.reader(csv_path.read_text().splitlines()))
    namespace, key = _esp32_example_nvs_names()
    # nvs_partition_gen.py: a header, then a namespace row, then entries of that namespace.
    assert rows == [
        ["key", "type", "encoding", "value"],
        [namespace, "namespace", "", ""],
        [key, "data", "hex2bin", result.stdout.strip()],
    ]


def test_device_add_nvs_csv_never_overwrites_a_file_and_then_adds_nothing(tmp_path: Path) -> None:
    (tmp_path / "nvs_psk.csv").write_text("precious\n")
    result = usmp("device", "add", "--id", "deadbeef0001", "--nvs-csv", "nvs_psk.csv", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "nvs_psk.csv exists" in result.stderr
    assert (tmp_path / "nvs_psk.csv").read_text() == "precious\n"
    assert usmp("device", "add", "--id", "deadbeef0001", cwd=tmp_path).returncode == 0  # not registered before


def test_device_add_of_an_existing_device_leaves_no_nvs_csv(tmp_path: Path) -> None:
    assert usmp("device", "add", "--id", "deadbeef0001", cwd=tmp_path).returncode == 0
    result = usmp("device", "add", "--id", "deadbeef0001", "--nvs-csv", "nvs_psk.csv", cwd=tmp_path)
    assert result.returncode == 1 and not (tmp_path / "nvs_psk.csv").exists()


def test_device_list_shows_each_device_and_never_a_psk(tmp_path: Path) -> None:
    first = usmp("device", "add", "--id", "deadbeef0001", "--label", "kitchen", cwd=tmp_path).stdout.strip()
    second = usmp("device", "add", "--id", "deadbeef0002", cwd=tmp_path).stdout.strip()
    assert usmp("device", "revoke", "deadbeef0002", cwd=tmp_path).returncode == 0
    with open_registry(str(tmp_path / "devices.db")) as registry:
        registry.claim_session(DEVICE, "gw-a", b"\x01" * 8)
    result = usmp("device", "list", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header, kitchen, revoked = result.stdout.splitlines()
    assert header.split() == ["ID", "LABEL", "CREATED", "LAST", "SEEN", "ONLINE", "REVOKED"]
    when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"
    assert re.match(rf"deadbeef0001\s+kitchen\s+{when}\s+{when}\s+yes \(gw-a\)\s+no$", kitchen)
    assert re.match(rf"deadbeef0002\s+-\s+{when}\s+-\s+no\s+yes$", revoked)
    for psk in (first, second):
        assert psk not in result.stdout and psk not in result.stderr


def test_device_list_shows_a_label_with_control_characters_as_one_escaped_line(tmp_path: Path) -> None:
    assert usmp("device", "add", "--id", "deadbeef0001", "--label", "evil\x1b[2J\nline", cwd=tmp_path).returncode == 0
    result = usmp("device", "list", cwd=tmp_path)
    assert result.returncode == 0 and "\x1b" not in result.stdout
    assert len(result.stdout.splitlines()) == 2 and "'evil\\x1b[2J\\nline'" in result.stdout


def test_device_rotate_prints_a_new_psk_and_revoke_stops_the_device(tmp_path: Path) -> None:
    old = usmp("device", "add", "--id", "deadbeef0001", cwd=tmp_path).stdout.strip()
    rotated = usmp("device", "rotate", "deadbeef0001", cwd=tmp_path)
    assert rotated.returncode == 0 and re.fullmatch(r"[0-9a-f]{64}\n", rotated.stdout)
    new = rotated.stdout.strip()
    assert new != old
    with open_registry(str(tmp_path / "devices.db")) as registry:
        assert registry.psk_for(DEVICE) == bytes.fromhex(new)
    revoked = usmp("device", "revoke", "deadbeef0001", cwd=tmp_path)
    assert revoked.returncode == 0 and revoked.stdout == "" and "revoked" in revoked.stderr
    with open_registry(str(tmp_path / "devices.db")) as registry:
        assert registry.psk_for(DEVICE) is None
    unknown = usmp("device", "revoke", "deadbeef0009", cwd=tmp_path)
    assert unknown.returncode == 1 and "deadbeef0009 is not registered" in unknown.stderr


def test_device_import_adds_the_devices_of_a_psk_file(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text(f"# old file\ndeadbeef0001 {'11' * 32}\ndeadbeef0002 {'22' * 32}\n")
    result = usmp("device", "import", "keys", cwd=tmp_path)
    assert result.returncode == 0 and "2 device(s) added from keys" in result.stderr
    assert "11" * 32 not in result.stdout + result.stderr
    with open_registry(str(tmp_path / "devices.db")) as registry:
        assert registry.psk_for(DEVICE) == b"\x11" * 32
    (tmp_path / "bad").write_text("deadbeef0003 1234\n")
    bad = usmp("device", "import", "bad", cwd=tmp_path)
    assert bad.returncode == 1 and "bad, line 1" in bad.stderr


def test_device_registry_location_from_option_then_environment(tmp_path: Path) -> None:
    from_env = tmp_path / "from-env.db"
    in_env = {"USMP_REGISTRY": str(from_env)}
    assert usmp("device", "add", "--id", "deadbeef0001", cwd=tmp_path, env=in_env).returncode == 0
    assert usmp("device", "add", "--id", "deadbeef0002", "--registry", "sqlite:///opt.db", cwd=tmp_path).returncode == 0
    assert from_env.exists() and (tmp_path / "opt.db").exists() and not (tmp_path / "devices.db").exists()
    listed = usmp("device", "list", cwd=tmp_path, env={"USMP_REGISTRY": str(from_env)}).stdout
    assert "deadbeef0001" in listed and "deadbeef0002" not in listed


def test_device_commands_with_a_wrap_key_and_without_it(tmp_path: Path) -> None:
    wrapped = {"USMP_REGISTRY_WRAP_KEY": WRAP_KEY_HEX}
    added = usmp("device", "add", "--id", "deadbeef0001", cwd=tmp_path, env=wrapped)
    assert added.returncode == 0, added.stderr
    assert bytes.fromhex(added.stdout.strip()) not in (tmp_path / "devices.db").read_bytes()
    assert usmp("device", "list", cwd=tmp_path, env=wrapped).returncode == 0
    missing = usmp("device", "list", cwd=tmp_path)
    assert missing.returncode == 1 and "set USMP_REGISTRY_WRAP_KEY" in missing.stderr
    bad = usmp("device", "list", cwd=tmp_path, env={"USMP_REGISTRY_WRAP_KEY": "42" * 16})
    assert bad.returncode == 2 and "must be 32 (64 hex digits)" in bad.stderr and "42" * 16 not in bad.stderr


def test_device_rewrap_turns_wrapping_on_and_the_registry_then_needs_the_key(tmp_path: Path) -> None:
    psk = usmp("device", "add", "--id", "deadbeef0001", cwd=tmp_path).stdout.strip()
    unset = usmp("device", "rewrap", "--new-key-env", "NEW_KEY", cwd=tmp_path)
    assert unset.returncode == 2 and "NEW_KEY is not set" in unset.stderr
    result = usmp("device", "rewrap", "--new-key-env", "NEW_KEY", cwd=tmp_path, env={"NEW_KEY": WRAP_KEY_HEX})
    assert result.returncode == 0, result.stderr
    assert "1 PSK(s) of devices.db now wrapped under the key in $NEW_KEY" in result.stderr
    assert WRAP_KEY_HEX not in result.stdout + result.stderr
    assert bytes.fromhex(psk) not in (tmp_path / "devices.db").read_bytes()
    without = usmp("device", "list", cwd=tmp_path)
    assert without.returncode == 1 and "set USMP_REGISTRY_WRAP_KEY" in without.stderr
    with open_registry(str(tmp_path / "devices.db"), wrap_key=bytes.fromhex(WRAP_KEY_HEX)) as registry:
        assert registry.psk_for(DEVICE) == bytes.fromhex(psk)
    plain = usmp("device", "rewrap", "--plain", cwd=tmp_path, env={"USMP_REGISTRY_WRAP_KEY": WRAP_KEY_HEX})
    assert plain.returncode == 0 and usmp("device", "list", cwd=tmp_path).returncode == 0


def test_device_add_and_list_on_postgresql(tmp_path: Path, postgres_cluster: PostgresCluster) -> None:
    url = postgres_cluster.new_database()
    added = usmp("device", "add", "--id", "deadbeef0001", "--label", "pg", "--registry", url, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    listed = usmp("device", "list", cwd=tmp_path, env={"USMP_REGISTRY": url})
    assert re.search(r"^deadbeef0001\s+pg\s", listed.stdout, re.M)
    with open_registry(url) as registry:
        assert registry.psk_for(DEVICE) == bytes.fromhex(added.stdout.strip())
    assert not list(tmp_path.iterdir()), "no SQLite file made on the side"


@pytest.mark.parametrize("action", [["list"], ["revoke"], ["rotate"], ["import"], ["rewrap"]])
def test_device_help_of_every_action(tmp_path: Path, action: list[str]) -> None:
    result = usmp("device", action[0], "--help", cwd=tmp_path)
    assert result.returncode == 0 and "--registry" in result.stdout
