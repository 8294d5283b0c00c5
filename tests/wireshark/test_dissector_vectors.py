"""tools/wireshark/usmp.lua on captures built from spec/vectors: every frame
type in both modes, over TCP (reassembled across segments), UDP and a
serial line (COBS), decoded by tshark to the fields the vectors say, with
and without the key log, and malformed frames flagged by expert info."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wireshark_harness import (
    LINKTYPE_RAW,
    LINKTYPE_USER0,
    USER0_PREFERENCE,
    VECTORS,
    Capture,
    TcpFlow,
    flat,
    tshark_fields,
    udp_packet,
)

CLIENT = ("10.0.0.2", 40000)
GATEWAY = ("10.0.0.1", 9000)

CODE_NAMES = ["NONE", "MALFORMED", "UNEXPECTED", "UNSUPPORTED_VERSION", "UNSUPPORTED_SUITE",
              "AUTH_FAILED", "BAD_KEY", "BUSY", "TOO_LARGE", "BAD_RECORD", "KEY_LIMIT",
              "IDLE_TIMEOUT", "REKEY", "SHUTDOWN", "REPLACED"]  # spec 9.1, codes 0x00-0x0E


def load(name: str) -> dict[str, Any]:
    with open(os.path.join(VECTORS, name), encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def handshake(name: str) -> dict[str, Any]:
    return next(c for c in load("handshake.json")["cases"] if c["name"] == name)


def keylog_file(tmp_path: os.PathLike[str], lines: list[tuple[str, str, str]]) -> str:
    path = os.path.join(tmp_path, "keys.log")
    with open(path, "w", encoding="ascii") as f:
        f.write("# a comment line, ignored\n")
        for session_id, c2s, s2c in lines:
            f.write(f"USMP_SESSION {session_id} {c2s} {s2c}\n")
    return path


def keylog_pref(path: str) -> str:
    return f"usmp.keylog_file:{path}"


def hexes(values: list[str]) -> list[str]:
    return [v.replace(":", "").lower() for v in values]


# --- stream mode over TCP ------------------------------------------------------------


def stream_capture(tmp_path: os.PathLike[str], case: dict[str, Any], *, cut: int = 0) -> str:
    """The case's handshake and records on one TCP connection; with `cut`,
    every record segment is cut into pieces of `cut` bytes."""
    capture = Capture(LINKTYPE_RAW)
    flow = TcpFlow(capture, CLIENT, GATEWAY).open()
    frames = case["frames"]
    flow.send("c", bytes.fromhex(frames["hello"]))
    flow.send("s", bytes.fromhex(frames["challenge"]))
    flow.send("c", bytes.fromhex(frames["hello_ack"]))
    flow.send("s", bytes.fromhex(frames["session_ok"]))
    for record in case["records"]:
        side = "c" if record["direction"] == "c2s" else "s"
        data = bytes.fromhex(record["frame"])
        pieces = [data[i:i + cut] for i in range(0, len(data), cut)] if cut else [data]
        for piece in pieces:
            flow.send(side, piece)
    path = os.path.join(tmp_path, "stream.pcap")
    capture.write(path)
    return path


def test_stream_handshake_fields_match_the_vector(tmp_path: os.PathLike[str]) -> None:
    case = handshake("stream-basic")
    rows = tshark_fields(stream_capture(tmp_path, case), [
        "usmp.type", "usmp.length", "usmp.hello.versions", "usmp.hello.suites", "usmp.hello.device_id",
        "usmp.hello.e_c", "usmp.hello.max_record", "usmp.hello.max_message", "usmp.challenge.version",
        "usmp.challenge.suite", "usmp.challenge.nonce", "usmp.challenge.e_s", "usmp.challenge.max_record",
        "usmp.challenge.max_message", "usmp.hello_ack.mac", "usmp.session_ok.session_id",
        "usmp.session_ok.mac", "_ws.expert.message"], display_filter="usmp")
    assert flat(rows, "usmp.type")[:4] == ["0x01", "0x02", "0x03", "0x04"]
    assert flat(rows, "usmp.length")[:4] == ["44", "54", "16", "24"]
    assert flat(rows, "usmp.hello.versions") == ["0x01"] and flat(rows, "usmp.hello.suites") == ["0x01"]
    assert hexes(flat(rows, "usmp.hello.device_id")) == [case["device_id"]]
    assert flat(rows, "usmp.hello.e_c") == [case["client_ephemeral_public"]]
    assert flat(rows, "usmp.hello.max_record") == [str(case["client_max_record"])]
    assert flat(rows, "usmp.hello.max_message") == [str(case["client_max_message"])]
    assert flat(rows, "usmp.challenge.version") == ["1"] and flat(rows, "usmp.challenge.suite") == ["1"]
    assert flat(rows, "usmp.challenge.nonce") == [case["server_nonce"]]
    assert flat(rows, "usmp.challenge.e_s") == [case["server_ephemeral_public"]]
    assert flat(rows, "usmp.challenge.max_record") == [str(case["server_max_record"])]
    assert flat(rows, "usmp.challenge.max_message") == [str(case["server_max_message"])]
    assert flat(rows, "usmp.hello_ack.mac") == [case["hello_ack_mac"]]
    assert flat(rows, "usmp.session_ok.session_id") == [case["session_id"]]
    assert flat(rows, "usmp.session_ok.mac") == [case["session_ok_mac"]]
    # Without a key log the records are shown sealed, each with a note.
    assert flat(rows, "_ws.expert.message").count("Record not decrypted: no key for its session") == 6


@pytest.mark.parametrize("cut", [0, 7])
def test_stream_records_decrypt_with_the_key_log(tmp_path: os.PathLike[str], cut: int) -> None:
    """cut=7: every record arrives in 7-byte TCP segments and is reassembled."""
    case = handshake("stream-basic")
    keys = keylog_file(tmp_path, [(case["session_id"], case["key_c2s"], case["key_s2c"])])
    rows = tshark_fields(stream_capture(tmp_path, case, cut=cut), [
        "usmp.type", "usmp.record.counter", "usmp.record.direction", "usmp.record.plaintext_length",
        "usmp.plaintext", "usmp.ping.payload", "usmp.bye.reason", "usmp.record.session_id",
        "_ws.expert.message"], prefs=[keylog_pref(keys)], display_filter="usmp.record.counter")
    records = case["records"]
    assert flat(rows, "usmp.type") == [f"0x{r['type']:02x}" for r in records]
    assert flat(rows, "usmp.record.counter") == [str(r["counter"]) for r in records]
    assert flat(rows, "usmp.record.direction") == [r["direction"] for r in records]
    assert flat(rows, "usmp.record.plaintext_length") == [str(len(r["plaintext"]) // 2) for r in records]
    shown = [p for p in flat(rows, "usmp.plaintext") if p != "<MISSING>"]
    assert shown == [r["plaintext"] for r in records if r["plaintext"]]
    assert flat(rows, "usmp.ping.payload") == ["0000002a", "0000002a"]  # the PING and its PONG
    assert flat(rows, "usmp.bye.reason") == ["0x00"]
    assert set(flat(rows, "usmp.record.session_id")) == {case["session_id"]}
    assert flat(rows, "_ws.expert.message") == []


def test_other_ports_decode_through_decode_as_or_the_port_preferences(tmp_path: os.PathLike[str]) -> None:
    stream_case, datagram_case = handshake("stream-basic"), handshake("datagram-basic")
    capture = Capture(LINKTYPE_RAW)
    flow = TcpFlow(capture, CLIENT, ("10.0.0.1", 7000)).open()
    flow.send("c", bytes.fromhex(stream_case["frames"]["hello"]))
    capture.add(udp_packet(CLIENT, ("10.0.0.1", 7001), bytes.fromhex(datagram_case["frames"]["hello"])))
    path = os.path.join(tmp_path, "ports.pcap")
    capture.write(path)
    fields = ["usmp.hello.e_c"]
    assert tshark_fields(path, fields, display_filter="usmp.type") == []  # not on 9000: not USMP
    expected = [stream_case["client_ephemeral_public"], datagram_case["client_ephemeral_public"]]
    rows = tshark_fields(path, fields, decode_as=["tcp.port==7000,usmp", "udp.port==7001,usmp_dgram"])
    assert flat(rows, "usmp.hello.e_c") == expected
    rows = tshark_fields(path, fields, prefs=["usmp.tcp_port:7000", "usmp.udp_port:7001"])
    assert flat(rows, "usmp.hello.e_c") == expected


def test_stream_record_with_a_flipped_bit_is_flagged(tmp_path: os.PathLike[str]) -> None:
    case = dict(handshake("stream-basic"))
    records = [dict(r) for r in case["records"]]
    frame = bytearray.fromhex(records[0]["frame"])
    frame[-1] ^= 0x01  # the tag's last bit
    records[0]["frame"] = frame.hex()
    case["records"] = records
    keys = keylog_file(tmp_path, [(case["session_id"], case["key_c2s"], case["key_s2c"])])
    rows = tshark_fields(stream_capture(tmp_path, case), ["usmp.plaintext", "_ws.expert.message"],
                         prefs=[keylog_pref(keys)], display_filter="usmp.record.tag")
    assert flat(rows, "_ws.expert.message")[0] == "Record does not decrypt with the logged keys"
    # The records after it still open: the counter counts the records sent.
    assert flat(rows, "usmp.plaintext")[0] == records[1]["plaintext"]


# --- datagram mode over UDP ----------------------------------------------------------


def datagram_capture(tmp_path: os.PathLike[str], frames: list[tuple[str, bytes]], name: str) -> str:
    capture = Capture(LINKTYPE_RAW)
    for side, frame in frames:
        src, dst = (CLIENT, GATEWAY) if side == "c" else (GATEWAY, CLIENT)
        capture.add(udp_packet(src, dst, frame))
    path = os.path.join(tmp_path, name)
    capture.write(path)
    return path


def test_datagram_cookie_handshake_and_records_over_udp(tmp_path: os.PathLike[str]) -> None:
    case = handshake("datagram-cookie")
    f = case["frames"]
    sequence = [("c", "hello"), ("s", "cookie"), ("c", "hello_with_cookie"), ("s", "challenge"),
                ("c", "hello_ack"), ("s", "session_ok")]
    frames = [(side, bytes.fromhex(f[name])) for side, name in sequence]
    frames += [("c" if r["direction"] == "c2s" else "s", bytes.fromhex(r["frame"])) for r in case["records"]]
    keys = keylog_file(tmp_path, [(case["session_id"], case["key_c2s"], case["key_s2c"])])
    rows = tshark_fields(datagram_capture(tmp_path, frames, "udp.pcap"), [
        "usmp.type", "usmp.cookie", "usmp.hello.cookie", "usmp.hello.device_id", "usmp.session_ok.session_id",
        "usmp.session_index", "usmp.seq", "usmp.record.direction", "usmp.plaintext", "usmp.bye.reason",
        "_ws.expert.message"], prefs=[keylog_pref(keys)])
    records = case["records"]
    assert flat(rows, "usmp.type") == ["0x01", "0x0a", "0x01", "0x02", "0x03", "0x04"] + [
        f"0x{r['type']:02x}" for r in records]
    cookie = f["cookie"][2:]
    assert flat(rows, "usmp.cookie") == [cookie] and flat(rows, "usmp.hello.cookie") == [cookie]
    assert flat(rows, "usmp.session_ok.session_id") == [case["session_id"]]
    index = int(case["session_id"][:6], 16)
    assert flat(rows, "usmp.session_index") == [f"0x{index:06x}"] * len(records)
    assert flat(rows, "usmp.seq") == [str(r["counter"]) for r in records]
    assert flat(rows, "usmp.record.direction") == [r["direction"] for r in records]
    assert [p for p in flat(rows, "usmp.plaintext") if p != "<MISSING>"] == [
        r["plaintext"] for r in records if r["plaintext"]]
    assert flat(rows, "usmp.bye.reason") == ["0x00"]
    assert flat(rows, "_ws.expert.message") == []


def expected_experts(record: dict[str, Any]) -> list[str]:
    """records.json's CONTROL records carry "control" after channel 0x01 and
    op 0x03: an OTA REQUEST of the wrong length, which the dissector flags."""
    if record["type"] != 0x0B:
        return []
    plaintext = bytes.fromhex(record["plaintext"])
    assert plaintext[:2] == b"\x01\x03"
    return [f"OTA REQUEST body of {len(plaintext) - 1} bytes, expected 7"]


def test_every_record_vector_opens_to_its_plaintext(tmp_path: os.PathLike[str]) -> None:
    """records.json: all four counters (0, 1, 2^32-1, 2^32) in datagram mode,
    counter 0 in stream mode, through the dissector's own AES-256-GCM."""
    vectors = load("records.json")["records"]
    datagram = [r for r in vectors if r["mode"] == "datagram"]
    stream = [r for r in vectors if r["mode"] == "stream" and r["counter"] == 0]
    key = vectors[0]["key"]
    assert all(r["key"] == key for r in vectors)
    index_sid = datagram[0]["session_index"] + "0000000000"
    stream_sid = "5e5510000000000a"
    keys = keylog_file(tmp_path, [(index_sid, key, key), (stream_sid, key, key)])

    udp = datagram_capture(tmp_path, [("c", bytes.fromhex(r["frame"])) for r in datagram], "records.pcap")
    rows = tshark_fields(udp, ["usmp.seq", "usmp.plaintext", "_ws.expert.message"], prefs=[keylog_pref(keys)])
    assert flat(rows, "usmp.seq") == [str(r["counter"]) for r in datagram]
    assert [row["usmp.plaintext"] for row in rows] == [[r["plaintext"] or "<MISSING>"] for r in datagram]
    assert [row["_ws.expert.message"] for row in rows] == [expected_experts(r) for r in datagram]

    capture = Capture(LINKTYPE_RAW)
    for number, record in enumerate(stream):
        flow = TcpFlow(capture, (CLIENT[0], CLIENT[1] + number), GATEWAY).open()
        flow.send("s", bytes.fromhex("040018" + stream_sid) + bytes(16))  # a SESSION_OK naming the session
        flow.send("c", bytes.fromhex(record["frame"]))
    path = os.path.join(tmp_path, "stream-records.pcap")
    capture.write(path)
    rows = tshark_fields(path, ["usmp.plaintext", "_ws.expert.message"], prefs=[keylog_pref(keys)],
                         display_filter="usmp.record.counter")
    assert [row["usmp.plaintext"] for row in rows] == [[r["plaintext"] or "<MISSING>"] for r in stream]
    assert [row["_ws.expert.message"] for row in rows] == [expected_experts(r) for r in stream]


