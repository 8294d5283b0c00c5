"""The asyncio drivers over loopback TCP: USMPServer and USMPClient, limits, faults and shutdown."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from usmp import (
    ClientConfig,
    ClientEngine,
    Condition,
    ConfigurationError,
    ConnectionLost,
    EngineConfig,
    HandshakeTimeout,
    HelloReceived,
    LocalProtocolError,
    MessageReceived,
    Mode,
    PeerClosed,
    PeerError,
    PeerTimeout,
    RemoteProtocolError,
    ServerConfig,
    ServerEngine,
    Session,
    USMPClient,
    USMPServer,
)
from usmp.wire import FrameType

PSK = bytes(range(100, 132))
OTHER_PSK = bytes(range(200, 232))
DEVICE = "de:ad:be:ef:00:01"
DEVICE_BYTES = bytes.fromhex("deadbeef0001")
# A second device: one device id has at most one session (a newer one replaces it, spec 13).
OTHER_DEVICE = "de:ad:be:ef:00:02"
LOCALHOST = "127.0.0.1"
GENEROUS = ServerConfig(handshake_burst=1000, handshake_rate=1000.0)


def run(test: Callable[[], Awaitable[None]], timeout: float = 20.0) -> None:
    """Run one async test with a hard upper bound, so a hang fails instead of blocking the suite."""

    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await test()

    asyncio.run(bounded())


async def echo(session: Session, data: bytes) -> None:
    await session.send(data)


def client(port: int, **kwargs: Any) -> USMPClient:
    kwargs.setdefault("device_id", DEVICE)
    kwargs.setdefault("psk", PSK)
    return USMPClient(LOCALHOST, port, **kwargs)


def split_stream(data: bytes) -> list[bytes]:
    """Cut a captured byte stream into its frames (type, u16 length, body)."""
    frames = []
    while len(data) >= 3:
        (length,) = struct.unpack_from(">H", data, 1)
        frames.append(data[: 3 + length])
        data = data[3 + length :]
    return frames


class RawClient:
    """A client engine over a bare TCP connection, for tests that need to see or bend the frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, engine: ClientEngine) -> None:
        self.reader, self.writer, self.engine = reader, writer, engine
        self.received: list[bytes] = []
        self.messages: list[bytes] = []

    @classmethod
    async def connect(cls, port: int, psk: bytes = PSK, device: str = DEVICE, **kwargs: Any) -> RawClient:
        reader, writer = await asyncio.open_connection(LOCALHOST, port, **kwargs)
        engine = ClientEngine(mode=Mode.STREAM, device_id=device, psk=psk)
        engine.start(0.0)
        return cls(reader, writer, engine)

    def flush(self) -> None:
        self.writer.write(b"".join(self.engine.frames_to_send()))

    async def step(self, timeout: float = 2.0) -> bool:
        """Read once and feed the engine; False at end of stream."""
        async with asyncio.timeout(timeout):
            data = await self.reader.read(65536)
        if not data:
            self.engine.receive_eof()
            return False
        self.received += split_stream(data)
        self.events = self.engine.receive_data(data, 0.0)
        while self.engine.has_buffered_input:  # the engine stops after each message
            self.flush()
            self.events += self.engine.receive_data(b"", 0.0)
        self.messages += [e.data for e in self.events if isinstance(e, MessageReceived)]
        self.flush()
        return True

    async def handshake(self) -> None:
        self.flush()
        while not self.engine.established and await self.step():
            pass
        assert self.engine.established, self.engine.error

    async def run_to_end(self) -> None:
        self.flush()
        while await self.step():
            pass


# --- basics -------------------------------------------------------------------------------------


def test_fifty_concurrent_clients_each_get_their_echo() -> None:
    async def main() -> None:
        async with USMPServer(LOCALHOST, 0, psk=PSK, on_data=echo, config=GENEROUS) as server:

            async def one(i: int) -> None:
                async with client(server.port, device_id=f"deadbeef{i:04x}") as c:
                    for n in (1, 1000, 5000 + i):
                        await c.send(bytes([i]) * n)
                        assert await c.recv(timeout=10) == bytes([i]) * n

            await asyncio.gather(*(one(i) for i in range(50)))

    run(main)


