"""The engine's fast paths (issue 12) give what the slow, obvious ones give, and are the ones taken."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from usmp import crypto, x25519
from usmp.errors import Condition, RemoteProtocolError
from usmp.engine import TRANSITION_ROWS, TRANSITIONS, ClientEngine, EngineConfig, ServerEngine, State, Transition
from usmp.wire import FrameType, Mode

from usmp_testing import Pair, load_vectors

# Both X25519 paths of crypto.py: OpenSSL's keys through cffi (x25519.py) and cryptography's.
needs_openssl = pytest.mark.skipif(not x25519.available(), reason="python3-cffi or libcrypto missing")
X25519_PATHS = [pytest.param(True, id="openssl", marks=needs_openssl), pytest.param(False, id="cryptography")]


@pytest.fixture(params=X25519_PATHS)
def x25519_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(crypto, "X25519_OPENSSL", request.param)
    return bool(request.param)

PSK = bytes(range(32))
DEVICE = bytes.fromhex("deadbeef0001")


def test_x25519_public_on_either_path_is_the_public_key_of_cryptography(x25519_path: bool) -> None:
    for _ in range(50):
        key = X25519PrivateKey.generate()
        expected = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert crypto.x25519_public(key) == expected
        raw = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        assert crypto.x25519_public(raw) == expected
        generated = crypto.x25519_generate()
        assert isinstance(generated, x25519.OpenSslX25519Key) is x25519_path
        assert crypto.x25519_shared(generated, expected) == key.exchange(
            X25519PublicKey.from_public_bytes(crypto.x25519_public(generated))
        )


def test_x25519_on_either_path_reproduces_the_handshake_vectors(x25519_path: bool) -> None:
    for case in load_vectors("handshake.json")["cases"]:
        client = bytes.fromhex(case["client_ephemeral_private"])
        server = bytes.fromhex(case["server_ephemeral_private"])
        assert crypto.x25519_public(client).hex() == case["client_ephemeral_public"]
        assert crypto.x25519_public(server).hex() == case["server_ephemeral_public"]
        shared = crypto.x25519_shared(crypto.x25519_key(client), bytes.fromhex(case["server_ephemeral_public"]))
        assert shared.hex() == case["shared_secret"]


LOW_ORDER_POINTS = [  # RFC 7748 section 7: points of small order give an all-zero X25519
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
]


@pytest.mark.parametrize("low_order", LOW_ORDER_POINTS)
def test_a_low_order_peer_key_is_bad_key_on_either_path_and_leaves_no_openssl_error(
    x25519_path: bool, low_order: bytes
) -> None:
    with pytest.raises(RemoteProtocolError) as raised:
        crypto.x25519_shared(crypto.x25519_generate(), low_order)
    assert raised.value.condition is Condition.BAD_KEY
    # cryptography's next call finds no stale error on this thread's queue.
    assert len(X25519PrivateKey.generate().exchange(X25519PrivateKey.generate().public_key())) == 32


@needs_openssl
def test_a_released_openssl_key_refuses_to_agree() -> None:
    key = x25519.OpenSslX25519Key()
    key.release()
    key.release()
    with pytest.raises(ValueError):
        key.exchange(crypto.x25519_public(X25519PrivateKey.generate()))


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
    mode: Mode, x25519_path: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its ephemeral key is made inside OpenSSL (spec 5.8: 32 random bytes), not imported through the decoders."""
    config = EngineConfig(max_record=1024, max_message=4096)
    pair = Pair(
        ClientEngine(mode=mode, device_id=DEVICE, psk=PSK, config=config),
        ServerEngine(mode=mode, now=0.0, config=config),
        {DEVICE: PSK},
    )
    pair.client.start(0.0)  # the client's derived key (5.8) is imported, once
    imported = count_imports(monkeypatch)
    pair.pump()
    assert pair.client.established and pair.server.established
    assert imported == []


def count_imports(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every import of raw private key bytes from now on, on either path."""
    imported: list[bytes] = []
    real_import = X25519PrivateKey.from_private_bytes
    real_init = x25519.OpenSslX25519Key.__init__

    def counting_import(data: bytes) -> X25519PrivateKey:
        imported.append(data)
        return real_import(data)

    def counting_init(self: x25519.OpenSslX25519Key, private: bytes | None = None) -> None:
        if private is not None:
            imported.append(private)
        real_init(self, private)

    monkeypatch.setattr(X25519PrivateKey, "from_private_bytes", staticmethod(counting_import))
    monkeypatch.setattr(x25519.OpenSslX25519Key, "__init__", counting_init)
    return imported


def test_a_client_imports_its_derived_private_key_once(x25519_path: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec 5.8 makes the client's key from bytes; the key object then serves the HELLO and the dh."""
    imported = count_imports(monkeypatch)
    pair = Pair(
        ClientEngine(mode=Mode.STREAM, device_id=DEVICE, psk=PSK), ServerEngine(mode=Mode.STREAM, now=0.0), {DEVICE: PSK}
    )
    pair.handshake()
    assert len(imported) == 1
