"""pytest plugin: `pytest -m hil` runs tests against a real firmware on a device.

Registered through the `pytest11` entry point, so any project that installs this package gets:

- the markers `hil` (a test that runs firmware on a device: on --hil-backend, or on the backend
  it names, `@pytest.mark.hil(backend="qemu")`) and `requires` (`@pytest.mark.requires("gcc")`:
  tools of device_sim.toolchain a test needs besides its backend's);
- the options --hil-target, --hil-backend, --hil-port, --hil-hardware-map, --hil-flash,
  --hil-place, --hil-realtime, --hil-strict, --hil-link-faults, --hil-run-dir,
  --hil-baseline, --hil-baseline-update, --hil-timeout-multiplier and --hil-retries;
  the labgrid backend's coordinator is labgrid's own pytest option --lg-coordinator
  (its plugin is loaded with labgrid), else LG_COORDINATOR, else labgrid's default;
- fixtures `hil_target` (one test per selected target), `hil_run_dir` (a trained and exported
  run directory for that target: yours with --hil-run-dir, else a tiny one trained on the
  synthetic recording), `hil_recording`, `dut` (a started device with an open session, always
  torn down) and `hil_run` (stream, check, report; the figures go into the JUnit XML; with
  --hil-baseline DIR each run is compared with DIR/<target>-<backend>-<variant>.json, and a
  regression fails the test naming the figure);
- assertion helpers in `harness.assertions`.

Under pytest-xdist (`pytest -n auto -m hil`) every worker has its own run directory (trained
into its own temporary folder), builds, reports and loopback ports; with --hil-run-dir the
workers share that directory but build into folders of their own (hil_build_dir).

Whether a test's tools are installed is decided here and only here, from the toolchain table:
a test whose tools are missing is skipped with what to install, or, with --hil-strict (on when
the CI environment variable is set), fails saying the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from device_sim import toolchain
from device_sim.backends import DEFAULT_BACKEND, backend_names, get_backend
from device_sim.targets import target_names

MARKERS = {
    "hil": "runs a real firmware on an emulated or physical device; hil(backend=NAME) pins "
           "the backend (livestock-tag-hil)",
    "requires": "requires(TOOL, ...): tools of device_sim.toolchain the test needs "
                "(livestock-tag-hil)",
}


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop (livestock-tag-hil)")
    group.addoption("--hil-target", default=",".join(target_names()),
                    help="target(s) to run hil tests on, comma-separated (default: %(default)s)")
    group.addoption("--hil-backend", default=DEFAULT_BACKEND, choices=backend_names(),
                    help="how the device is run (default: %(default)s)")
    group.addoption("--hil-port", default=None,
                    help="where a physical tag is attached, for a backend that needs a port: "
                         "a path, serial-number:XYZ, location:LOC or a board of the hardware "
                         "map")
    group.addoption("--hil-hardware-map", type=Path, default=None, metavar="FILE",
                    help="TOML naming the boards ([boards.NAME]); default: pyproject.toml's "
                         "[tool.harness.hardware]")
    group.addoption("--hil-flash", action="store_true",
                    help="flash the board before each test's device starts (serial backend)")
    group.addoption("--hil-place", default=None, metavar="NAME",
                    help="the labgrid place of a shared tag (backend labgrid); its coordinator "
                         "is --lg-coordinator, else LG_COORDINATOR")
    group.addoption("--hil-realtime", action="store_true",
                    help="stream at the sensor's rate instead of as fast as flow control allows")
    group.addoption("--hil-strict", action="store_true", default=_ci(),
                    help="fail, not skip, when a tool a test needs is missing "
                         "(default on when CI is set)")
    group.addoption("--hil-link-faults", default=None, metavar="OPTIONS",
                    help="damage every device link on purpose: fault:// options such as "
                         "corrupt=0.01&seed=1")
    group.addoption("--hil-run-dir", type=Path, default=None,
                    help="use this run directory (from harness train/quantize/export) instead "
                         "of training a tiny model")
    group.addoption("--hil-baseline", type=Path, default=None, metavar="DIR",
                    help="compare every hil_run with its baseline in DIR "
                         "(<target>-<backend>-<variant>.json); a regression fails the test")
    group.addoption("--hil-baseline-update", action="store_true",
                    help="write each hil_run's report as its baseline in --hil-baseline DIR "
                         "instead of comparing")
    group.addoption("--hil-timeout-multiplier", type=float, default=1.0, metavar="X",
                    help="scale every device timeout (the target profile's "
                         "[timeouts.BACKEND]) by X (default: %(default)s)")
    group.addoption("--hil-retries", type=int, default=0, metavar="N",
                    help="start a hil_run again up to N times after an infrastructure "
                         "failure (emulator, HELLO, port; never a failed check); every retry "
                         "is in its report (default: %(default)s)")


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    pinned = any("hil_target" in marker.args[0]
                 for marker in metafunc.definition.iter_markers("parametrize"))
    if "hil_target" in metafunc.fixturenames and not pinned:  # a test may pin its own target
        targets = [t.strip() for t in metafunc.config.getoption("--hil-target").split(",")]
        metafunc.parametrize("hil_target", targets, indirect=True, scope="session")


def hil_backend_of(item: pytest.Item) -> str:
    """The backend a test's device runs on: its hil marker's, else --hil-backend."""
    marker = item.get_closest_marker("hil")
    pinned = marker.kwargs.get("backend") if marker is not None else None
    return pinned or item.config.getoption("--hil-backend")


def hil_coordinator(config: pytest.Config) -> str | None:
    """The labgrid coordinator: labgrid's --lg-coordinator where its plugin registered it;
    None lets the backend take LG_COORDINATOR, else labgrid's default."""
    return config.getoption("lg_coordinator", default=None)