def test_callbacks_session_attributes_and_server_sessions() -> None:
    async def main() -> None:
        opened: list[Session] = []
        closed: list[tuple[Session, Condition]] = []

        def on_open(session: Session) -> None:  # sync callbacks are accepted too
            opened.append(session)

        async def on_close(session: Session, reason: Condition) -> None:
            closed.append((session, reason))

        async with USMPServer(LOCALHOST, 0, PSK, echo, on_open=on_open, on_close=on_close) as server:
            async with client(server.port) as c:
                await c.send(b"ping")
                assert await c.recv(timeout=5) == b"ping"
                (session,) = opened
                assert session.device_id == DEVICE_BYTES
                assert session.session_id == c.session_id and len(c.session_id or b"") == 8
                assert session.peer[0] == LOCALHOST
                assert dict(server.sessions) == {c.session_id: session}
            await session.wait_closed()
            assert closed == [(session, Condition.PEER_CLOSED)]
            assert isinstance(session.error, PeerClosed) and session.error.reason is Condition.NONE
            assert dict(server.sessions) == {}

    run(main)


def test_server_closes_a_session_with_bye() -> None:
    async def main() -> None:
        async def close_on_data(session: Session, data: bytes) -> None:
            await session.close()

        async with USMPServer(LOCALHOST, 0, PSK, close_on_data) as server:
            async with client(server.port) as c:
                await c.send(b"bye please")
                with pytest.raises(PeerClosed) as raised:
                    await c.recv(timeout=5)
                assert raised.value.reason is Condition.NONE

    run(main)


# --- authentication -------------------------------------------------------------------------------


def test_wrong_psk_fails_with_auth_failed_and_opens_no_session() -> None:
    async def main() -> None:
        opened: list[Session] = []
        async with USMPServer(LOCALHOST, 0, PSK, echo, on_open=opened.append) as server:
            with pytest.raises(PeerError) as raised:
                await client(server.port, psk=OTHER_PSK).connect()
            assert raised.value.peer_condition is Condition.AUTH_FAILED
            assert opened == [] and dict(server.sessions) == {}

    run(main)


def test_unknown_device_sees_exactly_what_a_wrong_psk_sees() -> None:
    async def trace(port: int, device: str, psk: bytes) -> list[tuple[int, int]]:
        raw = await RawClient.connect(port, psk=psk, device=device)
        await raw.run_to_end()
        assert raw.engine.end_condition is Condition.PEER_ERROR
        return [(f[0], len(f)) for f in raw.received] + [(-1, raw.received[-1][-1])]

    async def main() -> None:
        async with USMPServer(LOCALHOST, 0, psk={DEVICE: PSK}) as server:
            wrong_psk = await trace(server.port, DEVICE, OTHER_PSK)
            unknown = await trace(server.port, "deadbeef0099", PSK)
        assert wrong_psk == unknown == [(0x02, 57), (0xFF, 4), (-1, 0x05)]

    run(main)


def test_psk_mapping_and_callables() -> None:
    async def main() -> None:
        async def async_lookup(device_id: bytes) -> bytes | None:
            await asyncio.sleep(0)
            return PSK if device_id == DEVICE_BYTES else None

        for source in (
            {"DE:AD:BE:EF:00:01": PSK, bytes(6): OTHER_PSK},
            lambda device_id: PSK if device_id == DEVICE_BYTES else None,
            async_lookup,
        ):
            async with USMPServer(LOCALHOST, 0, psk=source, on_data=echo) as server:  # type: ignore[arg-type]
                async with client(server.port) as c:
                    await c.send(b"ok")
                    assert await c.recv(timeout=5) == b"ok"
                with pytest.raises(PeerError):  # a device the lookup does not know
                    await client(server.port, device_id="010203040506").connect()

    run(main)


def test_a_callable_returning_a_short_key_fails_that_handshake_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with USMPServer(LOCALHOST, 0, psk=lambda device_id: b"short") as server:
            with pytest.raises(PeerError) as raised:
                await client(server.port).connect()
            assert raised.value.peer_condition is Condition.AUTH_FAILED

    with caplog.at_level(logging.ERROR, logger="usmp"):
        run(main)
    assert "PSK lookup for device deadbeef0001 failed" in caplog.text
    assert "5 bytes" in caplog.text


