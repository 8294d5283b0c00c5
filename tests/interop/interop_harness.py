"""What the interop and attack tests share: the C programs, both gateways and both clients
behind one small interface each, and an asyncio test runner with a hard time bound.

Outcomes are strings so that one assertion reads the same for every pairing:

``"OK"``
    the call succeeded;
``"AUTH_FAILED"``, ``"BAD_RECORD"``, ... (a condition of spec section 9.1)
    this side detected it;
``"PEER_ERROR:AUTH_FAILED"``, ``"PEER_CLOSED:SHUTDOWN"``
    the peer sent ERROR or BYE with that code.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import pytest

from usmp import (
    ClientConfig,
    Condition,
    PeerClosed,
    PeerError,
    ServerConfig,
    Session,
    USMPClient,
    USMPError,
    USMPServer,
)

from interop_proxy import Hook, Proxy, ProxyConnection, wait_for

REPO = Path(__file__).resolve().parents[2]

PSK = bytes.fromhex("6a1f0c3e9b2d4f5871a6c0e3d2b49f8e17c5a3e9f0b2d4c6e8a1b3c5d7e9f102")
WRONG_PSK = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
DEVICE = bytes.fromhex("020000000001")
UNKNOWN_DEVICE = bytes.fromhex("02000000beef")

SANITIZER_MARKERS = (
    "AddressSanitizer",
    "LeakSanitizer",
    "UndefinedBehaviorSanitizer",
    "runtime error:",
)

GATEWAYS = ["py", "c"]
CLIENTS = ["py", "c"]


def pattern(length: int, seed: int) -> bytes:
    """The test payload the C programs generate too: (seed*31 + i*7 + length) mod 251."""
    return bytes((seed * 31 + i * 7 + length) % 251 for i in range(length))


def async_test(timeout: float = 60.0) -> Callable[[Callable[..., Awaitable[None]]], Callable[..., None]]:
    """Run an ``async def`` test in a fresh event loop, failing (not hanging) after ``timeout`` s."""

    def decorate(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            async def bounded() -> None:
                async with asyncio.timeout(timeout):
                    await fn(*args, **kwargs)

            asyncio.run(bounded())

        return wrapper

    return decorate


def condition_name(code: int) -> str:
    cond = Condition.from_code(code)
    return cond.value if cond is not None else f"CODE_0x{code:02x}"


def outcome_of(error: BaseException) -> str:
    """The outcome string of an exception raised by the Python client or session."""
    if isinstance(error, PeerError):
        return f"PEER_ERROR:{condition_name(error.code)}"
    if isinstance(error, PeerClosed):
        return f"PEER_CLOSED:{condition_name(error.code)}"
    if isinstance(error, USMPError):
        return error.condition.value
    if isinstance(error, TimeoutError):
        return "WAIT"
    raise error


# --------------------------------------------------------------------------- C programs


@dataclass
class CBuild:
    """The C build the tests run (``USMP_C_BUILD``), or why there is none."""

    directory: Optional[Path]
    problem: Optional[str]

    PROGRAMS = {
        "server": "usmp_server",
        "device": "usmp_device",
        "interop_device": "tests/interop/usmp_interop_device",
        "interop_device_small": "tests/interop/usmp_interop_device_small",
        "flip": "tests/interop/usmp_interop_flip",
        "datagram_device": "tests/interop/usmp_datagram_device",
        "loadgen": "bench/c/usmp_loadgen",
    }

    def program(self, name: str) -> Path:
        """The path of a C program; skips the test (fails it under CI=true) when it is missing."""
        problem = self.problem
        path = None
        if self.directory is not None and problem is None:
            path = self.directory / self.PROGRAMS[name]
            if not os.access(path, os.X_OK):
                problem = (
                    f"C program {path} is missing: build it with "
                    f"`cmake -S . -B {self.directory} -DUSMP_CRYPTO=openssl -DUSMP_SANITIZE=ON "
                    f"-DUSMP_WERROR=ON && cmake --build {self.directory}`"
                )
        if problem is not None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI=true and {problem}", pytrace=False)
            pytest.skip(f"INTEROP NOT RUN: {problem}")
        assert path is not None
        return path


def locate_c_build() -> CBuild:
    configured = os.environ.get("USMP_C_BUILD")
    if configured:
        directory = Path(configured)
        if not directory.is_dir():
            return CBuild(None, f"USMP_C_BUILD={configured} is not a directory")
        return CBuild(directory, None)
    default = REPO / "build" / "openssl-asan"
    if default.is_dir():
        return CBuild(default, None)
    return CBuild(None, f"USMP_C_BUILD is not set and {default} does not exist")


def sanitizer_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


class CProcess:
    """A C program under asyncio, its stdout as lines, its stderr kept for sanitizer reports."""

    def __init__(self, argv: list[str], name: str, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.name = name
        self.env = env or sanitizer_env()
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.stderr = ""
        self._queue: asyncio.Queue[Optional[str]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.finished = False

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        self._tasks = [asyncio.create_task(self._read_stdout()), asyncio.create_task(self._read_stderr())]

    async def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                await self._queue.put(None)
                return
            text = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(text)
            await self._queue.put(text)

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while True:
            raw = await self.proc.stderr.read(65536)
            if not raw:
                return
            self.stderr += raw.decode(errors="replace")

    async def next_line(self, timeout: float) -> str:
        try:
            async with asyncio.timeout(timeout):
                line = await self._queue.get()
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: no output within {timeout:.1f} s; stderr so far:\n{self.stderr[-3000:]}"
            ) from None
        if line is None:
            await self._wait_exit(5.0)
            raise AssertionError(
                f"{self.name} exited ({self.returncode}) unexpectedly; stderr:\n{self.stderr[-3000:]}"
            )
        return line

    async def wait_line(self, regex: str, timeout: float = 10.0, start: int = 0) -> re.Match[str]:
        """The first stdout line from index ``start`` on that matches ``regex`` (waits for it)."""
        compiled = re.compile(regex)

        def find() -> Optional[re.Match[str]]:
            for line in self.lines[start:]:
                m = compiled.search(line)
                if m:
                    return m
            return None

        try:
            return await wait_for(find, timeout, f"{self.name} to print /{regex}/")
        except AssertionError as e:
            tail = "\n".join(self.lines[-20:])
            raise AssertionError(f"{e}\nlast lines:\n{tail}\nstderr:\n{self.stderr[-2000:]}") from None

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.returncode if self.proc else None

    async def _wait_exit(self, timeout: float) -> Optional[int]:
        assert self.proc is not None
        try:
            async with asyncio.timeout(timeout):
                await self.proc.wait()
        except TimeoutError:
            return None
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return self.proc.returncode

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    def check_sanitizers(self) -> None:
        for marker in SANITIZER_MARKERS:
            assert marker not in self.stderr, f"{self.name}: sanitizer report:\n{self.stderr[-6000:]}"

    async def finish(self, sig: int = signal.SIGTERM, expect: Optional[int] = 0, timeout: float = 15.0) -> None:
        """End the program (``sig``), check its exit status and that no sanitizer reported anything."""
        if self.finished or self.proc is None:
            return
        self.finished = True
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(sig)
        rc = await self._wait_exit(timeout)
        if rc is None:
            self.proc.kill()
            await self._wait_exit(5.0)
            raise AssertionError(f"{self.name} did not exit within {timeout} s of signal {sig}")
        self.check_sanitizers()
        if expect is not None:
            assert rc == expect, f"{self.name} exited with {rc}, expected {expect}; stderr:\n{self.stderr[-3000:]}"

    async def kill(self) -> None:
        """Cleanup after a failure: no checks."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self._wait_exit(5.0)
        self.finished = True


