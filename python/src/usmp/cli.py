"""The ``usmp`` command: ``serve``, ``connect``, ``keygen``, ``device`` (cli_device.py), ``gateway``
(cli_gateway.py) and ``ota`` (cli_ota.py).

Exit codes: 0 success, 1 runtime or protocol failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn, Union

from . import __version__, cli_device, cli_discovery, cli_gateway
from .cli_ota import OtaUsageError, add_ota_commands, add_serve_options, run_ota, runner_for_serve
from .client import USMPClient
from .config import ClientConfig, ServerConfig
from .datagram import DatagramClient, DatagramSession
from .errors import Condition, ConfigurationError, ConnectionLost, PeerClosed, USMPError
from .psk import load_psk_file, parse_device_id, parse_hex_psk
from .serial_link import SerialClient, SerialServer
from .server import USMPServer
from .session import Session
from .transports import DEFAULT_BAUD, parse_target
from .udp import UDPClient, UDPServer
from .wire import MAX_PSK_BYTES, MIN_PSK_BYTES

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DEFAULT_PORT = 9000

AnySession = Union[Session, DatagramSession]


class _UsageError(Exception):
    """A command-line or configuration problem: reported in one line, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="usmp",
        description="USMP gateway tools: run a gateway, connect as a device, make keys. "
        "Transports: TCP (default), UDP and serial lines (datagram mode).",
        epilog="Examples: usmp serve --psk-file keys; usmp serve --udp --port 9000 --psk-file keys; "
        "usmp serve --serial /dev/ttyUSB0 --baud 115200 --psk-file keys; "
        "usmp connect 127.0.0.1:9000 | udp://127.0.0.1:9000 | serial:///dev/ttyUSB0?baud=115200 "
        "--device-id ID --psk-file keys. "
        "Exit codes: 0 success, 1 runtime or protocol failure, 2 usage or configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"usmp {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v: info, -vv: debug)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run an echo or print gateway over TCP, UDP or a serial port",
        description="Run a USMP gateway over TCP (default), UDP (--udp: one socket, many devices) or a "
        "serial port (--serial PATH --baud N: COBS framing, one session at a time). "
        "There is no default PSK: give --psk-file or --psk-env. "
        "Prints one status line when listening and one per session open and close; "
        "SIGINT or SIGTERM stops it gracefully (BYE(SHUTDOWN) to every session).",
    )
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP or UDP port, 0 for any (default: %(default)s)"
    )
    link = serve.add_mutually_exclusive_group()
    link.add_argument("--udp", action="store_true", help="serve UDP (datagram mode) on --host and --port")
    link.add_argument("--serial", metavar="PATH", help="serve the serial port PATH (datagram mode, COBS)")
    serve.add_argument(
        "--baud", type=int, default=DEFAULT_BAUD, help="serial: the line speed (default: %(default)s)"
    )
    _add_psk_options(serve, file_help="lines 'device_id_hex psk_hex'; '#' starts a comment")
    serve.add_argument(
        "--mode",
        choices=("echo", "print"),
        default="echo",
        help="echo: send every message back; print: print every message to stdout (default: %(default)s)",
    )
    serve.add_argument("--max-sessions", type=int, default=ServerConfig.max_sessions, help="(default: %(default)s)")
    serve.add_argument(
        "--idle-timeout", type=float, default=ServerConfig.idle_timeout, help="seconds (default: %(default)s)"
    )
    serve.add_argument(
        "--handshake-timeout",
        type=float,
        default=ServerConfig.handshake_timeout,
        help="seconds (default: %(default)s)",
    )
    serve.add_argument(
        "--hello-timeout",
        type=float,
        default=ServerConfig.hello_timeout,
        help="seconds a new connection has to send its HELLO (default: %(default)s)",
    )
    serve.add_argument(
        "--max-pending",
        type=int,
        default=ServerConfig.max_pending,
        help="connections without a HELLO yet; one more evicts the oldest (default: %(default)s)",
    )
    serve.add_argument(
        "--write-timeout",
        type=float,
        default=ServerConfig.write_timeout,
        help="seconds output may make no progress before the connection is dropped (default: %(default)s)",
    )
    add_serve_options(serve)
    cli_discovery.add_announce_options(serve)

    connect = commands.add_parser(
        "connect",
        help="connect as a device: stdin lines are sent, replies printed",
        description="Connect to a USMP gateway as a device. Each line read from stdin is sent as one "
        "message (without its newline); every message received is printed on its own line.",
    )
    connect.add_argument(
        "address",
        metavar="ADDRESS",
        help="the gateway: HOST:PORT or tcp://HOST:PORT (TCP), udp://HOST:PORT (UDP), "
        "serial:///dev/ttyUSB0?baud=115200 (serial line, COBS); e.g. 127.0.0.1:9000 or [::1]:9000",
    )
    connect.add_argument("--device-id", required=True, help="12 hex digits, colons allowed (de:ad:be:ef:00:01)")
    _add_psk_options(connect, file_help="same format as for serve; the line of --device-id is used")
    connect.add_argument(
        "--timeout", type=float, default=ClientConfig.handshake_timeout, help="handshake timeout, seconds"
    )
    connect.add_argument(
        "--linger",
        type=float,
        default=1.0,
        help="after the end of stdin, wait this many quiet seconds for replies before closing (default: %(default)s)",
    )

    cli_gateway.add_parser(commands)
    cli_discovery.add_parser(commands)

    keygen = commands.add_parser(
        "keygen", help="print a new random PSK in hex", description="Print a new random PSK (hex) from the OS CSPRNG."
    )
    keygen.add_argument(
        "--bytes",
        type=int,
        default=32,
        dest="size",
        metavar="N",
        help=f"key length, {MIN_PSK_BYTES} to {MAX_PSK_BYTES} (default: %(default)s)",
    )
    cli_device.add_device_commands(commands)
    add_ota_commands(commands)
    return parser