def test_bad_psk_configuration_is_refused_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="15 bytes"):
        USMPServer(LOCALHOST, 0, psk=bytes(15))
    with pytest.raises(ConfigurationError, match="device deadbeef0002"):
        USMPServer(LOCALHOST, 0, psk={"deadbeef0001": PSK, "deadbeef0002": bytes(10)})
    with pytest.raises(ConfigurationError, match="12 hex digits"):
        USMPServer(LOCALHOST, 0, psk={"deadbeef": PSK})
    with pytest.raises(LocalProtocolError, match="no default key"):
        USMPServer(LOCALHOST, 0)
    with pytest.raises(ConfigurationError):
        USMPClient(LOCALHOST, 1, device_id=DEVICE, psk=bytes(8))


def test_logs_never_contain_keys_or_plaintext(caplog: pytest.LogCaptureFixture) -> None:
    secret_message = b"plaintext-that-must-not-be-logged"

    async def main() -> None:
        async with USMPServer(LOCALHOST, 0, PSK, echo) as server:
            async with client(server.port) as c:
                await c.send(secret_message)
                await c.recv(timeout=5)
            with pytest.raises(PeerError):
                await client(server.port, psk=OTHER_PSK).connect()

    with caplog.at_level(logging.DEBUG, logger="usmp"):
        run(main)
    assert caplog.text
    for secret in (PSK.hex(), OTHER_PSK.hex(), secret_message.decode(), repr(PSK), repr(secret_message)):
        assert secret not in caplog.text


# --- limits ---------------------------------------------------------------------------------------


def test_slow_client_does_not_block_others_and_is_dropped_at_the_handshake_timeout() -> None:
    async def main() -> None:
        config = ServerConfig(handshake_timeout=0.6)
        async with USMPServer(LOCALHOST, 0, PSK, echo, config=config) as server:
            reader, writer = await asyncio.open_connection(LOCALHOST, server.port)
            started = time.monotonic()
            engine = ClientEngine(mode=Mode.STREAM, device_id=DEVICE, psk=PSK)
            engine.start(0.0)
            hello = engine.frames_to_send()[0]

            async def trickle() -> float:
                for byte in hello:  # one byte per 0.1 s: the HELLO would take 4.7 s
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.1)
                    if reader.at_eof():
                        break
                return time.monotonic() - started

            async def read_until_closed() -> tuple[bytes, float]:
                data = await reader.read()
                return data, time.monotonic() - started

            slow = asyncio.gather(read_until_closed(), trickle())
            for i in range(5):  # honest clients are served meanwhile, quickly
                t0 = time.monotonic()
                async with client(server.port) as c:
                    await c.send(b"fast")
                    assert await c.recv(timeout=5) == b"fast"
                assert time.monotonic() - t0 < 0.5
            (data, closed_after), _ = await slow
            assert data == b""  # TIMEOUT sends nothing
            assert 0.55 <= closed_after < 1.5
            writer.close()

    run(main)


def test_hello_flood_hits_the_rate_limit_while_honest_clients_connect() -> None:
    async def flood_one(port: int) -> bool:
        """A genuine HELLO from the flooding address; True if it got a CHALLENGE (cost the server an X25519)."""
        try:
            raw = await RawClient.connect(port, device="de:ad:be:ef:00:99", local_addr=("127.0.0.2", 0))
            raw.flush()
            await raw.step()
        except (OSError, TimeoutError):
            return False
        raw.writer.close()
        return any(f[0] == 0x02 for f in raw.received)

    async def main() -> None:
        config = ServerConfig(handshake_rate=0.01, handshake_burst=3)  # no refill during the test
        async with USMPServer(LOCALHOST, 0, PSK, echo, config=config) as server:
            flood = asyncio.gather(*(flood_one(server.port) for _ in range(30)))
            honest = []
            for i in range(5):  # each honest device has its own address
                async with client(server.port, local_addr=(f"127.0.0.{10 + i}", 0)) as c:
                    await c.send(b"hi")
                    honest.append(await c.recv(timeout=5))
            challenged = sum(await flood)
        assert honest == [b"hi"] * 5
        assert challenged == 3  # the burst; the other 27 were closed before any X25519

    run(main)


