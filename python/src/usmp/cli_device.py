"""``usmp device``: add, list, revoke, rotate, import and rewrap devices of a registry (docs/registry.md).

Conventions:
* The registry is ``--registry LOCATION``, else ``$USMP_REGISTRY``, else
  ``devices.db`` in the current directory; ``$USMP_REGISTRY_WRAP_KEY``
  (64 hex digits) wraps PSKs at rest.
* A PSK is printed once, on stdout, alone on its line (as ``usmp keygen``
  prints one), by ``add`` and ``rotate`` only; messages go to stderr.
* Exit codes as for every ``usmp`` command: 0 success, 1 the registry
  refused (unknown device, already registered, unreadable database...),
  2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from .errors import ConfigurationError
from .psk import parse_device_id
from .registry import (
    DEFAULT_LOCATION,
    LOCATION_ENV,
    WRAP_KEY_ENV,
    Registry,
    RegistryError,
    open_registry,
    parse_wrap_key,
    wrap_key_from_environment,
)

EXIT_OK = 0
EXIT_FAILURE = 1

# What the ESP32 example reads (examples/esp32_echo/main/main.c,
# PSK_NVS_NAMESPACE and PSK_NVS_KEY): a blob, written with hex2bin.
NVS_NAMESPACE = "usmp"
NVS_PSK_KEY = "psk"


def add_device_commands(commands: Any) -> None:
    """Adds ``device`` and its subcommands to the ``usmp`` parser's subcommands."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--registry",
        metavar="LOCATION",
        help=f"a file (SQLite), sqlite:///PATH or postgresql://... (default: ${LOCATION_ENV}, else {DEFAULT_LOCATION})",
    )
    device = commands.add_parser(
        "device",
        help="add, list, revoke, rotate or import devices in a registry",
        description="Manage the device registry a gateway reads its devices and PSKs from. "
        f"{WRAP_KEY_ENV} (64 hex digits), if set, wraps the PSKs at rest (docs/registry.md).",
    )
    actions = device.add_subparsers(dest="device_command", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add",
        parents=[where],
        help="register a device with a fresh PSK and print the PSK once",
        description="Register a device with a fresh 32-byte PSK from the OS CSPRNG. The PSK is printed "
        "once on stdout (64 hex digits); the registry never shows it again.",
    )
    add.add_argument("--id", required=True, dest="device_id", help="12 hex digits, colons allowed")
    add.add_argument("--label", help="a name to show in `usmp device list`")
    _add_nvs_option(add)
    add.set_defaults(run=_add)

    listing = actions.add_parser(
        "list",
        parents=[where],
        help="show every device (never a PSK)",
        description="One line per device: id, label, created, last seen (UTC), online (and the gateway "
        "holding its session), revoked.",
    )
    listing.set_defaults(run=_list)

    revoke = actions.add_parser(
        "revoke",
        parents=[where],
        help="stop a device's PSK from working, at once",
        description="Revoke a device: its PSK is erased and refused from now on; a gateway holding its "
        "session closes it within seconds.",
    )
    revoke.add_argument("device_id", metavar="ID", help="12 hex digits, colons allowed")
    revoke.set_defaults(run=_revoke)

    rotate = actions.add_parser(
        "rotate",
        parents=[where],
        help="give a device a new PSK (printed once); the old one stops working",
        description="Replace a device's PSK with a fresh one, printed once on stdout. The old PSK stops "
        "working at once; a gateway holding the device's session closes it within seconds.",
    )
    rotate.add_argument("device_id", metavar="ID", help="12 hex digits, colons allowed")
    _add_nvs_option(rotate)
    rotate.set_defaults(run=_rotate)

    importing = actions.add_parser(
        "import",
        parents=[where],
        help="add the devices of a PSK file ('device_id_hex psk_hex' lines)",
        description="Add every device of a PSK file as `usmp serve --psk-file` reads it. Devices already "
        "registered with the same PSK are left alone; one registered with another PSK stops the import, "
        "which then adds nothing.",
    )
    importing.add_argument("file", metavar="FILE")
    importing.set_defaults(run=_import)

    rewrap = actions.add_parser(
        "rewrap",
        parents=[where],
        help="wrap the stored PSKs under a new key, or unwrap them",
        description=f"Store every PSK again: wrapped under the key in the environment variable named by "
        f"--new-key-env (turning wrapping on, or changing the wrap key), or unwrapped (--plain). The current "
        f"key, if any, comes from {WRAP_KEY_ENV} as for every action. Stop the gateways first and start them "
        "with the new key after: a gateway on the old key fails every handshake.",
    )
    target = rewrap.add_mutually_exclusive_group(required=True)
    target.add_argument("--new-key-env", metavar="VAR", help="name of a variable holding the new key (64 hex digits)")
    target.add_argument("--plain", action="store_true", help="store the PSKs unwrapped")
    rewrap.set_defaults(run=_rewrap)


