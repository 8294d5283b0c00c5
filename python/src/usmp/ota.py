"""Firmware update manifests and the OTA channel's messages (spec/ota.md).

Conventions: every ``parse_*`` function takes bytes from the network or a
file and either returns a value or raises :class:`OtaFormatError` (a
:class:`ValueError`) with a message that says what is wrong; none of them
reads past its input or accepts trailing bytes. Manifests are parsed
without judging their fields (a format-2 manifest parses, so a device can
answer MALFORMED); :func:`check_offer` is the device's judgement, in the
order of spec/ota.md section 4.1.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass
from typing import Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

OTA_CHANNEL = 0x01  # the CONTROL record channel of OTA (protocol.md 6.7)

MANIFEST_FORMAT = 1
MANIFEST_BYTES = 124
SIGNED_BYTES = 60  # manifest[0:60] is signed (ota.md 2)
SIGNATURE_BYTES = 64
SIGNATURE_LABEL = b"usmp-v1 ota manifest"
HARDWARE_ID_BYTES = 16
DIGEST_BYTES = 32
PUBLIC_KEY_BYTES = 32
MAX_IMAGE_BYTES = 0xFFFFFFFF
MAX_CHUNK = 0xFFFF

STATUS_BYTES = 60  # body sizes, op included (ota.md 3)
OFFER_BYTES = 1 + MANIFEST_BYTES
REQUEST_BYTES = 7
CHUNK_HEADER_BYTES = 5
RESULT_BYTES = 6
CONTROL_OVERHEAD = 1 + CHUNK_HEADER_BYTES  # channel + op + offset: 1 + 5 + n <= max_record (3.4)

_MANIFEST = struct.Struct(">B3sII16s32s64s")
_STATUS = struct.Struct(">BI16sB32sIH")
_REQUEST = struct.Struct(">BIH")
_CHUNK_HEADER = struct.Struct(">BI")
_RESULT = struct.Struct(">BBI")


class OtaFormatError(ValueError):
    """Bytes that are not a manifest, a signed image or an OTA message."""


class Op(enum.IntEnum):
    STATUS = 0x01
    OFFER = 0x02
    REQUEST = 0x03
    CHUNK = 0x04
    RESULT = 0x05


class ResultCode(enum.IntEnum):
    """RESULT codes (ota.md 3.5)."""

    ACTIVATED = 0x00
    BAD_SIGNATURE = 0x01
    WRONG_HARDWARE = 0x02
    NOT_NEWER = 0x03
    HASH_MISMATCH = 0x04
    FLASH_ERROR = 0x05
    TOO_LARGE = 0x06
    MALFORMED = 0x07


class TransferState(enum.IntEnum):
    IDLE = 0
    RECEIVING = 1


def result_name(code: int) -> str:
    """The name of a RESULT code; codes 0x08-0xFF are reserved and shown as numbers."""
    try:
        return ResultCode(code).name
    except ValueError:
        return f"RESERVED_0x{code:02x}"


def hardware_id_from_text(text: str) -> bytes:
    """``--hardware-id H``: H's UTF-8 bytes, at most 16, zero-padded (ota.md 2)."""
    raw = text.encode("utf-8")
    if len(raw) > HARDWARE_ID_BYTES:
        raise OtaFormatError(f"hardware id {text!r} is {len(raw)} bytes in UTF-8; at most {HARDWARE_ID_BYTES}")
    return raw.ljust(HARDWARE_ID_BYTES, b"\x00")


def hardware_id_text(hardware_id: bytes) -> str:
    """How a hardware id is shown: its text when it is padded UTF-8, else hex; ``any`` for zeros."""
    if hardware_id == bytes(HARDWARE_ID_BYTES):
        return "any"
    stripped = hardware_id.rstrip(b"\x00")
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError:
        return hardware_id.hex()
    if b"\x00" in stripped or not text.isprintable():
        return hardware_id.hex()
    return text


# ------------------------------------------------------------------ manifest


