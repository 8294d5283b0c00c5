#!/usr/bin/python3
"""USMP footprint on the microcontroller targets: flash and static RAM of the
core per module, the size of the device context, and the worst-case stack of
the device API, for Cortex-M4 and rv32imc (ESP32-C3), next to the goals, in
three feature profiles of include/usmp/usmp_options.h measured in one run:

  device    USMP_SERVER=0 USMP_DATAGRAM=0 USMP_ERROR_TEXT=1: what ports/esp32
            builds by default; the goals are judged on this one
  smallest  USMP_SERVER=0 USMP_DATAGRAM=0 USMP_ERROR_TEXT=0
  full      USMP_SERVER=1 USMP_DATAGRAM=1 USMP_ERROR_TEXT=1: the defaults

Reproduce (from the repository root, about 10 s):

    /usr/bin/python3 bench/footprint/footprint.py            # text table
    /usr/bin/python3 bench/footprint/footprint.py --markdown # the same, Markdown

Needs arm-none-eabi-gcc (with newlib), riscv64-unknown-elf-gcc with Debian's
libnewlib-dev headers (/usr/include/newlib), the host gcc and libmbedtls-dev.
Method and what each figure excludes: docs/footprint.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def core_modules() -> list[tuple[str, str]]:
    """(module, path) for each source of the core, from the one list,
    cmake/usmp_sources.cmake, read by the pattern its header promises: one
    `set(USMP_..._SOURCES` line, one path per line, a line `)`. A module is
    named after its file (usmp_record.c: record); usmp_device.c is the
    "device API"."""
    text = (ROOT / "cmake" / "usmp_sources.cmake").read_text()
    lists = re.findall(r"^set\((USMP_\w+_SOURCES)\n((?:[ \t]+\S+\n)+)\)$", text, re.M)
    if not lists:
        sys.exit("footprint: no source list found in cmake/usmp_sources.cmake")
    modules = []
    for _, body in lists:
        for path in body.split():
            stem = Path(path).stem.removeprefix("usmp_")
            modules.append(("device API" if stem == "device" else stem, path))
    return modules


CORE = core_modules()
GLUE = [
    ("crypto/common", "crypto/common/usmp_crypto_common.c"),
    ("mbedTLS backend", "crypto/mbedtls/usmp_crypto_mbedtls.c"),
]
ROOTS = ["usmp_connect", "usmp_send", "usmp_recv", "usmp_keepalive_tick", "usmp_close"]
# The mbedTLS 2.28 modules that implement what the backend uses: AES-GCM
# (aes, gcm, and cipher/cipher_wrap, through which gcm drives AES), SHA-256 and
# HMAC (md, sha256), X25519 (ecp, ecp_curves, bignum), and their helpers.
MBEDTLS_NEEDED = ["aes", "gcm", "cipher", "cipher_wrap", "md", "sha256", "ecp", "ecp_curves", "bignum",
                  "constant_time", "platform_util"]


@dataclass
class Profile:
    name: str
    defines: dict[str, int]
    note: str
    extra: list[str] = field(default_factory=list)  # --define, the same for every profile

    @property
    def flags(self) -> list[str]:
        return [f"-D{k}={v}" for k, v in self.defines.items()] + self.extra

    @property
    def core(self) -> list[tuple[str, str]]:
        """The core modules this profile's library uses. COBS frames
        datagrams over a serial line (cobs, and cobs_stream, the deframer of
        the UART transport): without datagram mode nothing calls them (the
        linked image keeps none of them), so their objects are shown but not
        counted in the profile's core total."""
        return [(n, s) for n, s in CORE
                if n not in ("cobs", "cobs_stream") or self.defines["USMP_DATAGRAM"]]


PROFILES = [
    Profile("device", {"USMP_SERVER": 0, "USMP_DATAGRAM": 0, "USMP_ERROR_TEXT": 1},
            "what ports/esp32 builds by default (client role, stream transport); the goals are judged on it"),
    Profile("smallest", {"USMP_SERVER": 0, "USMP_DATAGRAM": 0, "USMP_ERROR_TEXT": 0},
            "the device profile without usmp_strerror's sentences"),
    Profile("full", {"USMP_SERVER": 1, "USMP_DATAGRAM": 1, "USMP_ERROR_TEXT": 1},
            "every feature: the defaults of usmp_options.h"),
]
JUDGED = "device"
# Record keys as the key alone, a GCM context on the stack per record
# (usmp_options.h USMP_AEAD_KEEP_CONTEXT): what a device builds by default,
# RAM first. --define USMP_AEAD_KEEP_CONTEXT=1 measures the other setting.
AEAD_KEEP_CONTEXT_DEFAULT = 0

