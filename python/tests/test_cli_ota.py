"""`usmp ota keygen | sign | push | status` and `usmp serve --ota-jobs`, run as `python3 -m usmp`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key

from usmp import USMPClient, ota
from usmp.ota_jobs import CONFIRMED, JobFile

from ota_testing import DeviceStorage, SessionDevice, SimulatedDevice
from test_cli import _env, usmp

KEY_HEX = "5a" * 32


def keygen(tmp_path: Path) -> tuple[Path, bytes]:
    key_file = tmp_path / "signing.key"
    result = usmp("ota", "keygen", "--out", str(key_file))
    assert result.returncode == 0, result.stderr
    public_hex = result.stdout.strip().splitlines()[-1]
    return key_file, bytes.fromhex(public_hex)


def test_keygen_writes_a_private_key_file_and_prints_its_public_key_twice(tmp_path: Path) -> None:
    key_file, public = keygen(tmp_path)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    key = load_pem_private_key(key_file.read_bytes(), password=None)
    assert ota.public_key_bytes(key) == public  # type: ignore[arg-type]
    printed = usmp("ota", "keygen", "--out", str(tmp_path / "second.key")).stdout
    array = re.search(r"usmp_ota_public_key\[32\] = \{(.*?)\};", printed, re.S)
    assert array is not None
    numbers = bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", array.group(1)))
    assert numbers.hex() == printed.strip().splitlines()[-1]
    again = usmp("ota", "keygen", "--out", str(key_file))
    assert again.returncode == 2 and "not overwriting" in again.stderr
    assert ota.public_key_bytes(load_pem_private_key(key_file.read_bytes(), None)) == public  # type: ignore[arg-type]


def test_sign_writes_manifest_and_image_that_verify_with_the_public_key(tmp_path: Path) -> None:
    key_file, public = keygen(tmp_path)
    image = tmp_path / "app.bin"
    image.write_bytes(os.urandom(5000))
    result = usmp("ota", "sign", "--key", str(key_file), "--version", "0x102", "--hardware-id", "esp32-c3",
                  str(image))
    assert result.returncode == 0, result.stderr
    signed = ota.read_signed_image(str(image) + ".signed")
    assert signed.image == image.read_bytes()
    assert signed.manifest.firmware_version == 0x102
    assert signed.manifest.hardware_id == b"esp32-c3" + bytes(8)
    assert ota.verify_manifest_signature(signed.manifest, public)
    assert signed.manifest.digest().hex() in result.stdout


def test_sign_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    key_file, _ = keygen(tmp_path)
    image = tmp_path / "app.bin"
    image.write_bytes(b"x")
    too_long = usmp("ota", "sign", "--key", str(key_file), "--version", "2", "--hardware-id", "h" * 17, str(image))
    assert too_long.returncode == 2 and "at most 16" in too_long.stderr
    bad_version = usmp("ota", "sign", "--key", str(key_file), "--version", "4294967296", str(image))
    assert bad_version.returncode == 2 and "32-bit" in bad_version.stderr
    not_a_key = usmp("ota", "sign", "--key", str(image), "--version", "2", str(image))
    assert not_a_key.returncode == 2 and "PEM" in not_a_key.stderr
    missing = usmp("ota", "sign", "--key", str(key_file), "--version", "2", str(tmp_path / "nothing.bin"))
    assert missing.returncode == 2 and "nothing.bin" in missing.stderr
    (tmp_path / "empty.bin").write_bytes(b"")
    empty = usmp("ota", "sign", "--key", str(key_file), "--version", "2", str(tmp_path / "empty.bin"))
    assert empty.returncode == 2 and "empty" in empty.stderr


def test_push_queues_for_several_devices_and_status_shows_each(tmp_path: Path) -> None:
    key_file, _ = keygen(tmp_path)
    image = tmp_path / "app.bin"
    image.write_bytes(os.urandom(3000))
    assert usmp("ota", "sign", "--key", str(key_file), "--version", "7", str(image)).returncode == 0
    jobs = tmp_path / "jobs.json"
    pushed = usmp("ota", "push", "--jobs", str(jobs), "--device", "de:ad:be:ef:00:01", "--device", "deadbeef0002",
                  str(image) + ".signed")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.count("queued job") == 2
    shown = usmp("ota", "status", "--jobs", str(jobs))
    lines = shown.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[0].split()[:4] == ["device", "job", "version", "state"]
    assert re.match(r"deadbeef0001\s+1\s+7\s+queued\s+0/3000\s+0\.0%\s+-", lines[1]), lines[1]
    only = usmp("ota", "status", "--jobs", str(jobs), "--device", "deadbeef0002").stdout.strip().splitlines()
    assert len(only) == 2 and only[1].startswith("deadbeef0002")
    corrupt = tmp_path / "corrupt.signed"
    data = bytearray((tmp_path / "app.bin.signed").read_bytes())
    data[-1] ^= 1
    corrupt.write_bytes(bytes(data))
    refused = usmp("ota", "push", "--jobs", str(jobs), "--device", "deadbeef0001", str(corrupt))
    assert refused.returncode == 2 and "SHA-256" in refused.stderr
    assert len(JobFile(str(jobs)).list_jobs()) == 2


def test_serve_with_ota_jobs_updates_a_device_and_status_reports_it_confirmed(tmp_path: Path) -> None:
    key_file, public = keygen(tmp_path)
    image = tmp_path / "app.bin"
    image.write_bytes(os.urandom(40_000))
    assert usmp("ota", "sign", "--key", str(key_file), "--version", "2", "--hardware-id", "board",
                str(image)).returncode == 0
    jobs = tmp_path / "jobs.json"
    assert usmp("ota", "push", "--jobs", str(jobs), "--device", "deadbeef0001",
                str(image) + ".signed").returncode == 0
    psk_file = tmp_path / "keys"
    psk_file.write_text(f"deadbeef0001 {KEY_HEX}\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "usmp", "serve", "--host", "127.0.0.1", "--port", "0", "--psk-file", str(psk_file),
         "--ota-jobs", str(jobs), "--ota-concurrency", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )
    try:
        assert server.stdout is not None
        status = server.stdout.readline()
        match = re.match(r"listening on 127\.0\.0\.1:(\d+) .*OTA jobs from ", status)
        assert match, status
        port = int(match.group(1))
        storage = DeviceStorage(running_version=1)

        async def device_session(wait_for_restart: bool) -> None:
            client = USMPClient("127.0.0.1", port, device_id="deadbeef0001", psk=bytes.fromhex(KEY_HEX))
            await client.connect()
            device = SessionDevice(SimulatedDevice(storage, public, ota.hardware_id_from_text("board")),
                                   client.session, retransmit=0.5)
            await device.start()
            if wait_for_restart:
                await asyncio.wait_for(device.restarted.wait(), 20)
            else:
                for _ in range(100):
                    if JobFile(str(jobs)).list_jobs()[0].state == CONFIRMED:
                        break
                    await asyncio.sleep(0.05)
            await device.stop()
            await client.close()

        asyncio.run(device_session(True))
        assert storage.boot_image == image.read_bytes()
        asyncio.run(device_session(False))
        shown = usmp("ota", "status", "--jobs", str(jobs)).stdout
        assert re.search(r"deadbeef0001\s+1\s+2\s+confirmed\s+40000/40000\s+100\.0%", shown), shown
        server.send_signal(signal.SIGINT)
        remaining, errors = server.communicate(timeout=10)
        assert server.returncode == 0, errors
        assert "ota deadbeef0001 job 1: transferring" in remaining
        assert "ota deadbeef0001 job 1: confirmed" in remaining
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_serve_refuses_a_damaged_job_file(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.json"
    jobs.write_text("{broken")
    psk_file = tmp_path / "keys"
    psk_file.write_text(f"deadbeef0001 {KEY_HEX}\n")
    result = usmp("serve", "--port", "0", "--psk-file", str(psk_file), "--ota-jobs", str(jobs))
    assert result.returncode == 2 and "not a job file" in result.stderr


def test_push_and_status_on_the_registry(tmp_path: Path) -> None:
    key_file, _ = keygen(tmp_path)
    image = tmp_path / "app.bin"
    image.write_bytes(os.urandom(2000))
    assert usmp("ota", "sign", "--key", str(key_file), "--version", "9", str(image)).returncode == 0
    database = str(tmp_path / "devices.db")
    added = usmp("device", "add", "--id", "deadbeef0001", "--registry", database)
    assert added.returncode == 0, added.stderr
    pushed = usmp("ota", "push", "--registry", database, "--device", "deadbeef0001", str(image) + ".signed")
    assert pushed.returncode == 0 and "queued job 1" in pushed.stdout, pushed.stderr
    shown = usmp("ota", "status", "--registry", database).stdout
    assert re.search(r"deadbeef0001\s+1\s+9\s+queued\s+0/2000", shown), shown
    unknown = usmp("ota", "push", "--registry", database, "--device", "deadbeef0002", str(image) + ".signed")
    assert unknown.returncode == 2 and "not registered" in unknown.stderr
    both = usmp("ota", "status", "--registry", database, "--jobs", "x.json")
    assert both.returncode == 2 and "not allowed with" in both.stderr