def test_max_sessions_gives_busy() -> None:
    async def main() -> None:
        async with USMPServer(LOCALHOST, 0, PSK, echo, config=ServerConfig(max_sessions=2)) as server:
            async with client(server.port), client(server.port, device_id=OTHER_DEVICE):
                with pytest.raises(PeerError) as raised:
                    await client(server.port).connect()
                assert raised.value.peer_condition is Condition.BUSY
            async with client(server.port) as again:  # room again once they left
                assert again.connected

    run(main)


def test_max_handshakes_gives_busy_while_others_are_mid_handshake() -> None:
    async def main() -> None:
        config = ServerConfig(max_handshakes=1, handshake_timeout=5.0)
        async with USMPServer(LOCALHOST, 0, PSK, echo, config=config) as server:
            # Sends its HELLO, never its HELLO_ACK: a handshake in progress. (A connection that
            # has sent nothing is only pending and takes no handshake slot, spec 13.)
            other = await RawClient.connect(server.port, device=OTHER_DEVICE)
            other.flush()
            await asyncio.sleep(0.05)
            with pytest.raises(PeerError) as raised:
                await client(server.port).connect()
            assert raised.value.peer_condition is Condition.BUSY
            other.writer.close()
            await other.reader.read()
            await asyncio.sleep(0.05)
            async with client(server.port) as c:
                assert c.connected

    run(main)


def test_idle_timeout_closes_silent_sessions_but_keepalive_keeps_them() -> None:
    async def main() -> None:
        config = ServerConfig(idle_timeout=0.4)
        async with USMPServer(LOCALHOST, 0, PSK, echo, config=config) as server:
            silent = client(server.port, config=ClientConfig(keepalive_interval=None))
            lively = client(server.port, device_id=OTHER_DEVICE, config=ClientConfig(keepalive_interval=0.1))
            async with silent, lively:
                with pytest.raises(PeerClosed) as raised:
                    await silent.recv(timeout=3)
                assert raised.value.reason is Condition.IDLE_TIMEOUT
                await asyncio.sleep(0.5)
                await lively.send(b"alive")
                assert await lively.recv(timeout=2) == b"alive"

    run(main)


def test_message_over_the_peers_max_message_raises_and_sends_nothing() -> None:
    async def main() -> None:
        received: list[bytes] = []

        async def record(session: Session, data: bytes) -> None:
            received.append(data)
            await session.send(data)

        config = ServerConfig(max_record=512, max_message=1024)
        async with USMPServer(LOCALHOST, 0, PSK, record, config=config) as server:
            async with client(server.port) as c:
                assert c.server_limits is not None and c.server_limits.max_message == 1024
                with pytest.raises(LocalProtocolError) as raised:
                    await c.send(bytes(1025))
                assert raised.value.condition is Condition.TOO_LARGE
                assert c.connected
                await c.send(b"x" * 1024)  # exactly the limit: fragments of at most 512
                assert await c.recv(timeout=5) == b"x" * 1024
        assert received == [b"x" * 1024]

    run(main)


def test_fragmented_round_trip_to_a_small_client() -> None:
    async def main() -> None:
        async with USMPServer(LOCALHOST, 0, PSK, echo) as server:
            small = ClientConfig(max_record=16, max_message=65535)
            async with client(server.port, config=small) as c:
                for size in (16, 17, 4096, 65535):
                    message = bytes(i % 256 for i in range(size))
                    await c.send(message)
                    assert await c.recv(timeout=10) == message

    run(main)


# --- faults ---------------------------------------------------------------------------------------


def test_truncated_stream_is_reported_as_transport_closed_and_never_delivered() -> None:
    async def main() -> None:
        delivered: list[bytes] = []
        reasons: list[Condition] = []

        async def on_data(session: Session, data: bytes) -> None:
            delivered.append(data)

        async def on_close(session: Session, reason: Condition) -> None:
            reasons.append(reason)

        async with USMPServer(LOCALHOST, 0, PSK, on_data, on_close=on_close) as server:
            raw = await RawClient.connect(server.port)
            await raw.handshake()
            raw.engine.send_message(b"never delivered", 0.0)
            record = raw.engine.frames_to_send()[0]
            raw.writer.write(record[:-1])
            await raw.writer.drain()
            raw.writer.close()
            await asyncio.sleep(0.2)
        assert delivered == [] and reasons == [Condition.TRANSPORT_CLOSED]

    run(main)