# --- datagram mode over a serial line (COBS) ---------------------------------------


@pytest.mark.parametrize("packets", ["one line per packet", "all lines in one packet"])
def test_serial_handshake_lines_decode(tmp_path: os.PathLike[str], packets: str) -> None:
    serial = load("datagram.json")["serial_handshake"]
    case = handshake(serial["handshake"])
    lines = [bytes.fromhex(line) for line in serial["lines"]]
    capture = Capture(LINKTYPE_USER0)
    if packets == "one line per packet":
        for line in lines:
            capture.add(line)
    else:
        capture.add(b"\0" + b"".join(lines))  # a leading 00 resynchronises (10)
    path = os.path.join(tmp_path, "serial.pcap")
    capture.write(path)
    rows = tshark_fields(path, ["usmp.type", "usmp_cobs.decoded_length", "usmp.hello.device_id",
                                "usmp.session_ok.session_id", "_ws.expert.message"], prefs=[USER0_PREFERENCE])
    assert flat(rows, "usmp.type") == ["0x01", "0x02", "0x03", "0x04"]
    assert flat(rows, "usmp_cobs.decoded_length") == ["45", "55", "17", "25"]
    assert hexes(flat(rows, "usmp.hello.device_id")) == [case["device_id"]]
    assert flat(rows, "usmp.session_ok.session_id") == [case["session_id"]]
    assert flat(rows, "_ws.expert.message") == []


