"""The gateway's read-only admin endpoint: its snapshot as JSON on a local Unix socket (``usmp monitor``).

Conventions:

- One request per connection: the server writes the snapshot (one JSON
  object and a newline) as soon as a client connects, then closes. What a
  client sends is read and dropped, never parsed, so a client cannot
  change any state through it.
- The socket file is created with mode 0600 (owner only): the snapshot
  names every connected device. It is bound under a temporary name,
  chmod'ed, then renamed into place, so it is never reachable with a wider
  mode, whatever the umask. A stale socket (nothing accepts on it) is
  replaced; a live one or any other file is an error, never overwritten.
- Local only by construction (AF_UNIX): no network listener, so no token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
from collections.abc import Callable
from typing import Any

from .errors import ConfigurationError

log = logging.getLogger("usmp.admin")

SOCKET_MODE = 0o600
DRAIN_SECONDS = 1.0
# A snapshot of a gateway at its session limit is well below this; the
# client refuses more, so a wrong socket cannot make it read forever.
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024


def _remove_stale(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigurationError(f"--admin {path}: exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # left by a process that is gone
        return
    finally:
        probe.close()
    raise ConfigurationError(f"--admin {path}: another process is serving on it")


class AdminServer:
    """Serves ``snapshot()`` as JSON to each client of the Unix socket ``path``."""

    def __init__(self, path: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self._snapshot = snapshot
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        _remove_stale(self.path)
        temporary = f"{self.path}.{os.getpid()}.tmp"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if os.path.lexists(temporary):
                os.unlink(temporary)
            sock.bind(temporary)
            os.chmod(temporary, SOCKET_MODE)
            os.rename(temporary, self.path)
        except OSError:
            sock.close()
            if os.path.lexists(temporary):
                os.unlink(temporary)
            raise
        self._server = await asyncio.start_unix_server(self._serve, sock=sock)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(json.dumps(self._snapshot(), separators=(",", ":")).encode() + b"\n")
            await writer.drain()
            writer.write_eof()
            # Whatever the client sent is read and dropped (never parsed), until it
            # closes or for DRAIN_SECONDS at most: closing with unread input would
            # reset the connection and could lose the answer on the client's side.
            await asyncio.wait_for(self._discard(reader), DRAIN_SECONDS)
        except (ConnectionError, OSError, asyncio.TimeoutError):
            pass  # the client left first or lingered: nothing to report
        except Exception:  # a snapshot that cannot be made must not end the gateway
            log.exception("admin socket %s: cannot serve the snapshot", self.path)
        finally:
            writer.close()

    @staticmethod
    async def _discard(reader: asyncio.StreamReader) -> None:
        while await reader.read(4096):
            pass

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def read_snapshot(path: str, timeout: float = 5.0) -> dict[str, Any]:
    """Connect to the admin socket ``path`` and return the snapshot it sends."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_SNAPSHOT_BYTES:
                raise ValueError(f"{path}: answer longer than {MAX_SNAPSHOT_BYTES} bytes")
            chunks.append(chunk)
    value = json.loads(b"".join(chunks))
    if not isinstance(value, dict):
        raise ValueError(f"{path}: the answer is not a JSON object")
    return value