GOAL_CORE_FLASH = 4096        # core <= 4 KB flash on Cortex-M4 -Os
GOAL_CONTEXT = 512            # context <= 512 bytes plus the caller's record buffers
GOAL_HANDSHAKE_STACK = 1536   # handshake stack <= 1.5 KB, crypto library frames excluded

# Published comparison figures (flash, RAM), as given in issue 7; not
# re-measured here.
PUBLISHED = [
    ("mbedTLS TLS 1.3 client", "about 52 KB", "21.7 KB"),
    ("an EDHOC/OSCORE stack", "about 41 KB", "6.9 KB"),
]

FLAGS = ["-std=c99", "-Os", "-ffunction-sections", "-fdata-sections", "-fno-common",
         "-fstack-usage", "-fcallgraph-info=su",
         "-Wall", "-Wextra", "-Werror", "-Wcast-align=strict"]
INCLUDES = [f"-I{ROOT / 'include' / 'usmp'}", f"-I{ROOT / 'src'}", f"-I{ROOT / 'crypto' / 'common'}"]


@dataclass
class Target:
    name: str
    cc: list[str]
    prefix: str
    note: str


TARGETS = [
    Target("Cortex-M4", ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb"], "arm-none-eabi-",
           "arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -Os"),
    Target("rv32imc", ["riscv64-unknown-elf-gcc", "-march=rv32imc", "-mabi=ilp32", "-isystem", "/usr/include/newlib"],
           "riscv64-unknown-elf-", "riscv64-unknown-elf-gcc -march=rv32imc -mabi=ilp32 -Os"),
]


def sh(cmd: list[str]) -> str:
    done = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if done.returncode != 0:
        sys.exit(f"footprint: command failed: {' '.join(cmd)}\n{done.stderr}")
    return done.stdout


# --- sizes of sections -----------------------------------------------------------

@dataclass
class Size:
    text: int = 0
    rodata: int = 0
    data: int = 0
    bss: int = 0

    @property
    def flash(self) -> int:
        return self.text + self.rodata + self.data  # .data's initial values live in flash too

    @property
    def ram(self) -> int:
        return self.data + self.bss

    def add(self, section: str, size: int, strict: bool = True) -> None:
        kind = section_kind(section, strict)
        if kind:
            setattr(self, kind, getattr(self, kind) + size)

    def __iadd__(self, other: "Size") -> "Size":
        self.text += other.text
        self.rodata += other.rodata
        self.data += other.data
        self.bss += other.bss
        return self


def section_kind(section: str, strict: bool = True) -> str | None:
    """text, rodata, data or bss; None for what never reaches the target
    (.comment, attributes, debug). strict: unwind tables are an error (the
    targets' builds must have none); else (the x86-64 proxy) they are left
    out, as a microcontroller build would drop them."""
    # .data.rel.ro (x86-64 only): pointer tables, read-only once relocated.
    for prefix, kind in ((".text", "text"), (".rodata", "rodata"), (".srodata", "rodata"), (".data.rel.ro", "rodata"),
                         (".data", "data"), (".sdata", "data"), (".bss", "bss"), (".sbss", "bss"),
                         ("COMMON", "bss")):
        if section == prefix or section.startswith(prefix + "."):
            return kind
    if strict and section.startswith((".eh_frame", ".ARM.ex", ".init_array", ".fini_array")):
        sys.exit(f"footprint: unexpected section {section} would take flash; account for it")
    return None


def object_size(target: Target, obj: Path) -> Size:
    size = Size()
    for line in sh([target.prefix + "size", "-A", str(obj)]).splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit() and parts[0] not in ("Total",):
            size.add(parts[0], int(parts[1]))
    return size


def map_sizes(map_file: Path, strict: bool = True) -> dict[str, Size]:
    """Per input file (object or archive member), the bytes each kept input
    section takes in the linked image, from a GNU ld map file."""
    sizes: dict[str, Size] = {}
    text = map_file.read_text()
    text = text[text.index("Linker script and memory map"):]
    pending: str | None = None
    entry = re.compile(r"^ (\S+)?\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S+)$")
    for line in text.splitlines():
        if re.match(r"^ (\.\S+|COMMON)\s*$", line):
            pending = line.strip()
            continue
        m = entry.match(line)
        if m and (m.group(1) or pending):
            section = m.group(1) or pending
            assert section is not None
            if section.startswith((".", "COMMON")) and not m.group(3).startswith("0x"):
                sizes.setdefault(m.group(3), Size()).add(section, int(m.group(2), 16), strict)
        pending = None
    return sizes


