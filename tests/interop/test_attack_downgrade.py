"""Downgrade and negotiation tampering (spec 4.5, 12; security.md property 6), for every pairing of
client ("py": USMPClient, "c": the C device API) and gateway ("py": USMPServer, "c": usmp_server).

The MITM edits the HELLO's ``versions``/``suites`` bitmaps or limits, or the CHALLENGE's selection
or limits. An offer without version/suite 1 is refused by the gateway (UNSUPPORTED_*); a selection
the client did not offer is refused by the client; any other edit is in TH, so the key
confirmation fails (AUTH_FAILED): a downgrade or a limit change never yields a session.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from usmp import Condition

from interop_harness import CLIENTS, GATEWAYS, CBuild, async_test, rig
from interop_proxy import C2S, S2C, T_CHALLENGE, T_DATA, T_ERROR, T_HELLO, T_SESSION_OK, ProxyConnection

# name -> (frame type, frame offset, new bytes, client outcome, gateway view)
EDITS: dict[str, tuple[int, int, bytes, str, str]] = {
    # HELLO: versions at frame offset 3, suites at 4, max_record at 43, max_message at 45.
    "hello_versions_v2_only": (T_HELLO, 3, b"\x02", "PEER_ERROR:UNSUPPORTED_VERSION", "UNSUPPORTED_VERSION"),
    "hello_versions_none": (T_HELLO, 3, b"\x00", "PEER_ERROR:UNSUPPORTED_VERSION", "UNSUPPORTED_VERSION"),
    "hello_versions_v1_v2": (T_HELLO, 3, b"\x03", "PEER_ERROR:AUTH_FAILED", "AUTH_FAILED"),
    "hello_versions_all_bits": (T_HELLO, 3, b"\xff", "PEER_ERROR:AUTH_FAILED", "AUTH_FAILED"),
    "hello_suites_s2_only": (T_HELLO, 4, b"\x02", "PEER_ERROR:UNSUPPORTED_SUITE", "UNSUPPORTED_SUITE"),
    "hello_suites_s1_s2": (T_HELLO, 4, b"\x03", "PEER_ERROR:AUTH_FAILED", "AUTH_FAILED"),
    "hello_no_version_no_suite": (T_HELLO, 3, b"\x00\x00", "PEER_ERROR:UNSUPPORTED_VERSION", "UNSUPPORTED_VERSION"),
    "hello_smaller_max_record": (T_HELLO, 43, struct.pack(">H", 16), "PEER_ERROR:AUTH_FAILED", "AUTH_FAILED"),
    "hello_max_record_too_small": (T_HELLO, 43, struct.pack(">H", 15), "PEER_ERROR:MALFORMED", "MALFORMED"),
    # CHALLENGE: version at 3, suite at 4, max_record at 53, max_message at 55.
    "challenge_version_2": (T_CHALLENGE, 3, b"\x02", "UNSUPPORTED_VERSION", "PEER_ERROR"),
    "challenge_version_0": (T_CHALLENGE, 3, b"\x00", "UNSUPPORTED_VERSION", "PEER_ERROR"),
    "challenge_suite_2": (T_CHALLENGE, 4, b"\x02", "UNSUPPORTED_SUITE", "PEER_ERROR"),
    "challenge_suite_0": (T_CHALLENGE, 4, b"\x00", "UNSUPPORTED_SUITE", "PEER_ERROR"),
    "challenge_smaller_max_record": (T_CHALLENGE, 53, struct.pack(">H", 16), "PEER_ERROR:AUTH_FAILED", "AUTH_FAILED"),
    "challenge_max_message_below_record": (
        T_CHALLENGE, 55, struct.pack(">H", 100), "MALFORMED", "PEER_ERROR"
    ),
}


@pytest.mark.parametrize("client_kind", CLIENTS, ids=lambda k: f"client_{k}")
@pytest.mark.parametrize("gw_kind", GATEWAYS, ids=lambda k: f"gw_{k}")
@pytest.mark.parametrize("edit", list(EDITS))
@async_test(timeout=30)
async def test_negotiation_edit(c_build: CBuild, tmp_path: Path, gw_kind: str, client_kind: str, edit: str) -> None:
    ftype, offset, new, client_outcome, gateway_view = EDITS[edit]

    def hook(conn: ProxyConnection, direction: str, frame: bytes) -> list[bytes] | None:
        if frame[0] == ftype:
            return [frame[:offset] + new + frame[offset + len(new) :]]
        return None

    async with rig(gw_kind, client_kind, c_build, tmp_path, hook=hook) as r:
        assert await r.client.connect() == client_outcome
        assert await r.gateway_view() == gateway_view
        # Whoever detected it told the other side with ERROR(condition) (9.2).
        if gateway_view == "PEER_ERROR":
            code = Condition(client_outcome).code
            assert r.conn.received(C2S, T_ERROR) == [bytes([0xFF, 0, 1, code])]  # type: ignore[list-item]
        else:
            code = Condition(gateway_view).code
            assert r.conn.received(S2C, T_ERROR) == [bytes([0xFF, 0, 1, code])]  # type: ignore[list-item]
        assert r.conn.received(S2C, T_SESSION_OK) == []
        assert r.conn.received(C2S, T_DATA) == r.conn.received(S2C, T_DATA) == []
