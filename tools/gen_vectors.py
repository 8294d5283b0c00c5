#!/usr/bin/python3
"""Generate the USMP v1 test vectors in spec/vectors/ from fixed inputs.

This is a deliberately naive, straight-line second implementation of the
wire format in spec/protocol.md. It shares no code with the C core or the
Python package: every frame is built here with explicit byte concatenation,
so that a mistake in either implementation shows up as a vector mismatch
instead of being copied into the vectors.

Usage:
    /usr/bin/python3 tools/gen_vectors.py            # (re)write spec/vectors/*.json
    /usr/bin/python3 tools/gen_vectors.py --check    # exit 1 if the files differ
    /usr/bin/python3 tools/gen_vectors.py --out DIR  # write elsewhere

Primitives: hashlib/hmac from the standard library for SHA-256, HMAC and
HKDF; python3-cryptography for X25519, AES-256-GCM and Ed25519 (the OTA
manifests of spec/ota.md).
"""

import argparse
import hashlib
import hmac
import json
import os
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# ---------------------------------------------------------------- constants
# (spec/protocol.md section numbers in brackets)

HELLO = 0x01          # [4]
CHALLENGE = 0x02
HELLO_ACK = 0x03
SESSION_OK = 0x04
DATA = 0x05           # [6]
PING = 0x06
PONG = 0x07
BYE = 0x08
DATA_FRAGMENT = 0x09  # new in v1: fragmented messages [6.4]
COOKIE = 0x0A         # new in v1: stateless cookie, datagram mode only [8.3]
CONTROL = 0x0B        # new in v1: control channels beside the application's messages [6.7]
ERROR = 0xFF

ERROR_CODES = {       # [9]
    "NONE": 0x00,
    "MALFORMED": 0x01,
    "UNEXPECTED": 0x02,
    "UNSUPPORTED_VERSION": 0x03,
    "UNSUPPORTED_SUITE": 0x04,
    "AUTH_FAILED": 0x05,
    "BAD_KEY": 0x06,
    "BUSY": 0x07,
    "TOO_LARGE": 0x08,
    "BAD_RECORD": 0x09,
    "KEY_LIMIT": 0x0A,
    "IDLE_TIMEOUT": 0x0B,
    "REKEY": 0x0C,
    "SHUTDOWN": 0x0D,
    "REPLACED": 0x0E,
}

CONTROL_CHANNEL_OTA = 0x01  # [6.7]; the channel's messages: spec/ota.md

VERSION_1_BIT = 0x01  # versions bitmap, bit 0 = version 1 [4.1]
SUITE_1_BIT = 0x01    # suites bitmap, bit 0 = suite 1
MODE_STREAM = 0x00    # [5]
MODE_DATAGRAM = 0x01
TRANSCRIPT_LABEL = b"usmp-v1 transcript"
KEY_INFO_LABEL = b"usmp-v1"
CLIENT_FINISHED = b"client finished"
SERVER_FINISHED = b"server finished"
COOKIE_LABEL = b"usmp-v1 cookie"
CLIENT_EPHEMERAL_LABEL = b"usmp-v1 client ephemeral"  # [5.8]
MAC_BYTES = 16
HARD_LIMIT_RECORDS = 2 ** 36  # [7]


def fixed(label, length):
    """A fixed, random-looking test input: SHA-256 of a readable label."""
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(b"usmp-v1 test vector: " + label.encode() + bytes([counter])).digest()
        counter += 1
    return out[:length]


def u16(n):
    return n.to_bytes(2, "big")


def u64(n):
    return n.to_bytes(8, "big")


def x25519_public(private):
    key = X25519PrivateKey.from_private_bytes(private)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def x25519_shared(private, peer_public):
    key = X25519PrivateKey.from_private_bytes(private)
    return key.exchange(X25519PublicKey.from_public_bytes(peer_public))


