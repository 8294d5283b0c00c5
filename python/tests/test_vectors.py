"""Every vector of spec/vectors/, reproduced by this implementation byte for byte."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from usmp import cobs, crypto
from usmp.cookie import CookieJar
from usmp.engine import (
    ClientEngine,
    ControlMessage,
    CookieCheck,
    Event,
    HandshakeComplete,
    InputDropped,
    MessageReceived,
    ServerEngine,
    State,
)
from usmp.errors import Condition, PeerClosed, PeerError, RemoteProtocolError
from usmp.records import RecordReceiver, open_record, record_header, record_nonce, seal_record
from usmp.wire import FrameType, Mode

from usmp_testing import client_for, handshake_case, load_vectors, mode_of, psk_table, server_for, server_receive

HANDSHAKES = load_vectors("handshake.json")["cases"]
RECORDS = load_vectors("records.json")["records"]
COBS = load_vectors("cobs.json")
NEGATIVE = load_vectors("negative.json")["cases"]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def only(frames: list[bytes]) -> bytes:
    assert len(frames) == 1, frames
    return frames[0]


# --- handshake.json -----------------------------------------------------------------


@pytest.mark.parametrize("case", HANDSHAKES, ids=lambda c: str(c["name"]))
def test_handshake_vector_key_schedule(case: dict[str, Any]) -> None:
    mode = mode_of(case)
    frames = case["frames"]
    hedged = crypto.client_ephemeral_private(
        h(case["psk"]), case["client_boot_counter"], case["client_connection_counter"], h(case["client_random"])
    )
    assert hedged == h(case["client_ephemeral_private"])  # section 5.8
    assert crypto.x25519_public(h(case["client_ephemeral_private"])) == h(case["client_ephemeral_public"])
    assert crypto.x25519_public(h(case["server_ephemeral_private"])) == h(case["server_ephemeral_public"])
    shared = crypto.x25519_shared(h(case["client_ephemeral_private"]), h(case["server_ephemeral_public"]))
    assert shared == h(case["shared_secret"])
    assert crypto.x25519_shared(h(case["server_ephemeral_private"]), h(case["client_ephemeral_public"])) == shared
    th = crypto.transcript_hash(mode, h(frames["hello"]), h(frames["challenge"]))
    assert th == h(case["transcript_hash"])
    prk = crypto.hkdf_extract(h(case["server_nonce"]), shared + h(case["psk"]))
    assert prk == h(case["prk"])
    assert crypto.hkdf_expand(prk, b"usmp-v1" + th, 128) == h(case["okm"])
    keys = crypto.derive_keys(shared, h(case["psk"]), h(case["server_nonce"]), th)
    assert keys.c2s == h(case["key_c2s"])
    assert keys.s2c == h(case["key_s2c"])
    assert keys.confirm_client == h(case["key_confirm_client"])
    assert keys.confirm_server == h(case["key_confirm_server"])
    assert crypto.client_finished(keys.confirm_client, th) == h(case["hello_ack_mac"])
    session_ok_mac = crypto.server_finished(keys.confirm_server, th, h(frames["hello_ack"]), h(case["session_id"]))
    assert session_ok_mac == h(case["session_ok_mac"])
    wire = sum(len(h(frames[k])) for k in ("hello", "challenge", "hello_ack", "session_ok"))
    assert wire == case["handshake_wire_bytes"]


def _run_vector_handshake(case: dict[str, Any]) -> tuple[ClientEngine, ServerEngine]:
    frames = case["frames"]
    client = client_for(case)
    server_kwargs: dict[str, Any] = {}
    if "cookie_secret" in case:
        jar = CookieJar(0.0, secret=h(case["cookie_secret"]))
        server_kwargs["cookie"] = CookieCheck(jar, h(case["client_address"]))
    server = server_for(case, **server_kwargs)
    psks = psk_table(case)
    client.start(0.0)
    assert only(client.frames_to_send()) == h(frames["hello"])
    if "cookie" in frames:
        assert server_receive(server, h(frames["hello"]), 0.0, psks) == []
        assert only(server.frames_to_send()) == h(frames["cookie"])
        assert server.state is State.WAIT_HELLO
        assert client.receive_data(h(frames["cookie"]), 0.0) == []
        assert only(client.frames_to_send()) == h(frames["hello_with_cookie"])
        hello = h(frames["hello_with_cookie"])
    else:
        hello = h(frames["hello"])
    server_receive(server, hello, 0.0, psks)
    assert only(server.frames_to_send()) == h(frames["challenge"])
    assert client.receive_data(h(frames["challenge"]), 0.0) == []
    assert only(client.frames_to_send()) == h(frames["hello_ack"])
    server_events = server.receive_data(h(frames["hello_ack"]), 0.0)
    assert only(server.frames_to_send()) == h(frames["session_ok"])
    client_events = client.receive_data(h(frames["session_ok"]), 0.0)
    expected = HandshakeComplete(h(case["session_id"]), h(case["device_id"]), server.peer_limits)  # type: ignore[arg-type]
    assert server_events == [expected]
    assert client_events == [HandshakeComplete(expected.session_id, expected.device_id, client.peer_limits)]  # type: ignore[arg-type]
    assert server.peer_limits is not None and client.peer_limits is not None
    assert (server.peer_limits.max_record, server.peer_limits.max_message) == (
        case["client_max_record"],
        case["client_max_message"],
    )
    assert (client.peer_limits.max_record, client.peer_limits.max_message) == (
        case["server_max_record"],
        case["server_max_message"],
    )
    return client, server


@pytest.mark.parametrize("case", HANDSHAKES, ids=lambda c: str(c["name"]))
def test_handshake_vector_frames_and_first_records(case: dict[str, Any]) -> None:
    client, server = _run_vector_handshake(case)
    engines = {"c2s": (client, server), "s2c": (server, client)}
    pending: dict[str, list[bytes]] = {"c2s": [], "s2c": []}
    for record in case["records"]:
        direction = record["direction"]
        sender, receiver = engines[direction]
        plaintext = h(record["plaintext"])
        if record["type"] == FrameType.DATA:
            sender.send_message(plaintext, 0.0)
        elif record["type"] == FrameType.PING:
            sender.send_ping(plaintext)
        elif record["type"] == FrameType.BYE:
            reason = Condition.from_code(plaintext[0])
            assert reason is not None
            sender.close(reason)
        # A PONG is not asked for: the receiver of the PING queued it already.
        pending[direction] += sender.frames_to_send()
        frame = pending[direction].pop(0)
        assert frame == h(record["frame"]), (direction, record["counter"])
        events = receiver.receive_data(frame, 0.0)
        other = "s2c" if direction == "c2s" else "c2s"
        pending[other] += receiver.frames_to_send()
        if record["type"] == FrameType.DATA:
            assert events == [MessageReceived(plaintext)]
        elif record["type"] == FrameType.BYE:
            assert receiver.state is State.CLOSED and receiver.end_condition is Condition.PEER_CLOSED
            assert isinstance(receiver.error, PeerClosed) and receiver.error.reason is Condition.NONE
        else:
            assert events == []
    assert pending == {"c2s": [], "s2c": []}


def test_cookie_is_not_in_the_transcript() -> None:
    assert handshake_case("datagram-cookie")["transcript_hash"] == crypto.transcript_hash(
        Mode.DATAGRAM,
        h(handshake_case("datagram-cookie")["frames"]["hello"]),
        h(handshake_case("datagram-cookie")["frames"]["challenge"]),
    ).hex()


# --- records.json -------------------------------------------------------------------


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: f"{r['mode']}-{r['counter']}-type{r['type']}")
def test_record_vector(record: dict[str, Any]) -> None:
    mode = Mode.STREAM if record["mode"] == "stream" else Mode.DATAGRAM
    index = h(record.get("session_index", ""))
    aead = AESGCM(h(record["key"]))
    plaintext = h(record["plaintext"])
    frame = h(record["frame"])
    assert record_nonce(record["counter"]) == h(record["nonce"])
    assert record_header(mode, record["type"], len(plaintext), record["counter"], index) == h(record["aad"])
    assert seal_record(aead, mode, record["type"], plaintext, record["counter"], index) == frame
    assert len(frame) - len(plaintext) == record["overhead"]
    header_len = len(h(record["aad"]))
    assert open_record(aead, frame, header_len, record["counter"]) == plaintext
    if mode is Mode.DATAGRAM:
        # The stateful receiver reads the explicit counter from the header.
        opened = RecordReceiver(h(record["key"]), mode, 65519, index).open(frame)
        assert (opened.record_type, opened.counter, opened.plaintext) == (record["type"], record["counter"], plaintext)
    with pytest.raises(RemoteProtocolError) as raised:
        open_record(aead, frame, header_len, record["counter"] + 1)
    assert raised.value.condition is Condition.BAD_RECORD


# --- cobs.json ----------------------------------------------------------------------


@pytest.mark.parametrize("case", COBS["cases"], ids=lambda c: str(c["name"]))
def test_cobs_vector(case: dict[str, str]) -> None:
    decoded, encoded = h(case["decoded"]), h(case["encoded"])
    assert cobs.encode(decoded) == encoded
    assert cobs.frame(decoded) == h(case["framed"])
    assert cobs.decode(encoded) == decoded
    assert len(encoded) <= cobs.encoded_size_bound(len(decoded))
    deframer = cobs.CobsDeframer(max_frame=1024)
    assert deframer.feed(b"\x00" + h(case["framed"])) == [decoded]


@pytest.mark.parametrize("case", COBS["invalid"], ids=lambda c: str(c["name"]))
def test_cobs_invalid_vector(case: dict[str, str]) -> None:
    with pytest.raises(RemoteProtocolError) as raised:
        cobs.decode(h(case["encoded"]))
    assert raised.value.condition == case["error"]


# --- negative.json ------------------------------------------------------------------


def _engine_at(case: dict[str, Any]) -> ClientEngine | ServerEngine:
    """The receiver of a negative vector, brought to its start state by the genuine handshake."""
    hs = handshake_case(case["handshake"])
    frames = {k: h(v) for k, v in hs["frames"].items()}
    psks = psk_table(hs)
    start = case["start"]
    client, server = client_for(hs), server_for(hs)
    if start == "WAIT_HELLO":
        return server
    if start == "WAIT_HELLO_ACK":
        server_receive(server, frames["hello"], 0.0, psks)
        server.frames_to_send()
        return server
    client.start(0.0)
    client.frames_to_send()
    if start == "WAIT_CHALLENGE":
        return client
    client.receive_data(frames["challenge"], 0.0)
    client.frames_to_send()
    if start == "WAIT_SESSION_OK":
        return client
    assert start == "ESTABLISHED"
    server_receive(server, frames["hello"], 0.0, psks)
    server.receive_data(frames["hello_ack"], 0.0)
    client.receive_data(frames["session_ok"], 0.0)
    server.frames_to_send()
    assert client.established and server.established
    return client if case["receiver"] == "client" else server


@pytest.mark.parametrize("case", NEGATIVE, ids=lambda c: str(c["name"]))
def test_negative_vector(case: dict[str, Any]) -> None:
    engine = _engine_at(case)
    assert engine.state.value == case["start"]
    psks = psk_table(handshake_case(case["handshake"]))
    for number, step in enumerate(case["steps"]):
        state_before = engine.state
        events: list[Event] = []
        if "timer" in step:
            assert step["timer"] == "handshake"
            engine.handle_timeout(engine.config.handshake_timeout)  # the engine started at 0.0
        elif not step["input"] and engine.mode is Mode.STREAM:
            engine.receive_eof()
        elif isinstance(engine, ServerEngine):
            events = server_receive(engine, h(step["input"]), 0.0, psks)
        else:
            events = engine.receive_data(h(step["input"]), 0.0)
        while engine.has_buffered_input:  # several frames in one read: the engine stops after each event
            events += engine.receive_data(b"", 0.0)
        sent = engine.frames_to_send()
        dropped_errors = [e.error for e in events if isinstance(e, InputDropped)]
        dropped = [error.condition for error in dropped_errors]
        where = f"step {number}"
        if step["outcome"] == "closed":
            assert engine.finished, where
            assert engine.end_condition == step["expect"], where
            assert dropped == [], where
            reported = engine.error
        else:
            assert not engine.finished, where
            if step["expect"] == "ok":
                assert dropped == [], where
            else:
                assert dropped == [step["expect"]], where
                assert engine.state is state_before, where
            reported = dropped_errors[0] if dropped_errors else None
        if "peer_code" in step:
            assert isinstance(reported, PeerError) and reported.code == step["peer_code"], where
        elif step["expect"] == "PEER_ERROR":  # pragma: no cover - every such vector names the code
            pytest.fail(f"{where}: PEER_ERROR without peer_code")
        # An absent reply means the receiver sends nothing. On a stream the
        # reply may be several frames (answers are per frame); a datagram
        # reply is one datagram.
        if case["handshake"].startswith("stream"):
            assert b"".join(sent) == (h(step["reply"]) if "reply" in step else b""), where
        else:
            assert sent == ([h(step["reply"])] if "reply" in step else []), where
        delivered = [e.data for e in events if isinstance(e, MessageReceived)]
        assert delivered == ([h(step["delivers"])] if "delivers" in step else []), where
        controls = [(e.channel, e.body) for e in events if isinstance(e, ControlMessage)]
        expected_control = step.get("control")
        assert controls == (
            [(expected_control["channel"], h(expected_control["body"]))] if expected_control else []
        ), where
