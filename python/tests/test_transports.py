"""UDP and serial (COBS) transports in datagram mode, through the lossy-link simulator (issue 17).

Each test is bounded in time and seeded; the delivered fractions are
printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from typing import Any

import pytest

from usmp import cobs
from usmp.config import ClientConfig, ServerConfig
from usmp.datagram import DatagramSession
from usmp.engine import ClientEngine, EngineConfig
from usmp.errors import Condition
from usmp.serial_link import SerialClient, SerialServer
from usmp.udp import UDPClient, UDPServer
from usmp import USMPClient, USMPServer
from usmp.wire import Mode

from transport_testing import DEVICE, PSK, REPO, Tally, lossy_link, message

Impairment = lossy_link.Impairment
MESSAGES = 1000
SMALL = EngineConfig(max_record=1207, max_message=4096)
LOSSY = dict(loss=0.2, duplicate=0.1, reorder=0.1, reorder_delay=0.003, jitter=0.001)


def run(coro: Any, timeout: float = 30.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            result = await coro
        await asyncio.sleep(0.01)  # the transports closed last finish closing inside the loop
        return result

    return asyncio.run(bounded())


async def exchange(client: Any, server_sessions: list[DatagramSession], to_client: Tally, to_server: Tally) -> None:
    """1,000 messages each way, paced so that the sockets' buffers are not what loses them."""
    session = server_sessions[0]
    for number in range(MESSAGES):
        await client.send(message("up", number))
        await session.send(message("dn", number))
        if number % 20 == 19:
            await asyncio.sleep(0.002)
    await asyncio.sleep(0.3)  # the reordered and delayed ones arrive
    while True:
        try:
            to_client.add(await client.recv(timeout=0.05))
        except TimeoutError:
            break


def check_delivery(name: str, up: Tally, down: Tally) -> None:
    for tally in (up, down):
        assert tally.duplicates == 0, f"{name}: a message was delivered twice"
        assert tally.corrupted == 0, f"{name}: a message was delivered corrupted or out of order"
    print(
        f"\n{name}: delivered {len(up.seen) / MESSAGES:.1%} device->gateway, "
        f"{len(down.seen) / MESSAGES:.1%} gateway->device"
    )
    # With 20 % loss: single-record messages arrive 80 % of the time, three-fragment ones about half.
    assert 0.6 < len(up.seen) / MESSAGES < 0.95 and 0.6 < len(down.seen) / MESSAGES < 0.95


# --- UDP ------------------------------------------------------------------------------------------


async def udp_setup(impairment: Any, **server_kwargs: Any) -> tuple[UDPServer, Any, list[DatagramSession], Tally]:
    to_server = Tally("up")
    opened: list[DatagramSession] = []

    async def on_data(session: DatagramSession, data: bytes) -> None:
        to_server.add(data)

    async def on_open(session: DatagramSession) -> None:
        opened.append(session)

    server = UDPServer("127.0.0.1", 0, PSK, on_data, on_open=on_open, **server_kwargs)
    await server.start()
    relay = lossy_link.UdpRelay(("127.0.0.1", server.port), impairment)
    await relay.start()
    return server, relay, opened, to_server


def test_udp_under_loss_duplication_and_reordering_delivers_at_most_once_and_intact() -> None:
    async def main() -> None:
        server, relay, opened, to_server = await udp_setup(Impairment(seed=17, **LOSSY))
        client = UDPClient(*relay.address, device_id=DEVICE, psk=PSK, config=ClientConfig(receive_queue=4096))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.connect()
        assert loop.time() - started < client.config.handshake_timeout
        to_client = Tally("dn")
        await exchange(client, opened, to_client, to_server)
        check_delivery("udp", to_server, to_client)
        assert client.stats.dropped["REPLAY"] > 0, "the duplicates were dropped by the replay window and counted"
        assert opened[0].stats.dropped["REPLAY"] > 0
        await client.close()
        await server.stop()
        relay.close()

    run(main())