# --- codes by name ------------------------------------------------------------------


def test_error_codes_are_named(tmp_path: os.PathLike[str]) -> None:
    frames = [("s", bytes([0xFF, code])) for code in range(len(CODE_NAMES))] + [("s", b"\xff\x42")]
    rows = tshark_fields(datagram_capture(tmp_path, frames, "errors.pcap"), ["_ws.col.Info", "usmp.error.code"])
    assert [row["_ws.col.Info"][0] for row in rows] == [f"ERROR ({name})" for name in CODE_NAMES] + [
        "ERROR (0x42 (undefined in v1))"]  # 9.2: an undefined code is shown as received


def test_bye_reasons_are_named(tmp_path: os.PathLike[str]) -> None:
    key, session_id = bytes(range(32)), bytes.fromhex("0102030405060708")
    frames = []
    for seq in range(len(CODE_NAMES)):
        header = bytes([0x08]) + session_id[:3] + seq.to_bytes(5, "big")
        nonce = bytes(4) + seq.to_bytes(8, "big")
        frames.append(("s", header + AESGCM(key).encrypt(nonce, bytes([seq]), header)))
    keys = keylog_file(tmp_path, [(session_id.hex(), bytes(32).hex(), key.hex())])
    rows = tshark_fields(datagram_capture(tmp_path, frames, "byes.pcap"), ["_ws.col.Info", "usmp.record.direction"],
                         prefs=[keylog_pref(keys)])
    assert [row["_ws.col.Info"][0] for row in rows] == [
        f"BYE (seq {seq}, reason {name})" for seq, name in enumerate(CODE_NAMES)]
    assert flat(rows, "usmp.record.direction") == ["s2c"] * len(CODE_NAMES)


