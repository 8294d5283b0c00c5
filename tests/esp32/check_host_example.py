#!/usr/bin/python3
"""Builds examples/esp32_echo on the host against the ESP-IDF stand-ins and
runs it against the Python gateway (`usmp serve`), checking the echo exchange.

What is real and what is a stand-in:
  real        examples/esp32_echo (main.c, both CMakeLists.txt, Kconfig.projbuild,
              sdkconfig.defaults), ports/esp32/usmp (CMakeLists.txt, Kconfig,
              usmp_port_esp32.c), the core, the mbedTLS backend (against the
              host's mbedTLS 2.28, not ESP-IDF's 3.x), transports/usmp_tcp.c (on
              the host's BSD sockets, with ESP_PLATFORM defined), echo_app.c, and
              the Python gateway;
  stand-in    ESP-IDF's build system (tests/esp32/stand-ins/idf) and the ESP-IDF /
              FreeRTOS calls (tests/esp32/stand-ins/components): Wi-Fi "connects"
              to 127.0.0.1 at once, NVS is read from an nvs_partition_gen CSV,
              esp_read_mac returns 02:00:00:e5:32:01.

Three builds of the example, one per feature profile of the component
(menuconfig > USMP), where the example finds the component as a checkout
does (EXTRA_COMPONENT_DIRS=ports/esp32, whose usmp/ includes the root's
registration):
  build-nvs         the component's defaults, the device profile: no server
                    role, no datagram mode, error sentences (USMP_SERVER=0,
                    USMP_DATAGRAM=0, USMP_ERROR_TEXT=1)
  build-menuconfig  the smallest profile (also USMP_ERROR_TEXT=0), PSK from menuconfig
  build-full        every feature on (USMP_SERVER=1, USMP_DATAGRAM=1, USMP_ERROR_TEXT=1)
For each: the component's compile definitions (with
USMP_AEAD_KEEP_CONTEXT=0, the Kconfig default) reach every file of the
library and of the application (compile_commands.json), and the library's
symbols and strings show the features compiled in or out.

Two more builds, of a project of its own that holds the example's
application in main/ and gets the usmp component only as a dependency
carries it (the repository root is the component: CMakeLists.txt, Kconfig,
idf_component.yml):
  build-git-dependency       `git clone` of the repository (its committed
                             HEAD) as the project's components/usmp
  build-packed-dependency    the same clone packed by the `files` rules of
                             idf_component.yml, as a registry upload is, and
                             unpacked as managed_components/usmp: the rules
                             leave tests, python, spec, docs, tools, bench
                             out, and keep every file the build needs
Both take the component's defaults (the device profile) and are run like
the nvs run below.

Runs, each judged by the log lines of the example and of the gateway:
  nvs          PSK from NVS, the CSV as `usmp device add --nvs-csv` wrote it: every
               message echoed; the session id the device logs
               is the one the gateway logs for device 020000e53201
  menuconfig   PSK from menuconfig (the smallest profile): every message echoed
  full         PSK from NVS, every feature compiled in: every message echoed
  no-psk       no PSK anywhere: refuses, says how to provision, never connects
  short-psk    an 8-byte PSK in NVS: refused before connecting
  wrong-psk    another device's key: the handshake fails with AUTH_FAILED, and
               usmp_strerror's sentence is printed (error text compiled in)
  git-dependency, packed-dependency
               PSK from NVS: every message echoed
In every run, no byte of a key appears in the output, hex or otherwise.

usage: check_host_example.py [--build-dir DIR]      (default build/esp32-host)
Ends with "esp32 host example: N checks passed, M failed"; exit 1 on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STANDIN_IDF = ROOT / "tests" / "esp32" / "stand-ins" / "idf"
EXAMPLE = ROOT / "examples" / "esp32_echo"
PYTHON = "/usr/bin/python3"
DEVICE_ID = "020000e53201"  # the stand-in esp_read_mac's default
RUN_TIMEOUT = 30

checks = {"passed": 0, "failed": 0}


def check(condition: bool, what: str, detail: str = "") -> bool:
    if condition:
        checks["passed"] += 1
        print(f"  ok    {what}")
    else:
        checks["failed"] += 1
        print(f"  FAIL  {what}" + (f"\n{detail}" if detail else ""))
    return condition


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                          timeout=timeout)


def build(build_dir: Path, sdkconfig: Mapping[str, str | None], project: Path = EXAMPLE) -> Path | None:
    """Configures and builds the project (the example unless told) with the
    stand-in ESP-IDF; returns the program. A value of None is a bool turned
    off ("# CONFIG_X is not set")."""
    build_dir.mkdir(parents=True, exist_ok=True)
    config_file = build_dir / "sdkconfig"
    config_file.write_text("".join(f"CONFIG_{k}={v}\n" if v is not None else f"# CONFIG_{k} is not set\n"
                                   for k, v in sdkconfig.items()))
    env = dict(os.environ, IDF_PATH=str(STANDIN_IDF))
    configure = run(["cmake", "-S", str(project), "-B", str(build_dir / "cmake"), f"-DSDKCONFIG={config_file}",
                     "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"], env=env)
    what = "example CMakeLists.txt" if project == EXAMPLE else f"{project.name}/CMakeLists.txt"
    if not check(configure.returncode == 0, f"configure {build_dir.name} ({what} + stand-in project.cmake)", configure.stdout):
        return None
    compiled = run(["cmake", "--build", str(build_dir / "cmake"), "-j", str(os.cpu_count() or 2)], env=env)
    if not check(compiled.returncode == 0, f"build {build_dir.name} with -Wall -Wextra -Werror", compiled.stdout[-6000:]):
        return None
    return build_dir / "cmake" / "usmp_esp32_echo.elf"


# The feature profiles (include/usmp/usmp_options.h) the three builds must
# give, as the -D values the component's CMakeLists.txt passes on.
# USMP_AEAD_KEEP_CONTEXT=0 in all three: the Kconfig default (RAM first),
# which sizes usmp_engine_t's record keys and so must reach every file too.
DEVICE = {"USMP_SERVER": "0", "USMP_DATAGRAM": "0", "USMP_ERROR_TEXT": "1", "USMP_AEAD_KEEP_CONTEXT": "0"}
SMALLEST = {"USMP_SERVER": "0", "USMP_DATAGRAM": "0", "USMP_ERROR_TEXT": "0", "USMP_AEAD_KEEP_CONTEXT": "0"}
FULL = {"USMP_SERVER": "1", "USMP_DATAGRAM": "1", "USMP_ERROR_TEXT": "1", "USMP_AEAD_KEEP_CONTEXT": "0"}
# What each feature leaves in the library when compiled in: a global symbol
# (server role and datagram mode together: the cookie; datagram mode: the
# replay window) or a string (an error sentence).
FEATURE_MARKS = {
    "USMP_SERVER": ("symbol", "usmp_cookie_compute"),   # needs USMP_SERVER and USMP_DATAGRAM
    "USMP_DATAGRAM": ("symbol", "usmp_replay_check"),
    "USMP_ERROR_TEXT": ("string", "tampered handshake"),
}


def check_profile(build_dir: Path, want: dict[str, str], name: str) -> None:
    """The component's feature definitions reach every file that includes
    usmp.h, in the library and in the application, with the values of the
    profile; and the library holds the features' code exactly when they are on."""
    try:
        commands = json.loads((build_dir / "cmake" / "compile_commands.json").read_text())
    except (OSError, ValueError) as e:
        check(False, f"{name}: compile_commands.json readable", str(e))
        return
    ours = [c for c in commands
            if "/esp-idf/usmp" in c.get("directory", "") or "/esp-idf/main" in c.get("directory", "")]
    wrong = []
    for c in ours:
        got = dict(re.findall(r"-D(USMP_(?:SERVER|DATAGRAM|ERROR_TEXT|AEAD_KEEP_CONTEXT))=(\d+)", c["command"]))
        if got != want:
            wrong.append(f"{Path(c['file']).name}: {got}")
    in_main = sum(1 for c in ours if "/esp-idf/main" in c["directory"])
    check(len(ours) >= 12 and in_main >= 2 and not wrong,
          f"{name}: {' '.join(f'{k}={v}' for k, v in want.items())} on all {len(ours)} files of the "
          f"component and the application ({in_main} in main)", "\n".join(wrong) or f"{len(ours)} files")

    archive = build_dir / "cmake" / "esp-idf" / "usmp" / "lib__idf_usmp.a"
    nm = run(["nm", "-g", "--defined-only", str(archive)])
    symbols = set(re.findall(r"^[0-9a-f]+ [A-Z] (\S+)$", nm.stdout, re.M))
    blob = archive.read_bytes() if archive.exists() else b""
    problems = []
    for feature, (kind, mark) in FEATURE_MARKS.items():
        present = mark in symbols if kind == "symbol" else mark.encode() in blob
        expected = want[feature] == "1" and (feature != "USMP_SERVER" or want["USMP_DATAGRAM"] == "1")
        if present != expected:
            problems.append(f"{feature}: {kind} {mark!r} {'present' if present else 'absent'}")
    check(nm.returncode == 0 and "usmp_connect" in symbols and not problems,
          f"{name}: the library holds the code of exactly the features compiled in",
          "\n".join(problems) or nm.stdout[-2000:])


