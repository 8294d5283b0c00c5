"""The admin socket (usmp.admin), the mDNS records (usmp.discovery) and the monitor's view (usmp.cli_discovery).

Discovery over a real network (a namespace) and the monitor in a terminal
are tested end to end in tests/discovery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from usmp.admin import AdminServer, read_snapshot
from usmp import cli_discovery, discovery
from usmp.cli_discovery import render, start_announcements
from usmp.discovery import SERVICE_TYPES, service_infos, txt_record
from usmp.errors import ConfigurationError

SNAPSHOT: dict[str, Any] = {
    "gateway": "gw1",
    "started": 1000.0,
    "listeners": ["tcp://0.0.0.0:9000"],
    "sessions": [
        {
            "device_id": "deadbeef0001",
            "transport": "tcp",
            "session_id": "0123456789abcdef",
            "since": 1090.0,
            "messages_up": 3,
            "bytes_up": 27,
            "messages_down": 1,
            "bytes_down": 10,
            "last_seen": 1095.0,
        }
    ],
    "handshakes": {"ok": 4, "failed": {"auth_failed": 2}},
}


def _serve(path: str, snapshot: Any, body: Any) -> Any:
    async def run() -> Any:
        server = AdminServer(path, snapshot)
        await server.start()
        try:
            return await body(server)
        finally:
            await server.stop()

    return asyncio.run(run())


def test_admin_socket_is_owner_only_and_serves_the_snapshot_as_json(tmp_path: Path) -> None:
    path = str(tmp_path / "admin.sock")
    old_umask = os.umask(0)  # the widest umask: the mode must not come from it
    try:

        async def body(server: AdminServer) -> Any:
            mode = os.stat(path).st_mode
            assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
            return await asyncio.get_running_loop().run_in_executor(None, read_snapshot, path)

        assert _serve(path, lambda: SNAPSHOT, body) == SNAPSHOT
    finally:
        os.umask(old_umask)
    assert not os.path.exists(path), "stop() removes the socket"


def test_admin_socket_ignores_what_a_client_sends(tmp_path: Path) -> None:
    path = str(tmp_path / "admin.sock")
    calls: list[int] = []

    def snapshot() -> dict[str, Any]:
        calls.append(1)
        return {"gateway": "gw1"}

    async def body(server: AdminServer) -> Any:
        def talk() -> bytes:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(path)
                try:
                    sock.sendall(b'{"stop": true}\n')
                except BrokenPipeError:
                    pass  # the server may have answered and closed already
                return sock.makefile("rb").read()

        return await asyncio.get_running_loop().run_in_executor(None, talk)

    answer = _serve(path, snapshot, body)
    assert json.loads(answer) == {"gateway": "gw1"} and calls == [1]


def test_admin_socket_replaces_a_stale_socket_and_refuses_other_files(tmp_path: Path) -> None:
    stale = str(tmp_path / "stale.sock")
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(stale)
    left.close()  # the file stays, nothing accepts on it

    async def fetch(server: AdminServer) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, read_snapshot, stale)

    assert _serve(stale, lambda: {"ok": 1}, fetch) == {"ok": 1}

    regular = tmp_path / "notes.txt"
    regular.write_text("keep me")
    with pytest.raises(ConfigurationError, match="not a socket"):
        _serve(str(regular), lambda: {}, fetch)
    assert regular.read_text() == "keep me"


def test_admin_socket_refuses_a_path_another_gateway_serves(tmp_path: Path) -> None:
    path = str(tmp_path / "admin.sock")

    async def body(server: AdminServer) -> None:
        with pytest.raises(ConfigurationError, match="another process"):
            await AdminServer(path, lambda: {}).start()
        # the first server still answers
        assert await asyncio.get_running_loop().run_in_executor(None, read_snapshot, path) == {"first": True}

    _serve(path, lambda: {"first": True}, body)


def test_read_snapshot_refuses_an_answer_that_is_not_an_object(tmp_path: Path) -> None:
    path = str(tmp_path / "admin.sock")

    async def body(server: AdminServer) -> None:
        with pytest.raises(ValueError, match="not a JSON object"):
            await asyncio.get_running_loop().run_in_executor(None, read_snapshot, path)

    _serve(path, lambda: [1, 2], body)  # type: ignore[arg-type, return-value]


def test_txt_record_names_version_suites_gateway_and_transports() -> None:
    assert txt_record("gw1", ["udp", "tcp", "tcp"]) == {
        "v": "1",
        "suites": "1",
        "name": "gw1",
        "transports": "tcp,udp",
    }


def test_one_service_per_network_transport_and_none_for_serial() -> None:
    infos = service_infos("gw1", [("tcp", "10.0.0.1", 9000), ("udp", "10.0.0.1", 9001), ("serial", "", 0)])
    assert [(info.type, info.name, info.port) for info in infos] == [
        (SERVICE_TYPES["tcp"], "gw1._usmp._tcp.local.", 9000),
        (SERVICE_TYPES["udp"], "gw1._usmp._udp.local.", 9001),
    ]
    for info in infos:
        assert info.parsed_addresses() == ["10.0.0.1"]
        assert b"\x12transports=tcp,udp" in info.text
    assert service_infos("gw1", [("serial", "", 0)]) == []


def test_monitor_view_shows_each_session_and_the_failures_by_reason() -> None:
    console = Console(width=160, record=True)
    console.print(render(SNAPSHOT, now=1100.0))
    text = console.export_text()
    assert "gateway gw1, up 1m40s" in text
    row = next(line for line in text.splitlines() if "deadbeef0001" in line)
    for cell in ("tcp", "0123456789abcdef", "10s", "3", "27", "1", "10", "5s ago"):
        assert cell in row
    assert any("auth_failed" in line and "2" in line for line in text.splitlines())
    assert "handshakes ok: 4" in text

    console = Console(width=160, record=True)
    console.print(render(dict(SNAPSHOT, sessions=[]), now=1100.0))
    assert "deadbeef0001" not in console.export_text()


def test_a_host_where_mdns_cannot_run_still_serves_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def refuse(self: discovery.Advertiser) -> None:
        raise OSError(19, "No such device")

    monkeypatch.setattr(discovery.Advertiser, "start", refuse)
    args = argparse.Namespace(no_mdns=False, admin=str(tmp_path / "admin.sock"))

    async def run() -> tuple[str, dict[str, Any]]:
        announcements = await start_announcements(args, "gw1", [("tcp", "127.0.0.1", 9000)], lambda: {"ok": 1})
        try:
            snapshot = await asyncio.get_running_loop().run_in_executor(None, read_snapshot, args.admin)
            return announcements.describe(), snapshot
        finally:
            await announcements.stop()

    described, snapshot = asyncio.run(run())
    assert described == f"; admin {args.admin}" and snapshot == {"ok": 1}
    assert "warning: not advertised on mDNS: [Errno 19] No such device" in capsys.readouterr().err


def test_without_zeroconf_the_gateway_serves_and_scan_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "zeroconf", None)  # import zeroconf raises ImportError
    args = argparse.Namespace(no_mdns=False, admin=None)

    async def run() -> str:
        announcements = await start_announcements(args, "gw1", [("tcp", "127.0.0.1", 9000)], lambda: {})
        await announcements.stop()
        return announcements.describe()

    assert asyncio.run(run()) == ""
    assert "warning: not advertised on mDNS: python3-zeroconf is not installed" in capsys.readouterr().err
    assert cli_discovery.run(argparse.Namespace(command="scan", timeout=1.0, json=True)) == 1
    assert "usmp scan: python3-zeroconf is not installed" in capsys.readouterr().err


def test_a_snapshot_that_fails_closes_that_connection_and_the_socket_serves_the_next(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "admin.sock")
    answers = iter([RuntimeError("half-open session"), {"gateway": "gw1"}])

    def snapshot() -> dict[str, Any]:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def body(server: AdminServer) -> Any:
        loop = asyncio.get_running_loop()
        with pytest.raises(ValueError):  # nothing but EOF: not JSON
            await loop.run_in_executor(None, read_snapshot, path)
        return await loop.run_in_executor(None, read_snapshot, path)

    assert _serve(path, snapshot, body) == {"gateway": "gw1"}
    assert "cannot serve the snapshot" in caplog.text