@dataclass(frozen=True)
class Manifest:
    """The 124-byte manifest of ota.md section 2, field by field, as found (not judged)."""

    image_size: int
    firmware_version: int
    hardware_id: bytes
    image_sha256: bytes
    signature: bytes
    format: int = MANIFEST_FORMAT
    reserved: bytes = b"\x00\x00\x00"

    def signed_part(self) -> bytes:
        """Bytes 0..59: what the signature covers (after the label)."""
        return self.encode()[:SIGNED_BYTES]

    def encode(self) -> bytes:
        if len(self.reserved) != 3 or len(self.hardware_id) != HARDWARE_ID_BYTES:
            raise OtaFormatError("reserved must be 3 bytes and hardware_id 16")
        if len(self.image_sha256) != DIGEST_BYTES or len(self.signature) != SIGNATURE_BYTES:
            raise OtaFormatError("image_sha256 must be 32 bytes and signature 64")
        if not (0 <= self.image_size <= MAX_IMAGE_BYTES and 0 <= self.firmware_version <= 0xFFFFFFFF):
            raise OtaFormatError("image_size and firmware_version are u32")
        if not 0 <= self.format <= 0xFF:
            raise OtaFormatError("format is a u8")
        return _MANIFEST.pack(
            self.format,
            self.reserved,
            self.image_size,
            self.firmware_version,
            self.hardware_id,
            self.image_sha256,
            self.signature,
        )

    def digest(self) -> bytes:
        """SHA-256 of the 124 bytes: the transfer's name in STATUS (ota.md 2)."""
        return hashlib.sha256(self.encode()).digest()

    def format_problem(self) -> str | None:
        """Why the device answers MALFORMED (ota.md 4.1 step 3), or None."""
        if self.format != MANIFEST_FORMAT:
            return f"manifest format {self.format}, this implementation knows format {MANIFEST_FORMAT}"
        if self.reserved != b"\x00\x00\x00":
            return f"reserved bytes {self.reserved.hex()} are not zero"
        if self.image_size == 0:
            return "image_size is 0"
        return None


def signing_message(signed_part: bytes) -> bytes:
    """``"usmp-v1 ota manifest" || manifest[0:60]`` (ota.md 2)."""
    if len(signed_part) != SIGNED_BYTES:
        raise OtaFormatError(f"the signed part of a manifest is {SIGNED_BYTES} bytes, not {len(signed_part)}")
    return SIGNATURE_LABEL + signed_part


def parse_manifest(data: bytes) -> Manifest:
    if len(data) != MANIFEST_BYTES:
        raise OtaFormatError(f"a manifest is {MANIFEST_BYTES} bytes, not {len(data)}")
    fmt, reserved, size, version, hardware_id, image_sha256, signature = _MANIFEST.unpack(bytes(data))
    return Manifest(
        format=fmt,
        reserved=reserved,
        image_size=size,
        firmware_version=version,
        hardware_id=hardware_id,
        image_sha256=image_sha256,
        signature=signature,
    )


def sign_manifest(
    key: Ed25519PrivateKey,
    image: bytes,
    firmware_version: int,
    hardware_id: bytes = bytes(HARDWARE_ID_BYTES),
) -> Manifest:
    """A format-1 manifest for ``image``, signed with ``key``."""
    if not image:
        raise OtaFormatError("the image is empty; a manifest's image_size is at least 1")
    if len(image) > MAX_IMAGE_BYTES:
        raise OtaFormatError(f"the image is {len(image)} bytes; at most {MAX_IMAGE_BYTES}")
    if not 0 <= firmware_version <= 0xFFFFFFFF:
        raise OtaFormatError(f"firmware version {firmware_version} is not a u32")
    if len(hardware_id) != HARDWARE_ID_BYTES:
        raise OtaFormatError(f"hardware id is {HARDWARE_ID_BYTES} bytes, not {len(hardware_id)}")
    unsigned = Manifest(
        image_size=len(image),
        firmware_version=firmware_version,
        hardware_id=bytes(hardware_id),
        image_sha256=hashlib.sha256(image).digest(),
        signature=bytes(SIGNATURE_BYTES),
    )
    signature = key.sign(signing_message(unsigned.signed_part()))
    return Manifest(
        image_size=unsigned.image_size,
        firmware_version=unsigned.firmware_version,
        hardware_id=unsigned.hardware_id,
        image_sha256=unsigned.image_sha256,
        signature=signature,
    )


