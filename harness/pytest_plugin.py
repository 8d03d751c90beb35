"""pytest plugin: `pytest -m hil` runs tests against a real firmware on a device.

Registered through the `pytest11` entry point, so any project that installs this package gets:

- the `hil` marker and the options --hil-target, --hil-backend, --hil-port, --hil-realtime,
  --hil-strict and --hil-run-dir;
- fixtures `hil_target` (one test per selected target), `hil_run_dir` (a trained and exported
  run directory for that target: yours with --hil-run-dir, else a tiny one trained on the
  synthetic recording), `hil_recording`, `dut` (a started device with an open session, always
  torn down) and `hil_run` (stream, check, report; the figures go into the JUnit XML);
- assertion helpers in `harness.assertions`.

A `hil` test needs its backend's tools. Without them it is skipped with what to install, unless
--hil-strict is given (or the CI environment variable is set), when it fails instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TOOLS = {  # what each backend needs, and the Debian package that brings it
    "qemu": {"qemu-system-arm": "qemu-system-arm", "arm-none-eabi-gcc": "gcc-arm-none-eabi"},
    "native": {"gcc": "gcc"},
    "serial": {"arm-none-eabi-gcc": "gcc-arm-none-eabi"},
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop (livestock-tag-hil)")
    group.addoption("--hil-target", default="collar,eartag",
                    help="target(s) to run hil tests on, comma-separated (default: both)")
    group.addoption("--hil-backend", default="qemu", choices=["qemu", "native", "serial"],
                    help="how the device is run (default: qemu)")
    group.addoption("--hil-port", default=None,
                    help="serial port of a physical tag, with --hil-backend serial")
    group.addoption("--hil-realtime", action="store_true",
                    help="stream at the sensor's rate instead of as fast as flow control allows")
    group.addoption("--hil-strict", action="store_true",
                    default=os.environ.get("CI", "").lower() in ("1", "true", "yes"),
                    help="fail, not skip, when the emulator or toolchain is missing "
                         "(default on when CI is set)")
    group.addoption("--hil-run-dir", type=Path, default=None,
                    help="use this run directory (from harness train/quantize/export) instead "
                         "of training a tiny model")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hil: runs a real firmware on an emulated or physical "
                                       "device (livestock-tag-hil)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    pinned = any("hil_target" in marker.args[0]
                 for marker in metafunc.definition.iter_markers("parametrize"))
    if "hil_target" in metafunc.fixturenames and not pinned:  # a test may pin its own target
        targets = [t.strip() for t in metafunc.config.getoption("--hil-target").split(",")]
        metafunc.parametrize("hil_target", targets, indirect=True, scope="session")


def missing_tools(backend: str) -> list[str]:
    """Debian packages to install before this backend can run."""
    return [package for tool, package in TOOLS[backend].items() if shutil.which(tool) is None]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("hil") is None:
        return
    backend = item.config.getoption("--hil-backend")
    packages = missing_tools(backend)
    if not packages:
        return
    message = (f"hil test needs {backend}: apt-get install {' '.join(packages)} "
               "(or run `bash tools/setup.sh`)")
    if item.config.getoption("--hil-strict"):
        pytest.fail(f"{message} [--hil-strict]", pytrace=False)
    pytest.skip(message)


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def hil_target(request: pytest.FixtureRequest):
    """The target profile a hil test runs on (parametrized over --hil-target)."""
    from device_sim.targets import load_target

    return load_target(request.param)


@pytest.fixture(scope="session")
def hil_run_dir(request: pytest.FixtureRequest, hil_target, tmp_path_factory) -> Path:
    """A run directory trained for the target: --hil-run-dir, or a tiny synthetic one."""
    given = request.config.getoption("--hil-run-dir")
    if given is not None:
        return given
    from models.pipeline import DataSource, Framing, ModelSizes, TrainOptions, make_run
    from models.training import TrainConfig

    out = tmp_path_factory.mktemp(f"hil-{hil_target.name}")
    framing = Framing.of(hil_target)
    recording = DataSource(synthetic_animals=4, synthetic_seconds=20.0,
                           synthetic_bouts=1).load(framing.rate_hz)
    sizes = ModelSizes(hidden=16, perceptron=16, head=8, teacher_filters=(8, 16, 16))
    make_run(recording, out, TrainOptions(framing, sizes, TrainConfig(epochs=2, progress=False)),
             check=False)
    return out


@pytest.fixture(scope="session")
def hil_recording(hil_run_dir: Path):
    """The recording a hil run streams: the run directory's held-out animals."""
    from models.pipeline import load_recording_npz

    return load_recording_npz(hil_run_dir / "heldout.npz")


