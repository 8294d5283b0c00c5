"""spec/ota.md: manifests and OTA messages against spec/vectors/ota.json, and their errors."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from usmp import ota
from usmp.ota import (
    Chunk,
    Offer,
    OtaFormatError,
    Request,
    Result,
    ResultCode,
    Status,
    TransferState,
)

from usmp_testing import load_vectors

OTA = load_vectors("ota.json")
DEVICE = OTA["device"]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(h(OTA["signing_key_seed"]))


def test_vector_key_is_the_devices_public_key() -> None:
    assert ota.public_key_bytes(signing_key()) == h(DEVICE["public_key"])
    assert OTA["signature_label"] == ota.SIGNATURE_LABEL.hex()


def test_result_code_table_matches_the_vectors() -> None:
    assert OTA["result_codes"] == {code.name: int(code) for code in ResultCode}


@pytest.mark.parametrize("case", OTA["manifests"], ids=lambda c: c["name"])
def test_manifest_vector_gets_the_devices_answer(case: dict[str, Any]) -> None:
    raw = h(case["manifest"])
    manifest = ota.parse_manifest(raw)
    assert manifest.encode() == raw
    assert manifest.digest().hex() == case["digest"]
    verdict = ota.check_offer(
        manifest,
        h(DEVICE["public_key"]),
        DEVICE["running_version"],
        h(DEVICE["hardware_id"]),
        DEVICE["slot_size"],
    )
    assert (verdict.name if verdict is not None else "ACCEPT") == case["expect"]


def test_sign_manifest_reproduces_the_valid_vector() -> None:
    # Ed25519 is deterministic: the same key and message give the same signature.
    image = h(OTA["image"])
    manifest = ota.sign_manifest(signing_key(), image, 8, ota.hardware_id_from_text("usmp-posix"))
    valid = next(c for c in OTA["manifests"] if c["name"] == "valid")
    assert manifest.encode().hex() == valid["manifest"]
    assert ota.verify_manifest_signature(manifest, h(DEVICE["public_key"]))


def test_signed_image_vector_parses_and_checks_size_and_hash() -> None:
    data = h(OTA["signed_image"])
    signed = ota.parse_signed_image(data)
    assert signed.image == h(OTA["image"])
    assert signed.encode() == data
    with pytest.raises(OtaFormatError, match="file holds 2999"):
        ota.parse_signed_image(data[:-1])
    with pytest.raises(OtaFormatError, match="file holds 3001"):
        ota.parse_signed_image(data + b"\x00")
    corrupted = bytearray(data)
    corrupted[ota.MANIFEST_BYTES + 5] ^= 0x40
    with pytest.raises(OtaFormatError, match="SHA-256"):
        ota.parse_signed_image(bytes(corrupted))
    with pytest.raises(OtaFormatError, match="at least one image byte"):
        ota.parse_signed_image(data[: ota.MANIFEST_BYTES])


def _message_from_fields(fields: dict[str, Any]) -> ota.OtaMessage:
    op = fields["op"]
    if op == "STATUS":
        return Status(
            fw_version=fields["fw_version"],
            hardware_id=h(fields["hardware_id"]),
            state=TransferState(fields["state"]),
            manifest_digest=h(fields["manifest_digest"]),
            next_offset=fields["next_offset"],
            max_chunk=fields["max_chunk"],
        )
    if op == "OFFER":
        return Offer(manifest=h(fields["manifest"]))
    if op == "REQUEST":
        return Request(offset=fields["offset"], length=fields["length"])
    if op == "CHUNK":
        return Chunk(offset=fields["offset"], data=h(fields["data"]))
    assert op == "RESULT"
    return Result(code=fields["code"], fw_version=fields["fw_version"])


@pytest.mark.parametrize("case", OTA["messages"], ids=lambda c: c["name"])
def test_message_vector_encodes_and_parses(case: dict[str, Any]) -> None:
    message = _message_from_fields(case["fields"])
    body = ota.encode_message(message)
    assert body.hex() == case["body"]
    assert h(case["control_plaintext"]) == bytes((ota.OTA_CHANNEL,)) + body
    assert ota.parse_message(body) == message


@pytest.mark.parametrize("case", OTA["malformed"], ids=lambda c: c["name"])
def test_malformed_message_vector_is_refused_with_a_clear_error(case: dict[str, Any]) -> None:
    with pytest.raises(OtaFormatError) as caught:
        ota.parse_message(h(case["body"]))
    message = str(caught.value)
    assert message and ("bytes" in message or "op" in message or "state" in message or "length" in message)


def test_every_truncation_of_every_message_vector_is_an_error_not_a_crash() -> None:
    for case in OTA["messages"]:
        body = h(case["body"])
        fixed_length = case["fields"]["op"] != "CHUNK"
        for cut in range(len(body)):
            if not fixed_length and cut >= ota.CHUNK_HEADER_BYTES + 1:
                continue  # a shorter CHUNK is still a CHUNK
            with pytest.raises(OtaFormatError):
                ota.parse_message(body[:cut])


def test_parse_manifest_refuses_other_lengths() -> None:
    raw = h(OTA["manifests"][0]["manifest"])
    for data in (raw[:-1], raw + b"\x00", b""):
        with pytest.raises(OtaFormatError, match="a manifest is 124 bytes"):
            ota.parse_manifest(data)


def test_verify_is_false_for_every_single_bit_flip_of_the_signed_bytes() -> None:
    raw = h(next(c for c in OTA["manifests"] if c["name"] == "valid")["manifest"])
    public = h(DEVICE["public_key"])
    assert ota.verify_manifest_signature(ota.parse_manifest(raw), public)
    for index in range(ota.MANIFEST_BYTES):
        flipped = bytearray(raw)
        flipped[index] ^= 0x80
        assert not ota.verify_manifest_signature(ota.parse_manifest(bytes(flipped)), public), index


def test_signature_is_over_the_label_and_the_first_60_bytes() -> None:
    key = signing_key()
    manifest = ota.sign_manifest(key, b"firmware", 3)
    key.public_key().verify(manifest.signature, b"usmp-v1 ota manifest" + manifest.encode()[:60])


def test_hardware_id_text_is_zero_padded_utf8_of_at_most_16_bytes() -> None:
    assert ota.hardware_id_from_text("esp32") == b"esp32" + bytes(11)
    assert ota.hardware_id_from_text("x" * 16) == b"x" * 16
    with pytest.raises(OtaFormatError, match="17 bytes"):
        ota.hardware_id_from_text("x" * 17)
    with pytest.raises(OtaFormatError, match="18 bytes"):
        ota.hardware_id_from_text("\u00e9" * 9)
    assert ota.hardware_id_text(bytes(16)) == "any"
    assert ota.hardware_id_text(ota.hardware_id_from_text("board-a")) == "board-a"
    assert ota.hardware_id_text(b"\x01" + bytes(15)) == "01" + "00" * 15


def test_sign_manifest_refuses_an_empty_image_and_out_of_range_versions() -> None:
    key = signing_key()
    with pytest.raises(OtaFormatError, match="empty"):
        ota.sign_manifest(key, b"", 1)
    with pytest.raises(OtaFormatError, match="u32"):
        ota.sign_manifest(key, b"x", 1 << 32)
    with pytest.raises(OtaFormatError, match="hardware id"):
        ota.sign_manifest(key, b"x", 1, b"short")


def test_encode_message_refuses_out_of_range_fields() -> None:
    with pytest.raises(OtaFormatError, match="length 0"):
        ota.encode_message(Request(offset=0, length=0))
    with pytest.raises(OtaFormatError, match="out of range"):
        ota.encode_message(Request(offset=1 << 32, length=1))
    with pytest.raises(OtaFormatError, match="at least one byte"):
        ota.encode_message(Chunk(offset=0, data=b""))
    with pytest.raises(OtaFormatError, match="124 bytes"):
        ota.encode_message(Offer(manifest=b"\x01"))


def test_result_names_include_reserved_codes() -> None:
    assert ota.result_name(0) == "ACTIVATED"
    assert ota.result_name(7) == "MALFORMED"
    assert ota.result_name(0x42) == "RESERVED_0x42"


def test_image_hash_in_vectors_is_sha256_of_the_image() -> None:
    assert hashlib.sha256(h(OTA["image"])).hexdigest() == OTA["image_sha256"]


def test_random_and_mutated_input_to_every_parser_is_a_value_or_an_ota_format_error() -> None:
    import random

    generator = random.Random(1414)
    seeds = [h(m["body"]) for m in OTA["messages"]] + [h(m["body"]) for m in OTA["malformed"]]
    seeds += [h(m["manifest"]) for m in OTA["manifests"]] + [h(OTA["signed_image"])[:400]]
    for _ in range(20000):
        data = bytearray(generator.choice(seeds))
        for _ in range(generator.randrange(1, 4)):
            action = generator.randrange(3)
            if action == 0 and data:
                data[generator.randrange(len(data))] = generator.randrange(256)
            elif action == 1:
                data = data[: generator.randrange(len(data) + 1)]
            else:
                data += bytes(generator.randrange(256) for _ in range(generator.randrange(4)))
        for parse in (ota.parse_message, ota.parse_manifest, ota.parse_signed_image):
            try:
                parse(bytes(data))
            except OtaFormatError:
                pass
