"""The opt-in key log (usmp.keylog, docs/wireshark.md): one line per session, only when asked for."""

from __future__ import annotations

import os
import stat

import pytest

from usmp.keylog import KEYLOG_ENV

from usmp_testing import handshake_case, vector_pair

CASES = ["stream-basic", "datagram-basic"]


@pytest.mark.parametrize("name", CASES)
def test_both_sides_log_the_vector_session_id_and_record_keys(
    name: str, tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = os.path.join(tmp_path, "keys.log")
    monkeypatch.setenv(KEYLOG_ENV, path)
    vector_pair(name).handshake()
    case = handshake_case(name)
    expected = f"USMP_SESSION {case['session_id']} {case['key_c2s']} {case['key_s2c']}\n"
    with open(path, encoding="ascii") as log:
        assert log.read() == expected * 2  # the server's line, then the client's
    # Keys in the file: readable by its owner only.
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_nothing_is_written_without_the_variable(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEYLOG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    vector_pair("stream-basic").handshake()
    assert os.listdir(tmp_path) == []


def test_an_unwritable_key_log_does_not_fail_the_session(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEYLOG_ENV, os.path.join(tmp_path, "missing-directory", "keys.log"))
    pair = vector_pair("stream-basic")
    pair.handshake()  # asserts both sides completed
    assert pair.client.established and pair.server.established