@dataclass
class Dut:
    """A device under test: the started backend and the open session to it."""

    device: Any  # QemuDevice, NativeDevice or SerialDevice
    session: Any  # harness.session.DeviceSession, already past HELLO
    artefact: Path  # the ELF or host executable it runs
    memory: dict[str, int] | None

    @property
    def info(self):
        return self.session.info


@pytest.fixture
def dut(request: pytest.FixtureRequest, hil_target, hil_run_dir: Path, tmp_path) -> Iterator[Dut]:
    """A started device running the run's q16 model, with an open session; stopped whatever
    the test does."""
    from device_sim.backends import prepare_device
    from harness.session import DeviceSession

    prepared = prepare_device(request.config.getoption("--hil-backend"), hil_run_dir, "q16",
                              hil_target, tmp_path / "build",
                              request.config.getoption("--hil-port"))
    with prepared.device as device, DeviceSession(device.url,
                                                  check_alive=device.check_alive) as session:
        yield Dut(device, session, prepared.artefact, prepared.memory)


@pytest.fixture
def hil_run(request: pytest.FixtureRequest, hil_target, hil_run_dir: Path, record_property,
            tmp_path) -> Callable[..., dict[str, Any]]:
    """run(variant="q16", max_windows=None, realtime=None, **thresholds) -> report: streams the
    held-out recording through the device, checks agreement, and records the figures as JUnit
    properties of the test."""
    from harness.run import RunOptions, run_on_device

    def run(variant: str = "q16", max_windows: int | None = None,
            realtime: bool | None = None, **overrides: float) -> dict[str, Any]:
        if realtime is None:
            realtime = request.config.getoption("--hil-realtime")
        options = RunOptions(target=hil_target.name,
                             backend=request.config.getoption("--hil-backend"),
                             variant=variant, realtime=realtime,
                             port=request.config.getoption("--hil-port"),
                             max_windows=max_windows, overrides=overrides,
                             report=tmp_path / f"{variant}-report")
        report = run_on_device(hil_run_dir, options)
        record_report(record_property, report)
        return report

    return run


def record_report(record_property: Callable[[str, object], None],
                  report: dict[str, Any]) -> None:
    """The figures of a report as JUnit XML properties."""
    latency, memory = report["latency"], report["memory"]
    figures = {
        "target": report["target"], "backend": report["backend"],
        "variant": report["variant"], "windows": report["windows"],
        "missed_windows": report["missed_windows"],
        "int_exact_fraction": report["int_exact_fraction"],
        "float_top1_agreement": report["float_top1_agreement"],
        "accuracy_device": report["accuracy"]["device"], "mcc_device": report["mcc"]["device"],
        "latency_unit": latency["unit"], "latency_p50": latency["p50"],
        "latency_p99": latency["p99"], "latency_max": latency["max"],
        "latency_deadline": latency["deadline"], "flash_bytes": memory["flash"],
        "ram_static_bytes": memory["ram_static"], "stack_peak_bytes": memory["stack_peak"],
        "passed": report["passed"],
    }
    for name, value in figures.items():
        record_property(f"hil_{name}", value)
