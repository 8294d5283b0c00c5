"""The sans-I/O engine: an in-memory client/server pair in both modes, timers, limits, faults."""

from __future__ import annotations

import dataclasses
import functools
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from usmp import records
from usmp.cookie import CookieJar, address_bytes
from usmp.engine import (
    SECRETS_ALLOWED,
    ClientEngine,
    ControlMessage,
    CookieCheck,
    Engine,
    EngineConfig,
    HandshakeComplete,
    InputDropped,
    MessageReceived,
    ServerEngine,
    State,
    check_secrets_invariant,
)
from usmp.errors import (
    Condition,
    ConfigurationError,
    ConnectionLost,
    HandshakeTimeout,
    LocalProtocolError,
    PeerClosed,
    PeerError,
    PeerTimeout,
    RemoteProtocolError,
)
from usmp.wire import FrameType, Mode

from usmp_testing import Pair, server_receive

PSK = bytes(range(32))
DEVICE = bytes.fromhex("deadbeef0001")
MODES = [Mode.STREAM, Mode.DATAGRAM]

# Every call that can move an engine; the invariant is checked after each (issue 16, item 3).
STEPS = ("start", "receive_data", "accept_hello", "refuse_busy", "receive_eof", "handle_timeout",
         "send_message", "send_control", "send_ping", "close")
invariant_checks = 0


def assert_secrets_invariant(engine: Engine) -> None:
    """The secrets an engine holds are those SECRETS_ALLOWED lets it hold in its state (spec 5.7)."""
    global invariant_checks
    invariant_checks += 1
    problems = check_secrets_invariant(engine)
    assert not problems, f"{type(engine).__name__} in {engine.state.value}: {problems}"


