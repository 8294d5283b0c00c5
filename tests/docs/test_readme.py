"""The README's Python example runs as written against the package.

The block is taken from README.md, its port is the only thing changed (to a
free one, so that parallel runs cannot collide), it runs as a program, and a
USMPClient exchanges a message with it.
"""

import asyncio
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "docs"))
sys.path.insert(0, os.path.join(ROOT, "python", "src"))

from extract_example import extract  # noqa: E402
from usmp import USMPClient  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readme_python_example_runs_as_written(tmp_path):
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        code = extract(f.read(), "python")
    assert "port=9000" in code
    port = free_port()
    script = tmp_path / "example.py"
    script.write_text(code.replace("port=9000", f"port={port}"))
    psk = os.urandom(32)
    env = dict(os.environ, USMP_PSK=psk.hex(), PYTHONPATH=os.path.join(ROOT, "python", "src"))
    proc = subprocess.Popen([sys.executable, "-u", str(script)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "the example did not start listening"
                time.sleep(0.05)

        async def exchange() -> bytes:
            async with USMPClient("127.0.0.1", port, device_id=bytes.fromhex("deadbeef0001"), psk=psk) as client:
                await client.send(b"hi from the test")
                return await client.recv(timeout=5)

        assert asyncio.run(exchange()) == b"hi from the test"
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
    assert "got: b'hi from the test'" in output


def test_readme_gateway_quick_start_runs_as_written(tmp_path):
    """The quick start of `usmp gateway` runs in bash as it stands, ports changed to free ones.

    `usmp` is the package (python -m usmp); the background jobs (mosquitto,
    the gateway, mosquitto_sub) are ended when the block has run.
    """
    import re
    import shutil

    assert shutil.which("mosquitto") and shutil.which("mosquitto_sub"), "tools/install-deps.sh installs mosquitto"
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index("## Devices to MQTT: `usmp gateway`"):]
    block = re.search(r"^```sh\n(.*?)^```", section, re.M | re.S)
    assert block is not None
    code = block.group(1)
    assert "1883" in code and "9000" in code
    code = code.replace("1883", str(free_port())).replace("9000", str(free_port()))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "usmp").write_text(f'#!/bin/sh\nexec {sys.executable} -m usmp "$@"\n')
    (bin_dir / "usmp").chmod(0o755)
    script = tmp_path / "quick_start.sh"
    # mosquitto as root switches to its own user: stay who we are (the README's user is no root).
    script.write_text("trap 'kill $(jobs -p) 2>/dev/null' EXIT\nset -e\n" + code + "sleep 1\n")
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHONPATH=os.path.join(ROOT, "python", "src"))
    result = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "hello device" in lines, result.stdout + result.stderr
    assert "usmp/020000000001/up hello broker" in lines, result.stdout + result.stderr