def _add_psk_options(parser: argparse.ArgumentParser, file_help: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--psk-file", metavar="FILE", help=f"per-device keys: {file_help}")
    group.add_argument("--psk-env", metavar="VAR", help="name of an environment variable holding one hex PSK")


def _psk_from_env(name: str) -> bytes:
    value = os.environ.get(name)
    if value is None:
        raise _UsageError(f"environment variable {name} is not set")
    return parse_hex_psk(value, f"the PSK in ${name}")


# --- serve ------------------------------------------------------------------------------------


def _status(line: str) -> None:
    print(line, flush=True)


async def _serve(args: argparse.Namespace) -> int:
    if args.psk_file:
        psk: bytes | dict[bytes, bytes] = load_psk_file(args.psk_file)
        keys = f"{len(psk)} device(s) from {args.psk_file}"
    elif args.psk_env:
        psk = _psk_from_env(args.psk_env)
        keys = f"one key for every device from ${args.psk_env}"
        # spec/security.md: whoever holds the shared key can claim any device id.
        _status(
            "warning: one key for every device: device ids are not authenticated "
            "(any holder of the key can claim any id); use --psk-file for per-device keys"
        )
    else:
        raise _UsageError("no PSK: give --psk-file FILE or --psk-env VAR (there is no default key)")
    config = ServerConfig(
        max_sessions=args.max_sessions,
        idle_timeout=args.idle_timeout if args.idle_timeout > 0 else None,
        handshake_timeout=args.handshake_timeout,
        hello_timeout=args.hello_timeout,
        max_pending=args.max_pending,
        write_timeout=args.write_timeout,
    )
    ota = runner_for_serve(args, _status)

    counters = cli_discovery.ServeCounters("serial" if args.serial else "udp" if args.udp else "tcp")

    async def on_open(session: AnySession) -> None:
        assert session.session_id is not None and session.device_id is not None
        if ota is not None:
            session.control_handler = ota.control_received  # spec/ota.md: the device's STATUS starts a job
        counters.opened(session)
        _status(f"open {session.session_id.hex()} device {session.device_id.hex()} from {_address(session.peer)}")

    async def on_close(session: AnySession, reason: Condition) -> None:
        assert session.session_id is not None
        if ota is not None:
            await ota.session_closed(session)
        counters.closed(session)
        error = session.error
        if isinstance(error, PeerClosed):
            code = error.reason.value if error.reason is not None else f"code 0x{error.code:02x}"
            why = f"BYE from the device ({code})"
        elif error is not None and error.message:
            why = f"{reason.value} ({error.message})"
        else:
            why = reason.value
        _status(f"close {session.session_id.hex()}: {why}")

    async def on_data(session: AnySession, data: bytes) -> None:
        counters.received(session, data)
        if args.mode == "echo":
            await session.send(data)
            counters.sent(session, data)
        else:
            assert session.session_id is not None
            _status(f"data {session.session_id.hex()} {data!r}")

    server: USMPServer | UDPServer | SerialServer
    if args.serial:
        server = SerialServer(args.serial, args.baud, psk, on_data, on_open=on_open, on_close=on_close, config=config)
    elif args.udp:
        server = UDPServer(args.host, args.port, psk, on_data, on_open=on_open, on_close=on_close, config=config)
    else:
        server = USMPServer(args.host, args.port, psk, on_data, on_open=on_open, on_close=on_close, config=config)
    try:
        await server.start()
    except OSError as error:
        print(f"usmp serve: cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    except ConnectionLost as error:  # a serial port that cannot be opened
        print(f"usmp serve: {error.message}", file=sys.stderr)
        return EXIT_FAILURE
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if isinstance(server, SerialServer):
        listening = f"serial {args.serial} at {args.baud} baud"
    else:
        listening = ", ".join(("udp " if args.udp else "") + _address(a) for a in server.addresses)
    ota_jobs = f", OTA jobs from {args.ota_jobs}" if ota is not None else ""
    network = [] if isinstance(server, SerialServer) else server.addresses
    name = socket.gethostname()
    try:
        announcements = await cli_discovery.start_announcements(
            args, name, [("udp" if args.udp else "tcp", str(a[0]), int(a[1])) for a in network],
            lambda: counters.snapshot(name, listening),
        )
    except (OSError, ConfigurationError) as error:
        print(f"usmp serve: {error}", file=sys.stderr)
        await server.stop()
        return EXIT_FAILURE
    _status(f"listening on {listening} ({args.mode} mode, {keys}{ota_jobs}){announcements.describe()}")
    poller = asyncio.create_task(ota.run_poller()) if ota is not None else None
    await stop.wait()
    _status("stopping")
    if poller is not None:
        poller.cancel()
    await announcements.stop()
    await server.stop()
    return EXIT_OK


def _address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


# --- connect ----------------------------------------------------------------------------------


def _stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[bytes | None]:
    """Lines of stdin, read by a daemon thread so that a terminal never blocks the exit."""
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin.buffer:
            loop.call_soon_threadsafe(lines.put_nowait, line.rstrip(b"\r\n"))
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="usmp-stdin", daemon=True).start()
    return lines


async def _connect(args: argparse.Namespace) -> int:
    target = parse_target(args.address)
    device_id = parse_device_id(args.device_id)
    if args.psk_file:
        table = load_psk_file(args.psk_file)
        if device_id not in table:
            raise _UsageError(f"{args.psk_file} has no PSK for device {device_id.hex()}")
        psk = table[device_id]
    elif args.psk_env:
        psk = _psk_from_env(args.psk_env)
    else:
        raise _UsageError("no PSK: give --psk-file FILE or --psk-env VAR")
    client_config = ClientConfig(handshake_timeout=args.timeout)
    client: USMPClient | DatagramClient
    if target.transport == "udp":
        client = UDPClient(target.host, target.port, device_id=device_id, psk=psk, config=client_config)
    elif target.transport == "serial":
        client = SerialClient(target.path, target.baud, device_id=device_id, psk=psk, config=client_config)
    else:
        client = USMPClient(target.host, target.port, device_id=device_id, psk=psk, config=client_config)
    try:
        await client.connect()
    except USMPError as error:
        print(f"usmp connect: {error}", file=sys.stderr)
        return EXIT_FAILURE
    assert client.session_id is not None
    where = _address((target.host, target.port)) if target.transport == "tcp" else str(target)
    print(f"connected to {where}, session {client.session_id.hex()}", file=sys.stderr)
    loop = asyncio.get_running_loop()
    last_activity = loop.time()

    async def print_replies() -> None:
        nonlocal last_activity
        while True:
            message = await client.recv()
            last_activity = loop.time()
            sys.stdout.write(message.decode("utf-8", "replace") + "\n")
            sys.stdout.flush()

    printer = asyncio.create_task(print_replies())
    lines = _stdin_lines(loop)
    try:
        while (line := await _next_line(lines, printer)) is not None:
            await client.send(line)
            last_activity = loop.time()
        while not printer.done() and loop.time() - last_activity < args.linger:
            await asyncio.wait({printer}, timeout=last_activity + args.linger - loop.time())
        if printer.done():
            printer.result()  # the session ended: raise its error
        return EXIT_OK
    except USMPError as error:
        print(f"usmp connect: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        printer.cancel()
        await client.close()


async def _next_line(lines: asyncio.Queue[bytes | None], printer: asyncio.Task[None]) -> bytes | None:
    """The next stdin line (``None`` at its end), unless the session ends first: then its error is raised."""
    getter = asyncio.ensure_future(lines.get())
    await asyncio.wait({getter, printer}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    printer.result()  # the printer only ends by the session's error
    return None


# --- keygen and main ------------------------------------------------------------------------------


def _keygen(args: argparse.Namespace) -> int:
    if not MIN_PSK_BYTES <= args.size <= MAX_PSK_BYTES:
        raise _UsageError(f"--bytes must be {MIN_PSK_BYTES} to {MAX_PSK_BYTES}, got {args.size}")
    print(secrets.token_bytes(args.size).hex())
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if args.command == "keygen":
            return _keygen(args)
        if args.command == "serve":
            return asyncio.run(_serve(args))
        if args.command == "device":
            return cli_device.run(args)
        if args.command == "gateway":
            return cli_gateway.run(args)
        if args.command == "ota":
            return run_ota(args)
        if args.command in cli_discovery.COMMANDS:
            return cli_discovery.run(args)
        return asyncio.run(_connect(args))
    except (_UsageError, ConfigurationError, OtaUsageError) as error:
        print(f"usmp {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILURE


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())