# --- stack: -fstack-usage frames on the -fcallgraph-info call graph -----------------

@dataclass
class Graph:
    frame: dict[str, int] = field(default_factory=dict)      # node -> bytes
    dynamic: set[str] = field(default_factory=set)
    edges: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # node -> [(callee, call site)]
    file_of: dict[str, str] = field(default_factory=dict)


def read_callgraph(ci_files: list[Path]) -> Graph:
    g = Graph()
    node_re = re.compile(r'^node: \{ title: "([^"]+)" label: "([^"]*)"')
    edge_re = re.compile(r'^edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"(?: label: "([^"]*)")?')
    for ci in ci_files:
        for line in ci.read_text().splitlines():
            m = node_re.match(line)
            if m:
                title, label = m.group(1), m.group(2)
                s = re.search(r"\\n(\d+) bytes \(([a-z,]+)\)", label)
                if s:
                    g.frame[title] = int(s.group(1))
                    if "dynamic" in s.group(2):
                        g.dynamic.add(title)
                    g.file_of[title] = ci.stem
                continue
            m = edge_re.match(line)
            if m:
                g.edges.setdefault(m.group(1), []).append((m.group(2), m.group(3) or ""))
    return g


def classify_external(name: str) -> str:
    if name.startswith("mbedtls_"):
        return "mbedTLS library"
    if name.startswith("usmp_crypto_") or name.startswith("usmp_backend_"):
        return "crypto seam"
    if name.startswith("usmp_port_"):
        return "port hooks"
    if name in ("memcpy", "memset", "memmove", "memcmp", "memchr", "strlen", "strncmp"):
        return "libc"
    if name.startswith("__"):
        return "libgcc helpers"
    return "other"


def table_functions(target: Target, obj: Path, source: Path, g: Graph) -> tuple[list[str], str]:
    """The functions an object's function-pointer table may call (the
    engine's transition table), and how they were found.

    The device API runs the engine as a stream-mode client only, so the rows
    of the table for other roles and modes are left out when the table can
    be read from the source ({ roles, state, frame, modes, row, handler }).
    Otherwise every function whose address the object stores in its data
    (relocations of its .rodata/.data sections) counts: an upper bound."""
    text = source.read_text()
    rows = re.findall(r"\{\s*(R_\w+)\s*,\s*USMP_STATE_\w+\s*,\s*USMP_TYPE_\w+\s*,\s*(M_\w+)\s*,\s*\d+\s*,\s*(\w+)\s*\}", text)
    client_stream = {h for roles, modes, h in rows if roles in ("R_CLIENT", "R_BOTH") and modes in ("M_STREAM", "M_BOTH")}
    stored = set()
    in_data = False
    for line in sh([target.prefix + "readelf", "-rW", str(obj)]).splitlines():
        m = re.match(r"Relocation section '\.rela?(\.\S+)'", line)
        if m:
            in_data = m.group(1).startswith((".rodata", ".data", ".srodata", ".sdata"))
            continue
        parts = line.split()
        if in_data and len(parts) >= 5 and re.fullmatch(r"[0-9a-f]{8,16}", parts[0]):
            stored.add(parts[4].removeprefix(".text."))
    how = "the stream-client rows of the transition table"
    names = client_stream & stored
    if not rows or not names:
        names, how = stored, "every function the table stores (upper bound)"
    found = []
    for name in sorted(names):
        for node in (f"{source}:{name}", name):
            if node in g.frame:
                found.append(node)
                break
    return found, how


def indirect_targets(site: str, tables: dict[str, list[str]]) -> tuple[list[str], str]:
    """Resolves an indirect call by the source line it is on: the callees it
    may reach, or else the category it is reported under."""
    m = re.match(r"(.*):(\d+):\d+$", site)
    if not m:
        return [], "indirect call"
    line = Path(m.group(1)).read_text().splitlines()[int(m.group(2)) - 1]
    if "->random(" in line:
        # The engine's randomness callback: the device API installs port_random.
        return [f"{ROOT / 'src' / 'usmp_device.c'}:port_random"], ""
    if "->handler(" in line and tables.get(m.group(1)):
        # The engine's transition table (see table_functions).
        return tables[m.group(1)], ""
    if "psk_lookup(" in line:
        return [], "server PSK lookup (server role only)"
    if "transport" in line or re.search(r"\bt->(send|recv|close|reconnect|available)\(", line):
        return [], "transport (function pointer)"
    return [], f"unresolved indirect call at {Path(m.group(1)).name}:{m.group(2)}"


