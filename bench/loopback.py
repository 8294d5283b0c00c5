"""The gateways over loopback against TLS 1.3 servers (issue 12, figure 3;
docs/performance.md), all driven by one load generator written in C on the
engine (bench/c/usmp_loadgen.c, which speaks USMP or TLS 1.3).

Servers, each started on a free loopback port:
  C gateway       build/bench-openssl/usmp_server --psk-env (echo)
  Python gateway  /usr/bin/python3 -m usmp serve --psk-env (echo)
  openssl s_server  TLS 1.3, X25519, no tickets, a throwaway self-signed
                  P-256 certificate made in a temporary directory
  Python TLS      bench/tls_echo_server.py (asyncio, TLS 1.3, no tickets)
and, with --c-server-before PATH, another usmp_server (e.g. main's, built
from `git archive`) as "C gateway (before)".

Figures, each the minimum and the median over --repetitions runs:
  handshakes/s with --concurrency connections in flight (connect,
    handshake, close), and the server's CPU per handshake (utime + stime
    of /proc/<pid>/stat over the run); the load generator's own CPU share
    (1.0: one core busy) shows whether it could have been the bottleneck;
  echo: 64-byte messages, one in flight per session, over 1 and 100
    sessions: messages/s, p50 and p99 round trip (s_server serves one
    connection at a time and has no echo: not measured);
  RSS per idle session: VmRSS of the server with 1,000 and 10,000 idle
    sessions open minus VmRSS before, over the sessions (one run each, a
    fresh server each, warmed up with 20 sessions opened and closed so
    that code paged in on first use is not counted; the RSS before is
    shown too: what the server holds for its --max-sessions up front; the
    file limit is raised to its hard limit).

    /usr/bin/python3 bench/loopback.py [--repetitions 5] [--quick]

--quick: tiny counts, every server and figure once, for a smoke run; its
figures mean nothing. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

ROOT = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Settings:
    repetitions: int
    seconds: float
    concurrency: int
    echo_messages: dict[int, int]
    idle_sessions: list[int]
    warmup_sessions: int


FULL = Settings(repetitions=5, seconds=2.0, concurrency=32,
                echo_messages={1: 5000, 100: 40000}, idle_sessions=[1000, 10000], warmup_sessions=20)
QUICK = Settings(repetitions=1, seconds=0.2, concurrency=4,
                 echo_messages={1: 20, 100: 200}, idle_sessions=[20], warmup_sessions=2)


@dataclass
class Server:
    """How to start one server: argv, whether it speaks TLS, whether it echoes."""

    name: str
    argv: list[str]
    tls: bool
    echoes: bool = True
    holds_sessions: bool = True
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    log: IO[bytes]

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of proc(5); fields[0] is field 3.
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(server: Server, env: dict[str, str], workdir: Path) -> Running:
    port = free_port() if any("{port}" in a for a in server.argv) else 0
    argv = [a.replace("{port}", str(port)) for a in server.argv]
    log = open(workdir / (re.sub(r"\W+", "_", server.name) + ".log"), "w+b")
    proc = subprocess.Popen(argv, cwd=ROOT, env={**env, **server.env}, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{server.name} exited: {log.read().decode(errors='replace')}")
        if port == 0:
            log.seek(0)
            m = re.search(rb"listening on [^\s]*:(\d+)", log.read())
            if m:
                return Running(proc, int(m.group(1)), log)
        else:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return Running(proc, port, log)
            except OSError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{server.name} did not start")


def stop(running: Running) -> None:
    running.proc.terminate()
    try:
        running.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        running.proc.kill()
        running.proc.wait()
    running.log.close()


def parse_figures(line: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in line.split() if "=" in item)


def loadgen(loadgen_path: Path, args: list[str], env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run([str(loadgen_path), *args], env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"usmp_loadgen {' '.join(args)}: {out.stderr.strip()}")
    return parse_figures(out.stdout.strip().splitlines()[-1])


@dataclass
class Figure:
    """Samples of one figure of one server."""

    samples: list[float] = field(default_factory=list)

    def text(self, digits: int = 0) -> str:
        if not self.samples:
            return "n/a"
        lo, med = min(self.samples), statistics.median(self.samples)
        if len(self.samples) == 1:
            return f"{med:,.{digits}f}"
        return f"{lo:,.{digits}f} / {med:,.{digits}f}"

    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


Results = dict[str, dict[str, Figure]]  # figure -> server -> samples


def measure_handshakes(server: Server, running: Running, s: Settings, gen: Path,
                       env: dict[str, str], results: Results) -> None:
    for _ in range(s.repetitions):
        cpu0 = running.cpu_seconds()
        fig = loadgen(gen, ["handshake", "--port", str(running.port), "--seconds", str(s.seconds),
                            "--concurrency", str(s.concurrency)] + (["--tls"] if server.tls else []),
                      env)
        cpu = running.cpu_seconds() - cpu0
        done = int(fig["handshakes"])
        results["handshakes/s"][server.name].samples.append(float(fig["rate"]))
        if done:
            results["server CPU per handshake (µs)"][server.name].samples.append(cpu / done * 1e6)
        results["load generator CPU share (handshakes)"][server.name].samples.append(
            float(fig["cpu"]))
        results["handshake failures"][server.name].samples.append(float(fig["failures"]))


def measure_echo(server: Server, running: Running, s: Settings, gen: Path, env: dict[str, str],
                 results: Results) -> None:
    for sessions, messages in s.echo_messages.items():
        for _ in range(s.repetitions):
            fig = loadgen(gen, ["echo", "--port", str(running.port), "--sessions", str(sessions),
                                "--messages", str(messages), "--size", "64"]
                          + (["--tls"] if server.tls else []), env)
            results[f"echo 64 B, {sessions} session{'s' if sessions > 1 else ''}: messages/s"][server.name].samples.append(
                float(fig["rate"]))
            results[f"echo 64 B, {sessions} session{'s' if sessions > 1 else ''}: p50 round trip (µs)"][
                server.name].samples.append(float(fig["p50_us"]))
            results[f"echo 64 B, {sessions} session{'s' if sessions > 1 else ''}: p99 round trip (µs)"][
                server.name].samples.append(float(fig["p99_us"]))


def measure_idle(server: Server, sessions: int, s: Settings, gen: Path, env: dict[str, str],
                 workdir: Path, results: Results) -> None:
    running = start(server, env, workdir)
    try:
        # A warm-up first: the code of a handshake (libcrypto's, the
        # interpreter's) is paged in, and counts in RSS, on first use;
        # then the baseline, with no session open.
        warm = subprocess.run([str(gen), "idle", "--port", str(running.port), "--sessions",
                               str(s.warmup_sessions)]
                              + (["--tls"] if server.tls else []), env=env, input="",
                              capture_output=True, text=True, timeout=120)
        if warm.returncode != 0:
            raise RuntimeError(f"usmp_loadgen idle (warm-up): {warm.stderr.strip()}")
        time.sleep(0.5)
        before = running.rss_bytes()
        results[f"RSS before the {sessions:,} sessions (KiB)"][server.name].samples.append(
            before / 1024)
        proc = subprocess.Popen([str(gen), "idle", "--port", str(running.port), "--sessions",
                                 str(sessions), "--concurrency", "16"]
                                + (["--tls"] if server.tls else []), env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdin is not None
        ready = parse_figures(proc.stdout.readline())
        time.sleep(0.5)  # the last sessions' log lines and buffers settle
        after = running.rss_bytes()
        proc.stdin.close()
        proc.wait(timeout=120)
        held = int(ready.get("sessions", "0"))
        if held:
            results[f"RSS per idle session at {sessions:,} (bytes)"][server.name].samples.append(
                (after - before) / held)
        results[f"idle sessions held of {sessions:,}"][server.name].samples.append(float(held))
    finally:
        stop(running)


def servers(build: Path, workdir: Path, before: Path | None, max_sessions: int) -> list[Server]:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    limits = ["--max-sessions", str(max_sessions), "--max-pending", "1024"]
    gateway = ["--host", "127.0.0.1", "--port", "0", "--psk-env", "USMP_PSK"] + limits
    found = [Server("C gateway", [str(build / "usmp_server")] + gateway, tls=False)]
    if before is not None:
        found.append(Server("C gateway (before)", [str(before)] + gateway, tls=False))
    found += [
        Server("Python gateway", [PYTHON, "-m", "usmp", "serve"] + gateway, tls=False,
               env={"PYTHONPATH": str(ROOT / "python" / "src")}),
        Server("openssl s_server", ["openssl", "s_server", "-tls1_3", "-groups", "X25519",
                                    "-num_tickets", "0", "-accept", "127.0.0.1:{port}", "-cert",
                                    str(cert), "-key", str(key), "-quiet", "-rev"], tls=True,
               echoes=False, holds_sessions=False),
        Server("Python TLS", [PYTHON, str(ROOT / "bench" / "tls_echo_server.py"), "--cert",
                              str(cert), "--key", str(key)], tls=True),
    ]
    return found


def ratio(results: Results, figure: str, a: str, b: str) -> str:
    x = results.get(figure, {}).get(a, Figure()).median()
    y = results.get(figure, {}).get(b, Figure()).median()
    return f"{x / y:.2f}" if x is not None and y else "n/a"


def print_table(results: Results, names: list[str], engine_bytes: int, command: str) -> None:
    print("\n### Loopback: gateways against TLS 1.3 servers (min / median over repetitions)\n")
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for figure, by_server in results.items():
        digits = 1 if "share" in figure else 0
        print(f"| {figure} | " + " | ".join(by_server[n].text(digits) for n in names) + " |")
    print(f"\nsizeof(struct usmp_engine) = {engine_bytes} bytes (part of each session's RSS)\n")
    print("| ratio (medians) | value | goal |")
    print("|---|---|---|")
    rows = [
        ("C gateway handshakes/s / openssl s_server", "handshakes/s", "C gateway",
         "openssl s_server", ">= 3"),
        ("C gateway (before) handshakes/s / openssl s_server", "handshakes/s",
         "C gateway (before)", "openssl s_server", ""),
        ("C gateway CPU per handshake / openssl s_server", "server CPU per handshake (µs)",
         "C gateway", "openssl s_server", ""),
        ("Python gateway CPU per handshake / Python TLS", "server CPU per handshake (µs)",
         "Python gateway", "Python TLS", "<= 0.8"),
        ("Python gateway echo messages/s, 100 sessions / Python TLS",
         "echo 64 B, 100 sessions: messages/s", "Python gateway", "Python TLS", ">= 1"),
        ("C gateway echo messages/s, 100 sessions / Python TLS",
         "echo 64 B, 100 sessions: messages/s", "C gateway", "Python TLS", ""),
        ("C gateway echo messages/s, 100 sessions / C gateway (before)",
         "echo 64 B, 100 sessions: messages/s", "C gateway", "C gateway (before)", ""),
    ]
    for label, figure, a, b, goal in rows:
        if a in names and b in names:
            print(f"| {label} | {ratio(results, figure, a, b)} | {goal} |")
    for figure in [f for f in results if f.startswith("RSS per idle session")]:
        for name in [n for n in names if n.startswith("C gateway")]:
            med = results[figure][name].median()
            if med is not None:
                print(f"| {name}: {figure.split(' (')[0]} beyond the engine | "
                      f"{med - engine_bytes:,.0f} B | <= 1024 B |")
    print(f"\nReproduce: `{command}`")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build" / "bench-openssl",
                        help="a build with -DUSMP_BENCH=ON (usmp_server, bench/c/usmp_loadgen)")
    parser.add_argument("--repetitions", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="per handshake run")
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    parser.add_argument("--only", default="", help="comma-separated server names to run")
    parser.add_argument("--c-server-before", type=Path, default=None,
                        help="another usmp_server to measure as 'C gateway (before)'")
    args = parser.parse_args()
    s = QUICK if args.quick else FULL
    if args.repetitions is not None:
        s.repetitions = args.repetitions
    if args.seconds is not None:
        s.seconds = args.seconds
    gen = args.build_dir / "bench" / "c" / "usmp_loadgen"
    if not gen.exists() or shutil.which("openssl") is None:
        print(f"bench/loopback.py: needs {gen} (make bench builds it) and openssl", file=sys.stderr)
        return 2

    # 10,000 sessions need 10,000 descriptors in the server and in the load
    # generator; children inherit the limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(s.idle_sessions) + 1024
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(wanted, soft)), hard))
    env = {**os.environ, "USMP_PSK": secrets.token_hex(32)}
    engine_bytes = int(loadgen(gen, ["sizes"], env)["engine"])

    command = " ".join(["/usr/bin/python3", "bench/loopback.py"] + sys.argv[1:])
    results: Results = {}

    def figure(name: str) -> dict[str, Figure]:
        return results.setdefault(name, {})

    with tempfile.TemporaryDirectory(prefix="usmp-loopback-") as tmp:
        workdir = Path(tmp)
        all_servers = servers(args.build_dir, workdir, args.c_server_before,
                              max(s.idle_sessions) + 100)
        chosen = [sv for sv in all_servers
                  if not args.only or sv.name in args.only.split(",")]
        names = [sv.name for sv in chosen]
        order = ["handshakes/s", "server CPU per handshake (µs)",
                 "load generator CPU share (handshakes)", "handshake failures"]
        for n in sorted(s.echo_messages):
            order += [f"echo 64 B, {n} session{'s' if n > 1 else ''}: messages/s",
                      f"echo 64 B, {n} session{'s' if n > 1 else ''}: p50 round trip (µs)",
                      f"echo 64 B, {n} session{'s' if n > 1 else ''}: p99 round trip (µs)"]
        for n in s.idle_sessions:
            order += [f"RSS before the {n:,} sessions (KiB)", f"RSS per idle session at {n:,} (bytes)",
                      f"idle sessions held of {n:,}"]
        for name in order:
            for server_name in names:
                figure(name).setdefault(server_name, Figure())
        for sv in chosen:
            print(f"loopback: {sv.name}: handshakes and echo", file=sys.stderr, flush=True)
            running = start(sv, env, workdir)
            try:
                measure_handshakes(sv, running, s, gen, env, results)
                if sv.echoes:
                    measure_echo(sv, running, s, gen, env, results)
            finally:
                stop(running)
            if sv.holds_sessions:
                for n in s.idle_sessions:
                    print(f"loopback: {sv.name}: {n} idle sessions", file=sys.stderr, flush=True)
                    measure_idle(sv, n, s, gen, env, workdir, results)
    print_table(results, names, engine_bytes, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
