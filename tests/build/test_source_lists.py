"""The core's sources are listed once, in cmake/usmp_sources.cmake, and every
build that cannot include it agrees with it.

CMake (the project and the ESP-IDF component), tests/esp32/cross_build.sh and
bench/footprint/footprint.py read the list itself. PlatformIO's library.json
cannot (srcFilter is a list of its own), so these tests hold it to the list;
they also hold the list to its documented format, which those scripts parse
with a regular expression, and to the files in src/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIST_FILE = ROOT / "cmake" / "usmp_sources.cmake"
# The pattern the file's header comment promises (footprint.py and
# check_host_example.py use the same one).
LIST_PATTERN = re.compile(r"^set\((USMP_\w+_SOURCES)\n((?:[ \t]+\S+\n)+)\)$", re.M)


def source_lists() -> dict[str, list[str]]:
    return {name: body.split() for name, body in LIST_PATTERN.findall(LIST_FILE.read_text())}


def test_source_list_has_the_engine_and_the_device_api_in_the_documented_format() -> None:
    lists = source_lists()
    assert set(lists) == {"USMP_ENGINE_SOURCES", "USMP_DEVICE_SOURCES"}
    assert lists["USMP_DEVICE_SOURCES"] == ["src/usmp_device.c"]
    assert "src/usmp_engine.c" in lists["USMP_ENGINE_SOURCES"]
    # Every set() of the file is one the pattern reads: none is skipped.
    assert LIST_FILE.read_text().count("\nset(") == len(lists)


def test_source_list_names_every_c_file_of_src_once() -> None:
    listed = [f for files in source_lists().values() for f in files]
    assert len(listed) == len(set(listed))
    on_disk = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "src").glob("*.c"))
    assert sorted(listed) == on_disk


def test_library_json_src_filter_compiles_exactly_the_listed_core() -> None:
    build = json.loads((ROOT / "library.json").read_text())["build"]
    included = [m.group(1) for m in map(re.compile(r"^\+<(.+)>$").match, build["srcFilter"]) if m]
    core = [f for f in included if f.startswith("src/")]
    listed = [f for files in source_lists().values() for f in files]
    assert sorted(core) == sorted(listed)
    # The same port, crypto glue and transport as the ESP-IDF component.
    component = (ROOT / "CMakeLists.txt").read_text()
    for extra in set(included) - set(core):
        assert extra in component, extra