class Gateway:
    """`usmp serve` on 127.0.0.1, any free port, echo mode."""

    def __init__(self, psk_file: Path, log: Path) -> None:
        self.log_path = log
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "usmp", "serve", "--host", "127.0.0.1", "--port", "0", "--psk-file", str(psk_file)],
            cwd=ROOT / "python" / "src",
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.port = 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"^listening on 127\.0\.0\.1:(\d+) ", self.text(), re.M)
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.05)

    def text(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def run_example(program: Path, nvs_csv: Path | None, log: Path, mdns_answer: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USMP_STANDIN_")}
    if nvs_csv is not None:
        env["USMP_STANDIN_NVS_CSV"] = str(nvs_csv)
    if mdns_answer is not None:
        env["USMP_STANDIN_MDNS_ANSWER"] = mdns_answer
    try:
        done = run([str(program)], env=env, timeout=RUN_TIMEOUT)
        out = done.stdout + ("" if done.returncode == 0 else f"\n[exit status {done.returncode}]")
    except subprocess.TimeoutExpired as e:
        partial = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        out = partial + f"\n[killed after {RUN_TIMEOUT} s]"
    log.write_text(out)
    return out


def defines(header: str) -> dict[str, str]:
    return dict(re.findall(r"^#define (CONFIG_USMP_\w+) (.*)$", header, re.M))


def check_kconfig(build_dir: Path, component_kconfig: Path = ROOT / "ports" / "esp32" / "usmp" / "Kconfig",
                  project: Path = EXAMPLE) -> None:
    """Parses the component's Kconfig (the one ESP-IDF reads for the
    component's directory) and the project's Kconfig.projbuild with
    kconfiglib (the Kconfig implementation ESP-IDF's own is derived from),
    applies sdkconfig.defaults and the build's sdkconfig as ESP-IDF would,
    and compares its sdkconfig.h with the one the stand-in build system
    generated for that build."""
    try:
        import kconfiglib  # type: ignore
    except ImportError:
        note = "kconfiglib missing (Debian: python3-kconfiglib)"
        if os.environ.get("CI") == "true":
            check(False, f"Kconfig files parsed by kconfiglib: {note}")
        else:
            print(f"  skip  Kconfig files parsed by kconfiglib: {note}")
        return
    top = build_dir / "Kconfig.top"
    top.write_text(
        'mainmenu "USMP echo example (test)"\n'
        f'menu "Component config"\nsource "{component_kconfig}"\nendmenu\n'
        f'source "{project / "main" / "Kconfig.projbuild"}"\n'
    )
    k = kconfiglib.Kconfig(str(top), warn_to_stderr=False)
    check(not k.warnings, "Kconfig and Kconfig.projbuild parse without warnings", "\n".join(k.warnings))
    k.load_config(str(project / "sdkconfig.defaults"), replace=False)
    k.load_config(str(build_dir / "sdkconfig"), replace=False)
    ours = build_dir / "kconfiglib-sdkconfig.h"
    k.write_autoconf(str(ours))
    expected = defines(ours.read_text())
    got = defines((build_dir / "cmake" / "config" / "sdkconfig.h").read_text())
    # The detail, if any, leaves the (test) key out of the log.
    hide = {"CONFIG_USMP_ECHO_PSK_HEX": "<key>"}
    check(expected == got and len(expected) >= 11, f"the stand-in's CONFIG_USMP_* values match kconfiglib's ({len(expected)} options)",
          f"kconfiglib: {dict(expected, **hide)}\nstand-in:  {dict(got, **hide)}")


# --- the repository as a dependency ------------------------------------------

def source_lists(component: Path) -> dict[str, list[str]]:
    """The lists of cmake/usmp_sources.cmake, read with the simple pattern its
    header comment promises other tools may use."""
    text = (component / "cmake" / "usmp_sources.cmake").read_text()
    return {m.group(1): m.group(2).split()
            for m in re.finditer(r"^set\((USMP_\w+_SOURCES)\n((?:[ \t]+\S+\n)+)\)$", text, re.M)}


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A `files` pattern of idf_component.yml as a regular expression over
    paths relative to the component: `**` as a whole segment matches any
    number of directories (at the end: everything below), `*` and `?`
    stay within one segment."""
    parts = pattern.split("/")
    rx = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            rx += ".*" if last else "(?:[^/]+/)*"
        else:
            rx += "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in part)
            rx += "" if last else "/"
    return re.compile(rx + r"\Z")


def pack_by_manifest(source: Path, dest: Path) -> list[str]:
    """Copies the files of `source` (a clone: tracked files and .git) that the
    `files: exclude` rules of its idf_component.yml keep, as a registry
    upload packs them; returns their relative paths."""
    import yaml  # Debian: python3-yaml

    manifest = yaml.safe_load((source / "idf_component.yml").read_text())
    excludes = [glob_regex(p) for p in manifest.get("files", {}).get("exclude", [])]
    kept = []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source).as_posix()
        if path.is_dir() or rel.startswith(".git/") or any(rx.match(rel) for rx in excludes):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest / rel)
        kept.append(rel)
    return kept


def dependency_project(project: Path) -> None:
    """A project of its own: the example's application (main.c, its
    Kconfig.projbuild and idf_component.yml, the shared echo_app) copied into main/, and a
    CMakeLists.txt that names no component directory, so that usmp can come
    only from components/ or managed_components/."""
    main = project / "main"
    main.mkdir(parents=True)
    for f in (EXAMPLE / "main" / "main.c", EXAMPLE / "main" / "Kconfig.projbuild",
              EXAMPLE / "main" / "idf_component.yml",
              ROOT / "examples" / "common" / "echo_app.c", ROOT / "examples" / "common" / "echo_app.h"):
        shutil.copy2(f, main / f.name)
    shutil.copy2(EXAMPLE / "sdkconfig.defaults", project / "sdkconfig.defaults")
    (main / "CMakeLists.txt").write_text(
        'idf_component_register(SRCS "main.c" "echo_app.c" INCLUDE_DIRS "."\n'
        '                       PRIV_REQUIRES usmp esp_wifi esp_netif esp_event nvs_flash mdns)\n')
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\n"
        "include($ENV{IDF_PATH}/tools/cmake/project.cmake)\n"
        "project(usmp_esp32_echo)\n")


def build_dependencies(work: Path, base: Mapping[str, str]) -> tuple[Path | None, Path | None]:
    """Builds the dependency project twice: with a git clone of the repository
    as components/usmp, and with that clone packed by idf_component.yml's
    rules as managed_components/usmp. Returns the two programs."""
    git_project = work / "git-dependency"
    dependency_project(git_project)
    clone = git_project / "components" / "usmp"
    cloned = run(["git", "clone", "--quiet", str(ROOT), str(clone)])
    head = run(["git", "-C", str(clone), "rev-parse", "--short", "HEAD"]).stdout.strip()
    if not check(cloned.returncode == 0, f"git clone of the repository (HEAD {head}) as components/usmp", cloned.stdout):
        return None, None
    lists = source_lists(clone)
    listed = [f for files in lists.values() for f in files]
    check(set(lists) == {"USMP_ENGINE_SOURCES", "USMP_DEVICE_SOURCES"} and len(listed) >= 7
          and all((clone / f).is_file() for f in listed),
          f"cmake/usmp_sources.cmake: {len(listed)} sources in {len(lists)} lists, read by its documented pattern, all present",
          str(lists))
    program_git = build(work / "build-git-dependency", base, git_project)

    packed_project = work / "packed-dependency"
    dependency_project(packed_project)
    packed = packed_project / "managed_components" / "usmp"
    kept = pack_by_manifest(clone, packed)
    top = {rel.split("/")[0] for rel in kept}
    left_out = {"tests", "python", "spec", "docs", "tools", "bench", ".ci"} & top
    needed = listed + ["CMakeLists.txt", "Kconfig", "idf_component.yml", "ports/esp32/usmp/Kconfig",
                       "ports/esp32/usmp/options.cmake", "ports/esp32/usmp/usmp_port_esp32.c",
                       "crypto/mbedtls/usmp_crypto_mbedtls.c", "transports/usmp_tcp.c", "include/usmp/usmp.h"]
    missing = [f for f in needed if f not in kept]
    check(not left_out and not missing and "examples/esp32_echo/main/main.c" in kept,
          f"idf_component.yml's files rules keep {len(kept)} files (top level: {' '.join(sorted(top))}), "
          "every one the build needs, no tests, python, spec, docs, tools or bench",
          f"not left out: {sorted(left_out)}\nmissing: {missing}")
    program_packed = build(work / "build-packed-dependency", base, packed_project)
    if program_git is not None:
        check_kconfig(work / "build-git-dependency", clone / "Kconfig", git_project)
    if program_packed is not None:
        check_kconfig(work / "build-packed-dependency", packed / "Kconfig", packed_project)
    return program_git, program_packed


def nvs_csv(path: Path, psk_hex: str, boot_count: int | None = None) -> Path:
    # The input format of ESP-IDF's nvs_partition_gen.py, as docs/esp32.md uses it.
    text = f"key,type,encoding,value\nusmp,namespace,,\npsk,data,hex2bin,{psk_hex}\n"
    if boot_count is not None:
        text += f"boot_count,data,u64,{boot_count}\n"
    path.write_text(text)
    return path


def no_key_in(text: str, keys: list[bytes]) -> bool:
    low = text.lower()
    for key in keys:
        for chunk in range(0, len(key) - 7):  # any 8 consecutive key bytes, in hex
            if key[chunk : chunk + 8].hex() in low:
                return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", default=str(ROOT / "build" / "esp32-host"))
    args = parser.parse_args()
    work = Path(args.build_dir)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)

    # This device's key comes from the device registry, which also writes
    # the NVS CSV the nvs run flashes (docs/registry.md); the other
    # device's key from usmp keygen.
    registry_csv = (work / "nvs-registry.csv").resolve()
    registry = (work / "devices.db").resolve()
    added = subprocess.run([PYTHON, "-m", "usmp", "device", "add", "--id", DEVICE_ID, "--registry", str(registry),
                            "--nvs-csv", str(registry_csv)], cwd=ROOT / "python" / "src", text=True, capture_output=True)
    psk_hex = added.stdout.strip()
    if not check(added.returncode == 0 and re.fullmatch(r"[0-9a-f]{64}", psk_hex) is not None and registry_csv.exists(),
                 "usmp device add prints 64 hex digits and writes the NVS CSV", added.stdout + added.stderr):
        return 1
    keygen = run([PYTHON, "-m", "usmp", "keygen"], cwd=ROOT / "python" / "src")
    other_hex = keygen.stdout.strip()  # the key of another device: the wrong one here
    if not check(keygen.returncode == 0 and re.fullmatch(r"[0-9a-f]{64}", other_hex) is not None, "usmp keygen gives 64 hex digits", keygen.stdout):
        return 1
    keys = [bytes.fromhex(psk_hex), bytes.fromhex(other_hex)]
    psk_file = work / "gateway.psk"
    psk_file.write_text(f"# device_id psk\n{DEVICE_ID} {psk_hex}\n0200000000ff {other_hex}\n")
    os.chmod(psk_file, 0o600)

    gateway = Gateway(psk_file, work / "gateway.log")
    try:
        if not check(gateway.port > 0, "usmp serve is listening", gateway.text()):
            return 1
        base = {
            "USMP_ECHO_WIFI_SSID": '"host-stand-in"',
            "USMP_ECHO_GATEWAY_HOST": '"127.0.0.1"',
            "USMP_ECHO_GATEWAY_PORT": str(gateway.port),
        }
        # The first build takes the component's defaults (the device
        # profile); the other two set the feature options as menuconfig would.
        program = build(work / "build-nvs", base)
        program_menuconfig = build(work / "build-menuconfig",
                                   dict(base, USMP_ECHO_PSK_HEX=f'"{psk_hex}"', USMP_ERROR_TEXT=None))
        # The full build names no gateway host: it finds the gateway on mDNS
        # (the stand-in's answer), and the port it is given is a wrong one.
        program_full = build(work / "build-full", dict(base, USMP_SERVER="y", USMP_DATAGRAM="y",
                                                       USMP_ECHO_GATEWAY_HOST='""', USMP_ECHO_GATEWAY_PORT="1"))
        if program is None or program_menuconfig is None or program_full is None:
            return 1
        program_git, program_packed = build_dependencies(work, base)
        if program_git is None or program_packed is None:
            return 1
        for name in ("build-nvs", "build-menuconfig", "build-full"):
            check_kconfig(work / name)
        check_profile(work / "build-nvs", DEVICE, "device profile (defaults)")
        check_profile(work / "build-menuconfig", SMALLEST, "smallest profile")
        check_profile(work / "build-full", FULL, "full build")
        check_profile(work / "build-git-dependency", DEVICE, "git dependency (defaults)")
        check_profile(work / "build-packed-dependency", DEVICE, "packed dependency (defaults)")
        outputs = []

        print("run nvs: PSK from NVS, the CSV written by usmp device add")
        out = run_example(program, registry_csv, work / "run-nvs.log")
        outputs.append(out)
        check("PSK: 32 bytes from NVS" in out, "the PSK was read from NVS", out)
        check("boot counter: 1\n" in out, "the first boot counter, 1, was stored in NVS and used", out)
        echoes = re.findall(r'sent (\d+) bytes as \d+ on the wire, echo of (\d+) bytes', out)
        check(echoes == [("19", "19"), ("17", "17"), ("0", "0")], "three messages sent and echoed, the empty one included", out)
        check("echo test passed: every message came back unchanged" in out, "the example reports success", out)
        m = re.search(r"session ([0-9a-f]{16}) established", out)
        sid = m.group(1) if m else "?"
        time.sleep(0.3)  # let the gateway log the close
        gw = gateway.text()
        check(re.search(rf"^open {sid} device {DEVICE_ID} from 127\.0\.0\.1:", gw, re.M) is not None,
              f"the gateway opened session {sid} for device {DEVICE_ID}", gw)
        check(re.search(rf"^close {sid}", gw, re.M) is not None, "the gateway closed that session", gw)

        print("run menuconfig: PSK from menuconfig, NVS empty, the smallest profile")
        out = run_example(program_menuconfig, None, work / "run-menuconfig.log")
        outputs.append(out)
        check("PSK: 32 bytes from menuconfig" in out, "the PSK was read from menuconfig", out)
        check("echo test passed" in out, "the example reports success", out)

        print("run full: PSK from NVS, every feature compiled in, boot counter 41 in NVS, gateway from mDNS")
        txt = "v=1,suites=1,name=host-gw,transports=tcp"
        out = run_example(program_full, nvs_csv(work / "nvs-full.csv", psk_hex, 41), work / "run-full.log",
                          mdns_answer=f"host-gw;_usmp;_tcp;127.0.0.1;{gateway.port};{txt}")
        outputs.append(out)
        check("boot counter: 42\n" in out, "the boot counter in NVS was advanced from 41 to 42", out)
        check(f"gateway found on mDNS: host-gw at 127.0.0.1:{gateway.port}" in out
              and f"connecting to gateway 127.0.0.1:{gateway.port}" in out,
              "no host in menuconfig: the gateway and its port come from mDNS", out)
        echoes = re.findall(r'sent (\d+) bytes as \d+ on the wire, echo of (\d+) bytes', out)
        check(echoes == [("19", "19"), ("17", "17"), ("0", "0")] and "echo test passed" in out,
              "the full build echoes all three messages too", out)

        for label, answer in (("nothing", None),
                              ("only a version 2 gateway", f"host-gw;_usmp;_tcp;127.0.0.1;{gateway.port};v=2"),
                              ("only another service", f"printer;_ipp;_tcp;127.0.0.1;{gateway.port};v=1")):
            print(f"run mdns: {label} on mDNS")
            opens_before = gateway.text().count("\nopen ")
            out = run_example(program_full, nvs_csv(work / "nvs-mdns.csv", psk_hex), work / "run-mdns.log",
                              mdns_answer=answer)
            outputs.append(out)
            check("no gateway answered on mDNS within 3000 ms" in out and "connecting to gateway" not in out,
                  f"{label} on mDNS: says so and connects nowhere", out)
            time.sleep(0.3)
            check(gateway.text().count("\nopen ") == opens_before, f"{label} on mDNS: no session opened",
                  gateway.text())

        for name, dependency_program in (("git-dependency", program_git), ("packed-dependency", program_packed)):
            print(f"run {name}: PSK from NVS, usmp from the {name.split('-')[0]} dependency")
            out = run_example(dependency_program, nvs_csv(work / f"nvs-{name}.csv", psk_hex), work / f"run-{name}.log")
            outputs.append(out)
            echoes = re.findall(r'sent (\d+) bytes as \d+ on the wire, echo of (\d+) bytes', out)
            check(echoes == [("19", "19"), ("17", "17"), ("0", "0")] and "echo test passed" in out,
                  f"{name}: every message echoed", out)

        print("run no-psk: no PSK anywhere")
        opens_before = gateway.text().count("\nopen ")
        out = run_example(program, None, work / "run-no-psk.log")
        outputs.append(out)
        check("no PSK: this device has no key, and there is no default one" in out, "refuses without a PSK", out)
        check(f"usmp device add --id {DEVICE_ID} --nvs-csv" in out and f"add the line '{DEVICE_ID} <key>'" in out
              and "nvs_partition_gen.py" in out and "menuconfig" in out,
              "says how to provision one, naming this device", out)
        check("connecting to gateway" not in out and "Wi-Fi: connected" not in out, "never joins Wi-Fi or connects", out)

        print("run short-psk: an 8-byte PSK in NVS")
        out = run_example(program, nvs_csv(work / "nvs-short.csv", psk_hex[:16]), work / "run-short-psk.log")
        outputs.append(out)
        check("USMP needs 16 to 64" in out and "connecting to gateway" not in out, "refuses a short PSK before connecting", out)

        print("run wrong-psk: another device's key")
        out = run_example(program, nvs_csv(work / "nvs-wrong.csv", other_hex), work / "run-wrong-psk.log")
        outputs.append(out)
        check("echo test failed: PEER_ERROR" in out, "the gateway's ERROR is reported as PEER_ERROR", out)
        check("echo test failed: PEER_ERROR (peer reported an error" in out,
              "usmp_strerror gives the sentence (USMP_ERROR_TEXT on in the device profile)", out)
        check(f"the gateway refused with AUTH_FAILED: it does not know device {DEVICE_ID}" in out,
              "the example names the gateway's code, AUTH_FAILED", out)
        time.sleep(0.3)
        check(gateway.text().count("\nopen ") == opens_before, "the gateway opened no session for the refused runs", gateway.text())

        outputs.append(gateway.text())
        check(all(no_key_in(o, keys) for o in outputs), "no key bytes in any device or gateway output")
    finally:
        status = gateway.stop()
        check(status == 0, "the gateway stopped cleanly on SIGTERM", gateway.log_path.read_text())
    return 0


if __name__ == "__main__":
    rc = 1
    try:
        rc = main()
    finally:
        print(f"esp32 host example: {checks['passed']} checks passed, {checks['failed']} failed")
    sys.exit(1 if checks["failed"] or rc else 0)
