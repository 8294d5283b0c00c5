"""Pre-shared keys and device ids: validation, the server's key lookup, and PSK files.

A PSK is 16 to 64 bytes of high-entropy randomness (spec section 3 and
security.md section 3); anything shorter is refused here, at configuration
time. Nothing in this module logs a key.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Union

from .errors import ConfigurationError
from .wire import DEVICE_ID_BYTES, MAX_PSK_BYTES, MIN_PSK_BYTES

log = logging.getLogger("usmp.psk")

PskLookup = Callable[[bytes], Union[bytes, None, Awaitable[Union[bytes, None]]]]
PskSource = Union[bytes, Mapping[bytes, bytes], Mapping[str, bytes], PskLookup]

_HEX_DEVICE_ID = re.compile(r"^[0-9a-fA-F]{12}$")


def check_psk(psk: object, what: str = "PSK") -> bytes:
    """Return ``psk`` as bytes, or raise :class:`ConfigurationError` if it is not 16 to 64 bytes."""
    if not isinstance(psk, (bytes, bytearray, memoryview)):
        raise ConfigurationError(f"{what} must be bytes, not {type(psk).__name__}")
    key = bytes(psk)
    if not MIN_PSK_BYTES <= len(key) <= MAX_PSK_BYTES:
        raise ConfigurationError(
            f"{what} is {len(key)} bytes; a USMP PSK must be {MIN_PSK_BYTES} to {MAX_PSK_BYTES} random bytes "
            "(generate one with `usmp keygen`)"
        )
    return key


def parse_device_id(value: object) -> bytes:
    """A device id from 6 bytes or 12 hex digits (colons allowed: ``de:ad:be:ef:00:01``)."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) != DEVICE_ID_BYTES:
            raise ConfigurationError(f"a device id is {DEVICE_ID_BYTES} bytes, got {len(value)}")
        return bytes(value)
    if isinstance(value, str):
        digits = value.replace(":", "")
        if not _HEX_DEVICE_ID.match(digits):
            raise ConfigurationError(f"a device id is 12 hex digits (colons allowed), got {value!r}")
        return bytes.fromhex(digits)
    raise ConfigurationError(f"a device id is bytes or a hex string, not {type(value).__name__}")


def parse_hex_psk(text: str, what: str = "PSK") -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigurationError(f"{what} is not valid hex") from None
    return check_psk(key, what)


def load_psk_file(path: str) -> dict[bytes, bytes]:
    """Read lines ``device_id_hex psk_hex``; ``#`` starts a comment. Errors name the line."""
    table: dict[bytes, bytes] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError as error:
        raise ConfigurationError(f"cannot read PSK file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path}: not a text file") from None
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        where = f"{path}, line {number}"
        if len(fields) != 2:
            raise ConfigurationError(f"{where}: expected 'device_id_hex psk_hex', got {len(fields)} fields")
        try:
            device_id = parse_device_id(fields[0])
        except ConfigurationError as error:
            raise ConfigurationError(f"{where}: {error.message}") from None
        if device_id in table:
            raise ConfigurationError(f"{where}: device id {device_id.hex()} appears twice")
        table[device_id] = parse_hex_psk(fields[1], f"{where}: the PSK")
    if not table:
        raise ConfigurationError(f"{path}: no device in the file")
    return table


class PskResolver:
    """The server's PSK lookup for any of the accepted ``psk`` forms.

    * ``bytes``: one key for every device;
    * a mapping ``device_id -> key`` (ids as 6 bytes or 12 hex digits), every
      entry checked here, at construction;
    * a callable ``(device_id: bytes) -> key | None``, sync or async; its
      result is checked when it returns.

    ``None`` from :meth:`resolve` means "unknown device": the engine then
    uses a random stand-in key (spec 4.5 step 6).
    """

    def __init__(self, source: PskSource) -> None:
        self._single: bytes | None = None
        self._table: dict[bytes, bytes] | None = None
        self._lookup: PskLookup | None = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._single = check_psk(source)
        elif isinstance(source, Mapping):
            self._table = {}
            for raw_id, key in source.items():
                device_id = parse_device_id(raw_id)
                self._table[device_id] = check_psk(key, f"the PSK of device {device_id.hex()}")
            if not self._table:
                raise ConfigurationError("the PSK mapping is empty")
        elif callable(source):
            self._lookup = source
        else:
            raise ConfigurationError("psk must be bytes, a mapping of device id to key, or a callable")

    async def resolve(self, device_id: bytes) -> bytes | None:
        if self._single is not None:
            return self._single
        if self._table is not None:
            return self._table.get(device_id)
        assert self._lookup is not None
        result = self._lookup(device_id)
        if inspect.isawaitable(result):
            result = await result
        if result is None:
            return None
        return check_psk(result, f"the PSK returned for device {device_id.hex()}")
