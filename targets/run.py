#!/usr/bin/python3
"""Builds the USMP firmware for emulated microcontrollers, runs it under QEMU,
and reports what it measured; with --footprint, the device's flash by part
and RAM in all, next to the goals of docs/footprint.md, into
build/footprint.json.

Targets (Debian 12 packages, tools/install-deps.sh):

  cortex-m4     arm-none-eabi-gcc + picolibc, qemu-system-arm -M mps2-an386
  rv32imc       riscv64-unknown-elf-gcc + picolibc, qemu-system-riscv32 -M virt
                (the ESP32-C3's ISA, not an ESP32-C3)
  xtensa-lx106  xtensa-lx106-elf-gcc + picolibc, qemu-system-xtensa -M sim
                (the ESP8266's core, call0 ABI. Debian has no ESP32 LX6/LX7
                toolchain or machine, so no ESP32 Xtensa core runs here)

Images, per target:

  vectors-<provider>  both engines in memory, every feature compiled in:
                      spec/vectors/handshake.json and records.json byte for
                      byte, every step of negative.json (the vectors are
                      compiled in by gen_vectors.py)
  device-<provider>   the device API in the device profile (client role,
                      stream mode) against a scripted gateway replaying the
                      vectors; instructions per handshake and per 64-byte
                      record, painted stack per API call, heap peak
  count-<provider>    the same, with mbedTLS's allocations counted (the
                      count costs instructions: only that figure is used)
  uart-<provider>      (Cortex-M4 and rv32imc; lx106's sim machine has no
                      UART) the device API in datagram mode over the board's
                      emulated UART (COBS, a QEMU pty) against the Python
                      gateway's serial transport, `usmp serve --serial`,
                      started here with a PSK drawn for the run: messages
                      echoed, BYE; checks the device's result and the
                      gateway's log (run_uart). The first provider chosen
                      only (libsodium by default)

X25519 providers (crypto/x25519, docs/crypto.md): "libsodium" (the fast
profile), "everest" (HACL* from mbedTLS's 3rdparty/everest: the small
profile), "ecp" (mbedTLS's generic ECP code, the baseline). Everything else
of the crypto is mbedTLS 2.28, compiled from Debian's source package with
targets/mbedtls/usmp_mbedtls_config.h.

    /usr/bin/python3 targets/run.py              # build, run, check (exit 1 on any failure)
    /usr/bin/python3 targets/run.py --footprint  # and the footprint table + build/footprint.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
DEPS = ROOT / "build" / "deps" / "src"

# --- the goals, judged on Cortex-M4 in the device profile (issue 11) ----------
GOAL_FAST_HANDSHAKE = 2_000_000
GOAL_SMALL_FLASH = 20 * 1024
GOAL_SMALL_HANDSHAKE = 10_000_000
GOAL_RAM = 3584  # 3.5 KB
GOAL_CORE = 6 * 1024
JUDGED_TARGET = "cortex-m4"

# Which provider each device crypto profile uses (docs/crypto.md gives the
# figures behind the choice); "ecp" is measured as the baseline.
PROFILE_OF_PROVIDER = {"libsodium": "fast", "everest": "small", "ecp": "small"}
SELECTED = {"fast": "libsodium", "small": "everest"}
PROVIDER_NAME = {
    "libsodium": "libsodium 1.0.18 crypto_scalarmult_curve25519 (ref10)",
    "everest": "HACL* Hacl_Curve25519_crypto_scalarmult (mbedTLS 2.28 3rdparty/everest, 32-bit, one unit)",
    "ecp": "mbedTLS 2.28 ECP (generic bignum Montgomery ladder)",
}
PROVIDERS = ["libsodium", "everest", "ecp"]

# The core's feature profiles (include/usmp/usmp_options.h).
DEVICE_PROFILE = ["-DUSMP_SERVER=0", "-DUSMP_DATAGRAM=0", "-DUSMP_ERROR_TEXT=1"]
# The "uart" image: a device (client role) in datagram mode, for the UART transport.
UART_PROFILE = ["-DUSMP_SERVER=0", "-DUSMP_DATAGRAM=1", "-DUSMP_ERROR_TEXT=1"]
FULL_PROFILE = ["-DUSMP_SERVER=1", "-DUSMP_DATAGRAM=1", "-DUSMP_ERROR_TEXT=1"]
# Record keys as the key alone, a GCM context on the stack per record
# (usmp_options.h USMP_AEAD_KEEP_CONTEXT): what a device builds by default,
# RAM first. --define USMP_AEAD_KEEP_CONTEXT=1 measures the other setting.
AEAD_KEEP_CONTEXT_DEFAULT = 0

WARNINGS = ["-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wstrict-prototypes", "-Wmissing-prototypes",
            "-Wpointer-arith", "-Wcast-qual", "-Wundef"]
COMMON = ["-std=c99", "-Os", "-g", "-ffunction-sections", "-fdata-sections", "-fno-common"]

MBEDTLS_MODULES = ["aes", "cipher", "cipher_wrap", "gcm", "md", "sha256", "hkdf", "platform", "platform_util",
                   "memory_buffer_alloc", "constant_time", "bignum", "ecp", "ecp_curves"]
SODIUM_FILES = ["crypto_scalarmult/curve25519/scalarmult_curve25519.c",
                "crypto_scalarmult/curve25519/ref10/x25519_ref10.c",
                "crypto_core/ed25519/ref10/ed25519_ref10.c",
                "sodium/utils.c", "sodium/core.c"]
# HACL*'s 32-bit X25519 as one translation unit (targets/everest), so that
# kremlib's 128-bit emulation inlines; EVEREST_OPT is its optimisation level.
EVEREST_UNIT = HERE / "everest" / "hacl_curve25519_32bit.c"
EVEREST_OPT = os.environ.get("USMP_EVEREST_OPT", "-Os")


@dataclass
class Target:
    name: str
    cc: list[str]
    prefix: str
    board: list[str]
    link: list[str]
    qemu: list[str]
    note: str
    linker_script: bool = False  # derive one from picolibc's (xtensa)
    # The board's UART line driver (boards/), for the "uart" image; None:
    # uart_missing says why the board has none.
    uart_board: str | None = None
    uart_missing: str = ""


def mem(flash: int, flash_size: int, ram: int, ram_size: int) -> list[str]:
    return [f"-Wl,--defsym=__flash={flash:#x}", f"-Wl,--defsym=__flash_size={flash_size:#x}",
            f"-Wl,--defsym=__ram={ram:#x}", f"-Wl,--defsym=__ram_size={ram_size:#x}",
            "-Wl,--defsym=__stack_size=0x8000"]


QEMU_COMMON = ["-display", "none", "-monitor", "none", "-serial", "none", "-icount", "shift=0"]
TARGETS = [
    Target("cortex-m4", ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "--specs=picolibc.specs"],
           "arm-none-eabi-", ["mps2_an386.c"],
           ["--oslib=semihost", "--crt0=semihost"] + mem(0x0, 0x400000, 0x20000000, 0x400000),
           ["qemu-system-arm", "-M", "mps2-an386", "-semihosting-config", "enable=on,target=native"],
           "QEMU mps2-an386 (Cortex-M4), arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -Os, picolibc",
           uart_board="mps2_an386_uart.c"),
    Target("rv32imc", ["riscv64-unknown-elf-gcc", "-march=rv32imc", "-mabi=ilp32", "-mcmodel=medany",
                       "--specs=picolibc.specs"],
           "riscv64-unknown-elf-", ["riscv_virt.c"],
           ["--oslib=semihost", "--crt0=semihost"] + mem(0x80000000, 0x200000, 0x80200000, 0x200000),
           ["qemu-system-riscv32", "-M", "virt", "-bios", "none", "-semihosting-config", "enable=on,target=native"],
           "QEMU virt (rv32imc, the ESP32-C3's ISA), riscv64-unknown-elf-gcc -march=rv32imc -mabi=ilp32 -Os, picolibc",
           uart_board="riscv_virt_uart.c"),
    Target("xtensa-lx106", ["xtensa-lx106-elf-gcc", "--specs=/usr/lib/xtensa-lx106-elf/picolibc.specs"],
           "xtensa-lx106-elf-", ["xtensa_sim.c", "xtensa_libgcc.c"],
           mem(0x60000000, 0x100000, 0x60100000, 0x100000),
           ["qemu-system-xtensa", "-M", "sim", "-cpu", "lx106", "-semihosting"],
           "QEMU sim with -cpu lx106 (the ESP8266's Xtensa core, call0 ABI; Debian has no ESP32 LX6/LX7 "
           "toolchain or machine), xtensa-lx106-elf-gcc -Os, picolibc", linker_script=True,
           uart_missing="QEMU's sim machine has no UART: its only byte channel is the semihosting "
                        "console (SIMCALL), which carries the report, and -serial only redirects that console"),
]


# --- the core's source list ---------------------------------------------------------

def core_sources() -> list[str]:
    """The core's C sources, repository-relative, from cmake/usmp_sources.cmake
    (USMP_ENGINE_SOURCES and USMP_DEVICE_SOURCES), else from CMakeLists.txt's
    USMP_CORE_SOURCES. Read, never restated here: src/ may be split further."""
    listing = ROOT / "cmake" / "usmp_sources.cmake"
    found: list[str] = []
    if listing.exists():
        text = listing.read_text()
        for name in ("USMP_ENGINE_SOURCES", "USMP_DEVICE_SOURCES"):
            m = re.search(r"^set\(" + name + r"\s*\n(.*?)^\)", text, re.M | re.S)
            if not m:
                sys.exit(f"targets: {name} not found in {listing.relative_to(ROOT)}")
            found += [line.strip() for line in m.group(1).splitlines() if line.strip()]
    else:
        text = (ROOT / "CMakeLists.txt").read_text()
        m = re.search(r"set\(USMP_CORE_SOURCES\s+(.*?)\)", text, re.S)
        if not m:
            sys.exit("targets: no core source list (cmake/usmp_sources.cmake or USMP_CORE_SOURCES)")
        found = [s.replace("${PROJECT_SOURCE_DIR}/", "") for s in m.group(1).split()]
    for path in found:
        if not (ROOT / path).is_file():
            sys.exit(f"targets: core source {path} listed but missing")
    return found


def deps_dir(package: str) -> Path:
    dirs = sorted(DEPS.glob(f"{package}-[0-9]*"))
    if not dirs:
        sys.exit(f"targets: no {package} source under build/deps/src: run tools/install-deps.sh")
    return dirs[-1]


# --- building --------------------------------------------------------------------

class BuildError(Exception):
    pass


def run(cmd: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise BuildError(f"command failed: {' '.join(cmd)}\n{done.stdout}")
    return done.stdout


@dataclass
class Unit:
    source: Path
    obj: Path
    flags: list[str]
    cached: bool = False  # third-party: reuse the object when newer than the source and config


@dataclass
class Build:
    target: Target
    out: Path
    units: list[Unit] = field(default_factory=list)


def newer(obj: Path, *inputs: Path) -> bool:
    return obj.exists() and all(obj.stat().st_mtime >= i.stat().st_mtime for i in inputs)


def compile_unit(target: Target, u: Unit) -> None:
    if u.cached and newer(u.obj, u.source, HERE / "mbedtls" / "usmp_mbedtls_config.h", Path(__file__)):
        return
    u.obj.parent.mkdir(parents=True, exist_ok=True)
    run(target.cc + COMMON + u.flags + ["-c", str(u.source), "-o", str(u.obj)])


def gcm_context_bytes(t: Target, out: Path, mbedtls_inc: list[str]) -> int:
    """sizeof(mbedtls_gcm_context) for this target and mbedTLS configuration, read from
    the assembler's .size of a probe array: usmp_engine_t keeps one per record key
    (include/usmp/usmp_aead.h), and the header's default is a ceiling, not this size."""
    probe = out / "probe" / "gcm_context_size.c"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text('#include "mbedtls/gcm.h"\n'
                     "char usmp_gcm_context_size[sizeof(mbedtls_gcm_context)];\n")
    asm = run(t.cc + COMMON + mbedtls_inc + ["-S", str(probe), "-o", "-"])
    m = re.search(r"\.size\s+usmp_gcm_context_size\s*,\s*(\d+)", asm)
    if m is None:
        raise SystemExit(f"{t.name}: cannot read sizeof(mbedtls_gcm_context) from the probe")
    return int(m.group(1))