def test_udp_replay_reflection_and_spoofed_error_change_nothing() -> None:
    async def main() -> None:
        server, relay, opened, to_server = await udp_setup(Impairment(seed=3))
        client = UDPClient(*relay.address, device_id=DEVICE, psk=PSK)
        await client.connect()
        session = opened[0]
        to_client = Tally("dn")
        for number in range(5):
            await client.send(message("up", number))
            await session.send(message("dn", number))
        await asyncio.sleep(0.1)
        for _ in range(5):
            to_client.add(await client.recv(timeout=1))
        device = client.local_address
        assert device is not None
        captured = list(relay.captured)
        for direction, _, datagram in captured:
            if direction == "up":
                await relay.inject_up(device, datagram)  # replay to the gateway
                relay.inject_down(device, datagram)  # reflection to the device
            else:
                relay.inject_down(device, datagram)  # replay to the device
        for code in (Condition.AUTH_FAILED.code, Condition.BUSY.code):
            assert code is not None
            relay.inject_down(device, bytes((0xFF, code)))  # spoofed ERROR to the device
            await relay.inject_up(device, bytes((0xFF, code)))  # and to the gateway
        await asyncio.sleep(0.2)
        assert len(to_server.seen) == 5 and to_server.duplicates == 0
        with pytest.raises(TimeoutError):
            to_client.add(await client.recv(timeout=0.1))
        assert client.connected and session.established and session.peer == relay.gateway_side_address(device)
        # Every injected datagram was dropped and counted: replays by the window (check 6), the
        # reflected HELLO and HELLO_ACK, the replayed CHALLENGE and SESSION_OK and the spoofed
        # ERRORs as UNEXPECTED (check 1).
        assert client.stats.dropped_total == relay.down.counts.injected
        assert client.stats.dropped["UNEXPECTED"] == 2 + 2 + 2 and client.stats.dropped["REPLAY"] >= 10
        assert session.stats.dropped_total + server.stats.dropped_total == relay.up.counts.injected
        # The session still works both ways.
        await client.send(message("up", 5))
        await session.send(message("dn", 5))
        to_client.add(await client.recv(timeout=1))
        await asyncio.sleep(0.05)
        assert to_server.seen == set(range(6)) and to_client.seen == set(range(6))
        await client.close()
        await server.stop()
        relay.close()

    run(main())


def test_udp_nat_rebinding_moves_the_session_and_leaves_a_pending_handshake_alone() -> None:
    async def main() -> None:
        server, relay, opened, to_server = await udp_setup(Impairment(seed=5))
        client = UDPClient(*relay.address, device_id=DEVICE, psk=PSK)
        await client.connect()
        session = opened[0]
        device = client.local_address
        assert device is not None
        old_address = relay.gateway_side_address(device)
        await relay.rebind(device)
        new_address = relay.gateway_side_address(device)
        assert new_address != old_address
        # Spec 8.4: a handshake is in progress from the address the session is about to move to.
        other = ClientEngine(mode=Mode.DATAGRAM, device_id="d0d0d0000002", psk=PSK, config=SMALL)
        other.start(0.0)
        await relay.inject_up(device, other.frames_to_send()[0])
        await asyncio.sleep(0.05)
        assert server.handshakes_in_progress == 1
        await client.send(message("up", 0))
        await asyncio.sleep(0.05)
        assert session.peer == new_address and session.stats.rebinds == 1
        assert server.handshakes_in_progress == 1, "the pending handshake is untouched"
        await session.send(message("dn", 0))
        assert await client.recv(timeout=1) == message("dn", 0)
        assert 0 in to_server.seen
        await client.close()
        await server.stop()
        relay.close()

    run(main())


def test_udp_hello_flood_from_many_source_ports_gets_cookies_and_honest_clients_connect() -> None:
    async def main() -> None:
        config = ServerConfig(max_handshakes=8, handshake_timeout=5.0)
        server = UDPServer("127.0.0.1", 0, PSK, config=config)
        await server.start()
        flooders = []
        for number in range(300):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))  # a source port that will never answer
            flooders.append(sock)
            engine = ClientEngine(mode=Mode.DATAGRAM, device_id=f"ee00000{number:05x}", psk=PSK, config=SMALL)
            engine.start(0.0)
            sock.sendto(engine.frames_to_send()[0], ("127.0.0.1", server.port))
        await asyncio.sleep(0.2)
        assert server.handshakes_in_progress <= server._gateway.cookie_threshold  # type: ignore[union-attr]
        cookies_during_flood = server.stats.cookies_sent
        assert cookies_during_flood >= 250
        clients = [
            UDPClient("127.0.0.1", server.port, device_id=f"d0d0d00000{n:02x}", psk=PSK, local_addr=("127.0.0.2", 0))
            for n in range(3)
        ]
        await asyncio.gather(*(c.connect() for c in clients))
        assert all(c.connected for c in clients)
        assert server.stats.cookies_sent >= cookies_during_flood + 3, "the honest clients answered a cookie"
        for sock in flooders:
            sock.close()
        for c in clients:
            await c.close()
        await server.stop()

    run(main())


