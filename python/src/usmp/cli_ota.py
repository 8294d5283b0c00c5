"""``usmp ota``: signing keys, signed images, pushing jobs and their status (docs/ota.md, spec/ota.md).

``usmp ota keygen``, ``sign``, ``push`` and ``status`` are registered by
:func:`add_ota_commands`; ``usmp serve --ota-jobs FILE`` runs the jobs
through :func:`add_serve_options` and :func:`runner_for_serve`. Exit codes
as for every ``usmp`` command: 0 success, 1 runtime failure, 2 usage or
configuration error (raised here as :class:`OtaUsageError`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from .ota import (
    OtaFormatError,
    SignedImage,
    hardware_id_from_text,
    hardware_id_text,
    public_key_bytes,
    read_signed_image,
    sign_manifest,
)
from .ota_jobs import JobFile, JobStore, JobStoreError, OtaJob, new_job
from .ota_server import DEFAULT_CONCURRENCY, OtaRunner
from .psk import parse_device_id
from .registry import RegistryError, open_registry, wrap_key_from_environment
from .registry.ota import RegistryJobStore

DEFAULT_KEY_FILE = "usmp-ota.key"
DEFAULT_JOB_FILE = "ota-jobs.json"


class OtaUsageError(Exception):
    """A command-line or file problem: reported in one line, exit code 2."""


def add_ota_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ota = commands.add_parser(
        "ota",
        help="firmware updates: signing keys, signed images, jobs",
        description="Signed firmware updates over USMP (spec/ota.md, docs/ota.md): make a signing key, "
        "sign an image, queue it for devices, watch the jobs.",
    )
    sub = ota.add_subparsers(dest="ota_command", metavar="OTA_COMMAND", required=True)

    keygen = sub.add_parser(
        "keygen",
        help="make an Ed25519 signing key; print its public key for the device",
        description="Write a new Ed25519 signing key (PKCS#8 PEM, mode 0600; an existing file is not "
        "overwritten) and print its public key as a C array (for the firmware) and as hex (for NVS or "
        "usmp_device --ota-pubkey). Keep the key off the gateway.",
    )
    keygen.add_argument("--out", default=DEFAULT_KEY_FILE, help="key file to create (default: %(default)s)")

    sign = sub.add_parser(
        "sign",
        help="sign a firmware image: writes manifest || image",
        description="Sign IMAGE for firmware version V: writes the 124-byte manifest (spec/ota.md 2) "
        "followed by the image.",
    )
    sign.add_argument("--key", required=True, help="the signing key (from usmp ota keygen)")
    sign.add_argument("--version", required=True, type=_u32, help="firmware version, an unsigned 32-bit integer")
    sign.add_argument(
        "--hardware-id",
        help="only devices with this hardware id accept it (at most 16 UTF-8 bytes; default: any hardware)",
    )
    sign.add_argument("image", help="the firmware image (app.bin)")
    sign.add_argument("-o", "--output", help="signed file to write (default: IMAGE.signed)")

    push = sub.add_parser(
        "push",
        help="queue a signed image for one or more devices",
        description="Queue SIGNED for each --device: the gateway holding the device's session offers it "
        "when the device reports (spec/ota.md 6). A device's unfinished job is replaced.",
    )
    push.add_argument("--device", action="append", required=True, metavar="ID", help="device id; repeat for several")
    push.add_argument("signed", metavar="SIGNED", help="the signed image (from usmp ota sign)")
    _add_store_options(push)

    status = sub.add_parser(
        "status",
        help="progress per device: state, offset/size, percent, result",
        description="One line per device (its latest job; --all: every job).",
    )
    status.add_argument("--device", action="append", metavar="ID", help="only this device; repeat for several")
    status.add_argument("--all", action="store_true", help="every job, not only each device's latest")
    _add_store_options(status)


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--jobs",
        default=DEFAULT_JOB_FILE,
        metavar="FILE",
        help="the job file that usmp serve --ota-jobs reads (default: %(default)s)",
    )
    where.add_argument(
        "--registry",
        metavar="LOCATION",
        help="the device registry's OTA jobs instead (a file, sqlite:///PATH or postgresql://...; "
        "$USMP_REGISTRY_WRAP_KEY as for usmp device)",
    )


def add_serve_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--ota-jobs",
        metavar="FILE",
        help="run the OTA jobs of this job file (usmp ota push --jobs FILE) for the devices that connect",
    )
    serve.add_argument(
        "--ota-concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="at most N transfers at once; the others wait their turn (default: %(default)s)",
    )


def runner_for_serve(args: argparse.Namespace, status: Callable[[str], None]) -> OtaRunner | None:
    """The OTA runner ``usmp serve`` hooks into its sessions, or None without ``--ota-jobs``."""
    if not args.ota_jobs:
        return None
    if args.ota_concurrency < 1:
        raise OtaUsageError(f"--ota-concurrency must be at least 1, got {args.ota_concurrency}")
    store = JobFile(args.ota_jobs)
    try:
        store.list_jobs()
    except JobStoreError as error:
        raise OtaUsageError(str(error)) from None

    def report(job: OtaJob) -> None:
        status(f"ota {job.device_id.hex()} job {job.job_id}: {_progress(job)}")

    return OtaRunner(store, concurrency=args.ota_concurrency, on_event=report)


def run_ota(args: argparse.Namespace) -> int:
    try:
        if args.ota_command == "keygen":
            return _keygen(args)
        if args.ota_command == "sign":
            return _sign(args)
        if args.ota_command == "push":
            return _push(args)
        return _status(args)
    except (OtaFormatError, JobStoreError) as error:
        raise OtaUsageError(str(error)) from None
    except OSError as error:
        raise OtaUsageError(f"{error.filename}: {error.strerror}") from None


def _u32(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"{value} is not an unsigned 32-bit integer")
    return value


# --- keygen and sign --------------------------------------------------------------------------------


def _keygen(args: argparse.Namespace) -> int:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise OtaUsageError(f"{args.out} exists; not overwriting a signing key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = public_key_bytes(key)
    print(f"wrote the signing key to {args.out} (mode 0600); keep it off the gateway")
    print("public key, C array (the firmware's OTA public key):")
    print("static const uint8_t usmp_ota_public_key[32] = {")
    for row in range(0, 32, 8):
        print("    " + ", ".join(f"0x{b:02x}" for b in public[row : row + 8]) + ",")
    print("};")
    print("public key, hex (NVS, usmp_device --ota-pubkey):")
    print(public.hex())
    return 0


def load_signing_key(path: str) -> Ed25519PrivateKey:
    with open(path, "rb") as f:
        data = f.read()
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise OtaUsageError(f"{path}: not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise OtaUsageError(f"{path}: not an Ed25519 key (usmp ota keygen makes one)")
    return key


def _sign(args: argparse.Namespace) -> int:
    key = load_signing_key(args.key)
    with open(args.image, "rb") as f:
        image = f.read()
    hardware_id = hardware_id_from_text(args.hardware_id) if args.hardware_id else bytes(16)
    manifest = sign_manifest(key, image, args.version, hardware_id)
    output = args.output or args.image + ".signed"
    signed = SignedImage(manifest=manifest, image=image)
    temporary = output + ".tmp"
    with open(temporary, "wb") as f:
        f.write(signed.encode())
    os.replace(temporary, output)
    print(
        f"wrote {output}: version {manifest.firmware_version}, {manifest.image_size} bytes, "
        f"hardware {hardware_id_text(manifest.hardware_id)}, image sha256 {manifest.image_sha256.hex()}, "
        f"manifest digest {manifest.digest().hex()}"
    )
    return 0


# --- push and status --------------------------------------------------------------------------------


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[JobStore]:
    if not args.registry:
        yield JobFile(args.jobs)
        return
    try:
        wrap_key = wrap_key_from_environment()
    except ValueError as error:
        raise OtaUsageError(str(error)) from None
    try:
        registry = open_registry(args.registry, wrap_key=wrap_key)
    except RegistryError as error:
        raise OtaUsageError(str(error)) from None
    try:
        yield RegistryJobStore(registry)
    except RegistryError as error:
        raise OtaUsageError(str(error)) from None
    finally:
        registry.close()


def _device_ids(values: list[str]) -> list[bytes]:
    ids = []
    for value in values:
        try:
            ids.append(parse_device_id(value))
        except Exception as error:
            raise OtaUsageError(f"--device {value!r}: {error}") from None
    return ids


def _push(args: argparse.Namespace) -> int:
    devices = _device_ids(args.device)
    signed = read_signed_image(args.signed)
    with _store(args) as store:
        for device_id in devices:
            job = store.add_job(new_job(device_id, args.signed, signed))
            print(
                f"queued job {job.job_id}: device {device_id.hex()}, version {job.firmware_version}, "
                f"{job.image_size} bytes"
            )
    return 0


def _progress(job: OtaJob) -> str:
    text = f"{job.state} {job.offset}/{job.image_size} ({job.percent:.1f}%)"
    return text + (f" {job.result}" if job.result else "")


def _status(args: argparse.Namespace) -> int:
    wanted = set(_device_ids(args.device)) if args.device else None
    with _store(args) as store:
        jobs = store.list_jobs()
    if wanted is not None:
        jobs = [j for j in jobs if j.device_id in wanted]
    if not args.all:
        latest: dict[bytes, OtaJob] = {}
        for job in jobs:
            if job.device_id not in latest or job.job_id > latest[job.device_id].job_id:
                latest[job.device_id] = job
        jobs = sorted(latest.values(), key=lambda j: j.device_id)
    if not jobs:
        print("no OTA jobs", file=sys.stderr)
        return 0
    print(f"{'device':<12}  {'job':>4}  {'version':>8}  {'state':<12}  {'offset/size':>21}  {'percent':>7}  result")
    for job in jobs:
        print(
            f"{job.device_id.hex():<12}  {job.job_id:>4}  {job.firmware_version:>8}  {job.state:<12}  "
            f"{f'{job.offset}/{job.image_size}':>21}  {job.percent:>6.1f}%  {job.result or '-'}"
        )
    return 0
