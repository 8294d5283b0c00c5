"""A throw-away PostgreSQL cluster for tests: initdb in a temporary directory, pg_ctl start, stop after.

The server listens on a Unix socket in that directory only (no TCP), with
durability off (fsync, synchronous_commit): it lives as long as the test
session. ``new_database()`` gives each test an empty database of its own.

initdb refuses to run as root: as root, the cluster is run as the
``postgres`` system user (Debian's package creates it), the directory
handed to it. Binaries are found under /usr/lib/postgresql/<version>/bin
(Debian's layout) or on PATH; ``USMP_PG_BINDIR`` overrides.

Used by test_registry.py and the gateway's tests through the
``postgres_cluster`` fixture of conftest.py.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from typing import Any

SERVER_USER = "postgres"
DB_USER = "usmp"


def find_bindir() -> str | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    override = os.environ.get("USMP_PG_BINDIR")
    if override:
        return override if os.path.exists(os.path.join(override, "initdb")) else None
    versions = [p.split("/")[4] for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    numbered = sorted(int(v) for v in versions if v.isdigit())
    if numbered:
        return f"/usr/lib/postgresql/{numbered[-1]}/bin"
    found = shutil.which("initdb")
    return os.path.dirname(found) if found else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        # Short path: a Unix socket's path is limited to about 100 bytes.
        self.directory = tempfile.mkdtemp(prefix="usmp-pg-")
        self.data = os.path.join(self.directory, "data")
        self.log = os.path.join(self.directory, "server.log")
        self.port = free_port()
        self._run_as: list[str] = []
        self._databases = 0
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            self._run_as = ["runuser", "-u", SERVER_USER, "--"]

    def _pg(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [*self._run_as, os.path.join(self.bindir, tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            log = ""
            if os.path.exists(self.log):
                with open(self.log, encoding="utf-8", errors="replace") as f:
                    log = f.read()[-2000:]
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()}\n{log}")

    def start(self) -> None:
        self._pg("initdb", "-D", self.data, "-A", "trust", "-U", DB_USER, "-E", "UTF8", "--no-sync")
        options = (
            f"-k {self.directory} -p {self.port} -c listen_addresses='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o", options, "start")

    def stop(self) -> None:
        try:
            if os.path.exists(os.path.join(self.data, "postmaster.pid")):
                # Immediate: no shutdown checkpoint, the cluster is thrown away.
                self._pg("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{DB_USER}@/{database}?host={self.directory}&port={self.port}"

    def new_database(self) -> str:
        """Creates an empty database; its URL."""
        import psycopg

        self._databases += 1
        name = f"test{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name} STRATEGY = FILE_COPY")
        return self.url(name)

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