def target_build(t: Target, out: Path, vectors_h: Path, defines: list[str],
                 aead_keep_context: int) -> dict[str, list[Path]]:
    """Compiles everything one target needs; returns the object groups.
    defines: more -D options of usmp_options.h for the core and the images;
    aead_keep_context: USMP_AEAD_KEEP_CONTEXT, for every unit (it sizes
    usmp_aead_t, which the crypto glue and the core must agree on)."""
    mbedtls = deps_dir("mbedtls")
    sodium = deps_dir("libsodium") / "src" / "libsodium"
    everest = mbedtls / "3rdparty" / "everest"
    mbedtls_inc = ["-I" + str(HERE / "mbedtls"), "-I" + str(mbedtls / "include"),
                   '-DMBEDTLS_CONFIG_FILE="usmp_mbedtls_config.h"']
    sodium_inc = ["-I" + str(sodium / "include"), "-I" + str(sodium / "include" / "sodium")]
    everest_inc = ["-isystem", str(everest / "include"), "-isystem", str(everest / "include" / "everest"),
                   "-isystem", str(everest / "include" / "everest" / "kremlib"), "-DKRML_VERIFIED_UINT128"]
    # Every unit that includes usmp_aead.h (core, glue, firmware) sees the
    # same usmp_aead_t: this target's own GCM context, kept or not.
    usmp_inc = ["-I" + str(ROOT / "include" / "usmp"), "-I" + str(ROOT / "src"),
                f"-DUSMP_AEAD_CONTEXT_BYTES={gcm_context_bytes(t, out, mbedtls_inc)}u",
                f"-DUSMP_AEAD_KEEP_CONTEXT={aead_keep_context}"]
    fw_inc = usmp_inc + ["-I" + str(HERE / "boards"), "-I" + str(HERE / "firmware"), "-I" + str(vectors_h.parent)]
    groups: dict[str, list[Path]] = {}
    units: list[tuple[str, Unit]] = []

    def add(group: str, src: Path, obj: Path, flags: list[str], cached: bool = False) -> None:
        units.append((group, Unit(src, obj, flags, cached)))

    for m in MBEDTLS_MODULES:
        add("mbedtls", mbedtls / "library" / f"{m}.c", out / "mbedtls" / f"{m}.o", mbedtls_inc + ["-w"], True)
    add("mbedtls", HERE / "mbedtls" / "usmp_aes_encrypt_only.c", out / "mbedtls" / "usmp_aes_encrypt_only.o",
        mbedtls_inc + WARNINGS)
    for f in SODIUM_FILES:
        add("libsodium", sodium / f, out / "libsodium" / (Path(f).stem + ".o"),
            sodium_inc + ["-DNATIVE_LITTLE_ENDIAN", "-DCONFIGURED=1", "-w"], True)
    add("everest", EVEREST_UNIT, out / "everest" / "Hacl_Curve25519.o",
        everest_inc + ["-I" + str(everest / "library"), "-w", EVEREST_OPT])
    profiles = [("device", DEVICE_PROFILE), ("full", FULL_PROFILE)] + ([("uart", UART_PROFILE)] if t.uart_board else [])
    for profile, flags in profiles:
        for src in core_sources():
            add(f"core-{profile}", ROOT / src, out / f"core-{profile}" / (Path(src).stem + ".o"),
                usmp_inc + flags + defines + WARNINGS)
    glue_inc = usmp_inc + mbedtls_inc + WARNINGS
    add("glue-common", ROOT / "crypto/common/usmp_crypto_common.c", out / "glue" / "usmp_crypto_common.o", glue_inc)
    add("glue-ecp", ROOT / "crypto/mbedtls/usmp_crypto_mbedtls.c", out / "glue" / "usmp_crypto_mbedtls.o", glue_inc)
    add("glue-external", ROOT / "crypto/mbedtls/usmp_crypto_mbedtls.c",
        out / "glue" / "usmp_crypto_mbedtls_x25519_external.o", glue_inc + ["-DUSMP_X25519_EXTERNAL=1"])
    add("glue-libsodium", ROOT / "crypto/x25519/usmp_x25519_libsodium.c", out / "glue" / "usmp_x25519_libsodium.o",
        glue_inc + sodium_inc)
    add("glue-everest", ROOT / "crypto/x25519/usmp_x25519_everest.c", out / "glue" / "usmp_x25519_everest.o",
        glue_inc + everest_inc)
    fw_flags = fw_inc + ["-I" + str(mbedtls / "include"), "-I" + str(HERE / "mbedtls"),
                         '-DMBEDTLS_CONFIG_FILE="usmp_mbedtls_config.h"'] + WARNINGS
    for b in t.board:
        add("harness", HERE / "boards" / b, out / "harness" / (Path(b).stem + ".o"), fw_flags)
    add("harness", HERE / "firmware" / "target.c", out / "harness" / "target.o", fw_flags)
    add("port-scripted", HERE / "firmware" / "target_port.c", out / "harness" / "target_port.o", fw_flags)
    if t.uart_board:
        uart_flags = fw_flags + ["-I" + str(ROOT / "transports")] + UART_PROFILE + defines
        add("uart-transport", ROOT / "transports" / "usmp_uart.c", out / "core-uart" / "usmp_uart.o",
            usmp_inc + ["-I" + str(ROOT / "transports")] + UART_PROFILE + defines + WARNINGS)
        add("uart-transport", HERE / "boards" / t.uart_board, out / "harness" / (Path(t.uart_board).stem + ".o"),
            uart_flags)
        add("main-uart", HERE / "firmware" / "uart_main.c", out / "harness" / "uart_main.o", uart_flags)
        add("main-uart", HERE / "firmware" / "uart_port.c", out / "harness" / "uart_port.o", uart_flags)
    add("main-vectors", HERE / "firmware" / "vectors_main.c", out / "harness" / "vectors_main.o",
        fw_flags + FULL_PROFILE + defines)
    add("main-device", HERE / "firmware" / "device_main.c", out / "harness" / "device_main.o",
        fw_flags + DEVICE_PROFILE + defines)
    add("alloc-count", HERE / "firmware" / "alloc_count.c", out / "harness" / "alloc_count.o", fw_flags)
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for job in [pool.submit(compile_unit, t, u) for _, u in units]:
            job.result()
    for group, u in units:
        groups.setdefault(group, []).append(u.obj)
    # Third-party code as archives, so the linker takes only the members used
    # and the map names each member (the footprint's "crypto library" rows).
    for lib in ("mbedtls", "libsodium", "everest"):
        archive = out / f"lib{lib}.a"
        archive.unlink(missing_ok=True)
        run([t.prefix + "ar", "rcs", str(archive)] + [str(o) for o in groups[lib]])
        groups[lib] = [archive]
    if t.linker_script:
        groups["ldscript"] = [xtensa_linker_script(out)]
    return groups