# --------------------------------------------------------------------------- gateways


def _c_reason(text: str) -> str:
    """The C gateway's close reason in outcome form."""
    m = re.match(r"BYE from the device \(code (\d+)\)", text)
    if m:
        return f"PEER_CLOSED:{condition_name(int(m.group(1)))}"
    m = re.match(r"closed by the gateway \(code (\d+)\)", text)
    if m:
        return condition_name(int(m.group(1)))
    if text == "gateway shutting down":
        return "SHUTDOWN"
    return text


class CGateway:
    """``usmp_server`` (the C gateway, an echo server) on a free port."""

    kind = "c"

    def __init__(
        self,
        build: CBuild,
        workdir: Path,
        psks: dict[bytes, bytes],
        *,
        max_record: int | None = None,
        max_message: int | None = None,
        handshake_timeout: float | None = None,
        idle_timeout: float | None = None,
        max_sessions: int | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        psk_file = workdir / f"c-gateway-{id(self)}.psk"
        psk_file.write_text("".join(f"{d.hex()} {k.hex()}\n" for d, k in psks.items()))
        # Like PyGateway: the tests connect often from one address, so the per-source rate limit is lifted.
        argv = [str(build.program("server")), "--psk-file", str(psk_file), "--port", "0"]
        argv += ["--handshake-rate", "1000000", "--handshake-burst", "1000000"]
        for option, value in (
            ("--max-record", max_record),
            ("--max-message", max_message),
            ("--max-sessions", max_sessions),
            ("--handshake-timeout-ms", None if handshake_timeout is None else int(handshake_timeout * 1000)),
            ("--idle-timeout-ms", None if idle_timeout is None else int(idle_timeout * 1000)),
        ):
            if value is not None:
                argv += [option, str(value)]
        self.process = CProcess(argv, "usmp_server")
        self.port = 0

    async def start(self) -> None:
        await self.process.start()
        m = await self.process.wait_line(r"listening on 127\.0\.0\.1:(\d+)", 10.0)
        self.port = int(m.group(1))

    async def stop(self) -> None:
        await self.process.finish(signal.SIGTERM, expect=0)

    async def abort(self) -> None:
        await self.process.kill()

    def log_mark(self) -> int:
        """Where the log stands now (see ProxyConnection.gateway_mark)."""
        return len(self.process.lines)

    def outcome_since(self, mark: int, peer_port: int) -> str | None:
        """How the connection from peer_port ended, judged on log lines after mark only."""
        lines = self.process.lines[mark:]
        for i, line in enumerate(lines):
            m = re.search(rf"connection from 127\.0\.0\.1:{peer_port} failed: (\S+)", line)
            if m:
                return m.group(1)
            m = re.search(rf"session (\w+) open: device \w+ from 127\.0\.0\.1:{peer_port}$", line)
            if m:
                for later in lines[i + 1:]:
                    closed = re.search(rf"session {m.group(1)} closed: (.*)$", later)
                    if closed:
                        return _c_reason(closed.group(1))
                return None
        return None

    def opened_from(self, peer_port: int) -> bool:
        pat = re.compile(rf"session \w+ open: device \w+ from 127\.0\.0\.1:{peer_port}$")
        return any(pat.search(line) for line in self.process.lines)

    async def handshake_failure(self, peer_port: int, timeout: float = 10.0) -> str:
        m = await self.process.wait_line(rf"connection from 127\.0\.0\.1:{peer_port} failed: (\S+)", timeout)
        return m.group(1)

    async def session_end(self, peer_port: int, timeout: float = 10.0) -> str:
        m = await self.process.wait_line(rf"session (\w+) open: device \w+ from 127\.0\.0\.1:{peer_port}$", timeout)
        closed = await self.process.wait_line(rf"session {m.group(1)} closed: (.*)$", timeout)
        return _c_reason(closed.group(1))

    async def any_session_end(self, timeout: float = 10.0, start: int = 0) -> str:
        m = await self.process.wait_line(r"session \w+ closed: (.*)$", timeout, start)
        return _c_reason(m.group(1))


class _LogCapture(logging.Handler):
    def __init__(self, gateway: PyGateway) -> None:
        super().__init__(logging.INFO)
        self.gateway = gateway

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "handshake from %s failed: %s" and isinstance(record.args, tuple):
            peer, reason = record.args
            port = peer[1] if isinstance(peer, tuple) else 0
            self.gateway.failures[port] = str(reason)
            self.gateway.events.append((port, str(reason)))


class PyGateway:
    """``USMPServer`` (the Python gateway) on a free port; echoes by default, records everything."""

    kind = "py"

    def __init__(
        self,
        psks: dict[bytes, bytes],
        *,
        max_record: int | None = None,
        max_message: int | None = None,
        handshake_timeout: float | None = None,
        idle_timeout: float | None = None,
        max_sessions: int | None = None,
        keepalive: float | None = None,
        on_data: Callable[[Session, bytes], Awaitable[None]] | None = None,
        on_open: Callable[[Session], Awaitable[None]] | None = None,
    ) -> None:
        options: dict[str, Any] = dict(handshake_rate=1e6, handshake_burst=1_000_000, shutdown_grace=2.0)
        for name, value in (
            ("max_record", max_record),
            ("max_message", max_message),
            ("handshake_timeout", handshake_timeout),
            ("max_sessions", max_sessions),
            ("keepalive_interval", keepalive),
        ):
            if value is not None:
                options[name] = value
        options["idle_timeout"] = idle_timeout if idle_timeout is not None else 90.0
        self.config = ServerConfig(**options)
        self.psks = dict(psks)
        self.delivered: list[tuple[int, bytes]] = []  # (peer port, message) per on_data call
        self.opened: list[Session] = []
        self.ends: dict[int, str] = {}
        self.failures: dict[int, str] = {}
        # Every failure and end in order, as (peer port, outcome): ports are
        # reused, so a connection's outcome is the first for its port after
        # its mark.
        self.events: list[tuple[int, str]] = []
        self._user_on_data = on_data
        self._user_on_open = on_open
        self.server: USMPServer | None = None
        self._capture = _LogCapture(self)
        self.port = 0

    async def _on_data(self, session: Session, data: bytes) -> None:
        self.delivered.append((session.peer[1], data))
        if self._user_on_data is not None:
            await self._user_on_data(session, data)
        else:
            await session.send(data)

    async def _on_open(self, session: Session) -> None:
        self.opened.append(session)
        if self._user_on_open is not None:
            await self._user_on_open(session)

    async def _on_close(self, session: Session, reason: Condition) -> None:
        if reason is Condition.PEER_CLOSED and isinstance(session.error, PeerClosed):
            text = f"PEER_CLOSED:{condition_name(session.error.code)}"
        else:
            text = reason.value
        self.ends[session.peer[1]] = text
        self.events.append((session.peer[1], text))

    async def start(self) -> None:
        logger = logging.getLogger("usmp.server")
        self._old_level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(self._capture)
        self.server = USMPServer(
            host="127.0.0.1",
            port=0,
            psk=self.psks,
            on_data=self._on_data,
            on_open=self._on_open,
            on_close=self._on_close,
            config=self.config,
        )
        await self.server.start()
        self.port = self.server.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
        logger = logging.getLogger("usmp.server")
        logger.removeHandler(self._capture)
        logger.setLevel(self._old_level)

    abort = stop

    def log_mark(self) -> int:
        """Where the record of outcomes stands now (see ProxyConnection.gateway_mark)."""
        return len(self.events)

    def outcome_since(self, mark: int, peer_port: int) -> str | None:
        for port, outcome in self.events[mark:]:
            if port == peer_port:
                return outcome
        return None

    def opened_from(self, peer_port: int) -> bool:
        return any(s.peer[1] == peer_port for s in self.opened)

    async def handshake_failure(self, peer_port: int, timeout: float = 10.0) -> str:
        return await wait_for(lambda: self.failures.get(peer_port), timeout, f"a failed handshake from :{peer_port}")

    async def session_end(self, peer_port: int, timeout: float = 10.0) -> str:
        return await wait_for(lambda: self.ends.get(peer_port), timeout, f"the end of the session from :{peer_port}")

    def delivered_from(self, peer_port: int) -> list[bytes]:
        return [data for port, data in self.delivered if port == peer_port]


Gateway = Union[CGateway, PyGateway]


@contextlib.asynccontextmanager
async def gateway(
    kind: str, build: CBuild, workdir: Path, psks: dict[bytes, bytes] | None = None, **options: Any
) -> AsyncIterator[Gateway]:
    """A running gateway of ``kind`` ("py" or "c"), stopped (and checked) at the end."""
    psks = psks if psks is not None else {DEVICE: PSK}
    gw: Gateway
    if kind == "c":
        c_options = {k: v for k, v in options.items() if k not in ("keepalive", "on_data", "on_open")}
        gw = CGateway(build, workdir, psks, **c_options)
    else:
        gw = PyGateway(psks, **options)
    await gw.start()
    ok = False
    try:
        yield gw
        ok = True
    finally:
        if ok:
            await gw.stop()
        else:
            await gw.abort()


# --------------------------------------------------------------------------- clients


class PyDevice:
    """``USMPClient`` behind the common client interface."""

    kind = "py"

    def __init__(
        self,
        port: int,
        *,
        psk: bytes = PSK,
        device_id: bytes = DEVICE,
        handshake_timeout: float = 10.0,
        keepalive: float | None = None,
        pong_timeout: float | None = None,
        max_record: int | None = None,
        max_message: int | None = None,
    ) -> None:
        options: dict[str, Any] = dict(handshake_timeout=handshake_timeout, keepalive_interval=keepalive)
        if pong_timeout is not None:
            options["pong_timeout"] = pong_timeout
        if max_record is not None:
            options["max_record"] = max_record
        if max_message is not None:
            options["max_message"] = max_message
        self.port = port
        self.psk = psk
        self.device_id = device_id
        self.config = ClientConfig(**options)
        self.client: USMPClient | None = None

    async def start(self) -> None:
        pass

    async def connect(self) -> str:
        self.client = USMPClient("127.0.0.1", self.port, device_id=self.device_id, psk=self.psk, config=self.config)
        try:
            await self.client.connect()
        except (USMPError, TimeoutError) as error:
            return outcome_of(error)
        return "OK"

    async def send(self, data: bytes) -> str:
        assert self.client is not None
        try:
            await self.client.send(data)
        except USMPError as error:
            return outcome_of(error)
        return "OK"

    async def recv(self, timeout: float = 10.0) -> Union[bytes, str]:
        assert self.client is not None
        try:
            return await self.client.recv(timeout=timeout)
        except (USMPError, TimeoutError) as error:
            return outcome_of(error)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.close()


class CDevice:
    """``usmp_interop_device`` (the C device API) behind the common client interface."""

    kind = "c"

    def __init__(
        self,
        build: CBuild,
        port: int,
        *,
        psk: bytes = PSK,
        device_id: bytes = DEVICE,
        handshake_timeout: float = 10.0,
        keepalive: float | None = None,
        pong_timeout: float | None = None,
        small: bool = False,
        reconnect: bool = False,
    ) -> None:
        program = build.program("interop_device_small" if small else "interop_device")
        argv = [
            str(program),
            "--port",
            str(port),
            "--psk-hex",
            psk.hex(),
            "--device-id",
            device_id.hex(),
            "--handshake-timeout-ms",
            str(int(handshake_timeout * 1000)),
        ]
        if keepalive:
            argv += ["--keepalive-ms", str(int(keepalive * 1000))]
        if pong_timeout:
            argv += ["--pong-timeout-ms", str(int(pong_timeout * 1000))]
        if not reconnect:
            argv.append("--no-reconnect")
        self.process = CProcess(argv, program.name)
        self.max_record = 0
        self.max_message = 0
        self.max_single_record = 0  # the largest message sent as one DATA record, once connected
        self.last_api_result = ""  # what the last failed call of the device API returned
        self.events: list[str] = []

    async def start(self) -> None:
        await self.process.start()
        ready = await self.process.next_line(10.0)
        m = re.match(r"ready max_record=(\d+) max_message=(\d+)", ready)
        assert m, ready
        self.max_record, self.max_message = int(m.group(1)), int(m.group(2))

    async def command(self, text: str, timeout: float = 30.0) -> str:
        """Send one command; return its final line (events before it go to ``self.events``)."""
        assert self.process.proc is not None and self.process.proc.stdin is not None
        self.process.proc.stdin.write(text.encode() + b"\n")
        await self.process.proc.stdin.drain()
        deadline = time.monotonic() + timeout
        while True:
            line = await self.process.next_line(max(0.1, deadline - time.monotonic()))
            if line.startswith("event "):
                self.events.append(line)
                continue
            return line

    def _failure(self, what: str, line: str) -> str:
        m = re.match(rf"err {what} (\S+) (\S+) api=(\S+)$", line)
        assert m, line
        self.last_api_result = m.group(3)
        return self._outcome(m.group(1), m.group(2))

    @staticmethod
    def _outcome(condition: str, peer: str) -> str:
        if peer != "-":
            return f"{condition}:{condition_name(int(peer))}"
        return condition

    async def connect(self) -> str:
        line = await self.command("connect")
        if line.startswith("ok connect"):
            self.max_single_record = int(line.split()[3])
            return "OK"
        return self._failure("connect", line)

    async def send(self, data: bytes) -> str:
        line = await self.command(f"sendhex {data.hex() or '-'}")
        if line.startswith("ok send"):
            return "OK"
        return self._failure("send", line)

    async def send_pattern(self, length: int, seed: int) -> str:
        line = await self.command(f"send {length} {seed}")
        if line.startswith("ok send"):
            return "OK"
        return self._failure("send", line)

    async def recv(self, timeout: float = 10.0) -> Union[bytes, str]:
        line = await self.command(f"recv {int(timeout * 1000)}", timeout + 30.0)
        m = re.match(r"ok recv (\d+) (\S+)", line)
        if m:
            data = b"" if m.group(2) == "-" else bytes.fromhex(m.group(2))
            assert len(data) == int(m.group(1))
            return data
        if line == "timeout recv":
            return "WAIT"
        return self._failure("recv", line)

    async def close(self) -> None:
        assert await self.command("close") == "ok close"

    async def state(self) -> tuple[str, str, int]:
        line = await self.command("state")
        m = re.match(r"ok state (\S+) (\S+) (\d+)", line)
        assert m, line
        return m.group(1), m.group(2), int(m.group(3))

    async def stats(self) -> dict[str, int]:
        line = await self.command("stats")
        assert line.startswith("ok stats"), line
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}

    async def quit(self) -> None:
        """Exit normally and check the exit status and the sanitizers."""
        if self.process.proc is None or self.process.finished:
            return
        assert self.process.proc.stdin is not None
        self.process.proc.stdin.write(b"quit\n")
        with contextlib.suppress(ConnectionError):
            await self.process.proc.stdin.drain()
        self.process.finished = True
        rc = await self.process._wait_exit(15.0)
        if rc is None:
            await self.process.kill()
            raise AssertionError(f"{self.process.name} did not quit")
        self.process.check_sanitizers()
        assert rc == 0, f"{self.process.name} exited with {rc}:\n{self.process.stderr[-3000:]}"

    async def aclose(self) -> None:
        await self.quit()


