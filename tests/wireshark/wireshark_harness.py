"""A small pcap writer and a tshark runner for the dissector's tests.

The captures are built here, byte by byte, around the frames of
spec/vectors: IPv4 in a pcap of link type RAW (101) for TCP and UDP, and
link type USER0 (147) for a serial line's bytes (docs/wireshark.md). tshark
loads tools/wireshark/usmp.lua with -X lua_script and prints the fields a
test asks for, one row per packet.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DISSECTOR = os.path.join(ROOT, "tools", "wireshark", "usmp.lua")
VECTORS = os.path.join(ROOT, "spec", "vectors")

LINKTYPE_RAW = 101
LINKTYPE_USER0 = 147
# Maps USER0 to the serial-line dissector, as docs/wireshark.md tells users to.
USER0_PREFERENCE = 'uat:user_dlts:"User 0 (DLT=147)","usmp_cobs","0","","0",""'

TCP_FIN, TCP_SYN, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x08, 0x10


def tshark_path() -> str | None:
    return shutil.which("tshark")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: str, dst: str, protocol: int, payload: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, protocol, 0,
        bytes(int(x) for x in src.split(".")), bytes(int(x) for x in dst.split(".")),
    )
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + payload


@dataclass
class Capture:
    """Packets in the order they are added, each with its own timestamp."""

    linktype: int
    packets: list[bytes] = field(default_factory=list)

    def add(self, packet: bytes) -> None:
        self.packets.append(packet)

    def write(self, path: str) -> None:
        with open(path, "wb") as out:
            out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, self.linktype))
            for number, packet in enumerate(self.packets):
                out.write(struct.pack("<IIII", 1_700_000_000 + number, 0, len(packet), len(packet)))
                out.write(packet)


@dataclass
class TcpFlow:
    """One TCP connection between a client and a server, with its handshake."""

    capture: Capture
    client: tuple[str, int] = ("10.0.0.2", 40000)
    server: tuple[str, int] = ("10.0.0.1", 9000)
    seq: dict[str, int] = field(default_factory=lambda: {"c": 1000, "s": 5000})

    def _segment(self, side: str, flags: int, payload: bytes = b"") -> None:
        src, dst = (self.client, self.server) if side == "c" else (self.server, self.client)
        other = "s" if side == "c" else "c"
        ack = self.seq[other] if flags & TCP_ACK else 0
        tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], self.seq[side], ack,
                          5 << 4, flags, 65535, 0, 0)
        self.capture.add(_ipv4(src[0], dst[0], 6, tcp + payload))
        self.seq[side] += len(payload) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)

    def open(self) -> "TcpFlow":
        self._segment("c", TCP_SYN)
        self._segment("s", TCP_SYN | TCP_ACK)
        self._segment("c", TCP_ACK)
        return self

    def send(self, side: str, payload: bytes) -> None:
        """One segment of `payload` from the client ("c") or the server ("s")."""
        self._segment(side, TCP_PSH | TCP_ACK, payload)


def udp_packet(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0)
    return _ipv4(src[0], dst[0], 17, udp + payload)


def tshark_fields(pcap: str, fields: list[str], *, prefs: list[str] | None = None,
                  display_filter: str | None = None, two_pass: bool = True,
                  decode_as: list[str] | None = None,
                  env: dict[str, str] | None = None) -> list[dict[str, list[str]]]:
    """Dissects `pcap` with usmp.lua and returns, per packet shown, each
    field's values (all occurrences, in order)."""
    tshark = tshark_path()
    assert tshark is not None
    command = [tshark, "-n", "-r", pcap, "-X", f"lua_script:{DISSECTOR}", "-T", "fields",
               "-E", "occurrence=a", "-E", "aggregator=;", "-E", "separator=\t"]
    if two_pass:
        command.append("-2")
    for preference in prefs or []:
        command += ["-o", preference]
    for rule in decode_as or []:
        command += ["-d", rule]
    if display_filter:
        command += ["-Y", display_filter]
    for name in fields:
        command += ["-e", name]
    run_env = dict(os.environ)
    run_env.pop("USMP_KEYLOG_FILE", None)
    run_env.update(env or {})
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=run_env)
    errors = [line for line in result.stderr.splitlines() if "dangerous" not in line and line.strip()]
    assert result.returncode == 0 and not errors, f"tshark failed: {result.stderr}"
    rows = []
    for line in result.stdout.splitlines():
        values = line.split("\t")
        rows.append({name: (values[i].split(";") if i < len(values) and values[i] else [])
                     for i, name in enumerate(fields)})
    return rows


def flat(rows: list[dict[str, list[str]]], name: str) -> list[str]:
    """Every value of field `name` over all rows, in packet order."""
    return [value for row in rows for value in row[name]]
