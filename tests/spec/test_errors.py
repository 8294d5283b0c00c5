"""The C result codes and the Python conditions name the same things.

include/usmp/usmp_errors.h lists every C result once (USMP_ERROR_LIST);
python/src/usmp/errors.py lists every Condition with its wire code; the C
wire codes are the USMP_CODE_* of include/usmp/usmp_engine.h. They must
agree with each other and with spec/protocol.md section 9.1.
"""

import importlib.util
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def c_errors():
    """{NAME: value} from USMP_ERROR_LIST."""
    text = read("include", "usmp", "usmp_errors.h")
    body = text[text.index("#define USMP_ERROR_LIST(X)"):text.index("#define USMP_ERROR_ENUM_ENTRY_")]
    return {name: int(value) for name, value in re.findall(r"X\((\w+), (-\d+), ", body)}


def c_wire_codes():
    """{NAME: code} from the USMP_CODE_* enum."""
    text = read("include", "usmp", "usmp_engine.h")
    return {name: int(value, 16) for name, value in re.findall(r"USMP_CODE_(\w+) = (0x[0-9A-Fa-f]+)", text)}


def python_conditions():
    """{NAME: wire code or None} from python/src/usmp/errors.py, loaded on
    its own (it imports nothing of the package)."""
    spec = importlib.util.spec_from_file_location(
        "usmp_errors_alone", os.path.join(ROOT, "python", "src", "usmp", "errors.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {c.name: c.code for c in module.Condition}


def test_the_c_list_is_read_whole():
    errors = c_errors()
    assert len(errors) == 25  # and USMP_OK
    assert errors["ARG"] == -1 and errors["CRYPTO"] == -64
    assert len(set(errors.values())) == len(errors)


def test_c_wire_codes_are_python_wire_codes():
    conditions = python_conditions()
    wire = c_wire_codes()
    assert wire, "no USMP_CODE_* found"
    assert wire == {name: code for name, code in conditions.items() if code is not None}


def test_every_c_remote_error_with_a_wire_code_is_minus_16_minus_the_python_code():
    conditions = python_conditions()
    errors = c_errors()
    with_code = {name: value for name, value in errors.items() if -26 <= value <= -17}
    assert sorted(with_code) == sorted(n for n, c in conditions.items() if c is not None and 1 <= c <= 10)
    for name, value in with_code.items():
        assert value == -(16 + conditions[name]), name


def test_every_python_condition_is_a_c_error_or_a_c_wire_code():
    conditions = python_conditions()
    errors = c_errors()
    wire = c_wire_codes()
    for name in conditions:
        if name == "MISUSE":  # Python's one name for every local misuse
            continue
        assert name in errors or name in wire, name


def test_every_c_error_outside_local_misuse_and_internal_failures_is_a_python_condition():
    conditions = python_conditions()
    # The C side splits local misuse (MISUSE in Python) into its kinds and
    # has a transport failure and a crypto failure that Python raises as
    # its own exceptions; everything else is a condition of section 9.1.
    c_only = {"ARG", "STATE", "BUFFER", "PSK", "MESSAGE_TOO_LARGE", "WOULD_BLOCK", "TRANSPORT", "CRYPTO"}
    for name, value in c_errors().items():
        if name in c_only:
            assert value <= -48 or value >= -15, name
        else:
            assert name in conditions, name