def hil_lg_env(config: pytest.Config) -> Path | None:
    """The labgrid environment file that flashes a place (--hil-flash): labgrid's --lg-env."""
    given = config.getoption("lg_env", default=None)
    return None if given is None else Path(given)


def required_tools(item: pytest.Item) -> list[str]:
    """Every tool a test needs: its backend's if it is a hil test, and those of its `requires`
    markers."""
    tools = []
    if item.get_closest_marker("hil") is not None:
        tools += get_backend(hil_backend_of(item)).tools
    for marker in item.iter_markers("requires"):
        tools += marker.args
    return list(dict.fromkeys(tools))


@pytest.hookimpl(tryfirst=True)  # before any fixture builds firmware or starts a device
def pytest_runtest_setup(item: pytest.Item) -> None:
    absent = toolchain.missing(required_tools(item))
    if not absent:
        return
    message = (f"needs {', '.join(tool.name for tool in absent)}: "
               f"{toolchain.install_hint(absent)}")
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
    from device_sim.targets import Framing
    from models.config import ModelSizes, TrainConfig, TrainOptions
    from models.pipeline import DataSource, make_run

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
    from models.rundir import RunDirectory

    return RunDirectory(hil_run_dir).heldout()


def xdist_worker(config: pytest.Config) -> str | None:
    """The pytest-xdist worker this process is (gw0, gw1, ...), None without xdist."""
    worker = getattr(config, "workerinput", {}).get("workerid")
    return worker or os.environ.get("PYTEST_XDIST_WORKER") or None


def hil_build_dir(config: pytest.Config, run_dir: Path, target: str, backend: str,
                  variant: str) -> Path:
    """Where a hil test builds: the run directory's build folder, one per xdist worker (two
    workers building the same firmware into one folder would overwrite each other's)."""
    from models.rundir import RunDirectory

    folder = RunDirectory(run_dir).build_dir(target, backend, variant)
    worker = xdist_worker(config)
    return folder if worker is None else folder.with_name(f"{folder.name}-{worker}")


def hil_timeouts(config: pytest.Config, target, backend: str):
    """The target profile's timeouts for `backend`, scaled by --hil-timeout-multiplier."""
    return target.timeouts_for(backend, multiplier=config.getoption("--hil-timeout-multiplier"))


@dataclass
class Dut:
    """A device under test: the started backend and the open session to it."""

    device: Any  # what the backend started (QemuDevice, NativeDevice, ...)
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
    from device_sim.backends import DeviceOptions, prepare_device
    from harness.run import check_device, device_session
    from models.rundir import RunDirectory

    config = request.config
    backend = get_backend(hil_backend_of(request.node))
    flash = config.getoption("--hil-flash") and backend.kind == "board"
    model = RunDirectory(hil_run_dir).model_sources("q16")
    timeouts = hil_timeouts(config, hil_target, backend.name)
    options = DeviceOptions(port=config.getoption("--hil-port"),
                            hardware_map=config.getoption("--hil-hardware-map"), flash=flash,
                            place=config.getoption("--hil-place"),
                            coordinator=hil_coordinator(config), lg_env=hil_lg_env(config),
                            timeout=timeouts.start)
    prepared = prepare_device(backend.name, model, hil_target, tmp_path / "build", options)
    with prepared.device as device, device_session(
            device, prepared.firmware, timeouts, config.getoption("--hil-link-faults"),
            flashed=flash) as session:
        check_device(session.info, model, hil_target, device.url, flashed=flash)
        yield Dut(device, session, prepared.firmware.path, prepared.firmware.memory)


