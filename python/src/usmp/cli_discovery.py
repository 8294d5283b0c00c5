"""``usmp scan`` and ``usmp monitor``, and the mDNS and admin options of ``usmp gateway`` and ``usmp serve``.

Registered by cli.py (``add_parser`` and ``run``). Exit codes as for the
other commands: 0 success, 1 runtime failure, 2 usage or configuration error.
python3-zeroconf and python3-rich are imported by the code that uses them
only, so the other commands do not need them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .admin import AdminServer, read_snapshot

if TYPE_CHECKING:
    from rich.console import RenderableType

    from .discovery import Advertiser

EXIT_OK = 0
EXIT_FAILURE = 1
COMMANDS = ("scan", "monitor")
# What to install when an optional module is missing (Debian, then pip).
MISSING = {
    "zeroconf": "python3-zeroconf is not installed (pip: usmp-gateway[discovery])",
    "rich": "python3-rich is not installed (pip: usmp-gateway[discovery])",
}


# --- options of the commands that serve devices ---------------------------------------------------


def add_announce_options(parser: argparse.ArgumentParser) -> None:
    """``--no-mdns`` and ``--admin``, for ``usmp gateway`` and ``usmp serve``."""
    parser.add_argument(
        "--no-mdns",
        action="store_true",
        help="do not advertise _usmp._tcp / _usmp._udp on mDNS (advertised by default; see `usmp scan`)",
    )
    parser.add_argument(
        "--admin",
        metavar="PATH",
        help="serve a read-only snapshot (sessions, counters) as JSON on the Unix socket PATH, mode 0600, "
        "for `usmp monitor --admin PATH` (default: off)",
    )


class Announcements:
    """What ``add_announce_options`` turned on: the mDNS advertiser and the admin socket."""

    def __init__(self, advertiser: Advertiser | None, admin: AdminServer | None) -> None:
        self.advertiser = advertiser
        self.admin = admin

    def describe(self) -> str:
        """The end of the command's status line."""
        parts = []
        if self.advertiser is not None:
            parts.append("mDNS " + ", ".join(self.advertiser.names))
        if self.admin is not None:
            parts.append(f"admin {self.admin.path}")
        return "; " + "; ".join(parts) if parts else ""

    async def stop(self) -> None:
        if self.advertiser is not None:
            await self.advertiser.stop()
        if self.admin is not None:
            await self.admin.stop()


async def start_announcements(
    args: argparse.Namespace,
    gateway_name: str,
    listeners: Sequence[tuple[str, str, int]],
    snapshot: Callable[[], dict[str, Any]],
) -> Announcements:
    """Start the admin socket, then the advertiser (a gateway is only announced once it can be watched)."""
    admin = AdminServer(args.admin, snapshot) if args.admin else None
    if admin is not None:
        await admin.start()
    advertiser = None
    if not args.no_mdns:
        try:
            from zeroconf import Error as ZeroconfError
        except ImportError:
            print(f"warning: not advertised on mDNS: {MISSING['zeroconf']}", file=sys.stderr)
            return Announcements(None, admin)
        from .discovery import Advertiser

        advertiser = Advertiser(gateway_name, listeners)
        try:
            await advertiser.start()
        except (OSError, ZeroconfError) as error:
            # mDNS is a convenience: a host where it cannot run (no multicast
            # interface, port 5353 refused) still serves its devices.
            print(f"warning: not advertised on mDNS: {error or type(error).__name__}", file=sys.stderr)
            await advertiser.stop()
            advertiser = None
        except BaseException:
            if admin is not None:
                await admin.stop()
            raise
    return Announcements(advertiser, admin)