def test_tampered_record_gets_bye_bad_record() -> None:
    async def main() -> None:
        reasons: list[Condition] = []

        async with USMPServer(LOCALHOST, 0, PSK, echo, on_close=lambda s, r: reasons.append(r)) as server:
            raw = await RawClient.connect(server.port)
            await raw.handshake()
            raw.engine.send_message(b"tamper with me", 0.0)
            record = bytearray(raw.engine.frames_to_send()[0])
            record[5] ^= 0x01
            raw.writer.write(bytes(record))
            await raw.run_to_end()
            assert isinstance(raw.engine.error, PeerClosed) and raw.engine.error.reason is Condition.BAD_RECORD
        assert reasons == [Condition.BAD_RECORD]

    run(main)


def test_echo_goes_out_before_the_bye_for_a_fatal_frame_of_the_same_read() -> None:
    """Section 1, "the answer goes out first": an authentic DATA and a fatal frame in one read."""

    async def main() -> None:
        reasons: list[Condition] = []

        async with USMPServer(LOCALHOST, 0, PSK, echo, on_close=lambda s, r: reasons.append(r)) as server:
            raw = await RawClient.connect(server.port)
            await raw.handshake()
            raw.received.clear()
            raw.engine.send_message(b"answer me first", 0.0)
            (record,) = raw.engine.frames_to_send()
            undefined_type = bytes((0x42, 0x00, 0x00))  # fatal in ESTABLISHED: MALFORMED
            raw.writer.write(record + undefined_type)  # one write: one read on loopback
            await raw.run_to_end()
            assert [f[0] for f in raw.received] == [FrameType.DATA, FrameType.BYE]
            assert isinstance(raw.engine.error, PeerClosed) and raw.engine.error.reason is Condition.MALFORMED
            assert raw.messages == [b"answer me first"]
        assert reasons == [Condition.MALFORMED]

    run(main)


def test_callback_exception_is_logged_and_the_session_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async def flaky(session: Session, data: bytes) -> None:
            if data == b"boom":
                raise RuntimeError("application bug")
            await session.send(data)

        async with USMPServer(LOCALHOST, 0, PSK, flaky) as server:
            async with client(server.port) as c:
                await c.send(b"boom")
                await c.send(b"after")
                assert await c.recv(timeout=5) == b"after"

    with caplog.at_level(logging.ERROR, logger="usmp"):
        run(main)
    assert "application callback raised" in caplog.text and "application bug" in caplog.text


def test_stop_lets_in_flight_sends_finish_then_sends_bye_shutdown() -> None:
    async def main() -> None:
        reasons: list[Condition] = []

        async def slow_echo(session: Session, data: bytes) -> None:
            await asyncio.sleep(0.3)
            await session.send(b"late " + data)

        server = USMPServer(LOCALHOST, 0, PSK, slow_echo, on_close=lambda s, r: reasons.append(r))
        await server.start()
        port = server.port
        async with client(port) as busy, client(port, device_id=OTHER_DEVICE) as idle:
            await busy.send(b"reply")
            await asyncio.sleep(0.1)  # the handler is now sleeping
            await server.stop()
            assert await busy.recv(timeout=2) == b"late reply"
            for c in (busy, idle):
                with pytest.raises(PeerClosed) as raised:
                    await c.recv(timeout=2)
                assert raised.value.reason is Condition.SHUTDOWN
        assert reasons == [Condition.SHUTDOWN, Condition.SHUTDOWN]
        with pytest.raises(ConnectionLost):  # no longer listening
            await client(port).connect()

    run(main)


# --- client behaviour against servers that misbehave --------------------------------------------------


