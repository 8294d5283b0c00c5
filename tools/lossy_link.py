#!/usr/bin/env python3
"""A lossy-link simulator for USMP's datagram transports: a UDP relay and a serial (pty) relay.

Between the two ends it drops, duplicates, reorders, delays and corrupts
what passes, from a seeded generator, so that a run can be repeated. Any
program can be put behind it, C or Python: it only sees datagrams or bytes.

As a command::

    tools/lossy_link.py udp --listen 127.0.0.1:9001 --target 127.0.0.1:9000 --loss 0.2 --seed 1
        # a device connects to 127.0.0.1:9001; the gateway listens on 9000
    tools/lossy_link.py pty --loss 0.2 --bit-error 0.001 --seed 1
        # prints two pseudo-terminal paths: give one to each end
    tools/lossy_link.py pty --baud 115200
        # a clean line paced like a 115,200-baud UART (8N1: 10 bits per byte)

As a library (tests)::

    relay = UdpRelay(("127.0.0.1", gateway_port), Impairment(loss=0.2, seed=1))
    await relay.start()          # relay.address is where the device sends
    link = PtyRelay(Impairment(bit_error=1e-3, seed=2)); await link.start()
    # link.device_path / link.gateway_path (and _fd) are the two ends

UDP: one upstream socket per device address, so the gateway sees each
device at its own address; :meth:`UdpRelay.rebind` gives a device a new
upstream socket (a NAT rebinding). Serial: the relay cuts the byte stream
at the COBS delimiter and applies loss, duplication and reordering per
frame, bit errors per byte, like a noisy UART; with ``baud`` set, each
direction is also paced like a UART at that speed (8N1, 10 bits a byte:
a frame arrives when its last byte would have, and frames queue behind
each other on the line), which a pty pair alone does not do. Both record what they
forwarded (``captured``) and can inject datagrams or bytes, for replay,
reflection and spoofing tests. Nothing here is part of the protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import sys
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Address = tuple[str, int]


@dataclass
class Impairment:
    """Per datagram (per frame on serial): ``loss``, ``duplicate``, ``reorder`` are probabilities;
    ``delay`` and ``jitter`` seconds (a reordered datagram is held ``reorder_delay`` longer);
    ``bit_error`` the probability that a byte has one bit flipped. ``seed`` makes it repeatable."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    reorder_delay: float = 0.02
    bit_error: float = 0.0
    seed: int = 0
    baud: int = 0  # serial only: pace each direction at this line rate (8N1); 0 = as fast as the pty goes


@dataclass
class Counts:
    forwarded: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    injected: int = 0


@dataclass
class _Direction:
    """One direction's generator and counters; seeded separately so each direction is repeatable."""

    impairment: Impairment
    rng: random.Random
    counts: Counts = field(default_factory=Counts)

    def plan(self, data: bytes) -> list[tuple[float, bytes]]:
        """What to send and after how long: nothing (lost), once, or twice (duplicated)."""
        imp, rng = self.impairment, self.rng
        if rng.random() < imp.loss:
            self.counts.lost += 1
            return []
        copies = 2 if rng.random() < imp.duplicate else 1
        if copies == 2:
            self.counts.duplicated += 1
        out = []
        for _ in range(copies):
            delay = imp.delay + (rng.uniform(0, imp.jitter) if imp.jitter else 0.0)
            if rng.random() < imp.reorder:
                delay += imp.reorder_delay
                self.counts.reordered += 1
            out.append((delay, self.corrupt(data)))
        self.counts.forwarded += copies
        return out

    def corrupt(self, data: bytes) -> bytes:
        if not self.impairment.bit_error:
            return data
        out = bytearray(data)
        flipped = False
        for i in range(len(out)):
            if self.rng.random() < self.impairment.bit_error:
                out[i] ^= 1 << self.rng.randrange(8)
                flipped = True
        if flipped:
            self.counts.corrupted += 1
        return bytes(out)


RECEIVE_BUFFER_BYTES = 1 << 22  # the relay must not be where datagrams are lost unless it decides so


def _enlarge_receive_buffer(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        except OSError:
            pass


def _schedule(loop: asyncio.AbstractEventLoop, delay: float, action: Callable[[], None]) -> None:
    if delay <= 0:
        action()
    else:
        loop.call_later(delay, action)


# --- UDP ---------------------------------------------------------------------------------------


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, device: Address) -> None:
        self.relay = relay
        self.device = device
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.relay._from_gateway(self, bytes(data))

    def error_received(self, exc: Exception) -> None:
        pass


