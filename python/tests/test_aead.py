"""aead.py: the kept OpenSSL AES-256-GCM context against cryptography's AESGCM, and its life in the engine."""

from __future__ import annotations

import functools
import os

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from usmp import aead, records
from usmp.engine import ClientEngine, EngineConfig, MessageReceived, ServerEngine
from usmp.wire import Mode

from usmp_testing import Pair

PSK = bytes(range(32))
DEVICE = bytes.fromhex("deadbeef0001")

needs_kept = pytest.mark.skipif(not aead.kept_context_available(), reason="python3-cffi or libcrypto missing")


@needs_kept
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 64, 1000, 4096, 65519])
def test_the_kept_context_seals_and_opens_exactly_like_aesgcm(size: int) -> None:
    key = os.urandom(32)
    kept, reference = aead.KeptAesGcm(key), AESGCM(key)
    for aad_length in (0, 3, 9):  # no header, the stream header, the datagram header
        nonce, plaintext, aad = os.urandom(12), os.urandom(size), os.urandom(aad_length)
        sealed = kept.encrypt(nonce, plaintext, aad)
        assert sealed == reference.encrypt(nonce, plaintext, aad)
        assert kept.decrypt(nonce, sealed, aad) == plaintext
        # The same context, used again with another nonce, still agrees.
        other = os.urandom(12)
        assert kept.decrypt(other, reference.encrypt(other, plaintext, aad), aad) == plaintext


@needs_kept
def test_a_bad_tag_is_invalid_tag_and_leaves_no_openssl_error_behind() -> None:
    key, nonce = os.urandom(32), os.urandom(12)
    kept = aead.KeptAesGcm(key)
    sealed = bytearray(kept.encrypt(nonce, b"payload", b"hdr"))
    for position in (0, len(sealed) - 1):  # a ciphertext byte, a tag byte
        forged = bytearray(sealed)
        forged[position] ^= 0x01
        with pytest.raises(InvalidTag):
            kept.decrypt(nonce, bytes(forged), b"hdr")
    with pytest.raises(InvalidTag):
        kept.decrypt(nonce, bytes(sealed), b"other header")
    with pytest.raises(InvalidTag):
        kept.decrypt(nonce, bytes(15), b"hdr")  # shorter than a tag
    # The failures left the context usable, and cryptography's next calls see no stale error.
    assert kept.decrypt(nonce, bytes(sealed), b"hdr") == b"payload"
    private = X25519PrivateKey.generate()
    assert len(private.exchange(X25519PrivateKey.generate().public_key())) == 32
    assert AESGCM(key).decrypt(nonce, bytes(sealed), b"hdr") == b"payload"


@pytest.mark.parametrize("kept", [pytest.param(True, marks=needs_kept), False])
def test_a_released_key_refuses_to_work_and_releasing_twice_is_harmless(kept: bool) -> None:
    key = aead.new_aes_gcm(os.urandom(32), kept=kept)
    key.release()
    key.release()
    with pytest.raises(ValueError):
        key.encrypt(bytes(12), b"x", b"")
    with pytest.raises(ValueError):
        key.decrypt(bytes(12), bytes(17), b"")


def test_new_aes_gcm_picks_the_kept_context_when_it_is_available() -> None:
    expected = aead.KeptAesGcm if aead.kept_context_available() else aead.PlainAesGcm
    assert type(aead.new_aes_gcm(os.urandom(32))) is expected


@needs_kept
@pytest.mark.parametrize("mode", [Mode.STREAM, Mode.DATAGRAM])
def test_an_engine_on_the_kept_context_talks_to_one_on_aesgcm(mode: Mode, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both record paths on the wire at once: the client's keys kept, the server's on AESGCM."""
    config = EngineConfig(max_record=1024, max_message=4096)
    pair = Pair(
        ClientEngine(mode=mode, device_id=DEVICE, psk=PSK, config=config),
        ServerEngine(mode=mode, now=0.0, config=config),
        {DEVICE: PSK},
    )
    # The server installs its keys at the HELLO_ACK, before the client does at the SESSION_OK.
    kinds = iter([False, False, True, True])
    monkeypatch.setattr(records, "new_aes_gcm", lambda key: aead.new_aes_gcm(key, kept=next(kinds)))
    pair.handshake()
    assert pair.server._sender is not None and type(pair.server._sender._aead) is aead.PlainAesGcm
    assert pair.client._sender is not None and type(pair.client._sender._aead) is aead.KeptAesGcm
    for size in (0, 64, 1024, 4000):
        message = os.urandom(size)
        pair.client.send_message(message, 0.0)
        received = pair.to_server(pair.client.frames_to_send())
        assert [e.data for e in received if isinstance(e, MessageReceived)] == [message]
        pair.server.send_message(message, 0.0)
        received = pair.to_client(pair.server.frames_to_send())
        assert [e.data for e in received if isinstance(e, MessageReceived)] == [message]


@pytest.mark.parametrize("kept", [pytest.param(True, marks=needs_kept), False])
def test_the_engine_releases_both_record_keys_when_the_session_ends(
    kept: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "new_aes_gcm", functools.partial(aead.new_aes_gcm, kept=kept))
    pair = Pair(
        ClientEngine(mode=Mode.STREAM, device_id=DEVICE, psk=PSK), ServerEngine(mode=Mode.STREAM, now=0.0), {DEVICE: PSK}
    )
    pair.handshake()
    assert pair.server._sender is not None and pair.server._receiver is not None
    keys = [pair.server._sender._aead, pair.server._receiver._aead]
    pair.client.close()
    pair.pump()
    assert pair.server.finished
    for key in keys:
        with pytest.raises(ValueError, match="released"):
            key.encrypt(bytes(12), b"", b"")