def _add_nvs_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nvs-csv",
        metavar="FILE",
        help=f"also write the PSK as a CSV for ESP-IDF's nvs_partition_gen.py (namespace {NVS_NAMESPACE!r}, "
        f"key {NVS_PSK_KEY!r}); created mode 0600, never overwritten",
    )


def nvs_csv(psk: bytes) -> str:
    """The NVS partition generator's CSV (key,type,encoding,value) holding ``psk`` as a blob."""
    return f"key,type,encoding,value\n{NVS_NAMESPACE},namespace,,\n{NVS_PSK_KEY},data,hex2bin,{psk.hex()}\n"


def _open(args: argparse.Namespace) -> Registry:
    location = args.registry or os.environ.get(LOCATION_ENV) or DEFAULT_LOCATION
    try:
        wrap_key = wrap_key_from_environment()
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    return open_registry(location, wrap_key=wrap_key)


def _reserve(path: str | None) -> int | None:
    """Creates the CSV file before the registry changes, so that a bad path changes nothing."""
    if path is None:
        return None
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigurationError(f"{path} exists: the CSV holds a PSK and is never overwritten") from None
    except OSError as error:
        raise ConfigurationError(f"cannot create {path}: {error.strerror}") from None


def _with_csv(args: argparse.Namespace, change: Any) -> int:
    """Runs ``change(registry) -> (psk, message)``; prints the PSK and writes --nvs-csv."""
    fd = _reserve(args.nvs_csv)
    try:
        with _open(args) as registry:
            psk, message = change(registry)
    except BaseException:
        if fd is not None:
            os.close(fd)
            os.unlink(args.nvs_csv)
        raise
    if fd is not None:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(nvs_csv(psk))
        message += f"; NVS CSV in {args.nvs_csv} (delete it once flashed)"
    print(psk.hex(), flush=True)
    print(message, file=sys.stderr)
    return EXIT_OK


def _add(args: argparse.Namespace) -> int:
    device_id = parse_device_id(args.device_id)

    def change(registry: Registry) -> tuple[bytes, str]:
        psk = registry.add_device(device_id, args.label)
        return psk, f"device {device_id.hex()} added to {registry.location}; its PSK is above, shown once"

    return _with_csv(args, change)


def _rotate(args: argparse.Namespace) -> int:
    device_id = parse_device_id(args.device_id)

    def change(registry: Registry) -> tuple[bytes, str]:
        psk = registry.rotate(device_id)
        return psk, f"device {device_id.hex()} has a new PSK (above, shown once); the old one no longer works"

    return _with_csv(args, change)


def _revoke(args: argparse.Namespace) -> int:
    device_id = parse_device_id(args.device_id)
    with _open(args) as registry:
        registry.revoke(device_id)
    print(f"device {device_id.hex()} revoked", file=sys.stderr)
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    with _open(args) as registry:
        added = registry.import_psk_file(args.file)
    print(f"{added} device(s) added from {args.file}", file=sys.stderr)
    return EXIT_OK


def _rewrap(args: argparse.Namespace) -> int:
    new_key = None
    if args.new_key_env:
        text = os.environ.get(args.new_key_env)
        if not text:
            raise ConfigurationError(f"environment variable {args.new_key_env} is not set")
        try:
            new_key = parse_wrap_key(text)
        except ValueError as error:
            raise ConfigurationError(str(error).replace(WRAP_KEY_ENV, args.new_key_env)) from None
    with _open(args) as registry:
        count = registry.rewrap(new_key)
    how = f"wrapped under the key in ${args.new_key_env}" if new_key is not None else "unwrapped"
    print(f"{count} PSK(s) of {registry.location} now {how}; set {WRAP_KEY_ENV} accordingly", file=sys.stderr)
    return EXIT_OK


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(timestamp))


def _printable(label: str | None) -> str:
    """A label as one line of plain text: no terminal escapes or line breaks from the database."""
    if not label:
        return "-"
    return label if label.isprintable() else repr(label)


def _list(args: argparse.Namespace) -> int:
    with _open(args) as registry:
        records = registry.list_devices()
    rows = [("ID", "LABEL", "CREATED", "LAST SEEN", "ONLINE", "REVOKED")]
    for r in records:
        online = f"yes ({r.gateway})" if r.online else "no"
        revoked = "yes" if r.revoked else "no"
        rows.append((r.device_id.hex(), _printable(r.label), _when(r.created), _when(r.last_seen), online, revoked))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Runs the chosen ``usmp device`` action; a registry's refusal is one line on stderr, exit 1."""
    try:
        return int(args.run(args))
    except RegistryError as error:
        print(f"usmp device {args.device_command}: {error}", file=sys.stderr)
        return EXIT_FAILURE
