"""The opt-in session key log, for decrypting captures (docs/wireshark.md).

DANGEROUS: with ``USMP_KEYLOG_FILE`` set, every session this process
establishes appends its record keys to that file, and whoever reads the
file reads those sessions, in a capture or on the wire. It is meant for a
developer's own bench, never for a gateway in service. Without the variable
nothing is written and nothing changes.

One line per session, the format the Wireshark dissector
(tools/wireshark/usmp.lua) and the C implementation share::

    USMP_SESSION <session_id: 16 hex> <k_c2s: 64 hex> <k_s2c: 64 hex>

Spec 13 forbids keys in logs; this file is not a log but a key export that
exists only when asked for, like TLS's SSLKEYLOGFILE.
"""

from __future__ import annotations

import logging
import os

KEYLOG_ENV = "USMP_KEYLOG_FILE"

_log = logging.getLogger(__name__)


def keylog_line(session_id: bytes, key_c2s: bytes, key_s2c: bytes) -> str:
    """The line that names one session's record keys (spec 5.4) by its id (5.6)."""
    return f"USMP_SESSION {session_id.hex()} {key_c2s.hex()} {key_s2c.hex()}\n"


def log_session_keys(session_id: bytes, key_c2s: bytes, key_s2c: bytes) -> None:
    """Append the session's line to ``$USMP_KEYLOG_FILE``; nothing when it is unset.

    A key log that cannot be written does not fail the session: the
    debugging aid must not change what the protocol does. The file is
    created readable by its owner only, and each line goes out in one
    ``O_APPEND`` write so that several processes can share one file.
    """
    path = os.environ.get(KEYLOG_ENV)
    if not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, keylog_line(session_id, key_c2s, key_s2c).encode("ascii"))
        finally:
            os.close(fd)
    except OSError as exc:
        _log.warning("%s: cannot append to the key log: %s", KEYLOG_ENV, exc.strerror)
