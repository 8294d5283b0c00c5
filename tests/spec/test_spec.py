"""Consistency of the specification with its vectors.

The vectors must be exactly what the generator writes, and the figures the
spec states (frame types, sizes) must be the ones the vectors show.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = os.path.join(ROOT, "spec")
VECTORS = os.path.join(SPEC, "vectors")
GENERATOR = os.path.join(ROOT, "tools", "gen_vectors.py")


def load(name):
    with open(os.path.join(VECTORS, name)) as f:
        return json.load(f)


def read_spec(name):
    with open(os.path.join(SPEC, name), encoding="utf-8") as f:
        return f.read()


def test_generator_reproduces_committed_vectors_byte_for_byte():
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, GENERATOR, "--out", out], check=True,
                       stdout=subprocess.DEVNULL)
        names = sorted(n for n in os.listdir(VECTORS) if n.endswith(".json"))
        assert sorted(os.listdir(out)) == names
        for name in names:
            with open(os.path.join(out, name), "rb") as a, open(os.path.join(VECTORS, name), "rb") as b:
                assert a.read() == b.read(), f"{name} differs from the generator's output"


def test_generator_check_mode_detects_a_changed_file():
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, GENERATOR, "--out", out], check=True, stdout=subprocess.DEVNULL)
        path = os.path.join(out, "records.json")
        with open(path, "rb") as f:
            data = bytearray(f.read())
        data[data.index(b'"frame": "') + 10] ^= 0x01
        with open(path, "wb") as f:
            f.write(bytes(data))
        result = subprocess.run([sys.executable, GENERATOR, "--check", "--out", out],
                                stdout=subprocess.PIPE, text=True)
        assert result.returncode == 1
        assert "DIFFERENT records.json" in result.stdout


def copy_for_make(destination):
    """The files `make vectors` and `make check-vectors` use, in a scratch tree."""
    import shutil
    shutil.copy(os.path.join(ROOT, "Makefile"), destination)
    os.makedirs(os.path.join(destination, "tools"))
    shutil.copy(GENERATOR, os.path.join(destination, "tools"))
    shutil.copytree(VECTORS, os.path.join(destination, "spec", "vectors"))


def run_make(directory, target):
    return subprocess.run(["make", "-C", directory, target, "PYTHON=" + sys.executable],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_make_check_vectors_passes_on_the_committed_vectors():
    with tempfile.TemporaryDirectory() as tree:
        copy_for_make(tree)
        result = run_make(tree, "check-vectors")
        assert result.returncode == 0, result.stdout
        assert "same     negative.json" in result.stdout


def test_make_check_vectors_fails_on_one_changed_vector_byte():
    with tempfile.TemporaryDirectory() as tree:
        copy_for_make(tree)
        path = os.path.join(tree, "spec", "vectors", "handshake.json")
        with open(path, "rb") as f:
            data = bytearray(f.read())
        at = data.index(b'"hello": "') + 10
        data[at] = ord("0") if data[at] != ord("0") else ord("1")
        with open(path, "wb") as f:
            f.write(bytes(data))
        result = run_make(tree, "check-vectors")
        assert result.returncode != 0, result.stdout
        assert "DIFFERENT handshake.json" in result.stdout


def test_make_vectors_rewrites_a_changed_vector_file():
    with tempfile.TemporaryDirectory() as tree:
        copy_for_make(tree)
        path = os.path.join(tree, "spec", "vectors", "cobs.json")
        with open(path, "ab") as f:
            f.write(b" ")
        assert run_make(tree, "vectors").returncode == 0
        assert run_make(tree, "check-vectors").returncode == 0
        with open(path, "rb") as a, open(os.path.join(VECTORS, "cobs.json"), "rb") as b:
            assert a.read() == b.read()


def handshake_sizes_from_spec():
    text = read_spec("protocol.md")
    row = re.search(r"\| \*\*whole handshake\*\* \| \*\*(\d+)\*\* \(goal ≤ 160\) \| \*\*(\d+)\*\*", text)
    assert row, "the sizes table of protocol.md section 15 lost its handshake row"
    overhead = re.search(r"\| DATA overhead over the payload \| \*\*(\d+)\*\* \(goal ≤ 19\) \| \*\*(\d+)\*\* \(goal ≤ 25\) \|", text)
    assert overhead, "the sizes table of protocol.md section 15 lost its overhead row"
    return (int(row.group(1)), int(row.group(2))), (int(overhead.group(1)), int(overhead.group(2)))


def test_spec_sizes_match_vectors_and_goals():
    (stream_hs, datagram_hs), (stream_over, datagram_over) = handshake_sizes_from_spec()
    for case in load("handshake.json")["cases"]:
        expected = stream_hs if case["mode"] == "stream" else datagram_hs
        assert case["handshake_wire_bytes"] == expected, case["name"]
        frames = case["frames"]
        measured = sum(len(frames[k]) // 2 for k in ("hello", "challenge", "hello_ack", "session_ok"))
        assert measured == expected
    assert stream_hs <= 160
    overheads = {r["mode"]: set() for r in load("records.json")["records"]}
    for record in load("records.json")["records"]:
        overheads[record["mode"]].add(len(record["frame"]) // 2 - len(record["plaintext"]) // 2)
    assert overheads == {"stream": {stream_over}, "datagram": {datagram_over}}
    assert stream_over <= 19 and datagram_over <= 25


def test_spec_frame_type_table_matches_generator():
    text = read_spec("protocol.md")
    table = dict((name, int(value, 16)) for value, name in
                 re.findall(r"^\| `0x([0-9A-F]{2})` \| ([A-Z_]+) \| (?:C→S|S→C|both)", text, re.M))
    sys.path.insert(0, os.path.dirname(GENERATOR))
    try:
        import gen_vectors
    finally:
        sys.path.pop(0)
    assert table == {name: getattr(gen_vectors, name) for name in table}
    # The product's packet-type numbers are kept.
    assert {k: table[k] for k in ("HELLO", "CHALLENGE", "HELLO_ACK", "SESSION_OK", "DATA",
                                  "PING", "PONG", "BYE", "ERROR")} == {
        "HELLO": 0x01, "CHALLENGE": 0x02, "HELLO_ACK": 0x03, "SESSION_OK": 0x04, "DATA": 0x05,
        "PING": 0x06, "PONG": 0x07, "BYE": 0x08, "ERROR": 0xFF}


def test_spec_error_code_table_matches_generator():
    text = read_spec("protocol.md")
    section = text[text.index("### 9.1"):text.index("### 9.2")]
    codes = {name: int(value, 16) for value, name in
             re.findall(r"^\| `0x([0-9A-F]{2})` \| ([A-Z_]+) \|", section, re.M)}
    sys.path.insert(0, os.path.dirname(GENERATOR))
    try:
        import gen_vectors
    finally:
        sys.path.pop(0)
    assert codes == gen_vectors.ERROR_CODES


def test_every_negative_vector_names_a_condition_of_the_spec():
    text = read_spec("protocol.md")
    section = text[text.index("### 9.1"):text.index("### 9.2")]
    conditions = set(re.findall(r"\| (?:`0x[0-9A-F]{2}` \| )?([A-Z_]{4,}) \|", section))
    named = {step["expect"] for case in load("negative.json")["cases"] for step in case["steps"]}
    named |= {case["error"] for case in load("cobs.json")["invalid"]}
    named.discard("ok")
    assert named <= conditions, named - conditions


def test_state_table_rows_are_numbered_and_use_defined_states():
    text = read_spec("state-machine.md")
    states = set(re.findall(r"^\| ([A-Z_]+) \| (?:client|server|both) \|", text, re.M))
    assert states == {"START", "WAIT_CHALLENGE", "WAIT_SESSION_OK", "WAIT_HELLO", "WAIT_HELLO_ACK",
                      "ESTABLISHED", "CLOSED", "FAILED"}
    rows = re.findall(r"^\| (\d+) \| (client|server|both) \| ([^|]+) \|", text, re.M)
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    starts = {case["start"] for case in load("negative.json")["cases"]}
    assert starts <= states


def c_transition_table():
    """The C engine's transitions[] as (role, state, frame type, modes, row, handler) rows."""
    with open(os.path.join(ROOT, "src", "usmp_engine.c"), encoding="utf-8") as f:
        source = f.read()
    body = source[source.index("static const transition_t transitions[] = {"):]
    body = body[:body.index("};")]
    rows = re.findall(r"\{ (R_\w+),\s+USMP_STATE_(\w+),\s+USMP_TYPE_(\w+),\s+(M_\w+),\s+(\d+), (\w+) \}", body)
    assert rows, "the transition table of src/usmp_engine.c was not found"
    role_of = {"R_CLIENT": "client", "R_SERVER": "server", "R_BOTH": "both"}
    modes_of = {"M_BOTH": "both", "M_DATAGRAM": "datagram", "M_STREAM": "stream"}
    return [(role_of[roles], state, frame_type, modes_of[modes], int(row), handler)
            for roles, state, frame_type, modes, row, handler in rows]


