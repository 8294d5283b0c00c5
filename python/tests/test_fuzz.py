"""Property tests: garbage in gives a remote-protocol error (or a drop), never another exception,
and never a change of record state."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from usmp import cobs
from usmp.engine import ClientEngine, EngineConfig, InputDropped, MessageReceived, ServerEngine, State
from usmp.errors import Condition, RemoteProtocolError
from usmp.records import RecordReceiver
from usmp.wire import Mode

from usmp_testing import Pair

PSK = bytes(range(16, 48))
DEVICE = bytes.fromhex("0102030405ff")
FUZZ = settings(max_examples=150, deadline=None)


def established(mode: Mode) -> Pair:
    config = EngineConfig(max_record=1207 if mode is Mode.DATAGRAM else 4096, max_message=8192)
    pair = Pair(
        ClientEngine(mode=mode, device_id=DEVICE, psk=PSK, config=config),
        ServerEngine(mode=mode, now=0.0, config=config),
        {DEVICE: PSK},
    )
    pair.handshake()
    return pair


# --- COBS -----------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2000))
def test_cobs_round_trip_has_no_zero_and_respects_the_bound(data: bytes) -> None:
    encoded = cobs.encode(data)
    assert 0 not in encoded
    assert len(encoded) <= cobs.encoded_size_bound(len(data))
    assert cobs.decode(encoded) == data


@FUZZ
@given(st.binary(max_size=600))
def test_cobs_decode_of_garbage_is_bytes_or_malformed(garbage: bytes) -> None:
    try:
        decoded = cobs.decode(garbage)
    except RemoteProtocolError as error:
        assert error.condition is Condition.MALFORMED
    else:
        # Either the minimal encoding, or that plus the final empty block after a 0xFF block.
        assert garbage in (cobs.encode(decoded), cobs.encode(decoded) + b"\x01")


@FUZZ
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=8), st.lists(st.integers(1, 50), min_size=1))
def test_cobs_deframer_recovers_frames_from_any_chunking(frames: list[bytes], cuts: list[int]) -> None:
    line = b"".join(cobs.frame(f) for f in frames)
    deframer = cobs.CobsDeframer(max_frame=300)
    out: list[bytes | RemoteProtocolError] = []
    position, i = 0, 0
    while position < len(line):
        step = cuts[i % len(cuts)]
        out += deframer.feed(line[position : position + step])
        position += step
        i += 1
    assert out == frames


@FUZZ
@given(st.binary(max_size=3000))
def test_cobs_deframer_never_raises_and_bounds_its_buffer(garbage: bytes) -> None:
    deframer = cobs.CobsDeframer(max_frame=100)
    for item in deframer.feed(garbage):
        assert isinstance(item, bytes) and len(item) <= 101 or isinstance(item, RemoteProtocolError)


# --- record parser ----------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=200))
def test_record_receiver_rejects_garbage_with_a_remote_error(garbage: bytes) -> None:
    for mode in (Mode.STREAM, Mode.DATAGRAM):
        receiver = RecordReceiver(bytes(32), mode, 1207, b"abc" if mode is Mode.DATAGRAM else b"")
        if not garbage:
            continue
        try:
            receiver.open(garbage)
        except RemoteProtocolError:
            pass
        else:  # pragma: no cover - would need a forged tag
            raise AssertionError("garbage opened")


@FUZZ
@given(st.lists(st.binary(max_size=120), min_size=1, max_size=5))
def test_stream_established_engine_fails_cleanly_on_garbage(chunks: list[bytes]) -> None:
    pair = established(Mode.STREAM)
    for chunk in chunks:
        events = pair.server.receive_data(chunk, 0.0)
        assert not any(isinstance(e, MessageReceived) for e in events)
    assert pair.server.state in (State.ESTABLISHED, State.FAILED)
    if pair.server.finished:
        assert isinstance(pair.server.error, RemoteProtocolError)
        # The BYE it sent (if any) is a well-formed record the client can open.
        pair.to_client(pair.server.frames_to_send())
        assert pair.client.state in (State.ESTABLISHED, State.CLOSED)


@FUZZ
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=5))
def test_datagram_established_engine_drops_garbage_without_changing_state(datagrams: list[bytes]) -> None:
    pair = established(Mode.DATAGRAM)
    for datagram in datagrams:
        events = pair.server.receive_data(datagram, 0.0)
        assert all(isinstance(e, InputDropped) for e in events) and len(events) == 1
    assert pair.server.established and pair.server.frames_to_send() == []
    pair.client.send_message(b"still fine", 0.0)
    events = pair.to_server(pair.client.frames_to_send())
    assert [e.data for e in events if isinstance(e, MessageReceived)] == [b"still fine"]


@FUZZ
@given(st.integers(0, 10_000), st.integers(1, 255))
def test_datagram_bit_flips_in_a_genuine_record_are_dropped_and_the_original_still_counts(
    position: int, flip: int
) -> None:
    pair = established(Mode.DATAGRAM)
    pair.client.send_message(b"genuine payload", 0.0)
    record = pair.client.frames_to_send()[0]
    tampered = bytearray(record)
    tampered[position % len(record)] ^= flip
    events = pair.server.receive_data(bytes(tampered), 0.0)
    assert [type(e) for e in events] == [InputDropped]
    events = pair.server.receive_data(record, 0.0)
    assert [e.data for e in events if isinstance(e, MessageReceived)] == [b"genuine payload"]


@FUZZ
@given(st.binary(max_size=200), st.sampled_from([Mode.STREAM, Mode.DATAGRAM]))
def test_handshake_engines_fail_or_drop_on_garbage_and_never_raise(garbage: bytes, mode: Mode) -> None:
    config = EngineConfig(max_record=1207)
    server = ServerEngine(mode=mode, now=0.0, config=config)
    client = ClientEngine(mode=mode, device_id=DEVICE, psk=PSK, config=config)
    client.start(0.0)
    client.frames_to_send()
    for engine in (server, client):
        events = engine.receive_data(garbage, 0.0)
        if engine.finished:
            assert isinstance(engine.error, RemoteProtocolError)
        else:
            assert not engine.established
            assert all(isinstance(e, InputDropped) for e in events) or mode is Mode.STREAM


# --- section 1: what a side sends does not depend on how its input was cut -------------------


@FUZZ
@given(
    st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=4),
    st.integers(0, 3),
    st.lists(st.integers(1, 400), min_size=1, max_size=8),
)
def test_stream_echo_answers_precede_the_bye_however_the_input_is_cut(
    messages: list[bytes], pings: int, cuts: list[int]
) -> None:
    pair = established(Mode.STREAM)
    for message in messages:
        pair.client.send_message(message, 0.0)
    for _ in range(pings):
        pair.client.send_ping(b"p")
    stream = b"".join(pair.client.frames_to_send()) + bytes((0x42, 0x00, 0x00))  # then a fatal frame
    sent: list[bytes] = []
    position, i = 0, 0
    while position < len(stream) and not pair.server.finished:
        chunk = stream[position : position + cuts[i % len(cuts)]]
        position, i = position + len(chunk), i + 1
        events = pair.server.receive_data(chunk, 0.0)
        while True:  # a driver that answers each message before going on (engine module docstring)
            sent += pair.server.frames_to_send()
            for event in events:
                if isinstance(event, MessageReceived):
                    pair.server.send_message(event.data, 0.0)
            sent += pair.server.frames_to_send()
            if not pair.server.has_buffered_input:
                break
            events = pair.server.receive_data(b"", 0.0)
    assert pair.server.end_condition is Condition.MALFORMED
    client_events = pair.to_client(sent)
    assert [e.data for e in client_events if isinstance(e, MessageReceived)] == messages
    assert pair.client.end_condition is Condition.PEER_CLOSED  # the BYE(MALFORMED) came last
    assert [f[0] for f in sent].count(0x07) == pings  # one PONG per PING