@dataclass
class StackResult:
    total: int
    path: list[tuple[str, int]]
    excluded: dict[str, int]      # category -> deepest USMP stack at which it is entered
    dynamic: bool


def worst_stack(g: Graph, root: str, include_glue: bool, tables: dict[str, list[str]]) -> StackResult:
    glue_files = {Path(src).stem for _, src in GLUE}
    memo: dict[str, tuple[int, list[tuple[str, int]]]] = {}
    excluded: dict[str, int] = {}
    dynamic = False

    def is_measured(node: str) -> bool:
        if node not in g.frame:
            return False
        return include_glue or g.file_of[node] not in glue_files

    def visit(node: str, depth_before: int, stack: tuple[str, ...]) -> tuple[int, list[tuple[str, int]]]:
        nonlocal dynamic
        if node in stack:
            sys.exit(f"footprint: recursion through {node}: the stack is unbounded")
        frame = g.frame[node]
        dynamic = dynamic or node in g.dynamic
        best, best_path = 0, []
        calls: list[tuple[str, str]] = []
        for callee, site in g.edges.get(node, []):
            if callee == "__indirect_call":
                resolved, category = indirect_targets(site, tables)
                calls.extend((r, "") for r in resolved)
                if category:
                    calls.append(("", category))
            else:
                calls.append((callee, ""))
        for callee, category in calls:
            if category or not is_measured(callee):
                if not category:
                    category = "crypto seam" if callee in g.frame else classify_external(callee)
                here = depth_before + frame
                excluded[category] = max(excluded.get(category, 0), here)
                continue
            sub, sub_path = visit(callee, depth_before + frame, stack + (node,))
            if sub > best:
                best, best_path = sub, sub_path
        return frame + best, [(node, frame)] + best_path

    total, path = visit(root, 0, ())
    return StackResult(total, path, excluded, dynamic)


# --- the measurements ------------------------------------------------------------

@dataclass
class TargetResult:
    modules: dict[str, Size]
    glue: dict[str, Size]
    linked: dict[str, Size]
    libgcc: Size
    sizes: dict[str, int]
    stack_core: dict[str, StackResult]
    stack_glue: dict[str, StackResult]
    frames: dict[str, int]
    dispatch: str


def compile_one(target: Target, src: Path, out: Path, extra: list[str]) -> Path:
    obj = out / (src.stem + ".o")
    sh(target.cc + FLAGS + INCLUDES + extra + ["-c", str(src), "-o", str(obj)])
    return obj


def measure_target(target: Target, profile: Profile, build: Path, mbedtls_include: Path) -> TargetResult:
    out = build / profile.name / target.name
    out.mkdir(parents=True, exist_ok=True)
    defs = profile.flags
    core_objs = {name: compile_one(target, ROOT / src, out, defs) for name, src in CORE}
    glue_objs = {name: compile_one(target, ROOT / src, out, defs + ["-isystem", str(mbedtls_include)])
                 for name, src in GLUE}
    image_obj = compile_one(target, HERE / "device_image.c", out, defs)
    sizes_obj = compile_one(target, HERE / "sizes.c", out, defs)

    modules = {name: object_size(target, obj) for name, obj in core_objs.items()}
    glue = {name: object_size(target, obj) for name, obj in glue_objs.items()}

    # The linked device image: --gc-sections from main; the crypto library,
    # port hooks and libc stay unresolved (left at 0, never run).
    elf, map_file = out / "device_image.elf", out / "device_image.map"
    sh(target.cc + ["-Os", "-nostdlib", "-Wl,--gc-sections", "-Wl,-e,main",
                    "-Wl,--unresolved-symbols=ignore-all",
                    f"-Wl,-Map,{map_file}", "-o", str(elf), str(image_obj)]
       + [str(o) for o in core_objs.values()] + [str(o) for o in glue_objs.values()] + ["-lgcc"])
    by_file = map_sizes(map_file)
    linked: dict[str, Size] = {}
    libgcc = Size()
    for path, size in by_file.items():
        for name, obj in list(core_objs.items()) + list(glue_objs.items()):
            if Path(path) == obj:
                linked[name] = size
        if "libgcc.a(" in path:
            libgcc += size

    symbol_sizes = {}
    for line in sh([target.prefix + "nm", "-S", str(sizes_obj)]).splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3].startswith("size_"):
            symbol_sizes[parts[3][5:]] = int(parts[1], 16)

    graph = read_callgraph(sorted(out.glob("*.ci")))
    tables, table_note = {}, {}
    for name, src in CORE:
        tables[str(ROOT / src)], table_note[name] = table_functions(target, core_objs[name], ROOT / src, graph)
    stack_core = {root: worst_stack(graph, root, False, tables) for root in ROOTS}
    stack_glue = {root: worst_stack(graph, root, True, tables) for root in ROOTS}
    return TargetResult(modules, glue, linked, libgcc, symbol_sizes, stack_core, stack_glue, graph.frame,
                        table_note["engine"])