def python_transition_table():
    """The Python engine's TRANSITIONS, imported, in the same shape (handler names without their "_")."""
    sys.path.insert(0, os.path.join(ROOT, "python", "src"))
    try:
        from usmp.engine import TRANSITIONS, Role
        from usmp.wire import Mode
    finally:
        sys.path.pop(0)
    role_of = {Role.CLIENT: "client", Role.SERVER: "server", Role.BOTH: "both"}
    modes_of = {frozenset({Mode.STREAM, Mode.DATAGRAM}): "both", frozenset({Mode.DATAGRAM}): "datagram",
                frozenset({Mode.STREAM}): "stream"}
    return [(role_of[t.roles], t.state.value, t.frame_type.name, modes_of[t.modes], t.row, t.handler)
            for t in TRANSITIONS]


def spec_rows():
    text = read_spec("state-machine.md")
    return {int(m[0]): (m[1], m[2].strip(), m[3].strip()) for m in
            re.findall(r"^\| (\d+) \| (client|server|both) \| ([^|]+) \| ([^|]+) \|", text, re.M)}


def check_transition_table_against_spec(name, table):
    spec = spec_rows()
    handshake_states = {"WAIT_HELLO", "WAIT_CHALLENGE", "WAIT_HELLO_ACK", "WAIT_SESSION_OK"}
    covered = set()
    for role, state, frame_type, modes, row, handler in table:
        covered.add(row)
        assert row in spec, f"{name} transition for row {row} names a row the spec lacks"
        spec_role, spec_state, spec_event = spec[row]
        assert spec_role in (role, "both"), f"row {row}: {name} says {role}, spec says {spec_role}"
        if spec_state == "any handshake state":
            assert state in handshake_states, f"row {row}: {state} is not a handshake state"
        else:
            assert state in [s.strip() for s in spec_state.split(",")], f"row {row}: {state} vs {spec_state}"
        assert re.search(r"\b" + frame_type + r"\b", spec_event), \
            f"row {row}: the spec's event does not name {frame_type}"
        if modes == "datagram":
            assert "datagram" in spec_event, f"row {row}: {name} limits it to datagram mode, the spec does not"
    # Every spec row whose event is a received frame is in the table.
    frame_rows = {n for n, (_, _, event) in spec.items()
                  if re.match(r"(valid |the same |the accepted |ERROR|DATA|PING|PONG|BYE|COOKIE|CONTROL)", event)
                  and not re.search(r"deadline|timer", event)}
    assert frame_rows <= covered, f"spec rows without a {name} transition: {sorted(frame_rows - covered)}"


def test_c_transition_table_matches_the_spec_state_table():
    check_transition_table_against_spec("C", c_transition_table())


def test_python_transition_table_matches_the_spec_state_table():
    check_transition_table_against_spec("Python", python_transition_table())


def test_c_and_python_engines_have_the_same_transition_table():
    # Same rows, same handler names, in the same order (C compiles some out by profile; the source has all).
    assert python_transition_table() == c_transition_table()
