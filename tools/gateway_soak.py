#!/usr/bin/python3
"""The gateway's soak run (`make soak`; not part of `make test`): many devices, two gateways, churn.

Starts a throw-away PostgreSQL cluster and a mosquitto (both in a temporary
directory, on free loopback ports), adds the devices to the registry,
starts ``usmp gateway`` processes over them, and runs the devices as
Python clients in this process: each sends a numbered, timestamped
message every ``--interval`` seconds, and every second ``--churn`` of them
(a fraction per minute) close their session and reconnect, to either
gateway. A persistent MQTT subscriber records every uplink. At the end
it waits for the last messages and reports:

- sent (messages whose ``send`` returned), delivered (distinct messages at
  the subscriber), duplicated (extra copies), lost (sent, never
  delivered: must be 0; the exit status is 1 otherwise);
- end-to-end latency device -> MQTT subscriber (p50, p99, max; one
  machine, one clock);
- each gateway's resident set size (VmRSS) over time.

Usage: gateway_soak.py [--devices 1000] [--duration 600] [--interval 5] [--churn 0.1] [--gateways 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "python" / "src", ROOT / "tests" / "gateway", ROOT / "python" / "tests"):
    sys.path.insert(0, str(path))

from gateway_harness import GatewayProcess, Mosquitto, MqttWatcher  # noqa: E402
from pg_cluster import PostgresCluster, find_bindir  # noqa: E402

from usmp import USMPClient, USMPError  # noqa: E402
from usmp.config import ClientConfig  # noqa: E402
from usmp.registry import open_registry  # noqa: E402


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class SoakDevice:
    def __init__(self, index: int, device_id: bytes, psk: bytes, gateways: list[GatewayProcess]) -> None:
        self.index = index
        self.device_id = device_id
        self.psk = psk
        self.gateways = gateways
        self.client: USMPClient | None = None
        self.seq = 0
        self.sent: list[int] = []
        self.reconnects = 0
        self.failed_attempts = 0

    async def connect(self) -> None:
        delay = 0.05
        while True:
            gateway = random.choice(self.gateways)
            client = USMPClient(*gateway.address, device_id=self.device_id, psk=self.psk,
                                config=ClientConfig(handshake_timeout=10.0))
            try:
                await client.connect()
                self.client = client
                return
            except (USMPError, OSError):
                self.failed_attempts += 1
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 2.0)

    async def churn(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()
            self.reconnects += 1
            await self.connect()

    async def run(self, interval: float, until: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(random.uniform(0, interval))
        while loop.time() < until:
            client = self.client
            if client is not None:
                payload = b"%d:%d:%.6f" % (self.index, self.seq, time.time())
                try:
                    await client.send(payload)
                    self.sent.append(self.seq)
                except USMPError:
                    pass  # closed under it (churn): not sent
                self.seq += 1
            await asyncio.sleep(interval)


async def soak(args: argparse.Namespace, directory: Path, registry: str, broker: Mosquitto) -> int:
    print(f"adding {args.devices} devices", flush=True)
    reg = open_registry(registry)
    try:
        keys = [(bytes.fromhex("05%010x" % i), reg.add_device(bytes.fromhex("05%010x" % i)))
                for i in range(args.devices)]
    finally:
        reg.close()
    gateways = [GatewayProcess(f"soak{i + 1}", registry, broker, directory,
                               ["--max-sessions", str(args.devices + 100)]).start() for i in range(args.gateways)]
    watcher = MqttWatcher(broker.port, ["usmp/+/up"], client_id="soak-watcher", persistent=True).start()
    rss: list[tuple[float, list[int]]] = []
    try:
        devices = [SoakDevice(i, device_id, psk, gateways) for i, (device_id, psk) in enumerate(keys)]
        started = time.monotonic()
        await asyncio.gather(*(device.connect() for device in devices))
        print(f"{len(devices)} devices connected in {time.monotonic() - started:.1f} s", flush=True)
        loop = asyncio.get_running_loop()
        until = loop.time() + args.duration
        runners = [asyncio.create_task(device.run(args.interval, until)) for device in devices]
        churned = 0
        churn_credit = 0.0
        next_rss = 0.0
        churners: set[asyncio.Task[None]] = set()
        while loop.time() < until:
            if loop.time() >= next_rss:
                rss.append((args.duration - (until - loop.time()), [rss_kib(g.proc.pid) for g in gateways if g.proc]))
                next_rss = loop.time() + max(args.duration / 20, 5.0)
            # args.churn of the devices per minute, spread over the seconds (a fraction carries over).
            churn_credit += args.churn * len(devices) / 60
            count, churn_credit = int(churn_credit), churn_credit - int(churn_credit)
            for device in random.sample(devices, k=min(len(devices), count)):
                task = asyncio.create_task(device.churn())
                churners.add(task)
                task.add_done_callback(churners.discard)
                churned += 1
            await asyncio.sleep(1.0)
        await asyncio.gather(*runners)
        if churners:
            await asyncio.gather(*churners)
        rss.append((float(args.duration), [rss_kib(g.proc.pid) for g in gateways if g.proc]))
        sent = {(d.device_id.hex(), seq) for d in devices for seq in d.sent}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with watcher.lock:
                delivered = len({(t, p) for t, p, _ in watcher.messages})
            if delivered >= len(sent):
                break
            await asyncio.sleep(0.5)
        for device in devices:
            if device.client is not None:
                await device.client.close()
    finally:
        watcher.stop()
        for gateway in gateways:
            gateway.stop()

    copies: dict[tuple[str, int], int] = {}
    latencies: list[float] = []
    for topic, payload, received in watcher.messages:
        index, seq, stamp = payload.split(b":")
        key = (topic.split("/")[1], int(seq))
        if key not in copies:
            latencies.append(received - float(stamp))
        copies[key] = copies.get(key, 0) + 1
    lost = sent - set(copies)
    duplicated = sum(n - 1 for n in copies.values())
    print()
    print(f"## Soak: {args.devices} devices, {args.gateways} gateways, {args.duration:.0f} s, one message per "
          f"device every {args.interval:g} s, churn {args.churn:g} of the devices per minute")
    print()
    print(f"- sent {len(sent)}, delivered {len(set(copies) & sent)}, duplicated {duplicated}, lost {len(lost)}")
    print(f"- reconnections by churn {churned}, failed connection attempts "
          f"{sum(d.failed_attempts for d in devices)}")
    if latencies:
        print(f"- latency device -> MQTT subscriber: p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
              f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms, "
              f"mean {statistics.fmean(latencies) * 1000:.1f} ms")
    print("- gateway RSS (MiB) over time:")
    print()
    print("| t (s) | " + " | ".join(g.name for g in gateways) + " |")
    print("|---|" + "---|" * len(gateways))
    for at, sizes in rss:
        print(f"| {at:.0f} | " + " | ".join(f"{size / 1024:.1f}" for size in sizes) + " |")
    if lost:
        print(f"LOST: {sorted(lost)[:20]}")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between a device's messages")
    parser.add_argument("--churn", type=float, default=0.1, help="fraction of the devices reconnecting per minute")
    parser.add_argument("--gateways", type=int, default=2)
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None:
        print("PostgreSQL is not installed: make deps", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="usmp-soak-") as temporary, PostgresCluster(bindir) as cluster:
        directory = Path(temporary)
        broker = Mosquitto(directory / "mosquitto")
        broker.start()
        try:
            return asyncio.run(soak(args, directory, cluster.new_database(), broker))
        finally:
            broker.stop()


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
