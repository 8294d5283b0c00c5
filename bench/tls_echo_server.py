"""A Python asyncio TLS 1.3 echo server: the reference bench/loopback.py
compares the Python gateway with (issue 12, figure 3; docs/performance.md).

The same interpreter, event loop and OpenSSL as the Python gateway: TLS 1.3
only, no session tickets (each connection a full handshake), X25519 when the
client offers only that (bench/c/usmp_loadgen.c --tls does). Every byte
received goes back at once, from an asyncio Protocol (no streams, no
coroutine per message): the fastest plain asyncio echo, so that a ratio
against it is not flattered.

    /usr/bin/python3 bench/tls_echo_server.py --cert CERT --key KEY [--port 0]

Prints "listening on HOST:PORT" when ready; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl


class EchoProtocol(asyncio.Protocol):
    """Writes back whatever arrives on one connection."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def eof_received(self) -> bool | None:
        return False  # close our side too


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.num_tickets = 0  # type: ignore[attr-defined]  # Python 3.8+, not in typeshed's stubs here
    ctx.load_cert_chain(cert, key)
    return ctx


async def serve(host: str, port: int, ctx: ssl.SSLContext) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, host, port, ssl=ctx, backlog=1024)
    bound = server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, tls_context(args.cert, args.key)))


if __name__ == "__main__":
    main()