@pytest.fixture
def hil_run(request: pytest.FixtureRequest, hil_target, hil_run_dir: Path, record_property,
            tmp_path) -> Callable[..., Any]:
    """run(variant="q16", max_windows=None, realtime=None, bulk=False, **thresholds) ->
    RunReport: streams (with `bulk`, replays from guest memory) the held-out recording through
    the device, checks agreement, and records the figures as JUnit properties of the test."""
    from harness.run import RunOptions, run_on_device

    def run(variant: str = "q16", max_windows: int | None = None,
            realtime: bool | None = None, bulk: bool = False, **overrides: float):
        config = request.config
        if realtime is None:
            realtime = config.getoption("--hil-realtime")
        backend = hil_backend_of(request.node)
        options = RunOptions(target=hil_target.name, backend=backend,
                             variant=variant, realtime=realtime,
                             port=config.getoption("--hil-port"),
                             hardware_map=config.getoption("--hil-hardware-map"),
                             flash=(config.getoption("--hil-flash")
                                    and get_backend(backend).kind == "board"),
                             place=config.getoption("--hil-place"),
                             coordinator=hil_coordinator(config), lg_env=hil_lg_env(config),
                             max_windows=max_windows, overrides=overrides,
                             link_faults=config.getoption("--hil-link-faults"),
                             report=tmp_path / f"{variant}-report{'-bulk' * bulk}",
                             build=hil_build_dir(config, hil_run_dir, hil_target.name,
                                                 backend, variant),
                             timeout_multiplier=config.getoption("--hil-timeout-multiplier"),
                             retries=config.getoption("--hil-retries"), bulk=bulk)
        report = run_on_device(hil_run_dir, options)
        record_report(record_property, report)
        baselines = request.config.getoption("--hil-baseline")
        if baselines is not None:
            check_baseline(report, baselines, request.config.getoption("--hil-baseline-update"),
                           record_property)
        return report

    return run


def check_baseline(report: Any, folder: Path, update: bool,
                   record_property: Callable[[str, object], None]) -> None:
    """Compare a run with its baseline in `folder` (or write it there, with `update`); the
    deltas become JUnit properties, and a regression fails the test naming every figure."""
    from harness.baseline import Snapshot, compare, format_table, load_snapshot, save_baseline

    candidate = Snapshot.of_report(report)
    path = folder / f"{candidate.name}.json"
    if update:
        folder.mkdir(parents=True, exist_ok=True)
        record_property("hil_baseline_written", str(save_baseline(candidate, path)))
        return
    if not path.is_file():
        pytest.fail(f"no baseline {path} for this run: write one with --hil-baseline-update "
                    "or `harness baseline save`", pytrace=False)
    comparison = compare(load_snapshot(path), candidate)
    for change in comparison.figures:
        if change.delta is not None:
            record_property(f"hil_delta_{change.name}", change.delta)
    record_property("hil_baseline_regressions", ",".join(comparison.regressions))
    if not comparison.passed:
        pytest.fail(f"regressed against {path}: {', '.join(comparison.regressions)}\n"
                    + format_table(comparison), pytrace=False)


def record_report(record_property: Callable[[str, object], None], report: Any) -> None:
    """The figures of a RunReport as JUnit XML properties."""
    latency, memory = report.latency, report.memory
    figures = {
        "target": report.target, "backend": report.backend,
        "variant": report.variant, "windows": report.windows,
        "missed_windows": report.missed_windows,
        "int_exact_fraction": report.int_exact_fraction,
        "float_top1_agreement": report.float_top1_agreement,
        "accuracy_device": report.accuracy.device, "mcc_device": report.mcc.device,
        "latency_unit": latency.unit, "latency_p50": latency.p50,
        "latency_p99": latency.p99, "latency_max": latency.max,
        "latency_deadline": latency.deadline, "flash_bytes": memory.flash,
        "ram_static_bytes": memory.ram_static, "stack_peak_bytes": memory.stack_peak,
        "passed": report.passed, "attempts": len(report.attempts) + 1,
    }
    for name, value in figures.items():
        record_property(f"hil_{name}", value)