def verify_manifest_signature(manifest: Manifest, public_key: bytes | Ed25519PublicKey) -> bool:
    """True when the signature verifies with the 32-byte public key (ota.md 4.1 step 2)."""
    if isinstance(public_key, Ed25519PublicKey):
        key = public_key
    else:
        if len(public_key) != PUBLIC_KEY_BYTES:
            raise OtaFormatError(f"an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes, not {len(public_key)}")
        key = Ed25519PublicKey.from_public_bytes(bytes(public_key))
    try:
        key.verify(manifest.signature, signing_message(manifest.signed_part()))
    except InvalidSignature:
        return False
    return True


def check_offer(
    manifest: Manifest,
    public_key: bytes,
    running_version: int,
    own_hardware_id: bytes,
    slot_size: int,
) -> ResultCode | None:
    """The device's checks on a new OFFER, in the order of ota.md 4.1 (steps 2-6).

    Returns the RESULT code that refuses it, or None when the device may
    begin the slot. Step 1 (the same transfer) is the caller's: it needs the
    persisted state.
    """
    if not verify_manifest_signature(manifest, public_key):
        return ResultCode.BAD_SIGNATURE
    if manifest.format_problem() is not None:
        return ResultCode.MALFORMED
    if manifest.firmware_version <= running_version:
        return ResultCode.NOT_NEWER
    if manifest.hardware_id != bytes(HARDWARE_ID_BYTES) and manifest.hardware_id != own_hardware_id:
        return ResultCode.WRONG_HARDWARE
    if manifest.image_size > slot_size:
        return ResultCode.TOO_LARGE
    return None


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# -------------------------------------------------------------- signed image


@dataclass(frozen=True)
class SignedImage:
    """``manifest || image`` (ota.md 2), with the image's length and hash checked."""

    manifest: Manifest
    image: bytes

    def encode(self) -> bytes:
        return self.manifest.encode() + self.image


def parse_signed_image(data: bytes) -> SignedImage:
    """A signed image file's bytes; the manifest's size and hash must match the image.

    The signature is not checked here (the gateway has no reason to hold the
    public key; the device checks it).
    """
    if len(data) < MANIFEST_BYTES + 1:
        raise OtaFormatError(
            f"a signed image is a {MANIFEST_BYTES}-byte manifest and at least one image byte; got {len(data)} bytes"
        )
    manifest = parse_manifest(data[:MANIFEST_BYTES])
    image = bytes(data[MANIFEST_BYTES:])
    if len(image) != manifest.image_size:
        raise OtaFormatError(
            f"the manifest says {manifest.image_size} image bytes, the file holds {len(image)} after it"
        )
    if hashlib.sha256(image).digest() != manifest.image_sha256:
        raise OtaFormatError("the image's SHA-256 is not the manifest's image_sha256")
    return SignedImage(manifest=manifest, image=image)


def read_signed_image(path: str) -> SignedImage:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return parse_signed_image(data)
    except OtaFormatError as exc:
        raise OtaFormatError(f"{path}: {exc}") from None


# ------------------------------------------------------------------ messages


@dataclass(frozen=True)
class Status:
    fw_version: int
    hardware_id: bytes
    state: TransferState
    manifest_digest: bytes
    next_offset: int
    max_chunk: int


@dataclass(frozen=True)
class Offer:
    manifest: bytes  # the 124 bytes as sent; parse_manifest() reads them


@dataclass(frozen=True)
class Request:
    offset: int
    length: int


@dataclass(frozen=True)
class Chunk:
    offset: int
    data: bytes


@dataclass(frozen=True)
class Result:
    code: int  # a ResultCode, or a reserved code a newer device may send
    fw_version: int


OtaMessage = Union[Status, Offer, Request, Chunk, Result]


