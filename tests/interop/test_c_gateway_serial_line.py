"""``usmp_server --serial`` on a line without a peer: a pseudo-terminal whose other end has closed
reports a hang-up on every poll; the gateway must wait for the line to come back, not spin."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from interop_harness import CBuild, CProcess, async_test


def cpu_seconds(pid: int) -> float:
    """User plus system time of a running process, from /proc (fields 14 and 15 of its stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@async_test(timeout=60)
async def test_serial_gateway_idles_while_the_line_has_no_peer(c_build: CBuild, tmp_path: Path) -> None:
    psk_file = tmp_path / "devices.psk"
    psk_file.write_text(f"deadbeef0001 {bytes(range(32)).hex()}\n")
    master, slave = os.openpty()
    gateway = CProcess(
        [str(c_build.program("server")), "--psk-file", str(psk_file), "--serial", os.ttyname(slave)], "usmp_server"
    )
    try:
        await gateway.start()
        await gateway.wait_line(r"serving /dev/", 10.0)
        os.close(master)  # the device end goes away: the gateway's end now reports a hang-up
        master = -1
        await asyncio.sleep(0.5)
        assert gateway.proc is not None
        before = cpu_seconds(gateway.proc.pid)
        await asyncio.sleep(2.0)
        used = cpu_seconds(gateway.proc.pid) - before
        assert used < 0.5, f"the gateway spun on the hung-up line: {used:.2f} s of CPU in 2 s"
        assert any("no peer on the line" in line for line in gateway.lines)
        await gateway.finish(signal.SIGTERM, expect=0)
    finally:
        if master >= 0:
            os.close(master)
        os.close(slave)
