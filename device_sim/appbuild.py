"""Build the tag application around an exported model: an Arm ELF for a platform, or a host
program.

    model = ModelSources.load(run_dir / "c" / "q16")
    elf = build_model_firmware(model, target, target.platform_for("qemu"), out_dir)
    exe = build_native(model, target, out_dir)           # host gcc, for the native backend

Both compile the same application (firmware/app_main.c), the model's C and the protocol's link
layer (tag_link.c, with tag_proto.h generated into out_dir). The target profile gives every fact
the firmware announces (name, clock, window, hop, rate); the framing the model was trained for
(its manifest) must agree with it, or the build stops with a clear error rather than producing
a firmware that classifies windows of the wrong length or rate.

Each build writes `<name>.build.json` next to its output: the build id the device sends in HELLO
(first 16 hex digits of a SHA-256 over every source text, the flags and the defines), the
defines, the variant and the model hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from device_sim import crossbuild, toolchain
from device_sim.errors import FramingMismatchError, ModelSourcesError, SampleRateError
from device_sim.model_sources import TRACE_HOOK, VARIANTS, ModelSources
from device_sim.protocol import LINK_HEADER, LINK_SOURCE, generate_c_header, write_c_header
from device_sim.targets import Platform, TargetProfile

APP_SOURCE = crossbuild.FIRMWARE_DIR / "app_main.c"
HOST_PLATFORM_SOURCE = crossbuild.FIRMWARE_DIR / "platform_host.c"
BUILD_ID_CHARS = 16
# The host's counter (platform_host.c) and an address no Linux process has mapped.
# The environment variable that names a host program's replay image (platform_host.c).
REPLAY_ENV = "TAG_REPLAY_IMAGE"
HOST_DEFINES = {"TAG_PLATFORM_HOST": "", **crossbuild.counter_defines("nanoseconds", 1),
                "TAG_UNMAPPED_ADDRESS": "0x70000000u", "TAG_REPLAY_ENV": f'"{REPLAY_ENV}"'}


def check_framing(model: ModelSources, target: TargetProfile) -> None:
    """The model's framing must be the target's: rate, window and hop."""
    framing = model.manifest.framing
    if framing is None:
        raise ModelSourcesError(f"{model.folder}: the manifest does not say which framing the "
                                "model was trained for; export it from a run directory")
    if abs(framing.rate_hz - target.sample_rate_hz) > 1e-9 * target.sample_rate_hz:
        raise SampleRateError(
            f"{model.folder} was trained at {framing.rate_hz:g} Hz but target {target.name!r} "
            f"samples at {target.sample_rate_hz:g} Hz ({target.sensor}); train a run for this "
            "target")
    for key in ("window", "hop"):
        model_value, target_value = int(getattr(framing, key)), int(getattr(target, key))
        if model_value != target_value:
            raise FramingMismatchError(
                f"{model.folder} uses a {key} of {model_value} samples but target "
                f"{target.name!r} uses {target_value}; train a run for this target")


def _checked(model: ModelSources, target: TargetProfile, trace: bool = False) -> None:
    if model.variant not in VARIANTS:
        raise ModelSourcesError(f"unknown model variant {model.variant!r}; choose one of "
                                f"{', '.join(VARIANTS)}")
    if trace and model.manifest.logit_type == "float32":
        raise ModelSourcesError(f"{model.folder}: the float32 variant has no layer trace; "
                                "trace a fixed-point variant (q16 or q8)")
    if trace and TRACE_HOOK not in (model.folder / "tag_model.c").read_text():
        raise ModelSourcesError(f"{model.folder} was exported before the layer trace existed "
                                "(its tag_model.c reports no layer): run `harness export` on "
                                "the run directory again")
    check_framing(model, target)


def app_defines(target: TargetProfile, test_hooks: bool, trace: bool = False) -> dict[str, str]:
    defines = {
        **crossbuild.target_defines(target),
        "TAG_WINDOW": str(target.window),
        "TAG_HOP": f"{target.hop}u",
        "TAG_SAMPLE_RATE_MHZ": f"{round(target.sample_rate_hz * 1000)}u",
    }
    if test_hooks:
        defines["TAG_TEST_HOOKS"] = ""
    if trace:
        defines["TAG_MODEL_TRACE"] = ""
    return defines


def _build_id(sources: Sequence[Path], flags: Sequence[str], defines: dict[str, str]) -> str:
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


def _write_info(path: Path, build_id: str, target: TargetProfile, model: ModelSources,
                defines: dict[str, str], output: Path, platform: str) -> None:
    info = {"build_id": build_id, "target": target.name, "platform": platform,
            "variant": model.variant, "model_hash": model.manifest.model_hash,
            "output": output.name, "defines": defines}
    path.write_text(json.dumps(info, indent=2) + "\n")


def _name(target: TargetProfile, model: ModelSources, test_hooks: bool, trace: bool) -> str:
    return (f"tag_{target.name}_{model.variant}" + ("_hooks" if test_hooks else "")
            + ("_trace" if trace else ""))


def build_model_firmware(model: ModelSources, target: TargetProfile, platform: Platform,
                         out_dir: Path, *, test_hooks: bool = False, trace: bool = False) -> Path:
    """The firmware ELF of `model` for `target` on `platform`.

    Written to `out_dir/tag_<target>_<variant>[_hooks][_trace].elf` (plus .ld, .map, .build.log
    and .build.json). `test_hooks` compiles in the deliberate fault of app_main.c: tests only.
    `trace` (fixed point only) defines TAG_MODEL_TRACE: the layer trace of harness/trace.py.
    Raises SampleRateError or FramingMismatchError when the model does not fit the target,
    ToolchainError or FirmwareTooLargeError from the build.
    """
    _checked(model, target, trace)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_c_header(out_dir)
    name = _name(target, model, test_hooks, trace)
    sources = [APP_SOURCE, *model.sources, LINK_SOURCE]
    defines = app_defines(target, test_hooks, trace)
    hashed = [*crossbuild.platform_sources(platform), crossbuild.PLATFORM_HEADER, *sources,
              LINK_HEADER, *model.headers]
    build_id = _build_id(hashed, crossbuild.compiler_flags(target),
                         defines | crossbuild.platform_defines(platform))
    defines["TAG_BUILD_ID"] = f'"{build_id}"'
    elf = crossbuild.build_firmware(target, platform, sources, [out_dir, model.folder], out_dir,
                                    defines=defines, name=name)
    _write_info(out_dir / f"{name}.build.json", build_id, target, model, defines, elf,
                platform.name)
    return elf


def build_native(model: ModelSources, target: TargetProfile, out_dir: Path, *,
                 test_hooks: bool = False, trace: bool = False) -> Path:
    """A host executable running the same application and model, announcing `target`'s facts.

    Written to `out_dir/tag_<target>_<variant>[_hooks][_trace]_native`; the native backend runs
    it. Its counter is in nanoseconds of the host, which say nothing about the tag's latency.
    """
    _checked(model, target, trace)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_c_header(out_dir)
    name = _name(target, model, test_hooks, trace) + "_native"
    output = out_dir / name
    sources = [APP_SOURCE, HOST_PLATFORM_SOURCE, *model.sources, LINK_SOURCE]
    defines = {**app_defines(target, test_hooks, trace), **HOST_DEFINES}
    build_id = _build_id([crossbuild.PLATFORM_HEADER, *sources, LINK_HEADER, *model.headers],
                         toolchain.HOST_CFLAGS, defines)
    defines["TAG_BUILD_ID"] = f'"{build_id}"'
    toolchain.compile_host(sources, output, [crossbuild.FIRMWARE_DIR, out_dir, model.folder],
                           defines, log=out_dir / f"{name}.build.log")
    _write_info(out_dir / f"{name}.build.json", build_id, target, model, defines, output, "host")
    return output


def build_info(output: Path) -> dict:
    """The `.build.json` written next to a firmware or host executable."""
    output = Path(output)
    name = output.stem if output.suffix == ".elf" else output.name
    return json.loads(output.with_name(f"{name}.build.json").read_text())