def test_udp_datagram_sizes_match_the_spec_table() -> None:
    """Spec 15: DATA overhead 25 bytes; handshake 45 + 55 + 17 + 25 = 142, COOKIE 17 and HELLO 61."""
    with open(os.path.join(REPO, "spec", "protocol.md"), encoding="utf-8") as spec:
        table = spec.read()
    section = table[table.index("## 15.") :]

    def datagram_column(row: str) -> str:
        match = re.search(rf"^\| \**{re.escape(row)}\** \|[^|]*\|([^|]*)\|", section, re.M)
        assert match, row
        return match.group(1).replace("*", "").strip()

    spec_hello = int(datagram_column("HELLO").split()[0])
    spec_hello_cookie = int(re.search(r"(\d+) with a cookie", datagram_column("HELLO")).group(1))  # type: ignore[union-attr]
    spec_sizes = [spec_hello] + [int(datagram_column(r)) for r in ("CHALLENGE", "HELLO_ACK", "SESSION_OK")]
    whole = datagram_column("whole handshake")
    assert int(whole.split()[0]) == sum(spec_sizes)
    spec_overhead = int(datagram_column("DATA overhead over the payload").split()[0])
    assert spec_overhead == 25

    async def main() -> None:
        for cookie_threshold, expected in ((None, spec_sizes), (0, None)):
            server, relay, opened, _ = await udp_setup(Impairment(seed=1), cookie_threshold=cookie_threshold)
            client = UDPClient(*relay.address, device_id=DEVICE, psk=PSK)
            await client.connect()
            sizes = [len(d) for _, _, d in relay.captured]
            if expected is not None:
                assert sizes == expected
            else:  # every HELLO needs a cookie: HELLO, COOKIE, HELLO with cookie, then as before
                cookie_cost = int(re.search(r"\+(\d+) COOKIE \+(\d+)", whole).group(1))  # type: ignore[union-attr]
                assert sizes == [spec_hello, cookie_cost, spec_hello_cookie] + spec_sizes[1:]
            for size in (0, 1, 100, 1207):
                relay.captured.clear()
                await client.send(bytes(size))
                await asyncio.sleep(0.02)
                assert [len(d) for _, _, d in relay.captured] == [size + spec_overhead]
            await client.close()
            await server.stop()
            relay.close()

    run(main())


# --- serial over two pseudo-terminals -------------------------------------------------------------


async def serial_setup(impairment: Any) -> tuple[SerialServer, Any, SerialClient, list[DatagramSession], Tally]:
    to_server = Tally("up")
    opened: list[DatagramSession] = []

    async def on_data(session: DatagramSession, data: bytes) -> None:
        to_server.add(data)

    async def on_open(session: DatagramSession) -> None:
        opened.append(session)

    relay = lossy_link.PtyRelay(impairment)
    await relay.start()
    # The gateway opens its end by path through pyserial, as it would a real port.
    server = SerialServer(relay.gateway_path, 115200, PSK, on_data, on_open=on_open)
    await server.start()
    client = SerialClient(fd=relay.device_fd, device_id=DEVICE, psk=PSK, config=ClientConfig(receive_queue=4096))
    return server, relay, client, opened, to_server


def test_serial_under_loss_duplication_and_reordering_delivers_at_most_once_and_intact() -> None:
    async def main() -> None:
        server, relay, client, opened, to_server = await serial_setup(Impairment(seed=11, **LOSSY))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await client.connect()
        assert loop.time() - started < client.config.handshake_timeout
        to_client = Tally("dn")
        await exchange(client, opened, to_client, to_server)
        check_delivery("serial", to_server, to_client)
        await client.close()
        await server.stop()
        relay.close()

    run(main())