class ServeCounters:
    """What ``usmp serve`` counts per open session, for its admin socket (the gateway has its own)."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.started = time.time()
        self._sessions: dict[bytes, dict[str, Any]] = {}

    def opened(self, session: Any) -> None:
        now = time.time()
        self._sessions[session.session_id] = {
            "device_id": session.device_id.hex(),
            "transport": self.transport,
            "session_id": session.session_id.hex(),
            "since": round(now, 3),
            "messages_up": 0,
            "bytes_up": 0,
            "messages_down": 0,
            "bytes_down": 0,
            "last_seen": round(now, 3),
        }

    def received(self, session: Any, data: bytes) -> None:
        record = self._sessions.get(session.session_id)
        if record is not None:
            record["messages_up"] += 1
            record["bytes_up"] += len(data)
            record["last_seen"] = round(time.time(), 3)

    def sent(self, session: Any, data: bytes) -> None:
        record = self._sessions.get(session.session_id)
        if record is not None:
            record["messages_down"] += 1
            record["bytes_down"] += len(data)

    def closed(self, session: Any) -> None:
        self._sessions.pop(session.session_id, None)

    def snapshot(self, name: str, listening: str) -> dict[str, Any]:
        # The same keys as Gateway.snapshot() has for what serve knows; serve
        # does not count handshake failures, so "handshakes" is absent.
        return {
            "gateway": name,
            "started": round(self.started, 3),
            "listeners": [listening],
            "sessions": [dict(record) for record in self._sessions.values()],
        }


# --- the commands ---------------------------------------------------------------------------------


def add_parser(commands: Any) -> None:
    scan = commands.add_parser(
        "scan",
        help="list the gateways that advertise themselves on mDNS",
        description="Browse mDNS (DNS-SD) for _usmp._tcp and _usmp._udp for --timeout seconds and list "
        "every gateway found: name, protocol version, transports with their ports, addresses. "
        "Anyone on the LAN can answer: the handshake, not the scan, authenticates a gateway.",
    )
    scan.add_argument("--timeout", type=float, default=3.0, help="seconds to listen (default: %(default)s)")
    scan.add_argument("--json", action="store_true", help="print a JSON list instead of a table")

    monitor = commands.add_parser(
        "monitor",
        help="a live view of one gateway's sessions and handshake failures",
        description="Read the admin socket of a gateway (`usmp gateway --admin PATH` or `usmp serve --admin "
        "PATH`) every --interval seconds and show its devices, their transport, session id, age, messages "
        "and bytes each way, when each was last seen, and the handshake failures by reason. Ctrl-C leaves.",
    )
    monitor.add_argument("--admin", required=True, metavar="PATH", help="the gateway's admin socket")
    monitor.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default: %(default)s)")
    monitor.add_argument("--once", action="store_true", help="print one view and exit (1 if the gateway is unreachable)")


def run(args: argparse.Namespace) -> int:
    needs = "zeroconf" if args.command == "scan" else "rich"
    try:
        __import__(needs)
    except ImportError:
        print(f"usmp {args.command}: {MISSING[needs]}", file=sys.stderr)
        return EXIT_FAILURE
    if args.command == "scan":
        return _scan(args)
    return _monitor(args)


def _scan(args: argparse.Namespace) -> int:
    from .discovery import scan

    if args.timeout <= 0:
        print("usmp scan: --timeout must be positive", file=sys.stderr)
        return 2
    gateways = scan(args.timeout)
    if args.json:
        print(json.dumps([gateway.as_dict() for gateway in gateways], indent=1))
        return EXIT_OK
    if not gateways:
        print(f"no gateway answered within {args.timeout:g} s")
        return EXIT_OK
    rows = [("NAME", "VERSION", "TRANSPORTS", "ADDRESSES")]
    for gateway in gateways:
        transports = ", ".join(f"{transport} {port}" for transport, port in sorted(gateway.transports.items()))
        rows.append((gateway.name, gateway.version, transports, ", ".join(gateway.addresses)))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    return EXIT_OK


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def render(snapshot: dict[str, Any], now: float) -> RenderableType:
    """The monitor's view of one snapshot (a function of its input, for the tests and ``--once``)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    started = snapshot.get("started")
    up = f", up {_age(now - started)}" if isinstance(started, (int, float)) else ""
    listeners = ", ".join(str(listener) for listener in snapshot.get("listeners", []))
    sessions = snapshot.get("sessions", [])
    header = Text(f"gateway {snapshot.get('gateway', '?')}{up} | {listeners} | {len(sessions)} session(s)")
    table = Table(expand=False)
    for column in ("device", "transport", "session", "since", "msgs up", "bytes up", "msgs down", "bytes down", "last seen"):
        table.add_column(column, justify="right" if column.startswith(("msgs", "bytes")) else "left")
    for session in sorted(sessions, key=lambda s: str(s.get("device_id", ""))):
        table.add_row(
            str(session.get("device_id", "")),
            str(session.get("transport", "")),
            str(session.get("session_id", "")),
            _age(now - float(session.get("since", now))),
            str(session.get("messages_up", 0)),
            str(session.get("bytes_up", 0)),
            str(session.get("messages_down", 0)),
            str(session.get("bytes_down", 0)),
            _age(now - float(session.get("last_seen", now))) + " ago",
        )
    handshakes = snapshot.get("handshakes")
    if not isinstance(handshakes, dict):  # usmp serve does not count them
        return Group(header, table, Text("handshake failures: not counted by this server"))
    failed = handshakes.get("failed", {})
    failures = Table(expand=False)
    failures.add_column("handshake failures")
    failures.add_column("count", justify="right")
    for reason, count in sorted(failed.items()):
        failures.add_row(str(reason), str(count))
    if not failed:
        failures.add_row("none", "0")
    return Group(header, table, failures, Text(f"handshakes ok: {handshakes.get('ok', 0)}"))


def _view(path: str, now: float) -> tuple[RenderableType, bool]:
    from rich.text import Text

    try:
        return render(read_snapshot(path), now), True
    except (OSError, ValueError) as error:
        return Text(f"gateway at {path} not reachable: {error} (retrying)"), False


def _monitor(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    if args.interval <= 0:
        print("usmp monitor: --interval must be positive", file=sys.stderr)
        return 2
    # A pipe gets rich's default 80 columns, too narrow for a session row.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    if args.once:
        view, reachable = _view(args.admin, time.time())
        console.print(view)
        return EXIT_OK if reachable else EXIT_FAILURE
    try:
        with Live(_view(args.admin, time.time())[0], console=console, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(args.interval)
                live.update(_view(args.admin, time.time())[0], refresh=True)
    except KeyboardInterrupt:
        return EXIT_OK