def hmac_sha256(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf_extract(salt, ikm):
    return hmac_sha256(salt, ikm)


def hkdf_expand(prk, info, length):
    okm = b""
    block = b""
    counter = 1
    while len(okm) < length:
        block = hmac_sha256(prk, block + info + bytes([counter]))
        okm += block
        counter += 1
    return okm[:length]


def stream_frame(frame_type, body):
    return bytes([frame_type]) + u16(len(body)) + body


def datagram_handshake_frame(frame_type, body):
    return bytes([frame_type]) + body


def record_nonce(counter):
    return bytes(4) + counter.to_bytes(8, "big")


def seal_stream(key, counter, record_type, plaintext):
    header = bytes([record_type]) + u16(len(plaintext) + 16)
    sealed = AESGCM(key).encrypt(record_nonce(counter), plaintext, header)
    return header + sealed, header


def seal_datagram(key, session_index, counter, record_type, plaintext):
    header = bytes([record_type]) + session_index + counter.to_bytes(5, "big")
    sealed = AESGCM(key).encrypt(record_nonce(counter), plaintext, header)
    return header + sealed, header


def cobs_encode(data):
    """Consistent Overhead Byte Stuffing, without the trailing 0x00.

    Blocks end at each zero byte or after 254 nonzero bytes (code 0xFF, no
    implied zero). A final empty block right after a 0xFF block is not
    written: that is the minimal encoding.
    """
    out = bytearray()
    block = bytearray()
    ended_on_full_block = False
    for byte in data:
        if byte == 0:
            out.append(len(block) + 1)
            out += block
            block = bytearray()
            ended_on_full_block = False
        else:
            block.append(byte)
            ended_on_full_block = False
            if len(block) == 254:
                out.append(255)
                out += block
                block = bytearray()
                ended_on_full_block = True
    if not ended_on_full_block:
        out.append(len(block) + 1)
        out += block
    return bytes(out)


def cobs_decode(data):
    out = bytearray()
    i = 0
    if len(data) == 0:
        raise ValueError("empty frame")
    while i < len(data):
        code = data[i]
        if code == 0:
            raise ValueError("zero byte inside a frame")
        end = i + code
        if end > len(data):
            raise ValueError("code points past the end")
        chunk = data[i + 1:end]
        if 0 in chunk:
            raise ValueError("zero byte inside a frame")
        out += chunk
        i = end
        if code != 255 and i < len(data):
            out.append(0)
    return bytes(out)


# ----------------------------------------------------------------- handshake

def client_ephemeral_private(psk, boot_counter, connection_counter, client_random):
    """The hedged client ephemeral key [5.8]: the random output alone does not decide it."""
    return hmac_sha256(psk, CLIENT_EPHEMERAL_LABEL + u64(boot_counter) + u64(connection_counter)
                       + client_random)


def run_handshake(name, mode, psk, device_id, client_limits, server_limits,
                  cookie_secret=None, client_address=None, server_psk=None,
                  boot_counter=0, connection_counter=0, ephemeral_psk=None):
    """Builds every frame and derived value of one deterministic handshake.

    server_psk, when given, is the PSK the server holds for this device
    (used for the wrong-PSK vectors); the client always uses psk.
    ephemeral_psk, when given, is the PSK the client's ephemeral key is
    derived with (default psk): the wrong-PSK vectors keep the genuine e_C.
    """
    if server_psk is None:
        server_psk = psk
    if ephemeral_psk is None:
        ephemeral_psk = psk
    client_random = fixed(name + " client random", 32)
    c_priv = client_ephemeral_private(ephemeral_psk, boot_counter, connection_counter, client_random)
    s_priv = fixed(name + " server ephemeral private", 32)
    nonce = fixed(name + " server nonce", 16)
    session_id = fixed(name + " session id", 8)
    c_pub = x25519_public(c_priv)
    s_pub = x25519_public(s_priv)

    hello_body = (bytes([VERSION_1_BIT, SUITE_1_BIT]) + device_id + c_pub
                  + u16(client_limits[0]) + u16(client_limits[1]))
    challenge_body = (bytes([1, 1]) + nonce + s_pub
                      + u16(server_limits[0]) + u16(server_limits[1]))
    if mode == "stream":
        frame = stream_frame
        mode_byte = MODE_STREAM
    else:
        frame = datagram_handshake_frame
        mode_byte = MODE_DATAGRAM
    hello = frame(HELLO, hello_body)
    challenge = frame(CHALLENGE, challenge_body)

    transcript_hash = hashlib.sha256(TRANSCRIPT_LABEL + bytes([mode_byte]) + hello + challenge).digest()

    def keys_for(key_psk, own_private, peer_public):
        shared = x25519_shared(own_private, peer_public)
        prk = hkdf_extract(nonce, shared + key_psk)
        okm = hkdf_expand(prk, KEY_INFO_LABEL + transcript_hash, 128)
        return shared, prk, okm

    shared, prk, okm = keys_for(psk, c_priv, s_pub)
    shared_server, _, okm_server = keys_for(server_psk, s_priv, c_pub)
    assert shared == shared_server
    k_c2s, k_s2c, k_conf_c, k_conf_s = okm[0:32], okm[32:64], okm[64:96], okm[96:128]

    hello_ack_mac = hmac_sha256(k_conf_c, CLIENT_FINISHED + transcript_hash)[:MAC_BYTES]
    hello_ack = frame(HELLO_ACK, hello_ack_mac)
    server_conf_s = okm_server[96:128]
    session_ok_mac = hmac_sha256(server_conf_s, SERVER_FINISHED + transcript_hash + hello_ack + session_id)[:MAC_BYTES]
    session_ok = frame(SESSION_OK, session_id + session_ok_mac)

    case = {
        "name": name,
        "mode": mode,
        "psk": psk.hex(),
        "device_id": device_id.hex(),
        "client_random": client_random.hex(),
        "client_boot_counter": boot_counter,
        "client_connection_counter": connection_counter,
        "client_ephemeral_private": c_priv.hex(),
        "client_ephemeral_public": c_pub.hex(),
        "server_ephemeral_private": s_priv.hex(),
        "server_ephemeral_public": s_pub.hex(),
        "server_nonce": nonce.hex(),
        "session_id": session_id.hex(),
        "client_max_record": client_limits[0],
        "client_max_message": client_limits[1],
        "server_max_record": server_limits[0],
        "server_max_message": server_limits[1],
    }
    frames = {}
    if cookie_secret is not None:
        cookie = hmac_sha256(cookie_secret, COOKIE_LABEL + client_address + hello)[:MAC_BYTES]
        case["cookie_secret"] = cookie_secret.hex()
        case["client_address"] = client_address.hex()
        frames["hello"] = hello.hex()
        frames["cookie"] = frame(COOKIE, cookie).hex()
        frames["hello_with_cookie"] = frame(HELLO, hello_body + cookie).hex()
    else:
        frames["hello"] = hello.hex()
    frames["challenge"] = challenge.hex()
    frames["hello_ack"] = hello_ack.hex()
    frames["session_ok"] = session_ok.hex()
    case["frames"] = frames
    wire = len(hello) + len(challenge) + len(hello_ack) + len(session_ok)
    case["handshake_wire_bytes"] = wire
    case["transcript_hash"] = transcript_hash.hex()
    case["shared_secret"] = shared.hex()
    case["prk"] = prk.hex()
    case["okm"] = okm.hex()
    case["key_c2s"] = k_c2s.hex()
    case["key_s2c"] = k_s2c.hex()
    case["key_confirm_client"] = k_conf_c.hex()
    case["key_confirm_server"] = k_conf_s.hex()
    case["hello_ack_mac"] = hello_ack_mac.hex()
    case["session_ok_mac"] = session_ok_mac.hex()

    # The first records of the session, both directions.
    session_index = session_id[:3]

    def seal(key, counter, record_type, plaintext):
        if mode == "stream":
            return seal_stream(key, counter, record_type, plaintext)[0]
        return seal_datagram(key, session_index, counter, record_type, plaintext)[0]

    records = [
        ("c2s", 0, DATA, b"hello"),
        ("s2c", 0, DATA, b"hello"),
        ("c2s", 1, PING, bytes.fromhex("0000002a")),
        ("s2c", 1, PONG, bytes.fromhex("0000002a")),
        ("c2s", 2, DATA, b""),
        ("c2s", 3, BYE, bytes([ERROR_CODES["NONE"]])),
    ]
    case["records"] = [
        {
            "direction": direction,
            "counter": counter,
            "type": record_type,
            "plaintext": plaintext.hex(),
            "frame": seal(k_c2s if direction == "c2s" else k_s2c, counter, record_type, plaintext).hex(),
        }
        for direction, counter, record_type, plaintext in records
    ]
    secrets = {
        "c_priv": c_priv, "s_priv": s_priv, "nonce": nonce, "session_id": session_id,
        "hello": hello, "challenge": challenge, "hello_ack": hello_ack, "session_ok": session_ok,
        "hello_body": hello_body, "challenge_body": challenge_body,
        "k_c2s": k_c2s, "k_s2c": k_s2c, "frame": frame, "seal": seal,
        "session_index": session_index,
    }
    return case, secrets


# -------------------------------------------------------------------- files

def handshake_cases():
    psk32 = fixed("psk", 32)
    device_id = bytes.fromhex("deadbeef0001")
    cases = []
    all_secrets = {}
    # The counters of section 5.8: zero (a device with no persistent counter,
    # first connection of the boot), and values that fill several bytes, so
    # that a wrong width or byte order shows.
    specs = [
        ("stream-basic", "stream", psk32, (512, 512), (1024, 4096),
         {"boot_counter": 0, "connection_counter": 0}),
        ("stream-psk16", "stream", fixed("short psk", 16), (16, 16), (65519, 65535),
         {"boot_counter": 0x0102030405060708, "connection_counter": 2}),
        ("datagram-basic", "datagram", psk32, (512, 2048), (1207, 8192),
         {"boot_counter": 41, "connection_counter": 0x1_0000_0001}),
        ("datagram-cookie", "datagram", psk32, (512, 2048), (1207, 8192),
         {"cookie_secret": fixed("cookie secret", 32),
          "client_address": bytes.fromhex("c0a80117") + u16(40000),
          "boot_counter": 1, "connection_counter": 7}),
    ]
    for name, mode, psk, client_limits, server_limits, extra in specs:
        case, secrets = run_handshake(name, mode, psk, device_id, client_limits, server_limits, **extra)
        cases.append(case)
        all_secrets[name] = (case, secrets)
    return cases, all_secrets


def records_file():
    key = fixed("record key", 32)
    session_index = bytes.fromhex("a1b2c3")
    counters = [0, 1, 2 ** 32 - 1, 2 ** 32]
    payloads = [
        (DATA, b"usmp"),
        (DATA, b""),
        (PING, bytes.fromhex("0102030405060708")),
        (PONG, bytes.fromhex("0102030405060708")),
        (BYE, bytes([ERROR_CODES["SHUTDOWN"]])),
        # total length 300, offset 0, then the first 8 bytes of the message
        (DATA_FRAGMENT, u16(300) + u16(0) + b"fragment"),
        # channel 0x01 (OTA), then its body [6.7]
        (CONTROL, bytes([CONTROL_CHANNEL_OTA]) + b"\x03control"),
    ]
    out = []
    for mode in ("stream", "datagram"):
        for counter in counters:
            for record_type, plaintext in payloads:
                if mode == "stream":
                    frame, header = seal_stream(key, counter, record_type, plaintext)
                else:
                    frame, header = seal_datagram(key, session_index, counter, record_type, plaintext)
                entry = {
                    "mode": mode,
                    "key": key.hex(),
                    "counter": counter,
                    "type": record_type,
                    "plaintext": plaintext.hex(),
                    "nonce": record_nonce(counter).hex(),
                    "aad": header.hex(),
                    "frame": frame.hex(),
                    "overhead": len(frame) - len(plaintext),
                }
                if mode == "datagram":
                    entry["session_index"] = session_index.hex()
                out.append(entry)
    return {
        "description": "USMP v1 records (spec/protocol.md section 6): AES-256-GCM, "
                       "nonce = 4 zero bytes || counter (u64 big-endian), AAD = the "
                       "record header as sent. Stream header: type || length(u16); "
                       "datagram header: type || session_index(3) || seq(u40).",
        "records": out,
    }


def cobs_file():
    inputs = [
        ("empty", b""),
        ("one zero", b"\x00"),
        ("two zeros", b"\x00\x00"),
        ("zero inside", bytes.fromhex("11220033")),
        ("trailing zero", bytes.fromhex("11223300")),
        ("no zero", bytes.fromhex("11223344")),
        ("253 nonzero", bytes((i % 255) + 1 for i in range(253))),
        ("254 nonzero", bytes((i % 255) + 1 for i in range(254))),
        ("255 nonzero", bytes((i % 255) + 1 for i in range(255))),
        ("254 nonzero then zero", bytes((i % 255) + 1 for i in range(254)) + b"\x00"),
        ("zero then 254 nonzero", b"\x00" + bytes((i % 255) + 1 for i in range(254))),
        ("508 nonzero", bytes((i % 255) + 1 for i in range(508))),
        ("all byte values", bytes(range(256))),
    ]
    cases = []
    for name, data in inputs:
        encoded = cobs_encode(data)
        assert 0 not in encoded
        assert cobs_decode(encoded) == data, name
        cases.append({"name": name, "decoded": data.hex(), "encoded": encoded.hex(),
                      "framed": (encoded + b"\x00").hex()})
    invalid = [
        ("code points past the end", "05112233"),
        ("zero byte inside a frame", "0311002233"),
    ]
    return {
        "description": "COBS (spec/protocol.md section 10). 'encoded' has no delimiter; "
                       "'framed' is what goes on the UART line: encoded || 0x00. "
                       "'invalid' frames (the bytes between two delimiters) must be "
                       "rejected with MALFORMED.",
        "cases": cases,
        "invalid": [{"name": n, "encoded": e, "error": "MALFORMED"} for n, e in invalid],
    }


def negative_file(hs):
    cases = []

    def add(name, handshake, receiver, start, steps, description):
        cases.append({"name": name, "description": description, "handshake": handshake,
                      "receiver": receiver, "start": start, "steps": steps})

    def step(frame, expect="ok", outcome=None, reply=None, delivers=None, peer_code=None, control=None):
        entry = {"input": frame.hex(), "expect": expect}
        if outcome is not None:
            entry["outcome"] = outcome
        if reply is not None:
            entry["reply"] = reply.hex()
        if delivers is not None:
            entry["delivers"] = delivers.hex()
        if peer_code is not None:
            entry["peer_code"] = ERROR_CODES[peer_code]
        if control is not None:
            entry["control"] = {"channel": control[0], "body": control[1].hex()}
        return entry

    def handshake_timer_step(expect, peer_code=None):
        # Not an input: the receiver's clock passes its handshake_timeout.
        entry = {"timer": "handshake", "expect": expect, "outcome": "closed"}
        if peer_code is not None:
            entry["peer_code"] = ERROR_CODES[peer_code]
        return entry

    def error_frame(frame, code):
        return frame(ERROR, bytes([ERROR_CODES[code]]))

    attacker_private = fixed("attacker ephemeral private", 32)
    attacker_public = x25519_public(attacker_private)
    # A point of order 8 on Curve25519 (RFC 7748 section 6.1 and
    # cr.yp.to/ecdh.html): X25519 with it gives an all-zero result.
    low_order_point = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")

    for name in ("stream-basic", "datagram-basic"):
        case, s = hs[name]
        mode = case["mode"]
        frame = s["frame"]
        fatal = "closed"
        drop = "closed" if mode == "stream" else "open"
        prefix = mode + "-"

        # --- server receiving HELLO
        body = s["hello_body"]
        add(prefix + "hello-truncated", name, "server", "WAIT_HELLO",
            [step(frame(HELLO, body[:-1]), "MALFORMED", fatal, error_frame(frame, "MALFORMED"))],
            "HELLO one byte short: rejected before any crypto.")
        add(prefix + "hello-bad-version", name, "server", "WAIT_HELLO",
            [step(frame(HELLO, bytes([0x02]) + body[1:]), "UNSUPPORTED_VERSION", fatal,
                  error_frame(frame, "UNSUPPORTED_VERSION"))],
            "HELLO offers only version 2.")
        add(prefix + "hello-bad-suite", name, "server", "WAIT_HELLO",
            [step(frame(HELLO, body[:1] + bytes([0x80]) + body[2:]), "UNSUPPORTED_SUITE", fatal,
                  error_frame(frame, "UNSUPPORTED_SUITE"))],
            "HELLO offers only an unknown suite.")
        add(prefix + "hello-bad-limits", name, "server", "WAIT_HELLO",
            [step(frame(HELLO, body[:40] + u16(15) + body[42:]), "MALFORMED", fatal,
                  error_frame(frame, "MALFORMED"))],
            "HELLO announces max_record 15, below the minimum of 16.")
        if mode == "datagram":
            add(prefix + "hello-record-over-datagram-limit", name, "server", "WAIT_HELLO",
                [step(frame(HELLO, body[:40] + u16(1208) + u16(2048)), "MALFORMED", fatal,
                      error_frame(frame, "MALFORMED"))],
                "Datagram HELLO announcing max_record 1208, above the datagram limit of 1207.")
        add(prefix + "hello-low-order-key", name, "server", "WAIT_HELLO",
            [step(frame(HELLO, body[:8] + low_order_point + body[40:]), "BAD_KEY", fatal,
                  error_frame(frame, "BAD_KEY"))],
            "HELLO carries a low-order X25519 point: the shared secret is all zero.")
        add(prefix + "unexpected-hello-ack-first", name, "server", "WAIT_HELLO",
            [step(s["hello_ack"], "UNEXPECTED", fatal if mode == "stream" else "open",
                  error_frame(frame, "UNEXPECTED") if mode == "stream" else None)],
            "HELLO_ACK before any HELLO.")
        add(prefix + "unknown-type", name, "server", "WAIT_HELLO",
            [step(frame(0x42, b"\x00"), "MALFORMED", fatal if mode == "stream" else "open",
                  error_frame(frame, "MALFORMED") if mode == "stream" else None)],
            "A frame type USMP does not define.")

        # --- wrong PSK: the client holds another PSK than the server
        wrong_case, wrong = run_handshake(name, mode, fixed("wrong psk", 32), bytes.fromhex("deadbeef0001"),
                                          (case["client_max_record"], case["client_max_message"]),
                                          (case["server_max_record"], case["server_max_message"]),
                                          boot_counter=case["client_boot_counter"],
                                          connection_counter=case["client_connection_counter"],
                                          ephemeral_psk=bytes.fromhex(case["psk"]))
        assert wrong["hello"] == s["hello"]
        add(prefix + "wrong-psk", name, "server", "WAIT_HELLO_ACK",
            [step(wrong["hello_ack"], "AUTH_FAILED", fatal, error_frame(frame, "AUTH_FAILED"))],
            "HELLO_ACK made by a client that holds a different PSK in its key schedule "
            "(same HELLO and ephemeral keys as the genuine one).")

        # --- unknown device: answered exactly like a known one, fails at HELLO_ACK
        unknown_id = bytes.fromhex("deadbeef0099")
        unknown_hello_body = bytes([VERSION_1_BIT, SUITE_1_BIT]) + unknown_id + body[8:]
        unknown_hello = frame(HELLO, unknown_hello_body)
        add(prefix + "unknown-device", name, "server", "WAIT_HELLO",
            [step(unknown_hello, "ok", "open", s["challenge"]),
             step(s["hello_ack"], "AUTH_FAILED", fatal, error_frame(frame, "AUTH_FAILED"))],
            "HELLO from a device id the server has no PSK for: the server answers the same "
            "CHALLENGE it would give a known device (same ephemeral key and nonce) and fails "
            "at HELLO_ACK with AUTH_FAILED, as for a wrong PSK. The CHALLENGE bytes are "
            "those of the known-device handshake because only the server's random inputs "
            "decide them.")

        # --- man in the middle swaps the client's ephemeral key
        swapped_hello = frame(HELLO, body[:8] + attacker_public + body[40:])
        add(prefix + "swapped-client-key", name, "server", "WAIT_HELLO",
            [step(swapped_hello, "ok", "open", s["challenge"]),
             step(s["hello_ack"], "AUTH_FAILED", fatal, error_frame(frame, "AUTH_FAILED"))],
            "An attacker replaced e_C in HELLO with its own key and relays the genuine "
            "client's HELLO_ACK: the server's transcript and keys differ, the MAC fails.")

        # --- man in the middle swaps the server's ephemeral key
        cbody = s["challenge_body"]
        swapped_challenge = frame(CHALLENGE, cbody[:18] + attacker_public + cbody[50:])
        # The client answers the swapped CHALLENGE with keys the attacker
        # shares, not the server: compute that HELLO_ACK as the client does.
        mode_byte = MODE_STREAM if mode == "stream" else MODE_DATAGRAM
        swapped_th = hashlib.sha256(TRANSCRIPT_LABEL + bytes([mode_byte]) + s["hello"] + swapped_challenge).digest()
        swapped_dh = x25519_shared(s["c_priv"], attacker_public)
        swapped_prk = hkdf_extract(s["nonce"], swapped_dh + bytes.fromhex(case["psk"]))
        swapped_okm = hkdf_expand(swapped_prk, KEY_INFO_LABEL + swapped_th, 128)
        swapped_ack = frame(HELLO_ACK, hmac_sha256(swapped_okm[64:96], CLIENT_FINISHED + swapped_th)[:MAC_BYTES])
        add(prefix + "swapped-server-key", name, "client", "WAIT_CHALLENGE",
            [step(swapped_challenge, "ok", "open", swapped_ack),
             step(s["session_ok"], "AUTH_FAILED", fatal, error_frame(frame, "AUTH_FAILED"))],
            "An attacker replaced e_S in CHALLENGE and relays the genuine server's "
            "SESSION_OK: the client's transcript differs, the MAC fails. The client's "
            "HELLO_ACK to the swapped CHALLENGE is of no use to the attacker without the PSK.")
        add(prefix + "challenge-bad-version", name, "client", "WAIT_CHALLENGE",
            [step(frame(CHALLENGE, bytes([2]) + cbody[1:]), "UNSUPPORTED_VERSION", fatal,
                  error_frame(frame, "UNSUPPORTED_VERSION"))],
            "CHALLENGE selects version 2, which the client did not offer.")
        add(prefix + "challenge-low-order-key", name, "client", "WAIT_CHALLENGE",
            [step(frame(CHALLENGE, cbody[:18] + low_order_point + cbody[50:]), "BAD_KEY", fatal,
                  error_frame(frame, "BAD_KEY"))],
            "CHALLENGE carries a low-order X25519 point.")

        # --- tampered handshake frames
        tampered_ack = bytearray(s["hello_ack"])
        tampered_ack[-1] ^= 0x01
        add(prefix + "tampered-hello-ack", name, "server", "WAIT_HELLO_ACK",
            [step(bytes(tampered_ack), "AUTH_FAILED", fatal, error_frame(frame, "AUTH_FAILED"))],
            "Last bit of the HELLO_ACK MAC flipped.")
        tampered_ok = bytearray(s["session_ok"])
        tampered_ok[-1] ^= 0x80
        add(prefix + "tampered-session-ok", name, "client", "WAIT_SESSION_OK",
            [step(bytes(tampered_ok), "AUTH_FAILED", fatal, error_frame(frame, "AUTH_FAILED"))],
            "Top bit of the last SESSION_OK MAC byte flipped.")
        add(prefix + "session-ok-truncated", name, "client", "WAIT_SESSION_OK",
            [step(frame(SESSION_OK, s["session_ok"][-24:-1]),
                  "MALFORMED", fatal, error_frame(frame, "MALFORMED"))],
            "SESSION_OK one byte short.")

        # --- version numbers without a bit in the bitmap (4.5): none can be offered
        add(prefix + "hello-no-version", name, "server", "WAIT_HELLO",
            [step(frame(HELLO, bytes([0x00]) + body[1:]), "UNSUPPORTED_VERSION", fatal,
                  error_frame(frame, "UNSUPPORTED_VERSION"))],
            "HELLO with an empty versions bitmap offers no version at all.")
        for selected in (0, 9):
            add(prefix + "challenge-version-%d" % selected, name, "client", "WAIT_CHALLENGE",
                [step(frame(CHALLENGE, bytes([selected]) + cbody[1:]), "UNSUPPORTED_VERSION", fatal,
                      error_frame(frame, "UNSUPPORTED_VERSION"))],
                "CHALLENGE selects version %d, which has no bit in the 8-bit versions bitmap "
                "(versions 1 to 8 only), so the client cannot have offered it." % selected)

        # --- type before length (4.5, 5.1): an unexpected type is UNEXPECTED whatever its length
        add(prefix + "unexpected-type-wrong-length", name, "server", "WAIT_HELLO",
            [step(frame(SESSION_OK, bytes(5)), "UNEXPECTED", fatal if mode == "stream" else "open",
                  error_frame(frame, "UNEXPECTED") if mode == "stream" else None)],
            "A SESSION_OK of the wrong length sent to a server: the type is checked before "
            "the length, so the condition is UNEXPECTED, not MALFORMED.")
        add(prefix + "error-wrong-length", name, "client", "WAIT_CHALLENGE",
            [step(frame(ERROR, bytes([ERROR_CODES["AUTH_FAILED"], 0])), "MALFORMED", drop,
                  error_frame(frame, "MALFORMED") if mode == "stream" else None)],
            "An ERROR with a 2-byte body: MALFORMED (stream: fatal; datagram: dropped, the "
            "handshake goes on).")

        # --- peer ERROR during the handshake (9.2, row 25)
        spoofed_error = error_frame(frame, "AUTH_FAILED")
        if mode == "stream":
            add(prefix + "error-in-wait-challenge", name, "client", "WAIT_CHALLENGE",
                [step(spoofed_error, "PEER_ERROR", "closed", peer_code="AUTH_FAILED")],
                "A stream ERROR ends the handshake at once with PEER_ERROR and the peer's code; "
                "nothing is sent.")
            add(prefix + "error-in-wait-hello", name, "server", "WAIT_HELLO",
                [step(frame(ERROR, bytes([ERROR_CODES["BUSY"]])), "PEER_ERROR", "closed",
                      peer_code="BUSY")],
                "WAIT_HELLO counts as a handshake state: a stream ERROR there ends it with "
                "PEER_ERROR.")
        else:
            add(prefix + "error-then-challenge", name, "client", "WAIT_CHALLENGE",
                [step(spoofed_error, "PEER_ERROR", "open", peer_code="AUTH_FAILED"),
                 step(s["challenge"], "ok", "open", s["hello_ack"]),
                 step(s["session_ok"], "ok", "open")],
                "A datagram ERROR is unauthenticated: it is recorded and dropped, and the "
                "genuine CHALLENGE that follows completes the handshake.")
            add(prefix + "error-then-timeout", name, "client", "WAIT_CHALLENGE",
                [step(spoofed_error, "PEER_ERROR", "open", peer_code="AUTH_FAILED"),
                 step(frame(ERROR, bytes([ERROR_CODES["BUSY"]])), "PEER_ERROR", "open",
                      peer_code="BUSY"),
                 handshake_timer_step("PEER_ERROR", peer_code="BUSY")],
                "Two datagram ERRORs and no CHALLENGE: at the handshake timeout the handshake "
                "fails with PEER_ERROR and the code of the last ERROR recorded.")
            add(prefix + "no-error-timeout", name, "client", "WAIT_CHALLENGE",
                [handshake_timer_step("TIMEOUT")],
                "No answer and no ERROR: the handshake fails with TIMEOUT.")
            add(prefix + "error-in-wait-session-ok", name, "client", "WAIT_SESSION_OK",
                [step(spoofed_error, "PEER_ERROR", "open", peer_code="AUTH_FAILED"),
                 step(s["session_ok"], "ok", "open")],
                "A datagram ERROR after HELLO_ACK is dropped; the genuine SESSION_OK still "
                "establishes the session.")
            add(prefix + "error-in-wait-hello", name, "server", "WAIT_HELLO",
                [step(frame(ERROR, bytes([ERROR_CODES["BUSY"]])), "PEER_ERROR", "open",
                      peer_code="BUSY"),
                 step(s["hello"], "ok", "open", s["challenge"])],
                "WAIT_HELLO counts as a handshake state: a datagram ERROR there is recorded "
                "and dropped, and a HELLO is still answered.")
            add(prefix + "error-in-wait-hello-ack", name, "server", "WAIT_HELLO_ACK",
                [step(spoofed_error, "PEER_ERROR", "open", peer_code="AUTH_FAILED"),
                 step(s["hello_ack"], "ok", "open", s["session_ok"])],
                "A datagram ERROR sent to a server in WAIT_HELLO_ACK is dropped; the genuine "
                "HELLO_ACK still completes the handshake.")
            other_hello = frame(HELLO, body[:8] + attacker_public + body[40:])
            add(prefix + "different-hello-in-wait-hello-ack", name, "server", "WAIT_HELLO_ACK",
                [step(other_hello, "UNEXPECTED", "open"),
                 step(s["hello_ack"], "ok", "open", s["session_ok"])],
                "A HELLO that differs from the stored one reaches the engine in WAIT_HELLO_ACK: "
                "the engine drops it (UNEXPECTED) and its handshake goes on; the server (8.2) "
                "starts a new handshake for that address in a new engine.")

        if mode == "stream":
            add(prefix + "hello-then-garbage-in-one-read", name, "server", "WAIT_HELLO",
                [step(s["hello"] + frame(0x42, b"\x00"), "MALFORMED", fatal,
                      s["challenge"] + error_frame(frame, "MALFORMED"))],
                "A genuine HELLO and an undefined frame in the same read: the CHALLENGE for the "
                "HELLO still goes out, then ERROR(MALFORMED), exactly as if they had come in two "
                "reads (replies are per frame, spec section 1).")

        # --- duplicates: retransmission in datagram mode, a violation in stream mode
        if mode == "datagram":
            add(prefix + "duplicate-hello", name, "server", "WAIT_HELLO_ACK",
                [step(s["hello"], "ok", "open", s["challenge"])],
                "A retransmitted HELLO: the server sends its stored CHALLENGE again, "
                "with no new crypto and no state change.")
            add(prefix + "duplicate-hello-ack", name, "server", "ESTABLISHED",
                [step(s["hello_ack"], "ok", "open", s["session_ok"])],
                "A retransmitted HELLO_ACK after the session is established (SESSION_OK "
                "was lost): the server sends its stored SESSION_OK again.")
            add(prefix + "duplicate-session-ok", name, "client", "ESTABLISHED",
                [step(s["session_ok"], "UNEXPECTED", "open")],
                "A duplicated SESSION_OK after the session is established is dropped.")
        else:
            add(prefix + "duplicate-hello", name, "server", "WAIT_HELLO_ACK",
                [step(s["hello"], "UNEXPECTED", fatal, error_frame(frame, "UNEXPECTED"))],
                "A second HELLO on a byte stream cannot be a retransmission.")

        # --- records after the handshake
        rec = {(r["direction"], r["counter"]): bytes.fromhex(r["frame"]) for r in case["records"]}
        c2s0 = rec[("c2s", 0)]
        s2c0 = rec[("s2c", 0)]
        def server_bye(reason):
            # A fatal error in an established stream session is reported in
            # an encrypted BYE, the server's first record (counter 0).
            return s["seal"](s["k_s2c"], 0, BYE, bytes([ERROR_CODES[reason]]))

        def established_error(reason):
            if mode == "stream":
                return server_bye(reason)
            return None

        tampered = bytearray(c2s0)
        tampered[-1] ^= 0x01
        add(prefix + "tampered-tag", name, "server", "ESTABLISHED",
            [step(bytes(tampered), "BAD_RECORD", drop, established_error("BAD_RECORD"))],
            "Client DATA with the last tag bit flipped.")
        tampered_body = bytearray(c2s0)
        tampered_body[len(tampered_body) - 17] ^= 0x01
        add(prefix + "tampered-ciphertext", name, "server", "ESTABLISHED",
            [step(bytes(tampered_body), "BAD_RECORD", drop, established_error("BAD_RECORD"))],
            "Client DATA with the last ciphertext bit flipped.")
        tampered_header = bytearray(c2s0)
        tampered_header[0] = PING
        add(prefix + "tampered-type", name, "server", "ESTABLISHED",
            [step(bytes(tampered_header), "BAD_RECORD", drop, established_error("BAD_RECORD"))],
            "Client DATA relabelled as PING: the type is in the AAD.")
        add(prefix + "replayed-record", name, "server", "ESTABLISHED",
            [step(c2s0, "ok", "open", delivers=b"hello"),
             step(c2s0, "BAD_RECORD" if mode == "stream" else "REPLAY", drop,
                  established_error("BAD_RECORD"))],
            "The same client DATA twice. Stream: the implicit counter has moved on, so the "
            "tag fails. Datagram: the replay window rejects it before decryption.")
        add(prefix + "reflected-record", name, "server", "ESTABLISHED",
            [step(s2c0, "BAD_RECORD", drop, established_error("BAD_RECORD"))],
            "The server's own record sent back to it: the c2s key does not open it.")
        add(prefix + "plaintext-error-after-handshake", name, "server", "ESTABLISHED",
            [step(frame(ERROR, bytes([ERROR_CODES["AUTH_FAILED"]])), "UNEXPECTED", drop,
                  established_error("UNEXPECTED"))],
            "A plaintext ERROR after SESSION_OK is never accepted.")
        if mode == "stream":
            add(prefix + "oversize-length", name, "server", "ESTABLISHED",
                [step(bytes([DATA]) + u16(case["server_max_record"] + 17), "TOO_LARGE", fatal,
                      server_bye("TOO_LARGE"))],
                "A record header announcing one byte more than the server's max_record: "
                "rejected from the 3-byte header alone, before the body arrives.")
            add(prefix + "record-shorter-than-tag", name, "server", "ESTABLISHED",
                [step(bytes([DATA]) + u16(15) + bytes(15), "MALFORMED", fatal, server_bye("MALFORMED"))],
                "A record whose length cannot hold the 16-byte tag.")
        else:
            add(prefix + "oversize-length", name, "server", "ESTABLISHED",
                [step(s["seal"](s["k_c2s"], 0, DATA, bytes(case["server_max_record"] + 1)),
                      "TOO_LARGE", "open")],
                "A datagram one byte over the server's max_record (correctly sealed).")
            add(prefix + "record-shorter-than-tag", name, "server", "ESTABLISHED",
                [step(c2s0[:9 + 15], "MALFORMED", "open")],
                "A datagram record cut to 9 + 15 bytes: too short for the tag.")
            other_index = bytes([s["session_index"][0] ^ 0xFF]) + s["session_index"][1:]
            wrong_index = bytes([DATA]) + other_index + c2s0[4:]
            add(prefix + "unknown-session-index", name, "server", "ESTABLISHED",
                [step(wrong_index, "UNKNOWN_SESSION", "open")],
                "A record whose session index is not this session's.")
            late = seal_datagram(s["k_c2s"], s["session_index"], 100, DATA, b"late")[0]
            old = seal_datagram(s["k_c2s"], s["session_index"], 36, DATA, b"old")[0]
            inside = seal_datagram(s["k_c2s"], s["session_index"], 37, DATA, b"inside")[0]
            add(prefix + "replay-window", name, "server", "ESTABLISHED",
                [step(late, "ok", "open", delivers=b"late"),
                 step(old, "REPLAY", "open"),
                 step(inside, "ok", "open", delivers=b"inside"),
                 step(inside, "REPLAY", "open")],
                "After seq 100, seq 36 is 64 behind (outside the 64-record window) and "
                "rejected; seq 37 is the oldest inside and accepted once.")
            beyond = seal_datagram(s["k_c2s"], s["session_index"], HARD_LIMIT_RECORDS, DATA, b"x")[0]
            add(prefix + "counter-beyond-limit", name, "server", "ESTABLISHED",
                [step(beyond, "KEY_LIMIT", "open")],
                "A record with seq 2^36, beyond the per-key record limit.")
            add(prefix + "reordered-records", name, "server", "ESTABLISHED",
                [step(seal_datagram(s["k_c2s"], s["session_index"], 2, DATA, b"two")[0], "ok", "open",
                      delivers=b"two"),
                 step(c2s0, "ok", "open", delivers=b"hello"),
                 step(seal_datagram(s["k_c2s"], s["session_index"], 1, DATA, b"one")[0], "ok", "open",
                      delivers=b"one")],
                "Datagram mode accepts records out of order inside the window, each once.")
        # --- fragmented messages (section 6.4); the server announced
        # max_record 1024 / max_message 4096 (stream) or 1207 / 8192 (datagram)
        def fragment(counter, total, offset, chunk):
            return s["seal"](s["k_c2s"], counter, DATA_FRAGMENT, u16(total) + u16(offset) + chunk)

        message = fixed("fragmented message", 1500)
        add(prefix + "fragmented-message", name, "server", "ESTABLISHED",
            [step(fragment(0, 1500, 0, message[:1000]), "ok", "open"),
             step(fragment(1, 1500, 1000, message[1000:]), "ok", "open", delivers=message)],
            "A 1500-byte message in two fragments is delivered whole after the second.")
        add(prefix + "fragment-fits-one-record", name, "server", "ESTABLISHED",
            [step(fragment(0, 100, 0, bytes(100)), "UNEXPECTED", drop, established_error("UNEXPECTED"))],
            "A fragmented message of 100 bytes, which fits in one record of the server's "
            "max_record, should have been one DATA.")
        add(prefix + "fragment-over-max-message", name, "server", "ESTABLISHED",
            [step(fragment(0, case["server_max_message"] + 1, 0, bytes(100)), "TOO_LARGE", drop,
                  established_error("TOO_LARGE"))],
            "A fragmented message announcing one byte more than the server's max_message.")
        add(prefix + "fragment-wrong-offset", name, "server", "ESTABLISHED",
            [step(fragment(0, 1500, 0, message[:1000]), "ok", "open"),
             step(fragment(1, 1500, 900, message[900:]), "UNEXPECTED", drop, established_error("UNEXPECTED"))],
            "A second fragment that does not continue where the first ended.")
        if mode == "stream":
            add(prefix + "data-inside-fragmented-message", name, "server", "ESTABLISHED",
                [step(fragment(0, 1500, 0, message[:1000]), "ok", "open"),
                 step(s["seal"](s["k_c2s"], 1, DATA, b"interloper"), "UNEXPECTED", fatal,
                      server_bye("UNEXPECTED"))],
                "A DATA record between two fragments of one message.")
        else:
            add(prefix + "lost-fragment", name, "server", "ESTABLISHED",
                [step(fragment(0, 1500, 0, message[:1000]), "ok", "open"),
                 step(fragment(2, 1500, 1000, message[1000:]), "UNEXPECTED", "open"),
                 step(s["seal"](s["k_c2s"], 3, DATA, b"next"), "ok", "open", delivers=b"next"),
                 step(fragment(2, 1500, 1000, message[1000:]), "UNEXPECTED", "open")],
                "The fragment with seq 1 was lost: the continuation with seq 2 is dropped with "
                "the partial message, and the next DATA is delivered. The dropped fragment did "
                "not enter the replay window (a rejected record changes nothing), so sent again "
                "it is UNEXPECTED again, not REPLAY.")
            add(prefix + "data-inside-fragmented-message", name, "server", "ESTABLISHED",
                [step(fragment(0, 1500, 0, message[:1000]), "ok", "open"),
                 step(s["seal"](s["k_c2s"], 1, DATA, b"interloper"), "ok", "open", delivers=b"interloper"),
                 step(fragment(2, 1500, 1000, message[1000:]), "UNEXPECTED", "open")],
                "A DATA between fragments is delivered and discards the partial message.")

        # --- PING: one PONG per PING, with its payload (row 31)
        ping0 = s["seal"](s["k_c2s"], 0, PING, b"\x01")
        ping1 = s["seal"](s["k_c2s"], 1, PING, b"\x02\x02")
        pong0 = s["seal"](s["k_s2c"], 0, PONG, b"\x01")
        pong1 = s["seal"](s["k_s2c"], 1, PONG, b"\x02\x02")
        if mode == "stream":
            add(prefix + "two-pings-in-one-read", name, "server", "ESTABLISHED",
                [step(ping0 + ping1, "ok", "open", pong0 + pong1)],
                "Two PINGs in one read get two PONGs, each with its PING's payload, in order.")
        else:
            add(prefix + "two-pings", name, "server", "ESTABLISHED",
                [step(ping0, "ok", "open", pong0), step(ping1, "ok", "open", pong1)],
                "Each PING gets its own PONG with its payload.")

        # --- CONTROL records (6.7, rows 61-62): a separate event, never a message
        def control(counter, body):
            return s["seal"](s["k_c2s"], counter, CONTROL, body)

        add(prefix + "control-record", name, "server", "ESTABLISHED",
            [step(control(0, bytes([CONTROL_CHANNEL_OTA]) + b"\x01status"), "ok", "open",
                  control=(CONTROL_CHANNEL_OTA, b"\x01status"))],
            "A CONTROL record on channel 0x01: reported as a control event with its channel "
            "and body, not delivered as a message ('control': the event expected).")
        add(prefix + "control-empty", name, "server", "ESTABLISHED",
            [step(control(0, b""), "MALFORMED", drop, established_error("MALFORMED"))],
            "A CONTROL record with an empty plaintext: no channel byte.")
        if mode == "stream":
            add(prefix + "control-over-max-record", name, "server", "ESTABLISHED",
                [step(bytes([CONTROL]) + u16(case["server_max_record"] + 17), "TOO_LARGE", fatal,
                      server_bye("TOO_LARGE"))],
                "A CONTROL record header announcing one byte more than the server's "
                "max_record: rejected from the header alone, like DATA.")
            add(prefix + "control-inside-fragmented-message", name, "server", "ESTABLISHED",
                [step(fragment(0, 1500, 0, message[:1000]), "ok", "open"),
                 step(control(1, b"\x01\x01"), "ok", "open", control=(CONTROL_CHANNEL_OTA, b"\x01")),
                 step(fragment(2, 1500, 1000, message[1000:]), "ok", "open", delivers=message)],
                "A CONTROL record between two fragments leaves the partial message alone.")
        else:
            add(prefix + "control-over-max-record", name, "server", "ESTABLISHED",
                [step(control(0, bytes(case["server_max_record"] + 1)), "TOO_LARGE", "open")],
                "A CONTROL datagram one byte over the server's max_record (correctly sealed).")
        add(prefix + "control-in-handshake", name, "server", "WAIT_HELLO_ACK",
            [step(control(0, b"\x01\x01"), "UNEXPECTED", fatal if mode == "stream" else "open",
                  error_frame(frame, "UNEXPECTED") if mode == "stream" else None)],
            "A CONTROL record before the handshake completes, like DATA: UNEXPECTED.")

        # --- DATA_FRAGMENT payload shorter than its 4-byte header (6.4)
        add(prefix + "fragment-shorter-than-header", name, "server", "ESTABLISHED",
            [step(s["seal"](s["k_c2s"], 0, DATA_FRAGMENT, u16(1500) + b"\x00"), "MALFORMED", drop,
                  established_error("MALFORMED"))],
            "A DATA_FRAGMENT whose payload (3 bytes) cannot hold total and offset.")
        add(prefix + "fragment-empty-chunk", name, "server", "ESTABLISHED",
            [step(fragment(0, 1500, 0, b""), "MALFORMED", drop, established_error("MALFORMED"))],
            "A DATA_FRAGMENT of exactly 4 bytes: total and offset, no chunk.")
        if mode == "datagram":
            tampered_continuation = bytearray(fragment(1, 1500, 1000, message[1000:]))
            tampered_continuation[-1] ^= 0x01
            add(prefix + "rejected-records-keep-partial-message", name, "server", "ESTABLISHED",
                [step(fragment(0, 1500, 0, message[:1000]), "ok", "open"),
                 step(fragment(1, case["server_max_message"] + 1, 1000, bytes(10)), "TOO_LARGE", "open"),
                 step(fragment(1, 1500, 1000, b""), "MALFORMED", "open"),
                 step(bytes(tampered_continuation), "BAD_RECORD", "open"),
                 step(fragment(1, 1500, 1000, message[1000:]), "ok", "open", delivers=message)],
                "Only an out-of-sequence fragment, a new first fragment or a DATA discard a "
                "partly received message (6.4); a record rejected for any other reason changes "
                "nothing, so the genuine continuation with the same seq still completes it.")

        if mode == "stream":
            cut = c2s0[:-1]
            add(prefix + "truncated-record", name, "server", "ESTABLISHED",
                [step(cut, "ok", "open"), step(b"", "TRANSPORT_CLOSED", "closed")],
                "A record cut one byte short and then end of stream: the partial record is "
                "never delivered; the close is reported as TRANSPORT_CLOSED (not PEER_CLOSED, "
                "which only an authenticated BYE gives). An empty input means end of stream.")

    late_hello_cases(hs, add, step)

    return {
        "description": "Negative vectors. For each case, bring the receiver to 'start' by "
                       "running the named handshake with its fixed inputs (WAIT_HELLO: a fresh "
                       "server; WAIT_CHALLENGE: a client that sent HELLO; WAIT_HELLO_ACK: a "
                       "server that got the genuine HELLO; WAIT_SESSION_OK: a client that got "
                       "the genuine CHALLENGE; ESTABLISHED: after the whole genuine handshake, "
                       "with no record exchanged yet). Then feed each step's input as one "
                       "frame (stream mode: as bytes of the stream). 'expect' is 'ok' or the "
                       "error the receiver must report; 'outcome' is the session afterwards "
                       "('closed': fatal, 'open': dropped, no state change); 'reply', when "
                       "present, is the exact frame the receiver must send in answer.",
        "cases": cases,
    }


def late_hello_cases(hs, add, step):
    """Spec 8.4, row 52: a late duplicate HELLO at an ESTABLISHED server changes nothing."""
    case, s = hs["datagram-basic"]
    add("datagram-late-hello", "datagram-basic", "server", "ESTABLISHED",
        [step(s["hello"], "UNEXPECTED", "open"),
         step(s["hello_ack"], "ok", "open", s["session_ok"])],
        "The genuine HELLO again after the handshake (a late duplicate, SESSION_OK lost): "
        "dropped without an answer; the client's resent HELLO_ACK still gets the stored "
        "SESSION_OK (8.2).")


def datagram_file(hs):
    """Rules of spec 8.4 that a datagram driver follows, where bytes depend on them."""
    case, s = hs["datagram-cookie"]
    frames = case["frames"]
    basic, b = hs["datagram-basic"]
    flight = [b["hello"], b["challenge"], b["hello_ack"], b["session_ok"]]
    lines = [cobs_encode(f) + b"\x00" for f in flight]
    return {
        "description": "Datagram drivers (spec/protocol.md section 8.4). 'cookie_before_busy': a "
                       "UDP server with cookie_secret, under load and at its handshake limit, "
                       "receives each step's input from client_address (IPv4 || u16 port) and "
                       "must send exactly 'reply'. 'serial_handshake': the datagram-basic "
                       "handshake on a serial line, each frame as COBS(frame) || 00; no COOKIE "
                       "is ever sent there.",
        "cookie_before_busy": {
            "handshake": "datagram-cookie",
            "cookie_secret": case["cookie_secret"],
            "client_address": case["client_address"],
            "steps": [
                {"input": frames["hello"], "reply": frames["cookie"]},
                {"input": frames["hello_with_cookie"], "reply": (bytes([ERROR, ERROR_CODES["BUSY"]])).hex()},
            ],
        },
        "serial_handshake": {
            "handshake": "datagram-basic",
            "lines": [line.hex() for line in lines],
            "wire_bytes": sum(len(line) for line in lines),
        },
    }


# ---------------------------------------------------------------- OTA (spec/ota.md)

OTA_CHANNEL = 0x01
OTA_STATUS, OTA_OFFER, OTA_REQUEST, OTA_CHUNK, OTA_RESULT = 1, 2, 3, 4, 5
OTA_SIGNATURE_LABEL = b"usmp-v1 ota manifest"
OTA_RESULT_CODES = {
    "ACTIVATED": 0x00,
    "BAD_SIGNATURE": 0x01,
    "WRONG_HARDWARE": 0x02,
    "NOT_NEWER": 0x03,
    "HASH_MISMATCH": 0x04,
    "FLASH_ERROR": 0x05,
    "TOO_LARGE": 0x06,
    "MALFORMED": 0x07,
}


def u32(n):
    return n.to_bytes(4, "big")


def ota_hardware_id(text):
    return text.encode().ljust(16, b"\x00")


def ota_manifest(key, fmt, reserved, image_size, version, hardware_id, image_hash):
    """[ota.md 2]: the 60 signed bytes, then Ed25519 over the label || them."""
    signed = bytes([fmt]) + reserved + u32(image_size) + u32(version) + hardware_id + image_hash
    assert len(signed) == 60
    signature = key.sign(OTA_SIGNATURE_LABEL + signed)
    return signed + signature


def ota_file():
    signing_key = Ed25519PrivateKey.from_private_bytes(fixed("ota signing key", 32))
    other_key = Ed25519PrivateKey.from_private_bytes(fixed("ota other signing key", 32))
    public = signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    image = fixed("ota image", 3000)
    image_hash = hashlib.sha256(image).digest()
    device = {
        "public_key": public.hex(),
        "hardware_id": ota_hardware_id("usmp-posix").hex(),
        "running_version": 7,
        "slot_size": 4096,
    }
    own_hw = ota_hardware_id("usmp-posix")
    any_hw = bytes(16)
    good = ota_manifest(signing_key, 1, b"\x00\x00\x00", len(image), 8, own_hw, image_hash)

    def flip(data, index):
        return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]

    manifests = []

    def add(name, manifest, expect, description):
        manifests.append({
            "name": name,
            "description": description,
            "manifest": manifest.hex(),
            "digest": hashlib.sha256(manifest).digest().hex(),
            "expect": expect,
        })

    add("valid", good, "ACCEPT", "Signed by the device's key, version 8 > 7, its own hardware id, fits the slot.")
    add("valid-any-hardware", ota_manifest(signing_key, 1, b"\x00\x00\x00", len(image), 8, any_hw, image_hash),
        "ACCEPT", "Hardware id all zeros: any hardware.")
    add("bad-signature", flip(good, 60 + 10), "BAD_SIGNATURE", "The valid manifest with one signature bit flipped.")
    add("tampered-version", flip(good, 11), "BAD_SIGNATURE",
        "The valid manifest with firmware_version changed after signing (8 -> 9).")
    add("other-key", ota_manifest(other_key, 1, b"\x00\x00\x00", len(image), 8, own_hw, image_hash),
        "BAD_SIGNATURE", "Well formed, signed by a key the device does not hold.")
    add("reserved-set", ota_manifest(signing_key, 1, b"\x00\x01\x00", len(image), 8, own_hw, image_hash),
        "MALFORMED", "Signed, but a reserved byte is not zero.")
    add("format-2", ota_manifest(signing_key, 2, b"\x00\x00\x00", len(image), 8, own_hw, image_hash),
        "MALFORMED", "Signed, format 2: unknown to a format-1 device.")
    add("empty-image", ota_manifest(signing_key, 1, b"\x00\x00\x00", 0, 8, own_hw, hashlib.sha256(b"").digest()),
        "MALFORMED", "Signed, image_size 0.")
    add("same-version", ota_manifest(signing_key, 1, b"\x00\x00\x00", len(image), 7, own_hw, image_hash),
        "NOT_NEWER", "Signed, version 7 = the running version.")
    add("older-version", ota_manifest(signing_key, 1, b"\x00\x00\x00", len(image), 6, own_hw, image_hash),
        "NOT_NEWER", "Signed, version 6 < the running version.")
    add("wrong-hardware", ota_manifest(signing_key, 1, b"\x00\x00\x00", len(image), 8,
                                       ota_hardware_id("usmp-esp32c3"), image_hash),
        "WRONG_HARDWARE", "Signed, for hardware 'usmp-esp32c3'.")
    add("too-large", ota_manifest(signing_key, 1, b"\x00\x00\x00", 4097, 8, own_hw, image_hash),
        "TOO_LARGE", "Signed, image_size 4097 > slot_size 4096.")
    add("older-wrong-hardware", ota_manifest(signing_key, 1, b"\x00\x00\x00", len(image), 6,
                                             ota_hardware_id("usmp-esp32c3"), image_hash),
        "NOT_NEWER", "Signed, older and for other hardware: the version check (step 4) comes first.")
    add("bad-signature-format-2", flip(ota_manifest(signing_key, 2, b"\x00\x00\x00", len(image), 8, own_hw,
                                                    image_hash), 70),
        "BAD_SIGNATURE", "Format 2 and a bad signature: the signature (step 2) comes first.")

    def message(name, body, fields):
        return {"name": name, "fields": fields, "body": body.hex(),
                "control_plaintext": (bytes([OTA_CHANNEL]) + body).hex()}

    digest = hashlib.sha256(good).digest()
    chunk_data = image[1024:1024 + 1000]
    messages = [
        message("status-idle", bytes([OTA_STATUS]) + u32(7) + own_hw + b"\x00" + bytes(32) + u32(0) + u16(1000),
                {"op": "STATUS", "fw_version": 7, "hardware_id": own_hw.hex(), "state": 0,
                 "manifest_digest": bytes(32).hex(), "next_offset": 0, "max_chunk": 1000}),
        message("status-receiving", bytes([OTA_STATUS]) + u32(7) + own_hw + b"\x01" + digest + u32(2048) + u16(1000),
                {"op": "STATUS", "fw_version": 7, "hardware_id": own_hw.hex(), "state": 1,
                 "manifest_digest": digest.hex(), "next_offset": 2048, "max_chunk": 1000}),
        message("offer", bytes([OTA_OFFER]) + good, {"op": "OFFER", "manifest": good.hex()}),
        message("request", bytes([OTA_REQUEST]) + u32(1024) + u16(1000),
                {"op": "REQUEST", "offset": 1024, "length": 1000}),
        message("chunk", bytes([OTA_CHUNK]) + u32(1024) + chunk_data,
                {"op": "CHUNK", "offset": 1024, "data": chunk_data.hex()}),
        message("chunk-last", bytes([OTA_CHUNK]) + u32(3000 - 1) + image[-1:],
                {"op": "CHUNK", "offset": 2999, "data": image[-1:].hex()}),
    ]
    for code_name, code in OTA_RESULT_CODES.items():
        messages.append(message("result-" + code_name.lower().replace("_", "-"), bytes([OTA_RESULT, code]) + u32(7),
                                {"op": "RESULT", "code": code, "fw_version": 7}))

    status_idle = bytes.fromhex(messages[0]["body"])
    malformed = [
        {"name": "empty", "body": ""},
        {"name": "unknown-op-0", "body": "00"},
        {"name": "unknown-op-6", "body": "06" + u32(0).hex()},
        {"name": "status-short", "body": status_idle[:-1].hex()},
        {"name": "status-long", "body": (status_idle + b"\x00").hex()},
        {"name": "status-state-2", "body": (status_idle[:21] + b"\x02" + status_idle[22:]).hex()},
        {"name": "offer-short", "body": (bytes([OTA_OFFER]) + good[:-1]).hex()},
        {"name": "offer-long", "body": (bytes([OTA_OFFER]) + good + b"\x00").hex()},
        {"name": "request-short", "body": (bytes([OTA_REQUEST]) + u32(0) + b"\x10").hex()},
        {"name": "request-long", "body": (bytes([OTA_REQUEST]) + u32(0) + u16(16) + b"\x00").hex()},
        {"name": "request-length-0", "body": (bytes([OTA_REQUEST]) + u32(0) + u16(0)).hex()},
        {"name": "chunk-no-data", "body": (bytes([OTA_CHUNK]) + u32(0)).hex()},
        {"name": "chunk-short-header", "body": (bytes([OTA_CHUNK]) + b"\x00\x00").hex()},
        {"name": "result-short", "body": (bytes([OTA_RESULT, 0]) + b"\x00\x00\x07").hex()},
        {"name": "result-long", "body": (bytes([OTA_RESULT, 0]) + u32(7) + b"\x00").hex()},
    ]
    signed_image = good + image
    return {
        "description": "OTA channel 0x01 of CONTROL records (spec/ota.md). 'signing_key_seed' is the "
                       "fixed Ed25519 test key (RFC 8032 seed); 'device' is the receiving device: "
                       "its public key, hardware id, running version and slot size. Each of "
                       "'manifests' must get 'expect' from that device's checks of ota.md 4.1 "
                       "(ACCEPT = begin the slot and REQUEST offset 0; otherwise the RESULT code). "
                       "'messages': each OTA message, 'body' = op || fields and "
                       "'control_plaintext' = channel 0x01 || body. 'malformed': bodies that must "
                       "be dropped and counted (ota.md 3.6). 'image' is the image the 'valid' "
                       "manifest signs; 'signed_image' = manifest || image (usmp ota sign's file).",
        "signature_label": OTA_SIGNATURE_LABEL.hex(),
        "signing_key_seed": fixed("ota signing key", 32).hex(),
        "device": device,
        "result_codes": OTA_RESULT_CODES,
        "image": image.hex(),
        "image_sha256": image_hash.hex(),
        "signed_image": signed_image.hex(),
        "manifests": manifests,
        "messages": messages,
        "malformed": malformed,
    }


