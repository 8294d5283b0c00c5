"""The engine's fast paths (issue 12) give what the slow, obvious ones give, and are the ones taken."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from usmp import crypto
from usmp.engine import TRANSITION_ROWS, TRANSITIONS, ClientEngine, EngineConfig, ServerEngine, State, Transition
from usmp.wire import FrameType, Mode

from usmp_testing import Pair

PSK = bytes(range(32))
DEVICE = bytes.fromhex("deadbeef0001")


def test_x25519_public_by_the_base_point_is_the_public_key_of_cryptography() -> None:
    for _ in range(50):
        key = X25519PrivateKey.generate()
        expected = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert crypto.x25519_public(key) == expected
        raw = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        assert crypto.x25519_public(raw) == expected


@pytest.mark.parametrize("length", [1, 31, 32, 33, 64, 128, 200, 255 * 32])
def test_hkdf_expand_written_with_hmac_matches_cryptography(length: int) -> None:
    prk, info = os.urandom(32), os.urandom(39)
    assert crypto.hkdf_expand(prk, info, length) == HKDFExpand(hashes.SHA256(), length, info).derive(prk)


def test_hkdf_expand_refuses_more_than_255_blocks() -> None:
    with pytest.raises(ValueError):
        crypto.hkdf_expand(bytes(32), b"", 255 * 32 + 1)


def _scan(
    role_engine: type[ClientEngine] | type[ServerEngine], state: State, mode: Mode, frame_type: int
) -> Transition | None:
    """The lookup as a scan of the table, the way the engine did it before the index."""
    for transition in TRANSITIONS:
        if (
            transition.roles & role_engine.role
            and transition.state is state
            and transition.frame_type == frame_type
            and mode in transition.modes
        ):
            return transition
    return None


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("engine_class", [ClientEngine, ServerEngine])
def test_the_transition_index_finds_the_row_a_scan_of_the_table_finds(
    engine_class: type[ClientEngine] | type[ServerEngine], mode: Mode
) -> None:
    rows = TRANSITION_ROWS[(engine_class.role, mode)]
    for state in State:
        for frame_type in range(256):
            assert rows[state].get(frame_type) is _scan(engine_class, state, mode, frame_type), (state, frame_type)
    assert rows[State.ESTABLISHED][FrameType.DATA].row == 29


@pytest.mark.parametrize("mode", list(Mode))
def test_a_server_with_the_system_random_source_never_imports_raw_private_key_bytes(
    mode: Mode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its ephemeral key is made inside OpenSSL (spec 5.8: 32 random bytes), not imported through the decoders."""
    config = EngineConfig(max_record=1024, max_message=4096)
    pair = Pair(
        ClientEngine(mode=mode, device_id=DEVICE, psk=PSK, config=config),
        ServerEngine(mode=mode, now=0.0, config=config),
        {DEVICE: PSK},
    )
    pair.client.start(0.0)  # the client's derived key (5.8) is imported, once
    imported: list[bytes] = []
    real_import = X25519PrivateKey.from_private_bytes

    def counting_import(data: bytes) -> X25519PrivateKey:
        imported.append(data)
        return real_import(data)

    monkeypatch.setattr(X25519PrivateKey, "from_private_bytes", staticmethod(counting_import))
    pair.pump()
    assert pair.client.established and pair.server.established
    assert imported == []


def test_a_client_imports_its_derived_private_key_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec 5.8 makes the client's key from bytes; the key object then serves the HELLO and the dh."""
    imported: list[bytes] = []
    real_import = X25519PrivateKey.from_private_bytes

    def counting_import(data: bytes) -> X25519PrivateKey:
        imported.append(data)
        return real_import(data)

    monkeypatch.setattr(X25519PrivateKey, "from_private_bytes", staticmethod(counting_import))
    pair = Pair(
        ClientEngine(mode=Mode.STREAM, device_id=DEVICE, psk=PSK), ServerEngine(mode=Mode.STREAM, now=0.0), {DEVICE: PSK}
    )
    pair.handshake()
    assert len(imported) == 1