def test_client_handshake_timeout_against_a_silent_server() -> None:
    async def main() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()

        server = await asyncio.start_server(silent, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        started = time.monotonic()
        with pytest.raises(HandshakeTimeout):
            await client(port, config=ClientConfig(handshake_timeout=0.3)).connect()
        assert time.monotonic() - started < 1.0
        server.close()

    run(main)


def test_client_tells_a_gateways_error_from_its_own_auth_failure() -> None:
    """D1: ERROR(AUTH_FAILED) from the gateway is a PeerError; a SESSION_OK MAC that does not
    verify here is a RemoteProtocolError with AUTH_FAILED, never a PeerError."""

    def fake_gateway(tamper: bool) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            engine = ServerEngine(mode=Mode.STREAM, now=0.0)
            events = engine.receive_data(await reader.readexactly(47), 0.0)  # HELLO
            assert [type(e) for e in events] == [HelloReceived]
            engine.accept_hello(PSK, 0.0)
            writer.write(b"".join(engine.frames_to_send()))  # CHALLENGE
            hello_ack = await reader.readexactly(19)
            if tamper:
                engine.receive_data(hello_ack, 0.0)
                session_ok = bytearray(b"".join(engine.frames_to_send()))
                session_ok[-1] ^= 0x01
                writer.write(bytes(session_ok))
            else:
                writer.write(bytes.fromhex("ff000105"))  # ERROR(AUTH_FAILED), as anyone could send
            await reader.read()
            writer.close()

        return serve

    async def main() -> None:
        for tamper, expected in ((False, PeerError), (True, RemoteProtocolError)):
            server = await asyncio.start_server(fake_gateway(tamper), LOCALHOST, 0)
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(RemoteProtocolError) as raised:
                await client(port).connect()
            assert type(raised.value) is expected
            if expected is PeerError:
                assert raised.value.condition is Condition.PEER_ERROR
                assert raised.value.peer_condition is Condition.AUTH_FAILED  # type: ignore[attr-defined]
            else:
                assert raised.value.condition is Condition.AUTH_FAILED
            server.close()

    run(main)


def test_client_detects_a_dead_server_with_keepalive() -> None:
    async def main() -> None:
        async def mute_after_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            engine = ServerEngine(mode=Mode.STREAM, now=0.0, config=EngineConfig())
            while not engine.established:
                for event in engine.receive_data(await reader.read(4096), 0.0):
                    if isinstance(event, HelloReceived):
                        engine.accept_hello(PSK, 0.0)
                writer.write(b"".join(engine.frames_to_send()))
            await asyncio.sleep(10)  # alive at the TCP level, silent at the USMP level

        server = await asyncio.start_server(mute_after_handshake, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        c = client(port, config=ClientConfig(keepalive_interval=0.1, pong_timeout=0.2))
        await c.connect()
        started = time.monotonic()
        with pytest.raises(PeerTimeout):
            await c.recv(timeout=3)
        assert 0.25 <= time.monotonic() - started < 1.5
        await c.close()
        server.close()

    run(main)


def test_client_boot_counter_is_checked_at_construction_and_a_client_with_one_connects() -> None:
    with pytest.raises(ConfigurationError):
        client(9, boot_counter=-1)
    with pytest.raises(ConfigurationError):
        client(9, boot_counter=1 << 64)

    async def main() -> None:
        async with USMPServer(LOCALHOST, 0, PSK, echo) as server:
            async with client(server.port, boot_counter=(1 << 64) - 1) as c:
                await c.send(b"fresh")
                assert await c.recv(timeout=5) == b"fresh"

    run(main)


def test_client_connect_refused_is_connection_lost() -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: None, LOCALHOST, 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectionLost):
            await client(port).connect()

    run(main)


def test_client_close_does_not_hang_with_a_full_receive_queue() -> None:
    async def main() -> None:
        async def chatty(session: Session) -> None:
            for i in range(10):
                await session.send(b"unsolicited %d" % i)

        async with USMPServer(LOCALHOST, 0, PSK, on_open=chatty) as server:
            c = client(server.port, config=ClientConfig(receive_queue=2))
            await c.connect()
            await asyncio.sleep(0.2)  # the queue is full and the session loop waits for room
            async with asyncio.timeout(2):
                await c.close()
            assert await c.recv(timeout=1) == b"unsolicited 0"  # what was queued is still readable
            assert await c.recv(timeout=1) == b"unsolicited 1"
            with pytest.raises(LocalProtocolError):
                await c.recv(timeout=1)

    run(main)