def xtensa_linker_script(out: Path) -> Path:
    """picolibc's linker script for lx106, with two changes the sim needs:
    literal pools before all code (l32r only reaches backwards), and the
    reset vector (0x50000000 on lx106) jumping to _start (boards/xtensa_sim.c)."""
    s = Path("/usr/lib/xtensa-lx106-elf/lib/picolibc.ld").read_text()
    edits = [("\tKEEP (*(.text.init.enter))", "\t*(.literal .literal.*)\n\t\tKEEP (*(.text.init.enter))"),
             ("PHDRS\n{\n", "PHDRS\n{\n\treset PT_LOAD;\n"),
             ("MEMORY\n{\n", "MEMORY\n{\n\treset (rx!w) : ORIGIN = 0x50000000, LENGTH = 0x100\n"),
             ("SECTIONS\n{\n", "SECTIONS\n{\n\t.reset_vector : { KEEP (*(.ResetVector.text)) } >reset AT>reset :reset\n")]
    for old, new in edits:
        if old not in s:
            sys.exit(f"targets: picolibc.ld for lx106 changed; cannot find {old!r}")
        s = s.replace(old, new, 1)
    path = out / "xtensa_sim.ld"
    path.write_text(s)
    return path


@dataclass
class Image:
    target: Target
    kind: str       # vectors | device | count | uart
    provider: str   # libsodium | everest | ecp
    elf: Path
    map: Path
    objects: dict[str, list[Path]]  # group -> objects linked

    @property
    def name(self) -> str:
        return f"{self.target.name}/{self.kind}-{self.provider}"