# --- malformed frames ----------------------------------------------------------------


def expert_of_each(rows: list[dict[str, list[str]]]) -> list[list[str]]:
    return [row["_ws.expert.message"] for row in rows]


def test_malformed_datagrams_get_expert_info(tmp_path: os.PathLike[str]) -> None:
    hello = bytes.fromhex(handshake("datagram-basic")["frames"]["hello"])
    frames = [
        ("c", hello[:-1]),                       # HELLO one byte short
        ("c", b"\x42" + bytes(10)),              # undefined type
        ("c", bytes.fromhex("05a1b2c3") + bytes(20)),  # record under 9 + 16 bytes
        ("s", b"\xff"),                          # ERROR without its code
    ]
    rows = tshark_fields(datagram_capture(tmp_path, frames, "bad.pcap"), ["_ws.expert.message"])
    assert expert_of_each(rows) == [
        ["HELLO body of 43 bytes, expected 44"],
        ["Undefined frame type 0x42"],
        ["Record of 24 bytes, shorter than its 9-byte header and 16-byte tag"],
        ["ERROR body of 0 bytes, expected 1"],
    ]


def test_malformed_stream_frames_get_expert_info(tmp_path: os.PathLike[str]) -> None:
    negative = next(c for c in load("negative.json")["cases"] if c["name"] == "stream-hello-truncated")
    capture = Capture(LINKTYPE_RAW)
    TcpFlow(capture, CLIENT, GATEWAY).open().send("c", bytes.fromhex(negative["steps"][0]["input"]))
    TcpFlow(capture, (CLIENT[0], 40001), GATEWAY).open().send("c", bytes.fromhex("0a0010") + bytes(16))
    TcpFlow(capture, (CLIENT[0], 40002), GATEWAY).open().send("c", bytes.fromhex("77000100"))
    TcpFlow(capture, (CLIENT[0], 40003), GATEWAY).open().send("c", bytes.fromhex("0500ff") + bytes(20))
    path = os.path.join(tmp_path, "bad-stream.pcap")
    capture.write(path)
    # Without reassembly, so that the last frame is seen cut short.
    rows = tshark_fields(path, ["_ws.expert.message"], prefs=["tcp.desegment_tcp_streams:FALSE"],
                         display_filter="usmp")
    assert expert_of_each(rows) == [
        ["HELLO body of 43 bytes, expected 44"],
        ["COOKIE is sent in datagram mode only (section 8.3)"],
        ["Undefined frame type 0x77"],
        ["23 of 258 bytes"],
    ]