def encode_message(message: OtaMessage) -> bytes:
    """The body of an OTA message (``op || fields``), without the channel byte."""
    try:
        if isinstance(message, Status):
            if len(message.hardware_id) != HARDWARE_ID_BYTES or len(message.manifest_digest) != DIGEST_BYTES:
                raise OtaFormatError("STATUS: hardware_id is 16 bytes and manifest_digest 32")
            return _STATUS.pack(
                Op.STATUS,
                message.fw_version,
                message.hardware_id,
                int(message.state),
                message.manifest_digest,
                message.next_offset,
                message.max_chunk,
            )
        if isinstance(message, Offer):
            if len(message.manifest) != MANIFEST_BYTES:
                raise OtaFormatError(f"OFFER: the manifest is {MANIFEST_BYTES} bytes, not {len(message.manifest)}")
            return bytes((Op.OFFER,)) + bytes(message.manifest)
        if isinstance(message, Request):
            if not 1 <= message.length <= MAX_CHUNK:
                raise OtaFormatError(f"REQUEST: length {message.length} is not 1..{MAX_CHUNK}")
            return _REQUEST.pack(Op.REQUEST, message.offset, message.length)
        if isinstance(message, Chunk):
            if not message.data:
                raise OtaFormatError("CHUNK: data is at least one byte")
            return _CHUNK_HEADER.pack(Op.CHUNK, message.offset) + bytes(message.data)
        return _RESULT.pack(Op.RESULT, message.code, message.fw_version)
    except struct.error as exc:
        raise OtaFormatError(f"{type(message).__name__}: a field is out of range ({exc})") from None


def parse_message(body: bytes) -> OtaMessage:
    """One OTA message from the body of a channel-1 CONTROL record (ota.md 3, 3.6)."""
    body = bytes(body)
    if not body:
        raise OtaFormatError("an OTA message has at least its op byte; got 0 bytes")
    op = body[0]
    if op == Op.STATUS:
        _expect_length("STATUS", body, STATUS_BYTES)
        _, version, hardware_id, state, digest, next_offset, max_chunk = _STATUS.unpack(body)
        if state not in (TransferState.IDLE, TransferState.RECEIVING):
            raise OtaFormatError(f"STATUS: state {state} is not 0 (idle) or 1 (receiving)")
        return Status(
            fw_version=version,
            hardware_id=hardware_id,
            state=TransferState(state),
            manifest_digest=digest,
            next_offset=next_offset,
            max_chunk=max_chunk,
        )
    if op == Op.OFFER:
        _expect_length("OFFER", body, OFFER_BYTES)
        return Offer(manifest=body[1:])
    if op == Op.REQUEST:
        _expect_length("REQUEST", body, REQUEST_BYTES)
        _, offset, length = _REQUEST.unpack(body)
        if length == 0:
            raise OtaFormatError("REQUEST: length 0")
        return Request(offset=offset, length=length)
    if op == Op.CHUNK:
        if len(body) < CHUNK_HEADER_BYTES + 1:
            raise OtaFormatError(f"CHUNK: at least {CHUNK_HEADER_BYTES + 1} bytes, got {len(body)}")
        _, offset = _CHUNK_HEADER.unpack_from(body)
        return Chunk(offset=offset, data=body[CHUNK_HEADER_BYTES:])
    if op == Op.RESULT:
        _expect_length("RESULT", body, RESULT_BYTES)
        _, code, version = _RESULT.unpack(body)
        return Result(code=code, fw_version=version)
    raise OtaFormatError(f"unknown OTA op 0x{op:02x}")


def _expect_length(name: str, body: bytes, length: int) -> None:
    if len(body) != length:
        raise OtaFormatError(f"{name}: {length} bytes, got {len(body)}")


def idle_status(fw_version: int, hardware_id: bytes, max_chunk: int) -> Status:
    return Status(
        fw_version=fw_version,
        hardware_id=hardware_id,
        state=TransferState.IDLE,
        manifest_digest=bytes(DIGEST_BYTES),
        next_offset=0,
        max_chunk=max_chunk,
    )