def link(t: Target, out: Path, groups: dict[str, list[Path]], kind: str, provider: str) -> Image:
    core = {"vectors": groups["core-full"], "uart": groups.get("core-uart", []) + groups.get("uart-transport", [])
            }.get(kind, groups["core-device"])
    # "count": the device image with mbedTLS's allocations counted (only
    # that figure of it is used).
    glue = groups["glue-common"] + (groups["glue-ecp"] if provider == "ecp"
                                    else groups["glue-external"] + groups[f"glue-{provider}"])
    crypto = groups["mbedtls"] + ([] if provider == "ecp" else groups[provider])
    if kind == "uart":
        harness = groups["harness"] + groups["main-uart"]  # its own port hooks (uart_port.c)
    else:
        harness = groups["harness"] + groups["port-scripted"] + (
            groups["main-device"] + groups["alloc-count"] if kind == "count" else groups[f"main-{kind}"])
    elf = out / f"{kind}-{provider}.elf"
    mapfile = elf.with_suffix(".map")
    cmd = t.cc + COMMON + t.link + [f"-Wl,-Map={mapfile}", "-Wl,--gc-sections", "-o", str(elf)]
    if kind == "count":
        cmd.append("-Wl,--wrap=mbedtls_calloc")
    if "ldscript" in groups:
        cmd += ["-T", str(groups["ldscript"][0])]
    cmd += [str(o) for o in harness + core + glue + crypto]
    run(cmd)
    return Image(t, kind, provider, elf, mapfile,
                 {"core": core, "glue": glue, "crypto": crypto, "harness": harness})


# --- running ---------------------------------------------------------------------

@dataclass
class RunResult:
    image: Image
    ok: bool
    seconds: float
    output: str
    results: dict[str, str]


