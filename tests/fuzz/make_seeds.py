#!/usr/bin/python3
"""Writes seed inputs for the fuzz targets from spec/vectors into a directory.

fuzz_engine's first byte picks mode (bit 0) and scenario (bits 1-2: 0 fresh
server, 1 client after HELLO, 2 established server driven by operations);
see tests/fuzz/fuzz_engine.c. Seeds are the vectors' frames in that form,
so fuzzing starts from inputs that reach deep states.

Usage: make_seeds.py OUT_DIR
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VECTORS = os.path.join(ROOT, "spec", "vectors")


def main() -> int:
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "engine"), exist_ok=True)
    os.makedirs(os.path.join(out, "cobs"), exist_ok=True)
    os.makedirs(os.path.join(out, "cobs_stream"), exist_ok=True)
    with open(os.path.join(VECTORS, "handshake.json")) as f:
        handshakes = json.load(f)["cases"]
    with open(os.path.join(VECTORS, "negative.json")) as f:
        negatives = json.load(f)["cases"]
    with open(os.path.join(VECTORS, "cobs.json")) as f:
        cobs = json.load(f)
    seeds = {}
    for case in handshakes:
        mode = 1 if case["mode"] == "datagram" else 0
        frames = case["frames"]
        seeds[f"hello-{case['name']}"] = bytes([mode | 0]) + bytes.fromhex(frames["hello"])
        seeds[f"challenge-{case['name']}"] = bytes([mode | 2]) + bytes.fromhex(frames["challenge"])
        # Established scenario: one raw op per record of the case, and a
        # sealed fragment op (op 1, type index 4 = DATA_FRAGMENT).
        ops = b""
        for record in case["records"]:
            raw = bytes.fromhex(record["frame"])[:255]
            ops += bytes([0, len(raw)]) + raw
        ops += bytes([1, 9, 4]) + (2000).to_bytes(2, "big") + (0).to_bytes(2, "big") + b"abcd"
        ops += bytes([2, 1, 200, 3, 5]) + b"hello"
        seeds[f"ops-{case['name']}"] = bytes([mode | 4]) + ops
    for case in negatives:
        mode = 1 if case["name"].startswith("datagram") else 0
        scenario = 0 if case["receiver"] == "server" and case["start"] == "WAIT_HELLO" else 2
        if case["receiver"] == "client" and case["start"] == "WAIT_CHALLENGE":
            scenario = 1
        inputs = [step for step in case["steps"] if "input" in step]  # timer steps have none
        if not inputs:
            continue
        first = bytes.fromhex(inputs[0]["input"])
        if scenario == 2:
            first = bytes([0, min(len(first), 255)]) + first[:255]
        seeds[f"negative-{case['name']}"] = bytes([mode | scenario << 1]) + first
    for name, data in seeds.items():
        with open(os.path.join(out, "engine", name), "wb") as f:
            f.write(data)
    for case in cobs["cases"]:
        with open(os.path.join(out, "cobs", case["name"].replace(" ", "-")), "wb") as f:
            f.write(bytes.fromhex(case["encoded"]))
    for case in cobs["invalid"]:
        with open(os.path.join(out, "cobs", "invalid-" + case["name"].replace(" ", "-")), "wb") as f:
            f.write(bytes.fromhex(case["encoded"]))
    write_udp_gateway_seeds(os.path.join(out, "udp_gateway"), handshakes)
    write_ota_seeds(out)
    # fuzz_cobs_stream: buffer size and piece size, then a line carrying the
    # vectors' frames between delimiters, with noise, empty frames and an
    # oversize frame among them (tests/fuzz/fuzz_cobs_stream.c).
    valid = [bytes.fromhex(c["encoded"]) for c in cobs["cases"]]
    invalid = [bytes.fromhex(c["encoded"]) for c in cobs["invalid"]]
    streams = {
        "frames": b"".join(f + b"\0" for f in valid),
        "resync-and-empty": b"\0\0" + b"\0".join(valid) + b"\0\0",
        "invalid": b"".join(f.replace(b"\0", b"") + b"\0" for f in invalid) + valid[0] + b"\0",
        "noise": b"\x13\x37\xff\x02" + b"".join(f + b"\0" for f in valid),
        "oversize": b"\x05" * 300 + b"\0" + valid[-1] + b"\0",
        "empty-then-bad": b"\0\x51\x05\0\0\x03\x22\x01\0",
    }
    for name, line in streams.items():
        for cap, piece in ((255, 0), (16, 3), (60, 31)):
            with open(os.path.join(out, "cobs_stream", f"{name}-{cap + 1}-{piece + 1}"), "wb") as f:
                f.write(bytes([cap, piece]) + line)
    print(f"wrote {len(seeds)} engine seeds, {len(cobs['cases']) + len(cobs['invalid'])} COBS seeds "
          f"and {3 * len(streams)} COBS stream seeds")
    return 0


def write_ota_seeds(out: str) -> None:
    """fuzz_ota_manifest: a source byte then a manifest (0: OFFER; 1: the persisted record, with a
    u32 next_offset). fuzz_ota_message: OTA messages, each a u16 length then its body, after the
    valid manifest was offered (tests/fuzz/fuzz_ota_*.c)."""
    with open(os.path.join(VECTORS, "ota.json")) as f:
        ota = json.load(f)
    os.makedirs(os.path.join(out, "ota_manifest"), exist_ok=True)
    os.makedirs(os.path.join(out, "ota_message"), exist_ok=True)
    for case in ota["manifests"]:
        manifest = bytes.fromhex(case["manifest"])
        with open(os.path.join(out, "ota_manifest", "offer-" + case["name"]), "wb") as f:
            f.write(b"\x00" + manifest)
        with open(os.path.join(out, "ota_manifest", "persisted-" + case["name"]), "wb") as f:
            f.write(b"\x01" + manifest + (1000).to_bytes(4, "big"))

    def framed(*bodies: bytes) -> bytes:
        return b"".join(len(body).to_bytes(2, "big") + body for body in bodies)

    image = bytes.fromhex(ota["image"])
    chunks = [b"\x04" + offset.to_bytes(4, "big") + image[offset:offset + 1000] for offset in (0, 1000, 2000)]
    seeds = {
        "whole-image": framed(*chunks),
        "duplicates-and-reorder": framed(chunks[1], chunks[0], chunks[0], chunks[2], chunks[1], chunks[2]),
        "new-session-mid-transfer": framed(chunks[0], b"\xfd", chunks[1], chunks[2]),
        "zero-chunks": framed(b"\xfe", b"\xfe", b"\xfe"),
        "malformed": framed(*(bytes.fromhex(m["body"]) for m in ota["malformed"])),
        "messages": framed(*(bytes.fromhex(m["body"]) for m in ota["messages"])),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, "ota_message", name), "wb") as f:
            f.write(data)


def write_udp_gateway_seeds(out: str, handshakes: list) -> None:
    """fuzz_udp_gateway's operations (see tests/fuzz/fuzz_udp_gateway.c): client messages,
    replays from other ports, the vectors' datagram handshake frames from strangers."""

    def raw(port_index: int, frame: bytes) -> bytes:
        return bytes([port_index]) + len(frame).to_bytes(2, "big") + frame

    def message(data: bytes) -> bytes:
        return bytes([0x80]) + len(data).to_bytes(2, "big") + data

    os.makedirs(out, exist_ok=True)
    seeds = {
        "messages": message(b"hello") + message(bytes(3000)) + message(b""),
        "replay": message(b"once") + bytes([0xC0 | 15, 0xC0 | 3]),
        "rebind": message(b"a") + bytes([0xC0 | 7]) + message(b"b"),
        "unknown-index": raw(2, bytes([0x05, 0x7F, 0, 0]) + bytes(30)),
    }
    for case in handshakes:
        if case["mode"] != "datagram":
            continue
        frames = case["frames"]
        hello = bytes.fromhex(frames["hello"])
        seeds[f"stranger-{case['name']}"] = b"".join(raw(n, hello) for n in range(5)) + raw(15, hello)
        seeds[f"late-{case['name']}"] = raw(15, hello) + raw(15, bytes.fromhex(frames["hello_ack"]))
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    sys.exit(main())
