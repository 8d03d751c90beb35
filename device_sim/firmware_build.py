"""Build the tag application with an exported model: an Arm ELF for a target, or a host program.

    elf = build_model_firmware(run_dir, "q16", "collar", out_dir)   # arm-none-eabi-gcc, QEMU
    exe = build_native(run_dir, "q16", "collar", out_dir)           # host gcc, NativeDevice

Both compile the same application (firmware/app_main.c), the model the run directory holds in
`c/<variant>/` and the protocol's link layer (tag_link.c, with tag_proto.h generated into
out_dir). The target profile gives every fact the firmware announces (name, clock, window, hop,
rate); the run's `config.json` framing must agree with it, or the build stops with a clear error
rather than producing a firmware that classifies windows of the wrong length or rate.

Each build writes `<name>.build.json` next to its output: the build id the device sends in HELLO
(first 16 hex digits of a SHA-256 over every source text, the flags and the defines), the
defines, the variant and the model hash.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

from device_sim import build
from device_sim.build import FIRMWARE_DIR, PLATFORM_SOURCES, build_firmware, compiler_flags
from device_sim.protocol import LINK_SOURCE, generate_c_header, write_c_header
from device_sim.targets import TargetProfile, load_target
from harness.errors import HarnessError, RunDirectoryError, SampleRateError, ToolchainError

APP_SOURCE = FIRMWARE_DIR / "app_main.c"
PLATFORM_HEADER = FIRMWARE_DIR / "platform.h"
HOST_PLATFORM_SOURCE = FIRMWARE_DIR / "platform_host.c"
VARIANTS = ("q16", "q8", "f32")
HOST_CC = "gcc"
HOST_INSTALL_HINT = "apt-get install gcc"
HOST_FLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror"]
BUILD_ID_CHARS = 16


class FramingMismatchError(HarnessError):
    """The run's window or hop differs from the target's: the firmware would cut other windows
    than the model was trained on."""


def _profile(target: TargetProfile | str) -> TargetProfile:
    return load_target(target) if isinstance(target, str) else target


def _model_folder(run_dir: Path, variant: str) -> Path:
    folder = Path(run_dir) / "c" / variant
    if variant not in VARIANTS:
        raise RunDirectoryError(f"unknown model variant {variant!r}; choose one of "
                                f"{', '.join(VARIANTS)}")
    if not (folder / "tag_model.h").is_file():
        raise RunDirectoryError(f"{folder / 'tag_model.h'} is missing: run `harness export` on "
                                f"{run_dir} first")
    return folder


def check_framing(run_dir: Path, target: TargetProfile) -> dict:
    """The run's framing (config.json), which must be the target's: window, hop and rate."""
    path = Path(run_dir) / "config.json"
    try:
        framing = json.loads(path.read_text())["framing"]
    except FileNotFoundError as error:
        raise RunDirectoryError(f"{path} is missing: is {run_dir} a run directory written by "
                                "`harness train`?") from error
    except (KeyError, json.JSONDecodeError) as error:
        raise RunDirectoryError(f"{path} has no readable 'framing' section") from error
    rate = float(framing["rate_hz"])
    if abs(rate - target.sample_rate_hz) > 1e-9 * target.sample_rate_hz:
        raise SampleRateError(
            f"{run_dir} was trained at {rate:g} Hz but target {target.name!r} samples at "
            f"{target.sample_rate_hz:g} Hz ({target.sensor}); train a run for this target")
    for key in ("window", "hop"):
        run_value, target_value = int(framing[key]), int(getattr(target, key))
        if run_value != target_value:
            raise FramingMismatchError(
                f"{run_dir} uses a {key} of {run_value} samples but target {target.name!r} "
                f"uses {target_value}; train a run for this target")
    return framing


def _model_header_value(folder: Path, macro: str) -> str | None:
    match = re.search(rf"^#define {macro} (.+)$", (folder / "tag_model.h").read_text(), re.M)
    return match.group(1).strip().strip('"') if match else None


def _defines(target: TargetProfile, test_hooks: bool) -> dict[str, str]:
    defines = {
        **build._target_defines(target),
        "TAG_WINDOW": str(target.window),
        "TAG_HOP": f"{target.hop}u",
        "TAG_SAMPLE_RATE_MHZ": f"{round(target.sample_rate_hz * 1000)}u",
    }
    if test_hooks:
        defines["TAG_TEST_HOOKS"] = ""
    return defines


def _build_id(sources: list[Path], flags: list[str], defines: dict[str, str]) -> str:
    """First 16 hex digits of SHA-256 over the sources (name and text), flags and defines."""
    digest = hashlib.sha256()
    digest.update(generate_c_header().encode())
    for source in sources:
        digest.update(source.name.encode() + b"\0")
        digest.update(source.read_bytes() + b"\0")
    digest.update("\0".join(flags).encode() + b"\0")
    for key in sorted(defines):
        digest.update(f"{key}={defines[key]}\0".encode())
    return digest.hexdigest()[:BUILD_ID_CHARS]


def _write_info(path: Path, build_id: str, target: TargetProfile, variant: str, folder: Path,
                defines: dict[str, str], output: Path) -> None:
    info = {"build_id": build_id, "target": target.name, "variant": variant,
            "model_hash": _model_header_value(folder, "TAG_MODEL_HASH"),
            "output": output.name, "defines": defines}
    path.write_text(json.dumps(info, indent=2) + "\n")


def build_model_firmware(run_dir: Path, variant: str, target: TargetProfile | str,
                         out_dir: Path, *, test_hooks: bool = False) -> Path:
    """The firmware ELF of `variant` (q16, q8 or f32) of the model in `run_dir` for `target`.

    Written to `out_dir/tag_<target>_<variant>[_hooks].elf` (plus .ld, .map, .build.log and
    .build.json). `test_hooks` compiles in the deliberate fault of app_main.c: tests only.
    Raises RunDirectoryError, SampleRateError or FramingMismatchError when the run does not fit
    the target, ToolchainError or FirmwareTooLargeError from the build.
    """
    target = _profile(target)
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    folder = _model_folder(run_dir, variant)
    check_framing(run_dir, target)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_c_header(out_dir)
    name = f"tag_{target.name}_{variant}" + ("_hooks" if test_hooks else "")

    model_sources = sorted(folder.glob("*.c"))
    sources = [APP_SOURCE, *model_sources, LINK_SOURCE]
    defines = _defines(target, test_hooks)
    build_id = _build_id([*PLATFORM_SOURCES, PLATFORM_HEADER, *sources,
                          *sorted(folder.glob("*.h"))], compiler_flags(target), defines)
    defines["TAG_BUILD_ID"] = f'"{build_id}"'
    elf = build_firmware(target, sources, [out_dir, folder], out_dir, defines=defines, name=name)
    _write_info(out_dir / f"{name}.build.json", build_id, target, variant, folder, defines, elf)
    return elf


def build_native(run_dir: Path, variant: str, target: TargetProfile | str,
                 out_dir: Path, *, test_hooks: bool = False) -> Path:
    """A host executable running the same application and model, announcing `target`'s facts.

    Written to `out_dir/tag_<target>_<variant>[_hooks]_native`; run it with NativeDevice.
    Its counter is in nanoseconds of the host, which say nothing about the tag's latency.
    """
    target = _profile(target)
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    folder = _model_folder(run_dir, variant)
    check_framing(run_dir, target)
    compiler = shutil.which(HOST_CC)
    if compiler is None:
        raise ToolchainError(f"{HOST_CC} not found; install it: {HOST_INSTALL_HINT}")
    out_dir.mkdir(parents=True, exist_ok=True)
    write_c_header(out_dir)
    name = f"tag_{target.name}_{variant}" + ("_hooks" if test_hooks else "") + "_native"
    output = out_dir / name

    model_sources = sorted(folder.glob("*.c"))
    sources = [APP_SOURCE, HOST_PLATFORM_SOURCE, *model_sources, LINK_SOURCE]
    defines = {**_defines(target, test_hooks), "TAG_PLATFORM_HOST": ""}
    build_id = _build_id([PLATFORM_HEADER, *sources, *sorted(folder.glob("*.h"))],
                         HOST_FLAGS, defines)
    defines["TAG_BUILD_ID"] = f'"{build_id}"'

    cmd = [compiler, *HOST_FLAGS, f"-I{FIRMWARE_DIR}", f"-I{out_dir}", f"-I{folder}"]
    cmd += [f"-D{k}" if v == "" else f"-D{k}={v}" for k, v in defines.items()]
    cmd += [str(s) for s in sources] + ["-o", str(output), "-lm"]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True,
                                timeout=build.COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"{HOST_CC} took longer than {build.COMPILE_TIMEOUT_S:.0f} s on "
                             f"{name}") from exc
    (out_dir / f"{name}.build.log").write_text(result.stderr)
    if result.returncode != 0:
        output.unlink(missing_ok=True)
        raise ToolchainError(f"host build of {name} failed:\n{result.stderr.strip()}")
    _write_info(out_dir / f"{name}.build.json", build_id, target, variant, folder, defines,
                output)
    return output


def build_info(output: Path) -> dict:
    """The `.build.json` written next to a firmware or host executable."""
    output = Path(output)
    name = output.stem if output.suffix == ".elf" else output.name
    return json.loads(output.with_name(f"{name}.build.json").read_text())