def run_image(image: Image, timeout: float) -> RunResult:
    cmd = image.target.qemu + QEMU_COMMON + ["-kernel", str(image.elf)]
    start = time.monotonic()
    try:
        done = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        output, status = done.stdout, done.returncode
    except subprocess.TimeoutExpired as e:
        output = (e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")) + f"\nTIMEOUT after {timeout}s"
        status = -1
    results = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "RESULT":
            results[parts[1]] = parts[2]
    ok = status == 0 and results.get("failures") == "0"
    return RunResult(image, ok, time.monotonic() - start, output, results)


UART_BAUD = 115200
UART_ECHO_MESSAGES = 3  # uart_main.c's ECHO_MESSAGES
GATEWAY = ["/usr/bin/python3", "-m", "usmp", "-v", "serve"]  # -v: its info log too


class ChildLines:
    """A child's merged stdout and stderr, read as it comes, straight from
    the pipe (no buffered reader: select() must see every byte that waits),
    split into lines."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None
        self.fd = child.stdout.fileno()
        self.lines: list[str] = []
        self.eof = False
        self._partial = b""

    def read(self, seconds: float) -> None:
        """Waits at most seconds for output; takes what is there."""
        if self.eof:
            time.sleep(seconds)
            return
        ready, _, _ = select.select([self.fd], [], [], max(0.0, seconds))
        if not ready:
            return
        data = os.read(self.fd, 65536)
        if not data:
            self.eof = True
            data, self._partial = self._partial + b"\n" if self._partial else b"", b""
        *complete, self._partial = (self._partial + data).split(b"\n")
        self.lines += [line.decode(errors="replace") for line in complete]

    def wait_for(self, pattern: re.Pattern[str], seconds: float) -> re.Match[str] | None:
        """Reads until a line, read now or before, matches pattern (None:
        EOF or time out)."""
        deadline, seen = time.monotonic() + seconds, 0
        while True:
            for line in self.lines[seen:]:
                m = pattern.search(line)
                if m:
                    return m
            seen = len(self.lines)
            if self.eof or time.monotonic() >= deadline:
                return None
            self.read(deadline - time.monotonic())

    def drain(self, seconds: float) -> None:
        """Reads to EOF (the child has exited), for at most seconds."""
        deadline = time.monotonic() + seconds
        while not self.eof and time.monotonic() < deadline:
            self.read(deadline - time.monotonic())


def run_uart(image: Image, timeout: float) -> RunResult:
    """Issue 11 part 1(b): the "uart" image under QEMU with the board's UART
    on a pty (`-serial pty`), and the Python gateway's serial transport
    (`usmp serve --serial PTY --psk-file F`, echo mode) on that pty. The
    device id, PSK and random seed are drawn here for this run only; the
    device gets them on the semihosting command line, the gateway the PSK
    in a file only this user can read.

    Passes when the firmware passes (handshake, every message echoed back
    byte for byte through the session's keys, which only the gateway holds,
    and usmp_close) and the gateway's log shows the device's session (the
    session id the device reports) opened for this device id and closed by
    the device's BYE. `usmp serve` logs no line per echoed message, so the
    echoes are judged by what the device received."""
    t = image.target
    start = time.monotonic()
    device_id, psk, seed = os.urandom(6).hex(), os.urandom(32).hex(), os.urandom(32).hex()
    psk_file = image.elf.with_name("uart-gateway.psk")
    psk_file.unlink(missing_ok=True)
    fd = os.open(psk_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# the emulated device of one targets/run.py UART run\n{device_id} {psk}\n")
    qemu = [a + f",arg={device_id},arg={psk},arg={seed}" if a.startswith("enable=on") else a
            for a in t.qemu]
    common = [a if a != "none" or QEMU_COMMON[i - 1] != "-serial" else "pty" for i, a in enumerate(QEMU_COMMON)]
    problems: list[str] = []
    gateway: subprocess.Popen[bytes] | None = None
    gateway_out: ChildLines | None = None
    status: int | None = None
    device = subprocess.Popen(qemu + common + ["-kernel", str(image.elf)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    device_out = ChildLines(device)
    try:
        found = device_out.wait_for(re.compile(r"char device redirected to (\S+) \(label serial0\)"), 10.0)
        if not found:
            problems.append("QEMU did not report its pty")
        else:
            env = dict(os.environ, PYTHONPATH=str(ROOT / "python" / "src"))
            gateway = subprocess.Popen(GATEWAY + ["--serial", found.group(1), "--baud", str(UART_BAUD),
                                                  "--psk-file", str(psk_file)],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
            gateway_out = ChildLines(gateway)
        # Both outputs are read as they come (a full pipe would stop the
        # child); a gateway that exits early ends the run at once.
        deadline = time.monotonic() + timeout
        while not problems and status is None and time.monotonic() < deadline:
            if gateway is not None and gateway_out is not None:
                gateway_out.read(0)
                if gateway.poll() is not None:
                    problems.append(f"the gateway exited early (status {gateway.returncode})")
                    break
            device_out.read(0.1)
            status = device.poll()
        if status is None and not problems:
            problems.append(f"TIMEOUT after {timeout}s")
    finally:
        if device.poll() is None:
            device.kill()
        status = device.wait()
        device_out.drain(5.0)
        if gateway is not None and gateway_out is not None:
            # The device's BYE may still be in flight: let the gateway log
            # the session's end (or give up after a few seconds) before
            # stopping it, which would close the session itself.
            if gateway.poll() is None and status == 0:
                gateway_out.wait_for(re.compile(r"^close "), 10.0)
            gateway.terminate()
            try:
                gateway.wait(timeout=10)
            except subprocess.TimeoutExpired:
                gateway.kill()
                gateway.wait()
            gateway_out.drain(5.0)
        psk_file.unlink(missing_ok=True)
    output = "\n".join(device_out.lines)
    results = {}
    for line in device_out.lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "RESULT":
            results[parts[1]] = parts[2]
    if status != 0 or results.get("failures") != "0":
        problems.append("the firmware failed")
    if results.get("messages_echoed") != str(UART_ECHO_MESSAGES):
        problems.append(f"the device saw {results.get('messages_echoed', 0)} of {UART_ECHO_MESSAGES} echoes")
    sid = results.get("session_id", "?")
    text = "\n".join(gateway_out.lines if gateway_out else [])
    checks = [
        (rf"^open {sid} device {device_id} from ", "the gateway's log shows no session opened for this device"),
        (rf"^close {sid}: BYE from the device \(NONE\)$", "the gateway's log shows no clean close by BYE"),
    ]
    for pattern, problem in checks:
        if not re.search(pattern, text, re.M):
            problems.append(problem)
    full = output + "\n--- gateway\n" + text
    if problems:
        full += "\n--- problems\n" + "\n".join(problems)
    results["problems"] = "; ".join(problems)
    return RunResult(image, not problems, time.monotonic() - start, full, results)


# --- footprint -----------------------------------------------------------------------

@dataclass
class Size:
    text: int = 0
    rodata: int = 0
    data: int = 0
    bss: int = 0

    @property
    def flash(self) -> int:
        return self.text + self.rodata + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss

    def add(self, section: str, size: int) -> None:
        for prefix, kind in ((".text", "text"), (".literal", "text"), (".rodata", "rodata"),
                             (".srodata", "rodata"), (".data", "data"), (".sdata", "data"),
                             (".tdata", "data"), (".bss", "bss"), (".sbss", "bss"), (".tbss", "bss"),
                             ("COMMON", "bss")):
            if section == prefix or section.startswith(prefix + "."):
                setattr(self, kind, getattr(self, kind) + size)
                return


def map_sizes(map_file: Path) -> dict[str, Size]:
    """Bytes each input file (object, or archive(member)) keeps in the image,
    per section kind, from a GNU ld map."""
    text = map_file.read_text()
    text = text[text.index("Linker script and memory map"):]
    sizes: dict[str, Size] = {}
    pending: str | None = None
    entry = re.compile(r"^ (\S+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
    for line in text.splitlines():
        if re.match(r"^ (\.\S+|COMMON)\s*$", line):
            pending = line.strip()
            continue
        m = entry.match(line)
        if m and (m.group(1) or pending):
            section = m.group(1) or pending or ""
            if section.startswith((".", "COMMON")) and not m.group(4).startswith("0x") and int(m.group(2), 16) != 0:
                sizes.setdefault(m.group(4).strip(), Size()).add(section, int(m.group(3), 16))
        pending = None
    return sizes


def member_of(name: str) -> tuple[str, str]:
    """('libc.a', 'memcpy.o') for '/path/libc.a(memcpy.o)'; ('', path) else."""
    m = re.match(r"(.*)\((.*)\)$", name)
    return (Path(m.group(1)).name, m.group(2)) if m else ("", name)


def symbols(prefix: str, paths: list[str]) -> tuple[set[str], dict[str, set[str]], dict[str, set[str]]]:
    """nm over objects and archives: (undefined in the given objects,
    defined per archive member, undefined per archive member)."""
    undefined: set[str] = set()
    defined_by: dict[str, set[str]] = {}
    needs: dict[str, set[str]] = {}
    for path in paths:
        out = subprocess.run([prefix + "nm", "-A", path], text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL).stdout
        for line in out.splitlines():
            m = re.match(r"^(.*?):(?:(\S+\.o(?:bj)?):)?\s*(?:[0-9a-f]+)?\s+([A-Za-z])\s+(\S+)$", line)
            if not m:
                continue
            member, kind, sym = m.group(2), m.group(3), m.group(4)
            if member:
                key = f"{Path(m.group(1)).name}({member})"
                (needs if kind == "U" else defined_by).setdefault(key, set()).add(sym)
            elif kind == "U":
                undefined.add(sym)
    return undefined, defined_by, needs


@dataclass
class Footprint:
    target: str
    provider: str
    parts: dict[str, int]            # flash per part
    crypto_modules: dict[str, int]   # flash per crypto library module
    static_ram: int
    harness_flash: int


def footprint(image: Image) -> Footprint:
    """Flash of the device: core, crypto glue, crypto library by module,
    and the libc and libgcc members that the device's code needs (the
    harness's printf and semihosting are left out and shown apart)."""
    sizes = map_sizes(image.map)
    t = image.target
    core = {str(p) for p in image.objects["core"]}
    glue = {str(p) for p in image.objects["glue"]}
    crypto_archives = {p.name for p in image.objects["crypto"]}
    # The libc/libgcc members the device's own code pulls in, transitively.
    linked_members = [n for n in sizes if member_of(n)[0] in ("libc.a", "libgcc.a")]
    archives = sorted({n[:n.rindex("(")] for n in linked_members})
    device_objects = sorted(core | glue) + [str(p) for p in image.objects["crypto"]]
    undefined, defined_by, needs = symbols(t.prefix, device_objects)
    crypto_member_undef: set[str] = set()
    for key, syms in needs.items():
        if member_of(key)[0] in crypto_archives and any(member_of(n) == member_of(key) for n in sizes):
            crypto_member_undef |= syms
    undefined |= crypto_member_undef
    _, lib_defined, lib_needs = symbols(t.prefix, archives)
    linked_keys = {f"{member_of(n)[0]}({member_of(n)[1]})" for n in linked_members}
    wanted = set(undefined)
    counted: set[str] = set()
    changed = True
    while changed:
        changed = False
        for key in linked_keys - counted:
            if lib_defined.get(key, set()) & wanted:
                counted.add(key)
                wanted |= lib_needs.get(key, set())
                changed = True
    parts = {"core": 0, "crypto glue": 0, "crypto library": 0, "libc": 0, "libgcc": 0}
    modules: dict[str, int] = {}
    static_ram = 0
    harness = 0
    for name, size in sizes.items():
        archive, member = member_of(name)
        key = f"{archive}({member})"
        if name in core:
            part = "core"
        elif name in glue:
            part = "crypto glue"
        elif archive in crypto_archives:
            part = "crypto library"
            module = f"{archive.removeprefix('lib').removesuffix('.a')}/{Path(member).stem}"
            if size.flash:
                modules[module] = modules.get(module, 0) + size.flash
        elif archive in ("libc.a", "libgcc.a") and key in counted:
            part = "libc" if archive == "libc.a" else "libgcc"
        elif name.endswith("xtensa_libgcc.o"):
            # The ESP8266 ROM's integer routines (boards/xtensa_libgcc.c): libgcc.
            part = "libgcc"
        else:
            harness += size.flash
            continue
        parts[part] += size.flash
        static_ram += size.ram
    return Footprint(t.name, image.provider, parts, dict(sorted(modules.items(), key=lambda kv: -kv[1])),
                     static_ram, harness)


def verdict(value: int, goal: int) -> str:
    """Met or missed, with the ratio in hundredths rounded away from the goal
    (down when met, up when missed), so that rounding never shows a figure
    nearer the goal, or on its other side, than it is."""
    met = value <= goal
    hundredths = (value * 100) // goal if met else -((-value * 100) // goal)
    return f"{'met' if met else 'missed'} ({hundredths // 100}.{hundredths % 100:02d} x goal)"


def footprint_rows(device_runs: list[RunResult], count_runs: list[RunResult]) -> list[dict[str, object]]:
    rows = []
    allocations = {(c.image.target.name, c.image.provider): int(c.results["handshake_heap_allocations"])
                   for c in count_runs if "handshake_heap_allocations" in c.results}
    for r in device_runs:
        fp = footprint(r.image)
        res = {k: int(v) for k, v in r.results.items() if v.isdigit()}
        res["handshake_heap_allocations"] = allocations.get((r.image.target.name, r.image.provider), -1)
        stacks = {k.removeprefix("stack_"): v for k, v in res.items() if k.startswith("stack_")}
        stack_max = max(stacks.values()) if stacks else 0
        flash_total = sum(fp.parts.values())
        ram_total = res["context_bytes"] + stack_max + res["heap_peak"] + fp.static_ram
        profile = PROFILE_OF_PROVIDER[r.image.provider]
        rows.append({
            "target": r.image.target.name,
            "profile": "device",
            "crypto": profile,
            "x25519": PROVIDER_NAME[r.image.provider],
            "x25519_provider": r.image.provider,
            "selected_for_profile": SELECTED[profile] == r.image.provider,
            "flash_core": fp.parts["core"],
            "flash_crypto_glue": fp.parts["crypto glue"],
            "flash_crypto_library": fp.parts["crypto library"],
            "flash_crypto_modules": fp.crypto_modules,
            "flash_libc": fp.parts["libc"],
            "flash_libgcc": fp.parts["libgcc"],
            "flash_total": flash_total,
            "ram_context": res["context_bytes"],
            "ram_static": fp.static_ram,
            "stack_handshake": stacks.get("connect", 0),
            "stack_per_call": stacks,
            "stack_max": stack_max,
            "heap_peak": res["heap_peak"],
            "heap_allocations_handshake": res["handshake_heap_allocations"],
            "ram_total": ram_total,
            "handshake_instructions": res["handshake_instructions"],
            "record64_instructions": res["record64_instructions"],
            "record64_recv_instructions": res["record64_recv_instructions"],
            "x25519_base_instructions": res["x25519_base_instructions"],
            "x25519_shared_instructions": res["x25519_shared_instructions"],
            "harness_flash_not_counted": fp.harness_flash,
            "emulated": r.image.target.note,
        })
    return rows


def goals(row: dict[str, object]) -> dict[str, str]:
    """The issue's goals for one row (judged on Cortex-M4, device profile)."""
    g = {"ram_total": verdict(int(str(row["ram_total"])), GOAL_RAM),
         "flash_core": verdict(int(str(row["flash_core"])), GOAL_CORE)}
    if row["crypto"] == "fast":
        g["handshake_instructions"] = verdict(int(str(row["handshake_instructions"])), GOAL_FAST_HANDSHAKE)
    else:
        g["flash_total"] = verdict(int(str(row["flash_total"])), GOAL_SMALL_FLASH)
        g["handshake_instructions"] = verdict(int(str(row["handshake_instructions"])), GOAL_SMALL_HANDSHAKE)
    return g


def print_table(rows: list[dict[str, object]], markdown: bool) -> None:
    def goal_of(key: str, row: dict[str, object]) -> str:
        if key == "flash_core":
            return "<= 6144"
        if key == "ram_total":
            return "<= 3584"
        if key == "flash_total":
            return "<= 20480 (small)" if row["crypto"] == "small" else ""
        if key == "handshake_instructions":
            return "<= 2 M (fast)" if row["crypto"] == "fast" else "<= 10 M (small)"
        return ""

    keys = ["flash_core", "flash_crypto_glue", "flash_crypto_library", "flash_libc", "flash_libgcc", "flash_total",
            "ram_context", "ram_static", "stack_handshake", "stack_max", "heap_peak", "heap_allocations_handshake",
            "ram_total",
            "handshake_instructions", "record64_instructions", "record64_recv_instructions",
            "x25519_base_instructions", "x25519_shared_instructions"]
    for target in dict.fromkeys(str(r["target"]) for r in rows):
        trows = [r for r in rows if r["target"] == target]
        head = ["figure"] + [f"{r['crypto']}: {r['x25519_provider']}" for r in trows] + ["goal (Cortex-M4)"]
        lines = [head]
        for k in keys:
            lines.append([k] + [f"{r[k]:,}" if isinstance(r[k], int) else str(r[k]) for r in trows]
                         + [goal_of(k, trows[0]) if k not in ("flash_total", "handshake_instructions")
                            else "; ".join(dict.fromkeys(goal_of(k, r) for r in trows if goal_of(k, r)))])
        mods: dict[str, list[str]] = {}
        for i, r in enumerate(trows):
            for m, v in dict(r["flash_crypto_modules"]).items():  # type: ignore[call-overload]
                mods.setdefault(m, ["0"] * len(trows))[i] = f"{v:,}"
        for m, vals in mods.items():
            if any(v != "0" for v in vals):  # members linked with no bytes kept
                lines.append([f"  {m}"] + vals + [""])
        if markdown:
            print(f"\n### {target}\n")
            print("| " + " | ".join(lines[0]) + " |")
            print("|" + "---|" * len(lines[0]))
            for line in lines[1:]:
                print("| " + " | ".join(line) + " |")
        else:
            print(f"\n{target}: {trows[0]['emulated']}")
            widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
            for line in lines:
                print("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))))


# --- main ----------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=str(ROOT / "build" / "targets"))
    ap.add_argument("--targets", default=",".join(t.name for t in TARGETS))
    ap.add_argument("--providers", default=",".join(PROVIDERS))
    ap.add_argument("--footprint", action="store_true", help="print the footprint table, write --json")
    ap.add_argument("--markdown", action="store_true", help="the footprint table in Markdown")
    ap.add_argument("--json", default=str(ROOT / "build" / "footprint.json"))
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per QEMU run")
    ap.add_argument("--verbose", action="store_true", help="print every run's output")
    ap.add_argument("--define", action="append", default=[], metavar="NAME=VALUE",
                    help="another option of usmp_options.h for the core and the images (repeatable)")
    ap.add_argument("--vectors", help="check the vectors of this directory instead of spec/vectors")
    args = ap.parse_args()
    build = Path(args.build_dir)
    chosen = [t for t in TARGETS if t.name in args.targets.split(",")]
    providers = [p for p in PROVIDERS if p in args.providers.split(",")]
    started = time.monotonic()

    vectors_h = build / "gen" / "usmp_vectors.h"
    run(["/usr/bin/python3", str(HERE / "gen_vectors.py"), str(vectors_h)] +
        (["--vectors", args.vectors] if args.vectors else []))
    images: list[Image] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(chosen)) as pool:
            aead_keep_context = AEAD_KEEP_CONTEXT_DEFAULT
            defines = []
            for d in args.define:
                name, _, value = d.partition("=")
                if name == "USMP_AEAD_KEEP_CONTEXT":
                    aead_keep_context = int(value)
                else:
                    defines.append(f"-D{d}")
            built = list(pool.map(lambda t: (t, target_build(t, build / t.name, vectors_h, defines,
                                                             aead_keep_context)), chosen))
        for t, groups in built:
            for kind in ("vectors", "device", "count"):
                for p in providers:
                    images.append(link(t, build / t.name, groups, kind, p))
            if t.uart_board and providers:
                # One provider over the UART: the first chosen (the fast
                # profile's, ESP32-class, unless --providers says otherwise).
                images.append(link(t, build / t.name, groups, "uart", providers[0]))
    except BuildError as e:
        print(f"targets: BUILD FAILED\n{e}")
        print("targets: FAILED (build)")
        return 1
    built_s = time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(lambda im: run_image(im, args.timeout), [im for im in images if im.kind != "uart"]))
    failed = [r for r in results if not r.ok]
    for r in results:
        status = "ok" if r.ok else "FAILED"
        extra = ""
        if r.image.kind == "count" and "handshake_heap_allocations" in r.results:
            extra = f" {int(r.results['handshake_heap_allocations']):,} mbedTLS allocations per handshake"
        elif r.image.kind == "device" and "handshake_instructions" in r.results:
            extra = (f" handshake {int(r.results['handshake_instructions']):,} instr,"
                     f" 64-byte record {int(r.results.get('record64_instructions', 0)):,} instr")
        elif r.image.kind == "vectors" and "handshakes_checked" in r.results:
            extra = (f" {r.results['handshakes_checked']} handshakes, {r.results['records_checked']} records,"
                     f" {r.results.get('negative_steps_checked', '?')} negative steps")
        print(f"  {r.image.name:<34} {status:<6} {r.seconds:5.1f}s{extra}")
        if args.verbose or not r.ok:
            print("    " + "\n    ".join(r.output.splitlines()[-40:]))
    uart_images = [im for im in images if im.kind == "uart"]
    uart_results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(uart_images))) as pool:
        uart_results = list(pool.map(lambda im: run_uart(im, args.timeout), uart_images))
    for r in uart_results:
        extra = ""
        if r.ok:
            extra = (f" {r.results['messages_echoed']} messages echoed by the gateway, BYE;"
                     f" handshake {int(r.results.get('handshake_instructions', 0)):,} instr,"
                     f" 64-byte record {int(r.results.get('record64_instructions', 0)):,} instr")
        print(f"  {r.image.name:<34} {'ok' if r.ok else 'FAILED':<6} {r.seconds:5.1f}s{extra}")
        if args.verbose or not r.ok:
            print("    " + "\n    ".join(r.output.splitlines()[-60:]))
    for t in chosen:
        if not t.uart_board:
            print(f"  {t.name + '/uart':<34} not run: {t.uart_missing}")
    results += uart_results
    failed += [r for r in uart_results if not r.ok]

    if args.footprint:
        rows = footprint_rows([r for r in results if r.image.kind == "device" and r.ok],
                              [r for r in results if r.image.kind == "count" and r.ok])
        for row in rows:
            if row["target"] == JUDGED_TARGET:
                row["goals"] = goals(row)
        print_table(rows, args.markdown)
        print("\nGoals on Cortex-M4, device profile (issue 11):")
        for row in rows:
            if row["target"] == JUDGED_TARGET and row["selected_for_profile"]:
                for k, v in dict(row["goals"]).items():  # type: ignore[call-overload]
                    print(f"  {row['crypto']:<5} {k:<24} {v}")
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
        print(f"wrote {Path(args.json).relative_to(ROOT) if Path(args.json).is_relative_to(ROOT) else args.json}")

    elapsed = time.monotonic() - started
    summary = (f"targets: {len(results) - len(failed)}/{len(results)} runs passed on {len(chosen)} targets "
               f"({', '.join(t.name for t in chosen)}; build {built_s:.0f}s, total {elapsed:.0f}s)")
    print(summary if not failed else summary.replace("targets:", "targets: FAILED:"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