def measure_x86_proxy(build: Path, profile: Profile) -> tuple[Size, list[str], Size, Size]:
    """x86-64 link of the core + glue against Debian's libmbedcrypto.a: the bytes
    of the archive members the linker pulls in (a proxy, not a target figure)."""
    out = build / profile.name / "x86-64"
    out.mkdir(parents=True, exist_ok=True)
    archive = Path("/usr/lib/x86_64-linux-gnu/libmbedcrypto.a")
    if not archive.exists():
        return Size(), [], Size(), Size()
    objs = []
    for _, src in CORE + GLUE + [("", str(HERE / "device_image.c"))]:
        obj = out / (Path(src).stem + ".o")
        sh(["gcc", "-std=c99", "-Os", "-fno-pie", "-ffunction-sections", "-fdata-sections", "-fno-asynchronous-unwind-tables"]
           + INCLUDES + profile.flags + ["-c", str(ROOT / src), "-o", str(obj)])
        objs.append(str(obj))
    map_file = out / "device_image.map"
    sh(["gcc", "-no-pie", "-nostdlib", "-Wl,--gc-sections", "-Wl,-e,main", "-Wl,--unresolved-symbols=ignore-all",
        f"-Wl,-Map,{map_file}", "-o", str(out / "device_image.elf")] + objs + [str(archive)])
    needed, pulled, members, ours = Size(), Size(), [], Size()
    for path, size in sorted(map_sizes(map_file, strict=False).items()):
        m = re.search(r"libmbedcrypto\.a\((.+)\)$", path)
        if m:
            module = m.group(1).removesuffix(".c.o")
            pulled += size
            if module in MBEDTLS_NEEDED:
                needed += size
                members.append(f"{module} {size.flash}")
        elif path in objs and not path.endswith("device_image.o"):
            ours += size
    return needed, members, ours, pulled


# --- output ----------------------------------------------------------------------

def kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


def verdict(value: int, goal: int) -> tuple[str, str]:
    return f"{value / goal:.2f}", ("met" if value <= goal else "MISSED")


