"""``usmp gateway --ota``: a job pushed to the registry updates the C device ``usmp_device --ota-dir``
through the gateway, and each change of the job is published on ``usmp/<id>/ota`` (spec/ota.md 6)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway_harness import GatewayProcess, Mosquitto, MqttWatcher, wait_until  # noqa: E402
from interop_harness import CBuild, sanitizer_env  # noqa: E402

from usmp import ota  # noqa: E402
from usmp.ota_jobs import CONFIRMED, new_job  # noqa: E402
from usmp.registry import open_registry  # noqa: E402
from usmp.registry.ota import RegistryJobStore  # noqa: E402

DEVICE = bytes.fromhex("020000000001")
OTA_TOPIC = f"usmp/{DEVICE.hex()}/ota"
KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"usmp gateway ota test key").digest())


def test_gateway_runs_a_registry_job_and_publishes_its_progress(
    c_build: CBuild, broker: Mosquitto, sqlite_registry: str, tmp_path: Path
) -> None:
    device_program = c_build.program("device")
    registry = open_registry(sqlite_registry)
    psk = registry.add_device(DEVICE, label="ota")
    image = os.urandom(200_000)
    manifest = ota.sign_manifest(KEY, image, 8, ota.hardware_id_from_text("usmp-posix"))
    signed = ota.SignedImage(manifest=manifest, image=image)
    path = tmp_path / "app.signed"
    path.write_bytes(signed.encode())
    store = RegistryJobStore(registry)
    job = store.add_job(new_job(DEVICE, str(path), signed))
    watcher = MqttWatcher(broker.port, [OTA_TOPIC]).start()
    gateway = GatewayProcess("gw-ota", sqlite_registry, broker, tmp_path, extra=["--ota"]).start()
    device = subprocess.Popen(
        [str(device_program), "--psk-env", "OTA_PSK", "--device-id", DEVICE.hex(), "--port", str(gateway.port),
         "--ota-dir", str(tmp_path / "state"), "--ota-pubkey", ota.public_key_bytes(KEY).hex(),
         "--hardware-id", "usmp-posix", "--fw-version", "7", "--ota-retry-ms", "200"],
        env=dict(sanitizer_env(), OTA_PSK=psk.hex()), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_until(lambda: any(json.loads(p)["state"] == CONFIRMED for p in watcher.on(OTA_TOPIC)), 120,
                   "the confirmed job on the OTA topic")
        states = [json.loads(p)["state"] for p in watcher.on(OTA_TOPIC)]
        assert states[0] == "transferring" and "activated" in states, states
        final = json.loads(watcher.on(OTA_TOPIC)[-1])
        assert final == {**final, "job": job.job_id, "device": DEVICE.hex(), "firmware_version": 8,
                         "offset": len(image), "size": len(image), "percent": 100.0}
        assert store.list_jobs()[0].state == CONFIRMED
        assert (tmp_path / "state" / "boot").read_text() == "slot b\nversion 8\n"
        assert (tmp_path / "state" / "slot-b.bin").read_bytes()[: len(image)] == image
    finally:
        device.kill()
        _, errors = device.communicate(timeout=10)
        gateway.stop()
        watcher.stop()
        registry.close()
    for marker in ("AddressSanitizer", "UndefinedBehaviorSanitizer", "runtime error:"):
        assert marker not in errors, errors[-3000:]