def test_malformed_serial_frames_get_expert_info(tmp_path: os.PathLike[str]) -> None:
    capture = Capture(LINKTYPE_USER0)
    capture.add(bytes.fromhex("05ff0100"))  # code byte 05 points past the frame's end
    capture.add(bytes.fromhex("0100"))      # COBS of an empty frame: an empty datagram
    capture.add(bytes.fromhex("03ff02"))    # no delimiter: a frame cut off by the capture
    path = os.path.join(tmp_path, "bad-serial.pcap")
    capture.write(path)
    rows = tshark_fields(path, ["_ws.expert.message"], prefs=[USER0_PREFERENCE])
    assert expert_of_each(rows) == [
        ["code byte points past the frame's end"],
        ["Empty datagram"],
        ["COBS frame without its 00 delimiter"],  # decoded anyway: ERROR(UNEXPECTED)
    ]


# --- CONTROL records and the OTA channel (spec 6.7, spec/ota.md) -------------------


def sealed_control(tmp_path: os.PathLike[str], plaintexts: list[bytes], name: str) -> tuple[str, str]:
    """Each plaintext as a datagram CONTROL record from the device, and the key log that opens them."""
    key, session_id = bytes(range(32, 64)), bytes.fromhex("0b0b0b0102030405")
    frames = []
    for seq, plaintext in enumerate(plaintexts):
        header = bytes([0x0B]) + session_id[:3] + seq.to_bytes(5, "big")
        nonce = bytes(4) + seq.to_bytes(8, "big")
        frames.append(("c", header + AESGCM(key).encrypt(nonce, plaintext, header)))
    keys = keylog_file(tmp_path, [(session_id.hex(), key.hex(), bytes(32).hex())])
    return datagram_capture(tmp_path, frames, name), keylog_pref(keys)


