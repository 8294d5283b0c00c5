"""The datagram gateway's demultiplexer without a socket: spec 5.6, 6.5, 8.2-8.4 and a fuzz target.

The gateway's link is a list: what it sends is collected, what it
receives is handed to ``datagram_received`` with any source address.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from usmp import cobs
from usmp.config import ServerConfig
from usmp.cookie import address_bytes
from usmp.datagram import DatagramGateway, DatagramSession
from usmp.engine import ClientEngine, EngineConfig, HandshakeComplete, MessageReceived
from usmp.errors import Condition
from usmp.wire import FrameType, Mode

PSK = bytes(range(100, 132))
DEVICE = bytes.fromhex("d0d0d0000001")
SMALL = EngineConfig(max_record=1207, max_message=4096)
HOME = ("192.0.2.1", 40000)
ADDRESSES = [HOME, ("192.0.2.1", 40001), ("198.51.100.7", 5000), ("2001:db8::1", 6000)]


class Harness:
    def __init__(self, **kwargs: Any) -> None:
        self.sent: list[tuple[Any, bytes]] = []
        self.received: list[bytes] = []

        async def on_data(session: DatagramSession, data: bytes) -> None:
            self.received.append(data)

        kwargs.setdefault("config", ServerConfig(max_record=1207, max_message=4096))
        kwargs.setdefault("address_key", lambda a: address_bytes(a[0], a[1]))
        kwargs.setdefault("rate_source", lambda a: a[0])
        psk = kwargs.pop("psk", {DEVICE: PSK})
        self.gateway: DatagramGateway[tuple[str, int]] = DatagramGateway(
            lambda frame, address: self.sent.append((address, frame)), psk, on_data=on_data, **kwargs
        )

    def take(self) -> list[tuple[Any, bytes]]:
        sent, self.sent = self.sent, []
        return sent

    async def feed(self, datagram: bytes, address: Any = HOME) -> list[tuple[Any, bytes]]:
        self.gateway.datagram_received(datagram, address)
        await settle()
        return self.take()


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def run(coro: Any) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(10):
            return await coro

    return asyncio.run(bounded())


async def handshake(h: Harness, client: ClientEngine, *, lose_session_ok: bool = False) -> tuple[bytes, bytes]:
    client.start(0.0)
    hello = client.frames_to_send()[0]
    [(_, challenge)] = await h.feed(hello)
    client.receive_data(challenge, 0.1)
    [hello_ack] = client.frames_to_send()
    [(_, session_ok)] = await h.feed(hello_ack)
    if not lose_session_ok:
        events = client.receive_data(session_ok, 0.2)
        assert any(isinstance(e, HandshakeComplete) for e in events)
    return hello, hello_ack


def test_late_duplicate_hello_does_not_replace_an_established_session() -> None:
    """Spec 8.4 rule 1: the HELLO again, after the session is ESTABLISHED and SESSION_OK was lost.

    The client's resent HELLO_ACK must still get the stored SESSION_OK; a
    gateway that took the late HELLO for a new handshake would answer it
    with a CHALLENGE and then fail the HELLO_ACK with AUTH_FAILED.
    """

    async def main() -> None:
        h = Harness()
        client = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=SMALL)
        hello, hello_ack = await handshake(h, client, lose_session_ok=True)
        assert await h.feed(hello) == [], "a late HELLO is dropped without an answer"
        assert h.gateway.handshakes_in_progress == 0 and len(h.gateway.sessions) == 1
        assert h.gateway.stats.dropped["UNEXPECTED"] == 1
        client.handle_timeout(1.1)  # the retransmission timer resends the HELLO_ACK (8.1)
        assert client.frames_to_send() == [hello_ack]
        [(_, session_ok)] = await h.feed(hello_ack)
        assert session_ok[0] == FrameType.SESSION_OK
        events = client.receive_data(session_ok, 1.2)
        assert any(isinstance(e, HandshakeComplete) for e in events)
        client.send_message(b"after", 1.3)
        await h.feed(client.frames_to_send()[0])
        assert h.received == [b"after"]
        await h.gateway.stop(0.1)

    run(main())


def test_a_different_hello_from_a_pending_address_replaces_the_handshake() -> None:
    """Spec 8.2: the old handshake ends without a word, the new HELLO gets its own CHALLENGE."""

    async def main() -> None:
        h = Harness()
        first = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=SMALL)
        first.start(0.0)
        await h.feed(first.frames_to_send()[0])
        second = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=SMALL)
        second.start(0.0)
        [(_, challenge)] = await h.feed(second.frames_to_send()[0])
        assert h.gateway.handshakes_in_progress == 1
        second.receive_data(challenge, 0.1)
        [(_, session_ok)] = await h.feed(second.frames_to_send()[0])
        assert any(isinstance(e, HandshakeComplete) for e in second.receive_data(session_ok, 0.2))
        await h.gateway.stop(0.1)

    run(main())


def test_session_indexes_are_unique_among_live_sessions() -> None:
    """Spec 5.6: even a random source that repeats itself gets distinct indexes."""

    async def main() -> None:
        draws = iter([b"\x00\x00\x01"] * 3 + [b"\x00\x00\x02"] * 3 + [b"\x00\x00\x03"] * 100)

        def repeating(n: int) -> bytes:
            return next(draws) if n == 3 else bytes(n)

        h = Harness(random=repeating, psk=PSK)
        indexes = []
        for number in range(3):
            client = ClientEngine(mode=Mode.DATAGRAM, device_id=f"d0d0d00000{number:02x}", psk=PSK, config=SMALL)
            client.start(0.0)
            [(_, challenge)] = await h.feed(client.frames_to_send()[0], ("192.0.2.9", 1000 + number))
            client.receive_data(challenge, 0.1)
            [(_, session_ok)] = await h.feed(client.frames_to_send()[0], ("192.0.2.9", 1000 + number))
            client.receive_data(session_ok, 0.2)
            assert client.session_id is not None
            indexes.append(client.session_id[:3])
        assert sorted(indexes) == [b"\x00\x00\x01", b"\x00\x00\x02", b"\x00\x00\x03"]
        await h.gateway.stop(0.1)

    run(main())


def test_cookie_comes_before_busy_at_the_handshake_limit() -> None:
    """Spec 8.4: at the handshake limit, a HELLO without a cookie gets COOKIE, not ERROR(BUSY)."""

    async def main() -> None:
        h = Harness(config=ServerConfig(max_record=1207, max_message=4096, max_handshakes=2), cookie_threshold=1)
        for number in range(3):  # one handshake, then the threshold; all HELLOs from here get cookies
            client = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=SMALL)
            client.start(0.0)
            replies = await h.feed(client.frames_to_send()[0], ("192.0.2.9", 2000 + number))
            assert [f[0] for _, f in replies] == [FrameType.CHALLENGE if number == 0 else FrameType.COOKIE]
        await h.gateway.stop(0.1)

    run(main())


# --- fuzz: nothing from the network moves, ends or duplicates a session -----------------------------

KINDS = st.sampled_from(["raw", "typed", "record", "mutated"])
TYPES = st.sampled_from([int(t) for t in FrameType] + [0x00, 0x0C, 0x7F])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(ADDRESSES), KINDS, TYPES, st.binary(max_size=90), st.integers(0, 200)),
        max_size=25,
    )
)
def test_fuzz_udp_demultiplexer(inputs: list[tuple[Any, str, int, bytes, int]]) -> None:
    async def main() -> None:
        h = Harness()
        client = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=SMALL)
        hello, hello_ack = await handshake(h, client)
        client.send_message(b"first", 0.3)
        [record] = client.frames_to_send()
        await h.feed(record)
        [session] = h.gateway.sessions.values()
        assert client.session_id is not None
        index = client.session_id[:3]
        real = [hello, hello_ack, record]
        for address, kind, frame_type, tail, position in inputs:
            if kind == "raw":
                datagram = tail
            elif kind == "typed":
                datagram = bytes((frame_type,)) + tail
            elif kind == "record":
                datagram = bytes((frame_type,)) + index + tail
            else:
                base = bytearray(real[position % 3])
                base[position % len(base)] ^= 1 + position % 255
                datagram = bytes(base) + tail[: position % 3]
            h.gateway.datagram_received(datagram, address)
        await settle()
        # No unauthenticated input ended, moved or replaced the session.
        assert session.established and session.peer == HOME
        assert h.gateway.session_for_index(index) is session
        assert h.gateway.handshakes_in_progress <= len(ADDRESSES)
        assert h.received == [b"first"]
        client.send_message(b"second", 0.4)
        await h.feed(client.frames_to_send()[0])
        assert h.received == [b"first", b"second"]
        await h.gateway.stop(0.1)

    run(main())


# --- fuzz: the COBS deframer over a noisy stream ----------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.binary(min_size=1, max_size=120), st.binary(max_size=40)), max_size=8),
    st.lists(st.integers(1, 64), min_size=1, max_size=20),
)
def test_fuzz_cobs_stream_skips_garbage_between_frames(pieces: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
    """Spec 10: noise between delimiters never costs an intact frame, however the stream is cut."""
    line = b"".join(b"\x00" + garbage + b"\x00" + cobs.frame(frame) for frame, garbage in pieces)
    deframer = cobs.CobsDeframer(max_frame=200)
    results: list[Any] = []
    position = 0
    for i in range(len(line) + 1):
        step = cuts[i % len(cuts)]
        results += deframer.feed(line[position : position + step])
        position += step
        if position >= len(line):
            break
    decoded = iter([r for r in results if isinstance(r, bytes)])
    for frame, _ in pieces:
        assert any(candidate == frame for candidate in decoded), "every intact frame comes out, in order"
    assert len(results) <= line.count(0)


# --- spec/vectors/datagram.json -------------------------------------------------------------------


def test_vector_cookie_before_busy() -> None:
    """Spec 8.4 rule 3: under load and at the handshake limit, COOKIE first; BUSY only with a valid cookie."""
    from usmp.cookie import CookieJar

    from usmp_testing import load_vectors

    vector = load_vectors("datagram.json")["cookie_before_busy"]
    raw = bytes.fromhex(vector["client_address"])
    address = (".".join(str(b) for b in raw[:4]), int.from_bytes(raw[4:], "big"))

    async def main() -> None:
        jar = CookieJar(asyncio.get_running_loop().time(), secret=bytes.fromhex(vector["cookie_secret"]))
        config = ServerConfig(max_record=1207, max_message=8192, max_handshakes=1)
        h = Harness(config=config, cookie_threshold=1, cookie_jar=jar)
        other = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=SMALL)
        other.start(0.0)
        await h.feed(other.frames_to_send()[0], ("192.0.2.50", 1))  # the one handshake allowed
        for step in vector["steps"]:
            replies = await h.feed(bytes.fromhex(step["input"]), address)
            assert [frame.hex() for _, frame in replies] == [step["reply"]]
        await h.gateway.stop(0.1)

    run(main())


def test_vector_serial_handshake_and_no_cookie_on_a_serial_line() -> None:
    """Spec 8.4 rule 4: a link without source addresses never requires a cookie."""
    from usmp_testing import handshake_case, load_vectors

    vector = load_vectors("datagram.json")["serial_handshake"]
    frames = handshake_case(vector["handshake"])["frames"]
    flight = [bytes.fromhex(frames[k]) for k in ("hello", "challenge", "hello_ack", "session_ok")]
    assert [cobs.frame(f).hex() for f in flight] == vector["lines"]
    assert sum(len(cobs.frame(f)) for f in flight) == vector["wire_bytes"]

    async def main() -> None:
        h = Harness(cookie_threshold=0, address_key=None, rate_source=None)  # what SerialServer builds
        client = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=SMALL)
        client.start(0.0)
        [(_, reply)] = await h.feed(client.frames_to_send()[0])
        assert reply[0] == FrameType.CHALLENGE
        await h.gateway.stop(0.1)

    run(main())


def test_retransmission_timeout_restarts_at_one_second_when_the_flight_changes() -> None:
    """Spec 8.4 rule 2: a new flight (HELLO with cookie, HELLO_ACK) restarts at 1000 ms; a resend doubles."""
    client = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=SMALL)
    client.start(0.0)
    hello = client.frames_to_send()[0]
    assert client.next_deadline() == 1.0
    client.handle_timeout(1.0)
    assert client.frames_to_send() == [hello] and client.next_deadline() == 3.0  # doubled
    client.receive_data(bytes((FrameType.COOKIE,)) + bytes(16), 1.5)
    [with_cookie] = client.frames_to_send()
    assert with_cookie == hello + bytes(16) and client.next_deadline() == 2.5  # restarted
    client.handle_timeout(2.5)
    assert client.frames_to_send() == [with_cookie] and client.next_deadline() == 4.5


def test_device_ids_are_authenticated_only_with_a_key_per_device() -> None:
    """spec/security.md: with one key for every device the gateway cannot tell devices apart."""

    async def main() -> None:
        for psk, expected in (({DEVICE: PSK}, True), (PSK, False)):
            h = Harness(psk=psk)
            client = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=SMALL)
            await handshake(h, client)
            [session] = h.gateway.sessions.values()
            assert session.device_authenticated is expected
            await h.gateway.stop(0.1)

    run(main())


def test_a_new_session_of_the_same_device_replaces_the_older_one() -> None:
    """Spec 13 (row 55), as for TCP: one session per device id; the older gets BYE(REPLACED)."""

    async def main() -> None:
        h = Harness()
        first = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=SMALL)
        await handshake(h, first)
        second = ClientEngine(mode=Mode.DATAGRAM, device_id=DEVICE, psk=PSK, config=SMALL)
        second.start(0.0)
        elsewhere = ("192.0.2.1", 40002)
        [(_, challenge)] = await h.feed(second.frames_to_send()[0], elsewhere)
        second.receive_data(challenge, 0.1)
        replies = await h.feed(second.frames_to_send()[0], elsewhere)
        await settle()
        replies += h.take()
        byes = [frame for address, frame in replies if address == HOME]
        assert len(byes) == 1 and byes[0][0] == FrameType.BYE
        first.receive_data(byes[0], 0.3)
        assert first.end_condition is Condition.PEER_CLOSED and first.error is not None
        assert first.error.reason is Condition.REPLACED  # type: ignore[attr-defined]
        assert len(h.gateway.sessions) == 1
        await h.gateway.stop(0.1)

    run(main())


def test_datagram_clients_check_the_boot_counter() -> None:
    """Spec 5.8, as for USMPClient: the counter is a u64."""
    import pytest

    from usmp.errors import ConfigurationError
    from usmp.udp import UDPClient

    for bad in (-1, 1 << 64):
        with pytest.raises(ConfigurationError):
            UDPClient("127.0.0.1", 9, device_id=DEVICE, psk=PSK, boot_counter=bad)
    assert UDPClient("127.0.0.1", 9, device_id=DEVICE, psk=PSK, boot_counter=7)._boot_counter == 7
