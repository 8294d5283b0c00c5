"""The device registry: devices and their PSKs, session ownership, the downlink queue (docs/registry.md).

``open_registry(location)`` picks the back end from the location:

* a path (``devices.db``) or ``sqlite:///path``: SQLite, one file created
  with mode 0600;
* ``postgresql://...`` (or ``postgres://...``): PostgreSQL, shared by
  several gateways.

Both apply the schema's migrations on open and behave the same; see
:class:`Registry` for the operations.
"""

from __future__ import annotations

from .base import DEFAULT_MAX_QUEUE, DeviceRecord, QueueFull, Registry, RegistryError, UnknownDevice
from .schema import MIGRATIONS, SCHEMA_VERSION
from .sqlite import SqliteRegistry
from .wrap import WRAP_KEY_ENV, parse_wrap_key, wrap_key_from_environment

DEFAULT_LOCATION = "devices.db"
LOCATION_ENV = "USMP_REGISTRY"

_SQLITE_SCHEME = "sqlite:///"
_POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")


def open_registry(location: str, *, wrap_key: bytes | None = None) -> Registry:
    """Opens (creating and migrating as needed) the registry at ``location``.

    ``wrap_key`` (32 bytes) wraps PSKs at rest with AES-256-GCM; a registry
    that wraps them cannot be opened without its key, nor one that does not
    with a key (:class:`RegistryError`; ``Registry.rewrap`` changes it).
    """
    if location.startswith(_POSTGRESQL_SCHEMES):
        from .postgres import PostgresRegistry

        return PostgresRegistry(location, wrap_key)
    if location.startswith(_SQLITE_SCHEME):
        # sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy spells them.
        location = location[len(_SQLITE_SCHEME) :]
    elif "://" in location:
        raise RegistryError(
            f"registry location {location!r}: use a file path, sqlite:///PATH or postgresql://..."
        )
    if not location:
        raise RegistryError("registry location is empty")
    return SqliteRegistry(location, wrap_key)


__all__ = [
    "DEFAULT_LOCATION",
    "DEFAULT_MAX_QUEUE",
    "LOCATION_ENV",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "WRAP_KEY_ENV",
    "DeviceRecord",
    "QueueFull",
    "Registry",
    "RegistryError",
    "SqliteRegistry",
    "UnknownDevice",
    "open_registry",
    "parse_wrap_key",
    "wrap_key_from_environment",
]