def test_ota_messages_are_named_with_their_fields(tmp_path: os.PathLike[str]) -> None:
    ota = load("ota.json")
    messages = ota["messages"]
    pcap, pref = sealed_control(tmp_path, [bytes.fromhex(m["control_plaintext"]) for m in messages], "ota.pcap")
    rows = tshark_fields(pcap, ["usmp.control.channel", "usmp.ota.op", "usmp.ota.fw_version", "usmp.ota.state",
                                "usmp.ota.manifest_digest", "usmp.ota.offset", "usmp.ota.length", "usmp.ota.data",
                                "usmp.ota.result", "usmp.ota.manifest.firmware_version",
                                "usmp.ota.manifest.image_sha256", "_ws.col.Info", "_ws.expert.message"],
                         prefs=[pref])
    assert len(rows) == len(messages)
    ops = {"STATUS": 1, "OFFER": 2, "REQUEST": 3, "CHUNK": 4, "RESULT": 5}
    for row, message in zip(rows, messages):
        fields = message["fields"]
        assert row["usmp.control.channel"] == ["0x01"]
        assert row["usmp.ota.op"] == [f"0x{ops[fields['op']]:02x}"], message["name"]
        assert row["_ws.expert.message"] == [], message["name"]
        info = row["_ws.col.Info"][0]
        if fields["op"] == "STATUS":
            assert row["usmp.ota.fw_version"] == [str(fields["fw_version"])]
            assert row["usmp.ota.state"] == [str(fields["state"])]
            assert row["usmp.ota.manifest_digest"] == [fields["manifest_digest"]]
        elif fields["op"] == "OFFER":
            manifest = bytes.fromhex(fields["manifest"])
            assert row["usmp.ota.manifest.firmware_version"] == [str(int.from_bytes(manifest[8:12], "big"))]
            assert row["usmp.ota.manifest.image_sha256"] == [manifest[28:60].hex()]
        elif fields["op"] == "REQUEST":
            assert (row["usmp.ota.offset"], row["usmp.ota.length"]) == ([str(fields["offset"])], [str(fields["length"])])
        elif fields["op"] == "CHUNK":
            assert (row["usmp.ota.offset"], row["usmp.ota.data"]) == ([str(fields["offset"])], [fields["data"]])
        else:
            assert row["usmp.ota.result"] == [f"0x{fields['code']:02x}"]
            names = {code: name for name, code in ota["result_codes"].items()}
            assert info.endswith("OTA RESULT " + names[fields["code"]] + ")"), info


