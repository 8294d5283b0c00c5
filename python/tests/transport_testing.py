"""Helpers for the datagram transport tests: the lossy-link simulator and checkable messages."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from types import ModuleType

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_lossy_link() -> ModuleType:
    path = os.path.join(REPO, "tools", "lossy_link.py")
    spec = importlib.util.spec_from_file_location("lossy_link", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lossy_link"] = module
    spec.loader.exec_module(module)
    return module


lossy_link = _load_lossy_link()

PSK = bytes(range(100, 132))
DEVICE = "d0d0d0000001"


def message(direction: str, number: int) -> bytes:
    """Message ``number`` of a direction: every tenth one needs three fragments at max_record 1207.

    Its bytes are derived from its number, so a receiver can tell a
    corrupted, truncated or reassembled-out-of-order message from a good one.
    """
    size = 3000 if number % 10 == 0 else 40 + number % 200
    seed = hashlib.sha256(f"{direction}/{number}".encode()).digest()
    body = (seed * (size // 32 + 1))[:size]
    return f"{direction}{number:05d}|".encode() + body


def parse(data: bytes) -> tuple[str, int]:
    """The direction and number a message claims; the caller checks the bytes against ``message``."""
    head, _, _ = data.partition(b"|")
    return head[:2].decode(), int(head[2:])


class Tally:
    """What one side received: every message checked intact, duplicates and corruptions counted."""

    def __init__(self, direction: str) -> None:
        self.direction = direction
        self.seen: set[int] = set()
        self.duplicates = 0
        self.corrupted = 0

    def add(self, data: bytes) -> None:
        try:
            direction, number = parse(data)
        except (ValueError, UnicodeDecodeError):
            self.corrupted += 1
            return
        if direction != self.direction or data != message(direction, number):
            self.corrupted += 1
        elif number in self.seen:
            self.duplicates += 1
        else:
            self.seen.add(number)