def test_serial_bit_errors_every_damaged_frame_is_dropped_and_counted_and_the_session_survives() -> None:
    async def main() -> None:
        server, relay, client, opened, to_server = await serial_setup(Impairment(seed=23))
        await client.connect()
        session = opened[0]
        to_client = Tally("dn")
        for direction in (relay.to_gateway, relay.to_device):
            direction.impairment = Impairment(bit_error=0.002, seed=23)
        sent_frames = {"up": set(), "down": set()}
        for number in range(300):
            up, down = message("up", number + 1)[:120], message("dn", number + 1)[:120]
            # Short single-record messages: one frame each. Truncated: not the Tally's message format.
            await client.send(up)
            await session.send(down)
            if number % 10 == 9:
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)
        received_down = 0
        while True:
            try:
                await client.recv(timeout=0.05)
                received_down += 1
            except TimeoutError:
                break
        for direction in (relay.to_gateway, relay.to_device):
            direction.impairment = Impairment(seed=23)
        # What reached each side, cut at the delimiters as its deframer cuts it.
        for direction, receiver_stats, delivered in (
            ("up", session.stats, session.stats.messages_received),
            ("down", client.stats, received_down),
        ):
            originals = {frame[:-1] for d, frame in relay.captured if d == direction}
            pieces = [p for p in relay.written(direction).split(b"\x00") if p]
            damaged = [p for p in pieces if p not in originals]
            intact_after_handshake = len(pieces) - len(damaged) - (2 if direction == "up" else 2)
            counted = receiver_stats.framing_errors + receiver_stats.dropped_total
            if direction == "up":
                counted += server.stats.framing_errors + server.stats.dropped_total
            assert damaged, f"{direction}: the seed gives bit errors"
            assert counted >= len(damaged), f"{direction}: every damaged frame is dropped and counted"
            assert delivered == intact_after_handshake, f"{direction}: every intact frame is delivered, no other"
            print(f"\nserial bit errors {direction}: {len(damaged)} damaged frames of {len(pieces)}, {counted} counted")
        assert client.connected and session.established
        await client.send(message("up", 0))
        await session.send(message("dn", 0))
        assert await client.recv(timeout=1) == message("dn", 0)
        await asyncio.sleep(0.05)
        assert 0 in to_server.seen
        await client.close()
        await server.stop()
        relay.close()

    run(main())


def test_udp_spoofed_error_during_the_handshake_ends_nothing() -> None:
    """Spec 9.2 (datagram): an unauthenticated ERROR is counted and dropped; both handshakes go on."""

    async def main() -> None:
        server, relay, opened, _ = await udp_setup(Impairment(delay=0.05, seed=9))
        client = UDPClient(*relay.address, device_id=DEVICE, psk=PSK)
        connecting = asyncio.create_task(client.connect())
        await asyncio.sleep(0.01)  # the HELLO is on its way; the CHALLENGE comes back 0.1 s after it
        device = client.local_address
        assert device is not None
        relay.inject_down(device, bytes((0xFF, Condition.AUTH_FAILED.code or 0)))
        await asyncio.sleep(0.06)  # the server has the HELLO now
        assert server.handshakes_in_progress == 1
        await relay.inject_up(device, bytes((0xFF, Condition.AUTH_FAILED.code or 0)))
        await connecting
        assert client.connected and client.stats.dropped["PEER_ERROR"] == 1
        await asyncio.sleep(0.06)
        assert opened and opened[0].stats.dropped["PEER_ERROR"] == 1
        await client.close()
        await server.stop()
        relay.close()

    run(main())


def test_usmp_server_and_client_take_a_transport_choice() -> None:
    async def main() -> None:
        async def echo(session: Any, data: bytes) -> None:
            await session.send(data)

        server = USMPServer("127.0.0.1", 0, PSK, echo, transport="udp")
        await server.start()
        client = USMPClient("127.0.0.1", server.port, device_id=DEVICE, psk=PSK, transport="udp")
        await client.connect()
        await client.send(b"over udp")
        assert await client.recv(timeout=2) == b"over udp"
        assert client.stats is not None and client.stats.messages_received == 1
        await client.close()
        await server.stop()

        relay = lossy_link.PtyRelay(Impairment())
        await relay.start()
        server = USMPServer(psk=PSK, on_data=echo, transport="serial", serial_port=relay.gateway_path, baud=57600)
        await server.start()
        client = USMPClient(relay.device_path, 0, device_id=DEVICE, psk=PSK, transport="serial", baud=57600)
        await client.connect()
        await client.send(b"over serial")
        assert await client.recv(timeout=2) == b"over serial"
        assert len(server.sessions) == 1 and server.stats is not None
        await client.close()
        await server.stop()
        relay.close()

    run(main())
