"""The tools the project runs, where each comes from, and the one host C compiler driver.

TOOLS is the single table of "is this tool here, and what brings it": `tools/setup.sh` installs
its Debian packages (`python3 -m device_sim.toolchain packages --missing`), the pytest plugin
turns a missing tool into a skip or, strict, a failure that says what to install, every
ToolchainError quotes it, and the README's list is checked against it by a test.

This module uses the standard library only: setup.sh runs it before the virtual environment
exists.

    python3 -m device_sim.toolchain packages [--missing]   # Debian packages, one line
    python3 -m device_sim.toolchain table                  # the table as Markdown
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from device_sim.errors import ToolchainError

SETUP_HINT = "or run `bash tools/setup.sh`"
COMPILE_TIMEOUT_S = 120.0


REPOSITORY = Path(__file__).resolve().parents[1]
# Renode has no Debian package: it is taken from PATH, else from the folder setup.sh unpacks the
# Mono build next to the project into (../shared/tools/renode, see its README).
RENODE_HOME = REPOSITORY / ".renode"
RENODE_TARBALLS = Path(os.environ.get("HARNESS_RENODE_TARBALLS")
                       or REPOSITORY.parent / "shared" / "tools" / "renode")
RENODE_HINT = ("install Renode's official package (the renode .deb or portable build from "
               "https://github.com/renode/renode/releases) so that `renode` is on PATH")


@dataclass(frozen=True)
class Tool:
    """One tool: the name code and test markers use, the Debian package that brings it."""

    name: str      # a binary on PATH, or a library named after itself ("newlib")
    package: str   # Debian package; "" when there is none (then `hint` says what to do)
    purpose: str   # what the project uses it for (README)
    hint: str = ""
    also_in: tuple[Path, ...] = ()  # where else to look, after PATH

    def find(self) -> str | None:
        """Where the tool is, or None when it is missing. A library is looked for the way
        its compiler looks for it."""
        if self.name in LIBRARIES:
            compiler, options = LIBRARIES[self.name]
            return _library_of(shutil.which(compiler), options)
        found = shutil.which(self.name)
        for folder in self.also_in:
            if found is None:
                found = next(iter(sorted(folder.glob(f"*/{self.name}"))), None)
        return None if found is None else str(found)


TOOLS: dict[str, Tool] = {tool.name: tool for tool in (
    Tool("arm-none-eabi-gcc", "gcc-arm-none-eabi", "cross-compiles the firmware for Cortex-M"),
    Tool("newlib", "libnewlib-arm-none-eabi", "the C library the firmware links (nano specs)"),
    Tool("qemu-system-arm", "qemu-system-arm", "emulates the mps2 stand-ins of the tags"),
    Tool("gcc", "gcc", "compiles the exported C and the firmware for the host"),
    Tool("clang", "clang", "builds the fuzz targets with AddressSanitizer and UBSan"),
    Tool("libfuzzer", "libclang-rt-14-dev", "clang's libFuzzer, for the fuzz targets"),
    Tool("mono", "mono-complete", "runs the Mono build of Renode"),
    # Debian puts it in /usr/sbin, which a user's PATH may lack; labgrid's exporter looks there.
    Tool("ser2net", "ser2net", "serves a tag's serial port over the network for a labgrid "
         "exporter", also_in=(Path("/usr"),)),
    Tool("renode", "", "emulates the tags' real MCUs (nRF52840, CC2538)", hint=RENODE_HINT,
         also_in=(RENODE_HOME,)),
)}

# A library is found by asking its compiler for the file: (compiler, its arguments).
LIBRARIES = {
    "newlib": ("arm-none-eabi-gcc", ("--specs=nano.specs", "-print-file-name=libc_nano.a")),
    "libfuzzer": ("clang", (f"-print-file-name=libclang_rt.fuzzer-{platform.machine()}.a",)),
}


@functools.lru_cache(maxsize=8)
def _library_of(compiler: str | None, options: tuple[str, ...]) -> str | None:
    """The library file the compiler finds (it prints the bare name back when it finds none);
    None without the compiler."""
    if compiler is None:
        return None
    try:
        found = subprocess.run([compiler, *options], capture_output=True, text=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found if Path(found).is_absolute() and Path(found).is_file() else None


def tool(name: str) -> Tool:
    try:
        return TOOLS[name]
    except KeyError:
        raise ToolchainError(f"unknown tool {name!r}; the toolchain table knows "
                             f"{', '.join(TOOLS)}") from None


def missing(names: Iterable[str]) -> list[Tool]:
    """The tools of `names` that are not installed, in the order given, each once."""
    return [tool(name) for name in dict.fromkeys(names) if tool(name).find() is None]


def install_hint(tools: Iterable[Tool | str]) -> str:
    """What a user types to get `tools`: 'apt-get install a b (or run `bash tools/setup.sh`)',
    and for a tool without a package, its own hint."""
    chosen = [t if isinstance(t, Tool) else tool(t) for t in tools]
    packages = " ".join(dict.fromkeys(t.package for t in chosen if t.package))
    hints = [f"{t.name}: {t.hint}" for t in chosen if not t.package]
    steps = ([f"apt-get install {packages}"] if packages else []) + hints
    return f"{'; '.join(steps)} ({SETUP_HINT})"


def unpack_renode() -> str:
    """Make `renode` findable: nothing to do when it is on PATH or unpacked already; else unpack
    the newest Mono build in RENODE_TARBALLS into RENODE_HOME. What was done, for setup.sh."""
    found = tool("renode").find()
    if found:
        return f"renode: {found}"
    tarballs = sorted(RENODE_TARBALLS.glob("renode-*.tar.gz"))
    if not tarballs:
        return f"renode: not found and no tarball in {RENODE_TARBALLS}; {RENODE_HINT}"
    RENODE_HOME.mkdir(exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix="unpacking-", dir=RENODE_HOME))
    with tarfile.open(tarballs[-1]) as archive:
        try:
            archive.extractall(partial, filter="data")
        except TypeError:  # a Python before 3.11.4 has no extraction filters
            archive.extractall(partial)
    for tree in partial.iterdir():  # moved into place whole, so a killed unpack leaves no half
        tree.rename(RENODE_HOME / tree.name)
    shutil.rmtree(partial)
    return f"renode: unpacked {tarballs[-1].name} into {RENODE_HOME}: {tool('renode').find()}"


def require(name: str, *also: str) -> str:
    """The path of tool `name`; ToolchainError naming the package if it (or one of `also`,
    checked with it, e.g. the C library of a compiler) is missing."""
    absent = missing([name, *also])
    if absent:
        names = ", ".join(t.name for t in absent)
        raise ToolchainError(f"{names} not found; install it: {install_hint(absent)}")
    return tool(name).find() or name


# --- the host C compiler --------------------------------------------------------------------

HOST_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic")


def compile_host(sources: Sequence[Path], output: Path, include_dirs: Sequence[Path] = (),
                 defines: Mapping[str, str] | None = None, log: Path | None = None,
                 extra_flags: Sequence[str] = ()) -> Path:
    """Compile and link C99 `sources` with the host's gcc into `output` (with -lm).

    Warnings are errors; `extra_flags` add to HOST_CFLAGS. `log` keeps what the compiler
    printed. Raises ToolchainError when gcc is missing, fails or takes longer than
    COMPILE_TIMEOUT_S.
    """
    gcc = require("gcc")
    cmd = [gcc, *HOST_CFLAGS, *extra_flags, *(f"-I{d}" for d in include_dirs)]
    cmd += [f"-D{k}" if v == "" else f"-D{k}={v}" for k, v in (defines or {}).items()]
    cmd += [*map(str, sources), "-o", str(output), "-lm"]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise ToolchainError(f"gcc took longer than {COMPILE_TIMEOUT_S:.0f} s on "
                             f"{Path(output).name}") from error
    if log is not None:
        Path(log).write_text(result.stderr)
    if result.returncode != 0:
        Path(output).unlink(missing_ok=True)
        raise ToolchainError(f"host build of {Path(output).name} failed:\n"
                             f"{result.stderr.strip()}")
    return Path(output)


# --- command line, for tools/setup.sh and the README ------------------------------------------

def markdown_table() -> str:
    lines = ["| tool | Debian package | used to |", "|---|---|---|"]
    lines += [f"| `{t.name}` | {f'`{t.package}`' if t.package else t.hint} | {t.purpose} |"
              for t in TOOLS.values()]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["packages"]:
        tools = missing(TOOLS) if "--missing" in argv[1:] else list(TOOLS.values())
        print(" ".join(dict.fromkeys(t.package for t in tools if t.package)))
        return 0
    if argv == ["table"]:
        print(markdown_table())
        return 0
    if argv == ["unpack-renode"]:
        print(unpack_renode())
        return 0
    print("usage: python3 -m device_sim.toolchain packages [--missing] | table | unpack-renode",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
