# The one list of the USMP core's C sources, relative to the repository root.
#
# Every build of the core reads this file: the CMake project and the ESP-IDF
# component (both in the root CMakeLists.txt), the cross builds
# (tests/esp32/cross_build.sh), the footprint benchmark
# (bench/footprint/footprint.py) and the emulated targets (targets/run.py).
# PlatformIO's library.json cannot include
# it, so its srcFilter repeats the list, and tests/build/test_source_lists.py
# fails when the two differ or when a .c file of src/ is missing here.
#
# Format, kept simple on purpose because scripts read it with a regular
# expression rather than CMake: each list is one `set(NAME` line, then one
# path per line, then a line holding only `)`. Nothing else inside the
# set() calls: no variables, no comments, no generator expressions.

# The portable sans-I/O engine: no platform headers, no heap, no port hooks.
set(USMP_ENGINE_SOURCES
  src/usmp_engine.c
  src/usmp_handshake.c
  src/usmp_record.c
  src/usmp_replay.c
  src/usmp_cookie.c
  src/usmp_cobs.c
  src/usmp_error.c
  src/usmp_strerror.c
)

# The blocking device API over a transport; needs the port hooks (usmp_port.h).
set(USMP_DEVICE_SOURCES
  src/usmp_device.c
)