def build_all():
    cases, secrets = handshake_cases()
    handshake = {
        "description": "Deterministic USMP v1 handshakes (spec/protocol.md sections 4 and 5). "
                       "Fixed ephemeral keys, nonce and session id; every frame as sent; "
                       "the transcript hash, every derived key, and the first records of the "
                       "session. 'records' counters are per direction.",
        "cases": cases,
    }
    return {
        "handshake.json": handshake,
        "records.json": records_file(),
        "cobs.json": cobs_file(),
        "negative.json": negative_file(secrets),
        "datagram.json": datagram_file(secrets),
        "ota.json": ota_file(),
    }


def serialise(document):
    return (json.dumps(document, indent=1) + "\n").encode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "..", "spec", "vectors"),
                        help="directory for the JSON files (default: spec/vectors)")
    parser.add_argument("--check", action="store_true",
                        help="compare with the files in --out instead of writing; exit 1 on any difference")
    args = parser.parse_args()
    files = build_all()
    differ = []
    for filename, document in files.items():
        path = os.path.join(args.out, filename)
        data = serialise(document)
        if args.check:
            try:
                with open(path, "rb") as f:
                    same = f.read() == data
            except FileNotFoundError:
                same = False
            print(("same     " if same else "DIFFERENT ") + filename)
            if not same:
                differ.append(filename)
        else:
            os.makedirs(args.out, exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            print(f"wrote {filename} ({len(data)} bytes)")
    if differ:
        print(f"{len(differ)} vector file(s) differ from the generator: {', '.join(differ)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