def main() -> int:
    parser = argparse.ArgumentParser(description="USMP footprint on Cortex-M4 and rv32imc, in three feature profiles")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--build-dir", default=str(ROOT / "build" / "footprint"))
    parser.add_argument("--define", action="append", default=[], metavar="NAME=VALUE",
                        help="another option of usmp_options.h for every profile, e.g. USMP_LOG=0 (repeatable)")
    parser.add_argument("--details", action="store_true",
                        help="also print every stack path in full, and the size of every core function")
    args = parser.parse_args()
    for d in args.define:
        m = re.fullmatch(r"(USMP_[A-Z0-9_]+)=(\w+)", d)
        if not m or m.group(1) in PROFILES[0].defines:
            parser.error(f"--define {d}: NAME=VALUE, an option of usmp_options.h other than the profiles' own")
        for p in PROFILES:
            p.extra.append(f"-D{d}")
    if not any(d.startswith("USMP_AEAD_KEEP_CONTEXT=") for d in args.define):
        for p in PROFILES:
            p.extra.append(f"-DUSMP_AEAD_KEEP_CONTEXT={AEAD_KEEP_CONTEXT_DEFAULT}")

    for tool in ("arm-none-eabi-gcc", "riscv64-unknown-elf-gcc", "gcc"):
        if shutil.which(tool) is None:
            sys.exit(f"footprint: {tool} not found (see docs/footprint.md for the Debian packages)")
    if not Path("/usr/include/newlib/string.h").exists():
        sys.exit("footprint: /usr/include/newlib missing (Debian: libnewlib-dev)")

    build = Path(args.build_dir)
    if build.exists():
        shutil.rmtree(build)
    build.mkdir(parents=True)
    # mbedtls/ and psa/ alone: the host's glibc headers must not reach a cross compiler.
    mbedtls_include = build / "mbedtls-include"
    mbedtls_include.mkdir()
    for d in ("mbedtls", "psa"):
        if Path("/usr/include", d).is_dir():
            os.symlink(Path("/usr/include", d), mbedtls_include / d)
    mbedtls_version = re.search(r'MBEDTLS_VERSION_STRING\s+"([^"]+)"',
                                Path("/usr/include/mbedtls/version.h").read_text())
    mbedtls_text = mbedtls_version.group(1) if mbedtls_version else "?"
    gcc_version = sh(["arm-none-eabi-gcc", "-dumpversion"]).strip()
    rv_version = sh(["riscv64-unknown-elf-gcc", "-dumpversion"]).strip()

    # Every (profile, target) pair and every profile's x86-64 proxy is an
    # independent set of compiler runs in its own directory: run them side by side.
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        jobs = {(p.name, t.name): pool.submit(measure_target, t, p, build, mbedtls_include)
                for p in PROFILES for t in TARGETS}
        proxy_jobs = {p.name: pool.submit(measure_x86_proxy, build, p) for p in PROFILES}
        res = {key: job.result() for key, job in jobs.items()}
        proxies = {key: job.result() for key, job in proxy_jobs.items()}

    arm = {p.name: res[(p.name, "Cortex-M4")] for p in PROFILES}
    rv = {p.name: res[(p.name, "rv32imc")] for p in PROFILES}
    names = [p.name for p in PROFILES]

    rows: list[tuple[str, ...]] = []

    def section(title: str) -> None:
        rows.append(("##", title))

    def note(text: str) -> None:  # a line of the table without figures
        rows.append(("~~", text))

    def row(label: str, values: dict[str, tuple[str, str]], goal: str = "",
            verdicts: dict[str, str] | None = None) -> None:
        cells = [label]
        for n in names:
            cells += list(values.get(n, ("", "")))
        cells.append(goal)
        cells += [(verdicts or {}).get(n, "") for n in names]
        rows.append(tuple(cells))

    def each(fn) -> dict[str, tuple[str, str]]:
        """fn(TargetResult, profile) -> str, for both targets of every profile."""
        return {p.name: (str(fn(arm[p.name], p)), str(fn(rv[p.name], p))) for p in PROFILES}

    def judge(values: dict[str, int], goal: int) -> dict[str, str]:
        return {n: " ".join(verdict(values[n], goal)) for n in names}

    def total(sizes: dict[str, Size], modules: list[tuple[str, str]]) -> Size:
        t = Size()
        for name, _ in modules:
            t += sizes.get(name, Size())
        return t

    section("flash (text+rodata+data), bytes: object files, every function (rv32imc objects: before linker relaxation)")
    for name, _ in CORE:
        row(f"core: {name}", each(lambda r, p, name=name: r.modules[name].flash))
    core_flash = {p.name: total(arm[p.name].modules, p.core).flash for p in PROFILES}
    row("core total (cobs counted only with USMP_DATAGRAM)", each(lambda r, p: total(r.modules, p.core).flash),
        f"<= {GOAL_CORE_FLASH}", judge(core_flash, GOAL_CORE_FLASH))
    row("  static RAM (data+bss) of the core", each(lambda r, p: total(r.modules, CORE).ram))
    linked_flash = {p.name: total(arm[p.name].linked, CORE).flash for p in PROFILES}
    row("core linked into a device image (--gc-sections)", each(lambda r, p: total(r.linked, CORE).flash),
        f"<= {GOAL_CORE_FLASH}", judge(linked_flash, GOAL_CORE_FLASH))
    for name in ("engine", "error", "device API"):
        row(f"  of which {name}", each(lambda r, p, name=name: r.linked.get(name, Size()).flash))
    row("  libgcc helpers the core pulls in", each(lambda r, p: r.libgcc.flash))
    for name, _ in GLUE:
        row(f"crypto glue, not core: {name}", each(lambda r, p, name=name: r.glue[name].flash))

    section("RAM the application holds (static or stack), bytes")

    def ctx_without_buffers(r: TargetResult, p: Profile) -> int:
        return r.sizes["usmp_ctx_t"] - r.sizes["ctx_rx_buf"] - r.sizes["ctx_tx_buf"]

    row("sizeof(usmp_ctx_t)", each(lambda r, p: r.sizes["usmp_ctx_t"]))
    row("  record buffers rx_buf + tx_buf", each(lambda r, p: f"{r.sizes['ctx_rx_buf']}+{r.sizes['ctx_tx_buf']}"))
    ctx = {p.name: ctx_without_buffers(arm[p.name], p) for p in PROFILES}
    row("  context without the record buffers", each(ctx_without_buffers), f"<= {GOAL_CONTEXT}",
        judge(ctx, GOAL_CONTEXT))
    row("    of which sizeof(usmp_engine_t)", each(lambda r, p: r.sizes["usmp_engine_t"]))
    row("    of which its handshake union (hs)", each(lambda r, p: r.sizes["engine_hs"]))
    row("    of which in_buf (input chunk)", each(lambda r, p: r.sizes["ctx_in_buf"]))
    row("sizeof(usmp_transport_t)", each(lambda r, p: r.sizes["usmp_transport_t"]))

    section("worst-case stack, bytes: -fstack-usage frames on the -fcallgraph-info call graph")
    hs_stack = {p.name: arm[p.name].stack_glue["usmp_connect"].total for p in PROFILES}
    for root in ROOTS:
        label = {"usmp_connect": "usmp_connect (handshake)",
                 "usmp_keepalive_tick": "usmp_keepalive_tick (may reconnect)"}.get(root, root)
        row(f"{label}: core frames", each(lambda r, p, root=root: r.stack_core[root].total))
        glue_label = "  + crypto glue frames (mbedTLS library excluded)"
        if root == "usmp_connect":
            row(glue_label, each(lambda r, p, root=root: r.stack_glue[root].total),
                f"<= {GOAL_HANDSHAKE_STACK}", judge(hs_stack, GOAL_HANDSHAKE_STACK))
        else:
            row(glue_label, each(lambda r, p, root=root: r.stack_glue[root].total))

    section("comparison: flash / RAM, bytes")

    def ours_linked(r: TargetResult, p: Profile) -> int:
        return total(r.linked, CORE + GLUE).flash + r.libgcc.flash

    row("USMP core + crypto glue + libgcc, linked (flash)", each(ours_linked))
    note("  + the mbedTLS primitives on these targets: not measured")
    row("USMP RAM: usmp_ctx_t + handshake stack", each(lambda r, p: r.sizes["usmp_ctx_t"] + r.stack_glue["usmp_connect"].total))
    note("  + mbedTLS's heap and its own stack frames: not measured")
    note("x86-64 proxy, flash/static RAM, in the first column of each profile:")
    row("  the mbedTLS modules the backend uses", {n: (f"{proxies[n][0].flash}/{proxies[n][0].ram}", "") for n in names})
    row("  all mbedTLS objects that link pulls in", {n: (f"{proxies[n][3].flash}/{proxies[n][3].ram}", "") for n in names})
    row("  USMP core + glue in the same x86-64 link, -Os", {n: (f"{proxies[n][2].flash}/{proxies[n][2].ram}", "") for n in names})
    for name, flash, ram in PUBLISHED:
        note(f"published: {name}: {flash} flash / {ram} RAM")

    # --- print
    header = ["measure"]
    for n in names:
        header += [f"{n} M4", f"{n} rv32"]
    header.append("goal (M4)")
    header += names
    s_arm = arm[JUDGED].sizes
    title = (f"USMP footprint -- three feature profiles, USMP_MAX_RECORD {s_arm['option_max_record']}, "
             f"USMP_MAX_MESSAGE {s_arm['option_max_message']}; M4 = Cortex-M4 (arm-none-eabi-gcc {gcc_version}), "
             f"rv32 = rv32imc (riscv64-unknown-elf-gcc {rv_version}), -Os; mbedTLS headers {mbedtls_text} (Debian); "
             f"verdicts: ratio to the goal on Cortex-M4"
             + (f"; every profile also with {' '.join('-D' + d for d in args.define)}" if args.define else ""))
    profile_lines = [f"  {p.name}: {' '.join(p.flags)} -- {p.note}" for p in PROFILES]
    if args.markdown:
        print(f"**{title}**\n")
        print("Profiles:\n")
        for p in PROFILES:
            print(f"- **{p.name}**: `{' '.join(p.flags)}` -- {p.note}")
        print()
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r_ in rows:
            if r_[0] == "##":
                print(f"| **{r_[1]}** |" + " |" * (len(header) - 1))
            elif r_[0] == "~~":
                print(f"| {r_[1].strip()} |" + " |" * (len(header) - 1))
            else:
                print("| " + " | ".join(r_) + " |")
    else:
        widths = [max(len(r_[i]) for r_ in rows + [tuple(header)] if r_[0] not in ("##", "~~"))
                  for i in range(len(header))]
        print(title)
        print("Profiles:")
        print("\n".join(profile_lines))
        line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
        print(line)
        print("-" * len(line))
        for r_ in rows:
            if r_[0] == "##":
                print(f"-- {r_[1]}")
            elif r_[0] == "~~":
                print(r_[1])
            else:
                print("  ".join(c.ljust(w) for c, w in zip(r_, widths)).rstrip())

    # --- notes: what each stack figure leaves out, and the worst paths
    if args.markdown:
        print("\n```text", end="")
    print()
    dispatch = {p.name: arm[p.name].dispatch for p in PROFILES}
    print(f"Stack: the engine's dispatch through its transition table is resolved to {dispatch[JUDGED]}"
          + ("" if len(set(dispatch.values())) == 1 else f" ({dispatch})") + ", in every profile.")

    def exclusions(n: str, root: str) -> str:
        a, b = arm[n].stack_glue[root], rv[n].stack_glue[root]
        cats = sorted(set(a.excluded) | set(b.excluded))
        text = "; ".join(f"{c} at {a.excluded.get(c, '-')} / {b.excluded.get(c, '-')}" for c in cats)
        if a.dynamic or b.dynamic:
            text += "; a frame on the path is dynamic (VLA/alloca): the figure is a lower bound"
        return text

    print(f"What the figures leave out, and the USMP stack depth at which each is entered (Cortex-M4 / rv32imc), "
          f"{JUDGED} profile:")
    for root in ROOTS:
        print(f"  {root}: {exclusions(JUDGED, root)}")
    for n in names:
        if n == JUDGED:
            continue
        differ = [root for root in ROOTS if exclusions(n, root) != exclusions(JUDGED, root)]
        if not differ:
            print(f"  {n} profile: the same")
        for root in differ:
            print(f"  {n} profile, {root}: {exclusions(n, root)}")
    print()

    def path_text(n: str, kind: str, root: str) -> str:
        path = (arm[n].stack_core if kind == "core" else arm[n].stack_glue)[root].path
        shown = path if args.details else path[:12]
        return (" > ".join(f"{node.split(':')[-1]} {f}" for node, f in shown)
                + (" > ..." if len(shown) < len(path) else ""))

    print(f"Worst paths on Cortex-M4, frame bytes (core frames only, then core + crypto glue), {JUDGED} profile:")
    for kind in ("core", "core + glue"):
        for root in ROOTS:
            print(f"  {root} [{kind}]: {path_text(JUDGED, kind, root)}")
    for n in names:
        if n == JUDGED:
            continue
        differ_paths = [(kind, root) for kind in ("core", "core + glue") for root in ROOTS
                        if path_text(n, kind, root) != path_text(JUDGED, kind, root)]
        if not differ_paths:
            print(f"  {n} profile: the same paths")
        for kind, root in differ_paths:
            print(f"  {n} profile, {root} [{kind}]: {path_text(n, kind, root)}")
    print()
    print("x86-64 proxy for the mbedTLS primitives: Debian's libmbedcrypto.a (mbedTLS "
          f"{mbedtls_text}, Debian's -O2 build, whole object files, "
          f"self-tests and unused features included): the modules the backend needs, flash bytes ({JUDGED} profile):")
    print("  " + ", ".join(proxies[JUDGED][1]))
    print()

    if args.markdown:
        print("```")
    goals = [("core", core_flash, GOAL_CORE_FLASH), ("context", ctx, GOAL_CONTEXT),
             ("handshake stack", hs_stack, GOAL_HANDSHAKE_STACK)]
    print("footprint (Cortex-M4; goals: " + ", ".join(f"{what} <= {goal}" for what, _, goal in goals) + " B): "
          + "; ".join(f"{n} " + ", ".join(f"{values[n]} {verdict(values[n], goal)[1]}" for _, values, goal in goals)
                      for n in names))
    if args.details:
        for p in PROFILES:
            print()
            print(f"Core functions on Cortex-M4, {p.name} profile, bytes (nm -S), largest first:")
            for name, src in CORE:
                obj = build / p.name / "Cortex-M4" / (Path(src).stem + ".o")
                syms = []
                for line in sh(["arm-none-eabi-nm", "-S", "-t", "d", str(obj)]).splitlines():
                    parts = line.split()
                    if len(parts) == 4:
                        syms.append((int(parts[1]), parts[3], parts[2]))
                syms.sort(reverse=True)
                print(f"  {name}: " + ", ".join(f"{n} {sz}{' (data)' if t in 'rRdDbB' else ''}" for sz, n, t in syms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