def test_malformed_ota_messages_get_expert_info(tmp_path: os.PathLike[str]) -> None:
    malformed = load("ota.json")["malformed"]
    plaintexts = [b"\x01" + bytes.fromhex(m["body"]) for m in malformed] + [b""]
    pcap, pref = sealed_control(tmp_path, plaintexts, "ota-bad.pcap")
    rows = tshark_fields(pcap, ["_ws.expert.message"], prefs=[pref])
    assert len(rows) == len(plaintexts)
    for row, case in zip(rows, malformed):
        assert len(row["_ws.expert.message"]) == 1, case["name"]
        message = row["_ws.expert.message"][0]
        assert message.startswith(("OTA ", "Unknown OTA op", "Empty OTA", "STATUS state", "REQUEST of length 0")), (
            case["name"], message)
    assert rows[-1]["_ws.expert.message"] == ["CONTROL record with an empty plaintext"]


# --- robustness ----------------------------------------------------------------------


def test_random_input_never_raises_a_lua_error(tmp_path: os.PathLike[str]) -> None:
    """Seeded random frames of every type byte and length, on UDP, TCP and a
    serial line, with a key log whose session index they carry: the
    dissector flags them; none makes the script fail."""
    import random

    rng = random.Random(15)
    types = list(range(0x00, 0x0D)) + [0x42, 0xFF]
    keys = keylog_file(tmp_path, [("a1b2c3" + "00" * 5, "11" * 32, "22" * 32)])

    def frame() -> bytes:
        body = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 2, 8, 16, 24, 25, 40, 43, 44, 54, 60, 70])))
        if rng.random() < 0.5 and len(body) >= 3:
            body = bytes.fromhex("a1b2c3") + body[3:]
        return bytes([rng.choice(types)]) + body

    udp = Capture(LINKTYPE_RAW)
    for _ in range(150):
        udp.add(udp_packet(CLIENT, GATEWAY, frame()))
    tcp = Capture(LINKTYPE_RAW)
    flow = TcpFlow(tcp, CLIENT, GATEWAY).open()
    flow.send("s", bytes.fromhex("040018a1b2c30000000000") + bytes(16))
    for _ in range(150):
        data = frame()
        stream = data[:1] + len(data[1:]).to_bytes(2, "big") + data[1:] if rng.random() < 0.7 else data
        flow.send(rng.choice("cs"), stream)
    serial = Capture(LINKTYPE_USER0)
    for _ in range(150):
        serial.add(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))

    for name, capture, prefs in (("udp", udp, []), ("tcp", tcp, ["tcp.desegment_tcp_streams:FALSE"]),
                                 ("tcp-reassembled", tcp, []), ("serial", serial, [USER0_PREFERENCE])):
        path = os.path.join(tmp_path, f"random-{name}.pcap")
        capture.write(path)
        rows = tshark_fields(path, ["_ws.expert.message"], prefs=[keylog_pref(keys), *prefs])
        errors = [m for m in flat(rows, "_ws.expert.message") if "Lua" in m]
        assert errors == [], (name, errors[:3])