def checked(step: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(step)
    def run(engine: Engine, *args: Any, **kwargs: Any) -> Any:
        try:
            return step(engine, *args, **kwargs)
        finally:
            assert_secrets_invariant(engine)

    return run


@pytest.fixture(autouse=True)
def secrets_invariant_after_every_step(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test of this file, faults included, checks the secrets invariant after each engine call."""
    for cls in (Engine, ClientEngine, ServerEngine):
        for name in STEPS:
            if name in vars(cls):
                monkeypatch.setattr(cls, name, checked(vars(cls)[name]))
    yield


def make_pair(
    mode: Mode,
    client_config: EngineConfig | None = None,
    server_config: EngineConfig | None = None,
    *,
    client_psk: bytes = PSK,
    idle_timeout: float | None = None,
) -> Pair:
    default = EngineConfig(max_record=1207) if mode is Mode.DATAGRAM else EngineConfig()
    client = ClientEngine(mode=mode, device_id=DEVICE, psk=client_psk, config=client_config or default)
    server_config = dataclasses.replace(server_config or default, idle_timeout=idle_timeout)
    server = ServerEngine(mode=mode, now=0.0, config=server_config)
    return Pair(client, server, {DEVICE: PSK})


def established_pair(mode: Mode, **kwargs: object) -> Pair:
    pair = make_pair(mode, **kwargs)  # type: ignore[arg-type]
    pair.handshake()
    return pair


def messages(events: Sequence[object]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, MessageReceived)]


# --- handshake and messages -------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_pair_establishes_and_exchanges_messages_both_ways(mode: Mode) -> None:
    pair = established_pair(mode)
    assert pair.client.session_id == pair.server.session_id and pair.client.session_id is not None
    assert pair.server.device_id == DEVICE
    pair.client.send_message(b"up", 0.0)
    pair.server.send_message(b"down", 0.0)
    client_events, server_events = pair.pump()
    assert messages(server_events) == [b"up"] and messages(client_events) == [b"down"]


@pytest.mark.parametrize("mode", MODES)
def test_wrong_psk_fails_with_auth_failed_on_both_sides(mode: Mode) -> None:
    pair = make_pair(mode, client_psk=bytes(32))
    pair.client.start(0.0)
    pair.pump()
    assert pair.server.end_condition is Condition.AUTH_FAILED
    if mode is Mode.DATAGRAM:
        # An unauthenticated datagram ERROR does not end the handshake; the timeout reports it (row 25).
        assert pair.client.state is State.WAIT_SESSION_OK
        pair.client.handle_timeout(10.0)
    assert pair.client.end_condition is Condition.PEER_ERROR
    assert getattr(pair.client.error, "peer_condition") is Condition.AUTH_FAILED


@pytest.mark.parametrize("mode", MODES)
def test_unknown_device_fails_exactly_like_a_wrong_psk(mode: Mode) -> None:
    observed = []
    tables: list[dict[bytes, bytes]] = [{DEVICE: PSK}, {}]
    for psks in tables:
        pair = make_pair(mode, client_psk=bytes(32) if psks else PSK)
        pair.psks = psks
        pair.client.start(0.0)
        c2s = pair.client.frames_to_send()
        server_receive(pair.server, c2s[0], 0.0, pair.psks)
        challenge = pair.server.frames_to_send()
        pair.to_client(challenge)
        pair.to_server(pair.client.frames_to_send())
        observed.append(([len(f) for f in challenge], pair.server.frames_to_send(), pair.server.end_condition))
    assert observed[0] == observed[1]
    assert observed[0][2] is Condition.AUTH_FAILED


def test_psk_and_limits_are_checked_at_configuration() -> None:
    with pytest.raises(ConfigurationError):
        ClientEngine(mode=Mode.STREAM, device_id=DEVICE, psk=bytes(15))
    with pytest.raises(ConfigurationError):
        ClientEngine(mode=Mode.STREAM, device_id=DEVICE, psk=bytes(65))
    with pytest.raises(ConfigurationError):
        ClientEngine(mode=Mode.STREAM, device_id=b"\x01" * 5, psk=PSK)
    with pytest.raises(ConfigurationError):
        EngineConfig(max_record=15)
    with pytest.raises(ConfigurationError):
        EngineConfig(max_record=1000, max_message=999)
    with pytest.raises(ConfigurationError):  # datagram records are at most 1207 bytes (6.6)
        ServerEngine(mode=Mode.DATAGRAM, now=0.0, config=EngineConfig(max_record=1208))


def test_calls_in_the_wrong_state_are_local_errors_that_change_nothing() -> None:
    pair = make_pair(Mode.STREAM)
    with pytest.raises(LocalProtocolError):
        pair.client.send_message(b"early", 0.0)
    pair.client.start(0.0)
    with pytest.raises(LocalProtocolError):
        pair.client.start(0.0)
    assert pair.client.state is State.WAIT_CHALLENGE
    assert len(pair.client.frames_to_send()) == 1


# --- fragmentation ------------------------------------------------------------------------


def record_sizes(frames: list[bytes], mode: Mode) -> list[tuple[int, int]]:
    overhead = 19 if mode is Mode.STREAM else 25
    return [(f[0], len(f) - overhead) for f in frames]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [0, 1, 99, 100, 101, 2 * 100 - 1, 500, 999, 1000])
def test_fragmentation_round_trip_near_the_limits(mode: Mode, size: int) -> None:
    small = EngineConfig(max_record=100, max_message=1000)
    pair = established_pair(mode, server_config=small)
    message = bytes(i % 251 for i in range(size))
    pair.client.send_message(message, 0.0)
    frames = pair.client.frames_to_send()
    sizes = record_sizes(frames, mode)
    if size <= 100:
        assert sizes == [(FrameType.DATA, size)]  # fits one record: MUST be one DATA
    else:
        assert all(t == FrameType.DATA_FRAGMENT and n <= 100 for t, n in sizes)
    assert messages(pair.to_server(frames)) == [message]


@pytest.mark.parametrize("mode", MODES)
def test_message_over_the_peers_max_message_is_refused_and_nothing_is_sent(mode: Mode) -> None:
    pair = established_pair(mode, server_config=EngineConfig(max_record=100, max_message=1000))
    with pytest.raises(LocalProtocolError) as raised:
        pair.client.send_message(bytes(1001), 0.0)
    assert raised.value.condition is Condition.TOO_LARGE
    assert pair.client.frames_to_send() == []
    assert pair.client.established
    # No counter was consumed: the next record is still the server's next expected one.
    pair.client.send_message(b"after", 0.0)
    assert messages(pair.to_server(pair.client.frames_to_send())) == [b"after"]


def controls(events: Sequence[object]) -> list[tuple[int, bytes]]:
    return [(e.channel, e.body) for e in events if isinstance(e, ControlMessage)]


@pytest.mark.parametrize("mode", MODES)
def test_control_records_reach_control_events_both_ways_and_never_the_messages(mode: Mode) -> None:
    pair = established_pair(mode)
    pair.client.send_control(0x01, b"status")
    pair.server.send_control(0x7E, b"")
    client_events, server_events = pair.pump()
    assert controls(server_events) == [(0x01, b"status")] and messages(server_events) == []
    assert controls(client_events) == [(0x7E, b"")] and messages(client_events) == []


@pytest.mark.parametrize("mode", MODES)
def test_control_message_over_the_peers_max_record_is_refused_and_nothing_is_sent(mode: Mode) -> None:
    # Rows 62-63: channel byte + body fill the peer's max_record exactly; one more is never fragmented.
    pair = established_pair(mode, server_config=EngineConfig(max_record=100, max_message=1000))
    pair.client.send_control(0x01, bytes(99))
    assert controls(pair.to_server(pair.client.frames_to_send())) == [(0x01, bytes(99))]
    with pytest.raises(LocalProtocolError) as raised:
        pair.client.send_control(0x01, bytes(100))
    assert raised.value.condition is Condition.TOO_LARGE
    assert pair.client.frames_to_send() == []
    assert pair.client.established


def test_send_control_before_the_handshake_is_a_local_error() -> None:
    pair = make_pair(Mode.STREAM)
    with pytest.raises(LocalProtocolError):
        pair.client.send_control(0x01, b"early")
    assert pair.client.frames_to_send() == []


def test_datagram_lost_fragment_loses_the_message_but_not_the_session() -> None:
    pair = established_pair(Mode.DATAGRAM, server_config=EngineConfig(max_record=100, max_message=1000))
    pair.client.send_message(bytes(300), 0.0)
    fragments = pair.client.frames_to_send()
    assert len(fragments) == 4
    del fragments[1]
    events = pair.to_server(fragments)
    assert messages(events) == []
    assert [e.error.condition for e in events if isinstance(e, InputDropped)] == [Condition.UNEXPECTED] * 2
    pair.client.send_message(b"next", 0.0)
    assert messages(pair.to_server(pair.client.frames_to_send())) == [b"next"]


def test_datagram_reordered_and_duplicated_records_are_delivered_once() -> None:
    pair = established_pair(Mode.DATAGRAM)
    for i in range(5):
        pair.client.send_message(b"m%d" % i, 0.0)
    frames = pair.client.frames_to_send()
    shuffled = [frames[3], frames[0], frames[4], frames[0], frames[2], frames[1], frames[3]]
    events = pair.to_server(shuffled)
    assert sorted(messages(events)) == [b"m%d" % i for i in range(5)]
    assert [e.error.condition for e in events if isinstance(e, InputDropped)] == [Condition.REPLAY] * 2


def test_stream_replayed_record_is_fatal_bad_record() -> None:
    pair = established_pair(Mode.STREAM)
    pair.client.send_message(b"once", 0.0)
    frame = pair.client.frames_to_send()[0]
    assert messages(pair.to_server([frame])) == [b"once"]
    assert messages(pair.to_server([frame])) == []
    assert pair.server.end_condition is Condition.BAD_RECORD


@pytest.mark.parametrize("mode", MODES)
def test_reflected_record_is_rejected(mode: Mode) -> None:
    pair = established_pair(mode)
    pair.server.send_message(b"mine", 0.0)
    frame = pair.server.frames_to_send()[0]
    events = pair.to_server([frame])
    assert messages(events) == []
    if mode is Mode.STREAM:
        assert pair.server.end_condition is Condition.BAD_RECORD
    else:
        assert [e.error.condition for e in events if isinstance(e, InputDropped)] == [Condition.BAD_RECORD]


def test_stream_truncated_record_is_never_delivered_and_reports_transport_closed() -> None:
    pair = established_pair(Mode.STREAM)
    pair.client.send_message(b"cut short", 0.0)
    frame = pair.client.frames_to_send()[0]
    assert pair.server.receive_data(frame[:-1], 0.0) == []
    pair.server.receive_eof()
    assert pair.server.end_condition is Condition.TRANSPORT_CLOSED
    assert isinstance(pair.server.error, ConnectionLost)


def test_stream_records_split_at_every_byte_are_reassembled() -> None:
    pair = established_pair(Mode.STREAM)
    pair.client.send_message(b"first", 0.0)
    pair.client.send_message(bytes(65535), 0.0)
    pair.client.send_message(b"last", 0.0)
    stream = b"".join(pair.client.frames_to_send())
    events = []
    for i in range(0, len(stream), 7):
        events += pair.server.receive_data(stream[i : i + 7], 0.0)
    assert messages(events) == [b"first", bytes(65535), b"last"]


def test_stream_oversize_header_is_rejected_before_the_body() -> None:
    pair = established_pair(Mode.STREAM, server_config=EngineConfig(max_record=100, max_message=100))
    pair.server.receive_data(struct.pack(">BH", FrameType.DATA, 100 + 16 + 1), 0.0)
    assert pair.server.end_condition is Condition.TOO_LARGE


# --- tampering ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("message", [0, 1, 2, 3], ids=["HELLO", "CHALLENGE", "HELLO_ACK", "SESSION_OK"])
def test_tampering_any_byte_of_any_handshake_message_never_establishes(mode: Mode, message: int) -> None:
    """No flipped bit anywhere in the handshake gives a session; the client never accepts one.

    (The server is already established when it sends SESSION_OK; a tampered
    SESSION_OK leaves it with a session no client will ever use.)
    """
    genuine = make_pair(mode)
    genuine.client.start(0.0)
    length = len(genuine.client.frames_to_send()[0]) if message == 0 else None
    offsets = range(length) if length is not None else None
    if offsets is None:
        sizes = {1: 54, 2: 16, 3: 24}
        offsets = range(sizes[message] + (3 if mode is Mode.STREAM else 1))
    for offset in offsets:
        for flip in (0x01, 0x80):
            pair = make_pair(mode)
            pair.client.start(0.0)
            for step in range(4):
                sender, deliver = (
                    (pair.client, pair.to_server) if step % 2 == 0 else (pair.server, pair.to_client)
                )
                frames = sender.frames_to_send()
                if not frames:
                    break
                if step == message:
                    frame = bytearray(frames[0])
                    frame[offset] ^= flip
                    frames[0] = bytes(frame)
                deliver(frames)
            pair.pump()
            assert not pair.client.established, (offset, flip)
            if message < 3:
                assert not pair.server.established, (offset, flip)
            elif mode is Mode.STREAM:
                assert pair.server.end_condition is Condition.UNEXPECTED  # the client's ERROR


# --- timers -------------------------------------------------------------------------------


def test_stream_handshake_timeout_fails_with_timeout_and_sends_nothing() -> None:
    pair = make_pair(Mode.STREAM, server_config=EngineConfig(handshake_timeout=2.0))
    assert pair.server.next_deadline() == 2.0
    pair.server.handle_timeout(1.9)
    assert not pair.server.finished
    pair.server.handle_timeout(2.0)
    assert isinstance(pair.server.error, HandshakeTimeout)
    assert pair.server.frames_to_send() == []


def test_datagram_client_retransmits_with_doubling_timeout_then_times_out() -> None:
    client = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=EngineConfig(max_record=1207))
    client.start(0.0)
    hello = client.frames_to_send()
    resent_at = []
    now = 0.0
    while not client.finished:
        deadline = client.next_deadline()
        assert deadline is not None
        now = deadline
        client.handle_timeout(now)
        frames = client.frames_to_send()
        if frames:
            assert frames == hello  # byte for byte
            resent_at.append(now)
    assert resent_at == [1.0, 3.0, 7.0]  # +1, +2, +4; the next one (+4 = 11) is past the 10 s timeout
    assert now == 10.0 and client.end_condition is Condition.TIMEOUT


def test_datagram_lost_session_ok_is_recovered_by_retransmission() -> None:
    pair = make_pair(Mode.DATAGRAM)
    pair.client.start(0.0)
    pair.to_server(pair.client.frames_to_send())
    pair.to_client(pair.server.frames_to_send())
    hello_ack = pair.client.frames_to_send()
    pair.to_server(hello_ack)
    assert pair.server.established
    session_ok = pair.server.frames_to_send()  # lost on the way
    pair.client.handle_timeout(1.0)
    assert pair.client.frames_to_send() == hello_ack  # resent byte for byte
    pair.to_server(hello_ack)
    assert pair.server.frames_to_send() == session_ok  # the stored SESSION_OK, no new crypto
    events = pair.to_client(session_ok)
    assert any(isinstance(e, HandshakeComplete) for e in events)
    # After the client's first record, a HELLO_ACK is no longer answered (8.2).
    pair.client.send_message(b"x", 1.0)
    pair.to_server(pair.client.frames_to_send())
    events = pair.to_server(hello_ack)
    assert [e.error.condition for e in events if isinstance(e, InputDropped)] == [Condition.UNEXPECTED]
    assert pair.server.frames_to_send() == []


def test_keepalive_ping_then_peer_timeout_when_nothing_comes_back() -> None:
    pair = established_pair(Mode.STREAM, client_config=EngineConfig(keepalive_interval=5.0, pong_timeout=2.0))
    assert pair.client.next_deadline() == 5.0
    pair.client.handle_timeout(5.0)
    ping = pair.client.frames_to_send()
    assert [f[0] for f in ping] == [FrameType.PING]
    pair.to_server(ping)
    pong = pair.server.frames_to_send()
    assert [f[0] for f in pong] == [FrameType.PONG]
    pair.now = 6.0
    pair.to_client(pong)
    assert pair.client.next_deadline() == 11.0  # alive: the next PING is due 5 s after the PONG
    pair.client.handle_timeout(11.0)
    pair.client.frames_to_send()  # this PING is lost
    pair.client.handle_timeout(12.9)
    assert pair.client.established
    pair.client.handle_timeout(13.0)
    assert isinstance(pair.client.error, PeerTimeout)
    assert pair.client.frames_to_send() == []  # no BYE on PEER_TIMEOUT


def test_server_idle_timeout_sends_bye_idle_timeout() -> None:
    pair = established_pair(Mode.STREAM, idle_timeout=30.0)
    pair.server.handle_timeout(29.0)
    assert pair.server.established
    pair.server.handle_timeout(30.0)
    assert pair.server.state is State.CLOSED and pair.server.end_condition is Condition.IDLE_TIMEOUT
    pair.to_client(pair.server.frames_to_send())
    assert isinstance(pair.client.error, PeerClosed) and pair.client.error.reason is Condition.IDLE_TIMEOUT


# --- usage limits -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_soft_usage_limit_finishes_the_message_then_sends_bye_rekey(mode: Mode, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = established_pair(mode)
    monkeypatch.setattr(records, "USAGE_SOFT_LIMIT", 10)
    pair.client.send_message(bytes(200), 0.0)  # 13 + 1 blocks: past the soft limit
    assert pair.client.state is State.CLOSED and pair.client.end_condition is Condition.REKEY
    events = pair.to_server(pair.client.frames_to_send())
    assert messages(events) == [bytes(200)]
    assert isinstance(pair.server.error, PeerClosed) and pair.server.error.reason is Condition.REKEY


@pytest.mark.parametrize("mode", MODES)
def test_hard_usage_limit_refuses_the_seal_and_fails_sticky(mode: Mode, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = established_pair(mode)
    monkeypatch.setattr(records, "USAGE_HARD_LIMIT", 10)
    pair.client.send_message(bytes(16 * 8), 0.0)  # 9 blocks: fits
    pair.client.frames_to_send()
    with pytest.raises(LocalProtocolError) as raised:
        pair.client.send_message(bytes(16), 0.0)  # 2 more blocks: would pass 10
    assert raised.value.condition is Condition.KEY_LIMIT
    assert pair.client.frames_to_send() == []
    assert pair.client.state is State.FAILED
    with pytest.raises(LocalProtocolError) as again:
        pair.client.send_message(b"", 0.0)
    assert again.value is raised.value


# --- datagram cookie ------------------------------------------------------------------------


def test_cookie_round_trip_and_rotation() -> None:
    jar = CookieJar(0.0)
    address = address_bytes("192.0.2.1", 5000)
    cookie = jar.make(address, b"hello", 0.0)
    assert jar.verify(address, b"hello", cookie, 1.0)
    assert not jar.verify(address_bytes("192.0.2.1", 5001), b"hello", cookie, 1.0)
    assert not jar.verify(address, b"hellO", cookie, 1.0)
    assert jar.verify(address, b"hello", cookie, 121.0)  # the previous secret is still accepted
    assert not jar.verify(address, b"hello", cookie, 300.0)  # two rotations later it is not
    assert len(address_bytes("2001:db8::1", 1)) == 18


def test_server_under_load_answers_cookie_and_keeps_no_state() -> None:
    jar = CookieJar(0.0)
    cookie_check = CookieCheck(jar, address_bytes("192.0.2.7", 4000))
    config = EngineConfig(max_record=1207)
    server = ServerEngine(mode=Mode.DATAGRAM, now=0.0, config=config, cookie=cookie_check)
    client = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=config)
    pair = Pair(client, server, {DEVICE: PSK})
    client.start(0.0)
    hello = client.frames_to_send()
    assert server_receive(server, hello[0], 0.0, pair.psks) == []
    cookie_frames = server.frames_to_send()
    assert [len(f) for f in cookie_frames] == [17] and server.state is State.WAIT_HELLO
    pair.to_client(cookie_frames)
    hello_with_cookie = client.frames_to_send()
    assert hello_with_cookie == [hello[0] + cookie_frames[0][1:]]
    client.handle_timeout(1.0)
    assert client.frames_to_send() == hello_with_cookie  # retransmitted with the cookie
    pair.to_server(hello_with_cookie)
    pair.pump()
    assert client.established and server.established


# --- robustness: nothing but protocol errors escape ------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_remote_errors_never_raise_out_of_receive_data(mode: Mode) -> None:
    pair = established_pair(mode)
    for junk in (b"\x00", b"\x05", b"\xff\xff\xff\xff", bytes(40), b"\x09" + bytes(60)):
        try:
            pair.server.receive_data(junk, 0.0)
        except RemoteProtocolError:  # pragma: no cover - the assertion below explains
            pytest.fail("a remote error escaped receive_data")


def test_authentic_but_invalid_datagram_record_changes_no_state() -> None:
    """Check 8 failures are dropped before the replay window moves (6.2: nothing changes)."""
    pair = established_pair(Mode.DATAGRAM)
    sender = pair.client._sender  # noqa: SLF001 - sealing a record the public API refuses to make
    assert sender is not None
    bad_bye = sender.seal(FrameType.BYE, b"\x00\x00")  # a BYE payload must be exactly one byte
    for _ in range(2):  # the second time it is MALFORMED again, not REPLAY: the window did not move
        events = pair.server.receive_data(bad_bye, 0.0)
        assert [e.error.condition for e in events if isinstance(e, InputDropped)] == [Condition.MALFORMED]
    assert pair.server.established
    pair.client.send_message(b"fine", 0.0)
    assert messages(pair.to_server(pair.client.frames_to_send())) == [b"fine"]


# --- a peer's ERROR (row 25) ---------------------------------------------------------------------


def datagram_error(code: Condition) -> bytes:
    assert code.code is not None
    return bytes((FrameType.ERROR, code.code))


def test_datagram_spoofed_error_does_not_end_the_handshake_and_the_real_challenge_completes_it() -> None:
    pair = make_pair(Mode.DATAGRAM)
    pair.client.start(0.0)
    hello = pair.client.frames_to_send()
    events = pair.client.receive_data(datagram_error(Condition.AUTH_FAILED), 0.1)
    assert [type(e) for e in events] == [InputDropped]
    assert isinstance(events[0], InputDropped) and isinstance(events[0].error, PeerError)
    assert events[0].error.peer_condition is Condition.AUTH_FAILED
    assert pair.client.state is State.WAIT_CHALLENGE and pair.client.frames_to_send() == []
    pair.to_server(hello)
    pair.to_client(pair.server.frames_to_send())  # the genuine CHALLENGE
    _, server_events = pair.pump()
    assert pair.client.established and pair.server.established
    assert any(isinstance(e, HandshakeComplete) for e in server_events)


def test_datagram_spoofed_error_alone_ends_the_handshake_at_the_timeout_as_peer_error() -> None:
    client = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=EngineConfig(max_record=1207))
    client.start(0.0)
    hello = client.frames_to_send()
    client.receive_data(datagram_error(Condition.BUSY), 0.5)
    client.receive_data(datagram_error(Condition.AUTH_FAILED), 0.7)  # the later code replaces the earlier
    client.receive_data(bytes((FrameType.ERROR, 0x05, 0x00)), 0.8)  # wrong length: MALFORMED, not recorded
    resent = 0
    while not client.finished:
        deadline = client.next_deadline()
        assert deadline is not None
        client.handle_timeout(deadline)
        frames = client.frames_to_send()
        assert frames in ([], hello)
        resent += bool(frames)
    assert resent == 3  # it kept retransmitting until the handshake timeout
    assert client.end_condition is Condition.PEER_ERROR
    assert isinstance(client.error, PeerError) and client.error.peer_condition is Condition.AUTH_FAILED


def test_datagram_error_to_a_server_waiting_for_hello_is_dropped_and_reported_at_the_timeout() -> None:
    server = ServerEngine(mode=Mode.DATAGRAM, now=0.0, config=EngineConfig(max_record=1207, handshake_timeout=2.0))
    events = server.receive_data(datagram_error(Condition.SHUTDOWN), 0.0)
    assert [e.error.condition for e in events if isinstance(e, InputDropped)] == [Condition.PEER_ERROR]
    assert server.state is State.WAIT_HELLO and server.frames_to_send() == []
    server.handle_timeout(2.0)
    assert isinstance(server.error, PeerError) and server.error.peer_condition is Condition.SHUTDOWN
    assert server.frames_to_send() == []


def test_datagram_malformed_error_is_dropped_and_the_timeout_stays_timeout() -> None:
    client = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=EngineConfig(max_record=1207))
    client.start(0.0)
    events = client.receive_data(bytes((FrameType.ERROR,)), 0.0)
    assert [e.error.condition for e in events if isinstance(e, InputDropped)] == [Condition.MALFORMED]
    client.handle_timeout(10.0)
    assert isinstance(client.error, HandshakeTimeout)


@pytest.mark.parametrize("state", ["WAIT_HELLO", "WAIT_HELLO_ACK", "WAIT_CHALLENGE", "WAIT_SESSION_OK"])
def test_stream_error_ends_the_handshake_at_once_in_every_handshake_state(state: str) -> None:
    pair = make_pair(Mode.STREAM)
    pair.client.start(0.0)
    hello = pair.client.frames_to_send()
    if state != "WAIT_HELLO":
        pair.to_server(hello)
    challenge = pair.server.frames_to_send()
    if state == "WAIT_SESSION_OK":
        pair.to_client(challenge)
        pair.client.frames_to_send()
    engine = pair.server if state.startswith("WAIT_HELLO") else pair.client
    assert engine.state.value == state
    engine.receive_data(bytes((FrameType.ERROR, 0x00, 0x01, 0x07)), 0.0)
    assert isinstance(engine.error, PeerError) and engine.error.peer_condition is Condition.BUSY
    assert engine.frames_to_send() == []


# --- PING (row 31) -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_one_pong_per_ping_with_its_payload_even_in_one_read(mode: Mode) -> None:
    pair = established_pair(mode)
    payloads = [b"", b"1", b"12345678"] + [bytes((i,)) for i in range(200)]
    for payload in payloads:
        pair.client.send_ping(payload)
    pings = pair.client.frames_to_send()
    if mode is Mode.STREAM:
        pair.server.receive_data(b"".join(pings), 0.0)  # all in one read
    else:
        pair.to_server(pings)
    pongs = pair.server.frames_to_send()
    assert [f[0] for f in pongs] == [FrameType.PONG] * len(payloads)
    receiver = pair.client._receiver  # noqa: SLF001 - to read each PONG's payload
    assert receiver is not None
    opened = []
    for pong in pongs:
        record = receiver.open(pong)
        receiver.accept(record)
        opened.append(record.plaintext)
    assert opened == payloads


# --- the answer goes out first (section 1) ------------------------------------------------------


def test_stream_engine_stops_after_each_message_until_asked_to_go_on() -> None:
    pair = established_pair(Mode.STREAM)
    for message in (b"one", b"two", b"three"):
        pair.client.send_message(message, 0.0)
    data = b"".join(pair.client.frames_to_send())
    assert messages(pair.server.receive_data(data, 0.0)) == [b"one"]
    assert pair.server.has_buffered_input
    assert messages(pair.server.receive_data(b"", 0.0)) == [b"two"]
    assert pair.server.has_buffered_input
    assert messages(pair.server.receive_data(b"", 0.0)) == [b"three"]
    assert not pair.server.has_buffered_input
    assert pair.server.receive_data(b"", 0.0) == []


def test_stream_answer_to_a_message_goes_out_before_the_bye_for_a_fatal_frame_behind_it() -> None:
    pair = established_pair(Mode.STREAM)
    pair.client.send_message(b"question", 0.0)
    (record,) = pair.client.frames_to_send()
    events = pair.server.receive_data(record + bytes((0x42, 0x00, 0x00)), 0.0)
    assert messages(events) == [b"question"]
    assert pair.server.established and pair.server.frames_to_send() == []  # the fatal frame is not judged yet
    pair.server.send_message(b"answer", 0.0)
    assert pair.server.receive_data(b"", 0.0) == []
    assert pair.server.end_condition is Condition.MALFORMED and not pair.server.has_buffered_input
    client_events = pair.to_client(pair.server.frames_to_send())
    assert messages(client_events) == [b"answer"]
    assert isinstance(pair.client.error, PeerClosed) and pair.client.error.reason is Condition.MALFORMED


def test_stream_client_stops_after_handshake_complete_with_a_message_behind_it() -> None:
    pair = make_pair(Mode.STREAM)
    pair.client.start(0.0)
    pair.to_server(pair.client.frames_to_send())
    pair.to_client(pair.server.frames_to_send())
    pair.to_server(pair.client.frames_to_send())
    assert pair.server.established
    pair.server.send_message(b"welcome", 0.0)
    session_ok_and_data = b"".join(pair.server.frames_to_send())
    events = pair.client.receive_data(session_ok_and_data, 0.0)
    assert [type(e) for e in events] == [HandshakeComplete] and pair.client.has_buffered_input
    assert messages(pair.client.receive_data(b"", 0.0)) == [b"welcome"]


def test_datagram_engine_never_holds_input() -> None:
    pair = established_pair(Mode.DATAGRAM)
    pair.client.send_message(b"x", 0.0)
    assert messages(pair.to_server(pair.client.frames_to_send())) == [b"x"]
    assert not pair.server.has_buffered_input


# --- the client's ephemeral key (section 5.8) ----------------------------------------------------


def stuck_random(n: int) -> bytes:
    """A random source that restarts its sequence: the same bytes on every call."""
    return b"\x42" * n


def stuck_client(mode: Mode, **kwargs: object) -> ClientEngine:
    config = EngineConfig(max_record=1207) if mode is Mode.DATAGRAM else EngineConfig()
    return ClientEngine(mode=mode, device_id=DEVICE, psk=PSK, config=config, random=stuck_random, **kwargs)  # type: ignore[arg-type]


def hello_of(client: ClientEngine) -> bytes:
    client.start(0.0)
    (hello,) = client.frames_to_send()
    return hello


@pytest.mark.parametrize("mode", MODES)
def test_a_random_source_that_repeats_itself_still_gives_different_hellos(mode: Mode) -> None:
    first, second = stuck_client(mode), stuck_client(mode)
    assert hello_of(first) != hello_of(second)
    assert second.connection_counter == first.connection_counter + 1  # the process's RAM counter
    # Only the counters tell these apart: a boot counter alone changes the HELLO too ...
    assert hello_of(stuck_client(mode, boot_counter=1, connection_counter=0)) != hello_of(
        stuck_client(mode, boot_counter=2, connection_counter=0)
    )
    # ... and with every input the same, the HELLO is the same (it is a function of them, 5.8).
    assert hello_of(stuck_client(mode, boot_counter=7, connection_counter=3)) == hello_of(
        stuck_client(mode, boot_counter=7, connection_counter=3)
    )


@pytest.mark.parametrize("mode", MODES)
def test_replayed_gateway_flight_is_rejected_by_a_client_whose_random_output_repeated(mode: Mode) -> None:
    # Session 1, recorded by an attacker: the gateway's CHALLENGE, SESSION_OK and a command.
    pair = Pair(stuck_client(mode), make_pair(mode).server, {DEVICE: PSK})
    pair.client.start(0.0)
    pair.to_server(pair.client.frames_to_send())
    (challenge,) = pair.server.frames_to_send()
    pair.to_client([challenge])
    pair.to_server(pair.client.frames_to_send())
    (session_ok,) = pair.server.frames_to_send()
    pair.to_client([session_ok])
    assert pair.client.established
    pair.server.send_message(b"open the door", 0.0)
    (command,) = pair.server.frames_to_send()
    assert messages(pair.to_client([command])) == [b"open the door"]

    # Session 2: the device's random source gives the same bytes again; the attacker replays.
    device = stuck_client(mode)
    device.start(0.0)
    device.frames_to_send()
    assert device.receive_data(challenge, 1.0) == []
    device.frames_to_send()  # a HELLO_ACK nobody checks
    events = device.receive_data(session_ok, 1.0) + device.receive_data(command, 1.0)
    assert not device.established and messages(events) == []
    assert device.end_condition is Condition.AUTH_FAILED and not isinstance(device.error, PeerError)
    assert device.frames_to_send() == [bytes.fromhex("ff000105" if mode is Mode.STREAM else "ff05")]


@pytest.mark.parametrize("counter", [-1, 1 << 64, 1.5])
def test_client_counters_are_checked_at_configuration(counter: object) -> None:
    for name in ("boot_counter", "connection_counter"):
        with pytest.raises(ConfigurationError):
            stuck_client(Mode.STREAM, **{name: counter})


def test_the_secrets_invariant_holds_through_a_handshake_and_is_checked_after_every_step() -> None:
    before = invariant_checks
    pair = established_pair(Mode.DATAGRAM)
    pair.client.send_message(b"x", 1.0)
    pair.client.close()
    assert invariant_checks - before >= 8  # start, receive_data both ways, accept_hello, send, close
    assert check_secrets_invariant(pair.client) == check_secrets_invariant(pair.server) == []


@pytest.mark.parametrize("state", [State.CLOSED, State.FAILED, State.ESTABLISHED])
def test_the_secrets_invariant_reports_a_handshake_secret_left_behind(state: State) -> None:
    pair = established_pair(Mode.STREAM)
    if state is State.CLOSED:
        pair.server.close()
    elif state is State.FAILED:
        pair.server.receive_eof()
    assert pair.server.state is state
    assert SECRETS_ALLOWED[state] == frozenset()
    pair.server._secrets.transcript = b"left behind"
    assert check_secrets_invariant(pair.server) == [f"transcript in {state.value}"]


def test_the_secrets_invariant_reports_record_keys_outside_established() -> None:
    pair = established_pair(Mode.STREAM)
    sender = pair.client._sender
    pair.client.receive_eof()
    assert check_secrets_invariant(pair.client) == []
    pair.client._sender = sender
    assert check_secrets_invariant(pair.client) == ["record keys present in FAILED"]