Client = Union[PyDevice, CDevice]


@contextlib.asynccontextmanager
async def client(kind: str, build: CBuild, port: int, **options: Any) -> AsyncIterator[Client]:
    """A client of ``kind`` ("py": USMPClient, "c": the C device API) aimed at ``port``."""
    c: Client
    if kind == "c":
        options.pop("max_record", None)
        options.pop("max_message", None)
        c = CDevice(build, port, **options)
    else:
        options.pop("small", None)
        options.pop("reconnect", None)
        c = PyDevice(port, **options)
    await c.start()
    ok = False
    try:
        yield c
        ok = True
    finally:
        if ok:
            await c.aclose()
        elif isinstance(c, CDevice):
            await c.process.kill()
        else:
            await c.aclose()


@dataclass
class Timer:
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass
class Rig:
    """A gateway, a proxy in front of it, and a client aimed at the proxy."""

    gw: Gateway
    proxy: Proxy
    client: Client

    @property
    def conn(self) -> ProxyConnection:
        """The client's latest connection through the proxy."""
        assert self.proxy.connections, "no connection through the proxy yet"
        return self.proxy.connections[-1]

    async def gateway_view(self, timeout: float = 10.0) -> str:
        """How the gateway saw the latest connection end: its handshake failure or its session's end."""
        conn = self.conn
        await wait_for(lambda: conn.upstream_port is not None, timeout, "the proxy's connection to the gateway")
        assert conn.upstream_port is not None
        port = conn.upstream_port

        async def either() -> str:
            while True:
                outcome = self.gw.outcome_since(conn.gateway_mark, port)
                if outcome is not None:
                    return outcome
                await asyncio.sleep(0.005)

        try:
            async with asyncio.timeout(timeout):
                return await either()
        except TimeoutError:
            raise AssertionError(f"the {self.gw.kind} gateway reported no end for :{port} in {timeout} s") from None

    def gateway_delivered(self) -> list[bytes]:
        """Messages the Python gateway handed to on_data for the latest connection (C gateway: see
        the echoes in conn.frames[S2C] instead, it has no other output)."""
        assert isinstance(self.gw, PyGateway) and self.conn.upstream_port is not None
        return self.gw.delivered_from(self.conn.upstream_port)


@contextlib.asynccontextmanager
async def rig(
    gw_kind: str,
    client_kind: str,
    build: CBuild,
    workdir: Path,
    *,
    gw_options: dict[str, Any] | None = None,
    client_options: dict[str, Any] | None = None,
    hook: Hook | None = None,
    hold_open: bool = False,
) -> AsyncIterator[Rig]:
    async with gateway(gw_kind, build, workdir, **(gw_options or {})) as gw:
        async with Proxy(gw.port, hook, hold_open=hold_open) as proxy:
            proxy.mark_source = gw.log_mark
            async with client(client_kind, build, proxy.port, **(client_options or {})) as c:
                yield Rig(gw, proxy, c)