class _Downstream(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.relay._from_device(bytes(data), (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        pass


class UdpRelay:
    """Devices send to :attr:`address`; the relay forwards to ``target`` through one socket per device."""

    def __init__(self, target: Address, impairment: Impairment, listen: Address = ("127.0.0.1", 0)) -> None:
        self.target = target
        self.listen = listen
        self.up = _Direction(impairment, random.Random(f"{impairment.seed}/up"))
        self.down = _Direction(impairment, random.Random(f"{impairment.seed}/down"))
        self.captured: list[tuple[str, Address, bytes]] = []  # ("up" | "down", device, datagram)
        self._upstreams: dict[Address, _Upstream] = {}
        self._opening: dict[Address, asyncio.Future[None]] = {}
        self._downstream: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._downstream, _ = await self._loop.create_datagram_endpoint(
            lambda: _Downstream(self), local_addr=self.listen
        )
        _enlarge_receive_buffer(self._downstream)

    @property
    def address(self) -> Address:
        assert self._downstream is not None
        name = self._downstream.get_extra_info("sockname")
        return str(name[0]), int(name[1])

    def close(self) -> None:
        for upstream in self._upstreams.values():
            if upstream.transport is not None:
                upstream.transport.close()
        self._upstreams.clear()
        if self._downstream is not None:
            self._downstream.close()

    async def _upstream(self, device: Address) -> _Upstream:
        opening = self._opening.get(device)
        if opening is not None:  # another datagram of this device is opening its socket
            await opening
        upstream = self._upstreams.get(device)
        if upstream is None:
            assert self._loop is not None
            upstream = _Upstream(self, device)
            self._upstreams[device] = upstream
            done = self._loop.create_future()
            self._opening[device] = done
            try:
                transport, _ = await self._loop.create_datagram_endpoint(
                    lambda: upstream, local_addr=("127.0.0.1", 0), remote_addr=self.target  # type: ignore[return-value]
                )
                upstream.transport = transport
                _enlarge_receive_buffer(transport)
            finally:
                del self._opening[device]
                done.set_result(None)
        return upstream

    def gateway_side_address(self, device: Address) -> Address | None:
        """Where the gateway sees ``device`` (the upstream socket's address)."""
        upstream = self._upstreams.get(device)
        if upstream is None or upstream.transport is None:
            return None
        name = upstream.transport.get_extra_info("sockname")
        return str(name[0]), int(name[1])

    async def rebind(self, device: Address) -> None:
        """A NAT rebinding: from now on ``device`` reaches the gateway from a new address."""
        old = self._upstreams.pop(device, None)
        await self._upstream(device)
        if old is not None and old.transport is not None:
            old.transport.close()

    def _from_device(self, data: bytes, device: Address) -> None:
        self.captured.append(("up", device, data))
        assert self._loop is not None
        for delay, out in self.up.plan(data):
            _schedule(self._loop, delay, lambda out=out: self._loop.create_task(self._send_up(device, out)))  # type: ignore[misc, union-attr]

    async def _send_up(self, device: Address, data: bytes) -> None:
        upstream = await self._upstream(device)
        if upstream.transport is not None and not upstream.transport.is_closing():
            upstream.transport.sendto(data)

    def _from_gateway(self, upstream: _Upstream, data: bytes) -> None:
        self.captured.append(("down", upstream.device, data))
        assert self._loop is not None
        for delay, out in self.down.plan(data):
            _schedule(self._loop, delay, lambda out=out: self._send_down(upstream.device, out))  # type: ignore[misc]

    def _send_down(self, device: Address, data: bytes) -> None:
        if self._downstream is not None and not self._downstream.is_closing():
            self._downstream.sendto(data, device)

    # --- an attacker on the path --------------------------------------------------------------

    async def inject_up(self, device: Address, data: bytes) -> None:
        """Send ``data`` to the gateway as if from ``device`` (a replay or a spoofed datagram)."""
        self.up.counts.injected += 1
        await self._send_up(device, data)

    def inject_down(self, device: Address, data: bytes) -> None:
        """Send ``data`` to ``device`` as if from the gateway (a reflection or a spoofed ERROR)."""
        self.down.counts.injected += 1
        self._send_down(device, data)


# --- serial (two pseudo-terminals) --------------------------------------------------------------


class PtyRelay:
    """Two pseudo-terminals joined by an impaired line: the device opens one end, the gateway the other."""

    def __init__(self, impairment: Impairment) -> None:
        self.to_gateway = _Direction(impairment, random.Random(f"{impairment.seed}/up"))
        self.to_device = _Direction(impairment, random.Random(f"{impairment.seed}/down"))
        self.captured: list[tuple[str, bytes]] = []  # ("up" | "down", frame with its delimiter)
        self._ends: dict[str, tuple[int, int]] = {}  # name -> (master, slave)
        self._partial = {"up": bytearray(), "down": bytearray()}
        self._written = {"up": bytearray(), "down": bytearray()}
        self._line_free = {"up": 0.0, "down": 0.0}  # when each direction's paced line is idle again
        self._baud = impairment.baud
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for name in ("device", "gateway"):
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no line editing: bytes pass as they are
            os.set_blocking(master, False)
            self._ends[name] = (master, slave)
        self._loop.add_reader(self._ends["device"][0], self._readable, "device", "up")
        self._loop.add_reader(self._ends["gateway"][0], self._readable, "gateway", "down")

    @property
    def device_fd(self) -> int:
        return self._ends["device"][1]

    @property
    def gateway_fd(self) -> int:
        return self._ends["gateway"][1]

    @property
    def device_path(self) -> str:
        return os.ttyname(self.device_fd)

    @property
    def gateway_path(self) -> str:
        return os.ttyname(self.gateway_fd)

    def close(self) -> None:
        for master, slave in self._ends.values():
            if self._loop is not None:
                self._loop.remove_reader(master)
            for fd in (master, slave):
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._ends.clear()

    def written(self, direction: str) -> bytes:
        """Every byte the relay wrote towards the gateway (``"up"``) or the device (``"down"``)."""
        return bytes(self._written[direction])

    def _readable(self, name: str, direction: str) -> None:
        master = self._ends[name][0]
        try:
            data = os.read(master, 4096)
        except OSError:
            return
        buffer = self._partial[direction]
        buffer += data
        while (end := buffer.find(0)) >= 0:
            frame = bytes(buffer[: end + 1])
            del buffer[: end + 1]
            self.captured.append((direction, frame))
            impaired = self.to_gateway if direction == "up" else self.to_device
            assert self._loop is not None
            for delay, out in impaired.plan(frame):
                delay = self._paced(direction, delay, len(out))
                _schedule(self._loop, delay, lambda out=out: self._write(direction, out))  # type: ignore[misc]

    def _paced(self, direction: str, delay: float, length: int) -> float:
        """With ``baud``: the delay after which the frame's last byte has crossed the line."""
        if not self._baud:
            return delay
        assert self._loop is not None
        now = self._loop.time()
        start = max(now + delay, self._line_free[direction])
        self._line_free[direction] = start + length * 10 / self._baud
        return self._line_free[direction] - now

    def _write(self, direction: str, data: bytes) -> None:
        target = self._ends.get("gateway" if direction == "up" else "device")
        if target is None:
            return
        self._written[direction] += data
        try:
            os.write(target[0], data)
        except OSError:
            pass  # a full pty buffer loses bytes, as a UART overrun would

    def inject(self, direction: str, data: bytes) -> None:
        """Write raw bytes towards the gateway (``"up"``) or the device (``"down"``): noise, replays."""
        (self.to_gateway if direction == "up" else self.to_device).counts.injected += 1
        self._write(direction, data)


# --- command ------------------------------------------------------------------------------------


def _address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _impairment(args: argparse.Namespace) -> Impairment:
    return Impairment(
        loss=args.loss, duplicate=args.duplicate, reorder=args.reorder, delay=args.delay / 1000,
        jitter=args.jitter / 1000, bit_error=args.bit_error, seed=args.seed, baud=args.baud,
    )


async def _run(args: argparse.Namespace) -> None:
    impairment = _impairment(args)
    if args.link == "udp":
        relay = UdpRelay(_address(args.target), impairment, _address(args.listen))
        await relay.start()
        host, port = relay.address
        print(f"udp relay {host}:{port} -> {args.target}", flush=True)
    else:
        pty_relay = PtyRelay(impairment)
        await pty_relay.start()
        print(f"device {pty_relay.device_path}", flush=True)
        print(f"gateway {pty_relay.gateway_path}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Lossy-link simulator for USMP (UDP relay, pty pair).")
    parser.add_argument("link", choices=("udp", "pty"))
    parser.add_argument("--listen", default="127.0.0.1:0", help="udp: where devices send (default: any port)")
    parser.add_argument("--target", default="127.0.0.1:9000", help="udp: the gateway")
    parser.add_argument("--loss", type=float, default=0.0, help="probability a datagram or frame is lost")
    parser.add_argument("--duplicate", type=float, default=0.0, help="probability it is sent twice")
    parser.add_argument("--reorder", type=float, default=0.0, help="probability it is held back 20 ms")
    parser.add_argument("--delay", type=float, default=0.0, help="milliseconds added to each")
    parser.add_argument("--jitter", type=float, default=0.0, help="up to this many more milliseconds")
    parser.add_argument("--bit-error", type=float, default=0.0, help="probability a byte gets a bit flipped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baud", type=int, default=0, help="pty: pace each direction like a UART at this rate")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_run(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
