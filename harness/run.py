"""`harness run`: a run directory's model on a device, a recording streamed through it as the
accelerometer would deliver it, and the agreement with the references checked and reported.

With `bulk` (`harness run --bulk`, emulators and the host build only) the same segments go into
a replay image (device_sim/replay.py) that the emulator loads into guest memory; the device
replays it and sends the results, which are checked by the same code."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shlex
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import serial

from device_sim.appbuild import check_framing
from device_sim.backends import (
    DEFAULT_BACKEND,
    Device,
    DeviceOptions,
    Firmware,
    get_backend,
    prepare_device,
)
from device_sim.errors import (
    DeviceTimeoutError,
    EmulatorError,
    FlashError,
    FlashUnavailableError,
    FramingMismatchError,
    PortError,
    ReplayUnavailableError,
    SampleRateError,
)
from device_sim.model_sources import ModelSources
from device_sim.replay import check_fits, write_image
from device_sim.targets import DEFAULT_TARGET, Framing, TargetProfile, Timeouts, load_target
from harness.agreement import DeviceRun, RunReport, Thresholds, WindowSet, evaluate
from harness.errors import (
    DeviceMismatchError,
    HarnessError,
    InfrastructureWarning,
    NoHelloError,
    NothingToStreamError,
)
from harness.session import DeviceInfo, DeviceSession, WindowResult
from models.numeric import layer_numerics
from models.quantize import (
    QuantizedModel,
    as_device_input,
    counts_from_g,
    fold_student,
    tensor_formats,
)
from models.recordings import Recording, Windows, make_windows
from models.rundir import RunDirectory
from models.students import count_parameters
from models.training import predict_logits


@dataclass
class RunOptions:
    target: str = DEFAULT_TARGET
    backend: str = DEFAULT_BACKEND
    variant: str = "q16"
    realtime: bool = False
    port: str | None = None  # where a physical device is (serial backend; device_sim.boards)
    hardware_map: Path | None = None  # boards by name; default pyproject's [tool.harness.hardware]
    place: str | None = None  # a labgrid place (labgrid backend)
    coordinator: str | None = None  # its coordinator; default LG_COORDINATOR, else labgrid's
    max_windows: int | None = None  # a sample of this many windows (plan_stream)
    seed: int = 0  # of that sample
    timeout: float | None = None  # replaces the profile's [timeouts.<backend>] start and reply
    timeout_multiplier: float = 1.0  # scales them (a slow or busy machine)
    retries: int = 0  # runs started again after an infrastructure failure (is_infrastructure)
    link_faults: str | None = None  # fault:// options, e.g. "corrupt=0.01&seed=1"
    overrides: dict[str, float] = field(default_factory=dict)
    report: Path | None = None  # folder; default: RUN_DIR/reports/<target>-<backend>-<variant>/
    build: Path | None = None  # folder; default: RUN_DIR/build/<target>-<backend>-<variant>/
    bulk: bool = False  # replay the recording from guest memory instead of streaming it
    flash: bool = False  # flash the board first (serial backend; device_sim/flash.py)
    lg_env: Path | None = None  # labgrid environment file: how a place flashes (--flash)

    def device_options(self, timeouts: Timeouts,
                       replay_image: Path | None = None) -> DeviceOptions:
        """What the backend is told about the device."""
        return DeviceOptions(port=self.port, hardware_map=self.hardware_map, place=self.place,
                             coordinator=self.coordinator, lg_env=self.lg_env,
                             timeout=timeouts.start, realtime=self.realtime,
                             replay_image=replay_image, flash=self.flash)


def bouts_to_stream(recording: Recording, window: int) -> list[np.ndarray]:
    """Sample indices of every bout long enough for one window, in the recording's order."""
    starts = np.flatnonzero(np.r_[True, recording.bouts[1:] != recording.bouts[:-1]])
    chosen = [index for index in np.split(np.arange(len(recording)), starts[1:])
              if len(index) >= window]
    if not chosen:
        raise NothingToStreamError(f"{recording.source}: no bout holds one window of {window} "
                                   "samples")
    return chosen


def streamed_windows(recording: Recording, bouts: list[np.ndarray], window: int,
                     hop: int) -> Windows:
    """The windows of the bouts as a device sees them streamed one after the other: numbered
    from 0 in that order."""
    streamed = np.concatenate(bouts)
    sub = Recording(accel_g=recording.accel_g[streamed], labels=recording.labels[streamed],
                    class_names=recording.class_names, animals=recording.animals[streamed],
                    bouts=np.repeat(np.arange(len(bouts)), [len(b) for b in bouts]),
                    rate_hz=recording.rate_hz, source=recording.source)
    return make_windows(sub, window, hop)


def stratified_sample(labels: np.ndarray, animals: np.ndarray, count: int,
                      seed: int) -> np.ndarray:
    """`count` indices, sorted, spread as evenly as the windows allow over the classes and,
    within each class, over its animals: classes take turns, and each class's animals take
    turns, every cell's windows drawn in a seeded random order."""
    rng = np.random.default_rng(seed)
    queues: dict[int, list[list[int]]] = {}  # class -> one shuffled queue per animal
    for label in np.unique(labels):
        mine = labels == label
        cells = [list(rng.permutation(np.flatnonzero(mine & (animals == animal))))
                 for animal in sorted(set(animals[mine].tolist()))]
        queues[int(label)] = [cells[i] for i in rng.permutation(len(cells))]
    picked: list[int] = []
    while len(picked) < count and any(queues.values()):
        for cells in queues.values():
            if len(picked) == count or not cells:
                continue
            cell = cells.pop(0)  # this class's next animal ...
            picked.append(int(cell.pop()))
            if cell:
                cells.append(cell)  # ... goes to the back of the class's queue
    return np.sort(np.array(picked, dtype=np.int64))


@dataclass(frozen=True)
class StreamPlan:
    """What a run streams: segments of the recording's samples, each sent as one stream, and
    the windows they hold in the order the device answers them."""

    segments: list[np.ndarray]  # sample indices into the recording
    windows: Windows  # numbered from 0 in streaming order, as a run report numbers them
    heldout_index: np.ndarray  # each window's number among all the recording's windows
    selection: dict[str, Any]  # how the windows were chosen, for the report


def plan_stream(recording: Recording, window: int, hop: int, max_windows: int | None = None,
                seed: int = 0) -> StreamPlan:
    """Every window of every bout long enough for one; or, with `max_windows` below that,
    a seeded sample of them stratified by class and animal (stratified_sample), so that a
    short run sees the classes and animals the recording has rather than its first bouts.
    Neighbouring chosen windows of a bout are streamed as one segment."""
    bouts = bouts_to_stream(recording, window)
    every = streamed_windows(recording, bouts, window, hop)
    selection = {"method": "all", "windows": len(every), "of": len(every), "seed": None}
    if max_windows is None or max_windows >= len(every):
        return StreamPlan(bouts, every, np.arange(len(every)), selection)
    chosen = stratified_sample(every.y, every.animals, max_windows, seed)
    streamed = np.concatenate(bouts)
    # A chosen window that follows the previous one in the same bout extends its segment.
    follows = np.r_[False, (np.diff(chosen) == 1)
                    & (every.bouts[chosen[1:]] == every.bouts[chosen[:-1]])]
    segments = [streamed[every.starts[run[0]]:every.starts[run[-1]] + window]
                for run in np.split(chosen, np.flatnonzero(~follows)[1:])]
    selection = {"method": "stratified by class and animal", "windows": len(chosen),
                 "of": len(every), "seed": seed}
    return StreamPlan(segments, streamed_windows(recording, segments, window, hop), chosen,
                      selection)


def recording_fingerprint(recording: Recording) -> str:
    """Short hash of what a device is fed from a recording: its wire counts, labels, bouts,
    classes and rate. Two runs are comparable window by window only on the same one."""
    digest = hashlib.sha256()
    for array, dtype in ((counts_from_g(recording.accel_g), "<i2"), (recording.labels, "<i8"),
                         (recording.bouts, "<i8")):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    digest.update(json.dumps([list(recording.class_names), recording.rate_hz]).encode())
    return digest.hexdigest()[:16]


def window_set(recording: Recording, plan: StreamPlan) -> WindowSet:
    """The streamed windows named by the recording's bout and the sample they start at in it."""
    streamed = np.concatenate(plan.segments)
    ids, bout_ids = [], []
    for start in plan.windows.starts:
        sample = int(streamed[start])
        bout_id = int(recording.bouts[sample])
        # Bout ids run 0..B-1 in order, so a bout's first sample is where its id first appears.
        ids.append(f"{bout_id}:{sample - int(np.searchsorted(recording.bouts, bout_id))}")
        bout_ids.append(bout_id)
    return WindowSet(ids, bout_ids, [str(a) for a in plan.windows.animals], plan.windows.y,
                     plan.windows.class_names,
                     {"source": recording.source, "fingerprint": recording_fingerprint(recording),
                      "rate_hz": recording.rate_hz}, plan.selection)


def model_summary(manifest, quantized: QuantizedModel | None, layers: list[dict[str, Any]],
                  float_param_bytes: int) -> dict[str, Any]:
    """What ran, for a baseline: hash, kind, word length, parameter bytes, every tensor's Q
    format and the per-layer numeric view on the streamed windows."""
    what = {"hash": manifest.model_hash, "kind": manifest.kind, "variant": manifest.variant}
    if quantized is None:
        return what | {"word_bits": 32, "param_bytes": float_param_bytes, "formats": {},
                       "layers": []}
    return what | {"word_bits": quantized.word_bits, "param_bytes": quantized.param_bytes,
                   "formats": tensor_formats(quantized), "layers": layers}


def trace_command(run_dir: Path | str, target: str, backend: str, variant: str,
                  window: int) -> str:
    """The command line that traces `window` of a run layer by layer (harness/trace.py),
    for a report to point at."""
    return " ".join(["harness", "trace", shlex.quote(str(run_dir)), "--target", target,
                     "--backend", backend, "--variant", variant, "--window", str(window)])


def faulty(url: str, faults: str | None) -> str:
    """`url`, or the fault:// URL that wraps it with `faults` (harness/urlhandler)."""
    return url if not faults else f"fault://{url}?{faults}"


def check_device(info: DeviceInfo, model: ModelSources, profile: TargetProfile,
                 url: str, flashed: bool = False) -> None:
    """The device's HELLO must announce the firmware this run needs: refused before any sample
    is sent, naming both sides of every difference (and, when the harness has just `flashed`
    it, that the flasher wrote another board than the one on `url`)."""
    manifest = model.manifest
    needed = {"target": profile.name, "model hash": manifest.model_hash,
              "variant": manifest.variant, "classes": len(manifest.class_names),
              "sample rate (mHz)": round(profile.sample_rate_hz * 1000),
              "window": profile.window, "hop": profile.hop}
    announced = {"target": info.target, "model hash": info.model_hash,
                 "variant": info.model_variant, "classes": info.n_classes,
                 "sample rate (mHz)": round(info.sample_rate_hz * 1000),
                 "window": info.window, "hop": info.hop}
    wrong = [f"{key} {announced[key]!r} where the run needs {needed[key]!r}"
             for key in needed if announced[key] != needed[key]]
    if wrong:
        advice = (" although it was just flashed with it: the flasher wrote another board than "
                  "the one on this port (check the serial numbers and probes of the hardware "
                  "map)" if flashed else ". Flash the firmware built for this run (--flash)")
        raise DeviceMismatchError(f"the device on {url} runs other firmware than "
                                  f"{model.folder} for {profile.name!r}: " + "; ".join(wrong)
                                  + advice)


@contextlib.contextmanager
def device_session(device: Device, firmware: Firmware, timeouts: Timeouts,
                   link_faults: str | None = None, flashed: bool = False
                   ) -> Iterator[DeviceSession]:
    """The session to a started device, past its HELLO. A board the harness has just flashed
    that says no HELLO is a failed flash (FlashError, quoting the flasher), not a silent port."""
    session = DeviceSession(faulty(device.url, link_faults), timeouts.reply,
                            baudrate=firmware.baudrate, check_alive=device.check_alive,
                            hello_timeout=timeouts.start)
    try:
        session.open()
    except DeviceTimeoutError as error:
        session.close()
        if not flashed:
            raise
        said = (getattr(device, "flash_output", None) or "").strip().splitlines()[-3:]
        raise FlashError(f"the board was flashed with {firmware.path.name}"
                         + (f" (the flasher said: {' / '.join(said)})" if said else "")
                         + f", but then: {error}. The firmware did not start, or this port is "
                         "another board's") from error
    try:
        yield session
    finally:
        session.close()


def _framings(run: RunDirectory, profile: TargetProfile) -> tuple[Framing, Framing, str]:
    """(the run's framing, the target's, a sentence naming both)."""
    framing, wanted = run.framing(), Framing.of(profile)
    return framing, wanted, (
        f"{run.path} was trained for {framing.target or 'a framing'} at {framing.rate_hz:g} Hz "
        f"(window {framing.window}, hop {framing.hop}), target {profile.name!r} takes "
        f"{wanted.rate_hz:g} Hz (window {wanted.window}, hop {wanted.hop})")


def check_run_window(run: RunDirectory, profile: TargetProfile) -> None:
    """A model takes windows of one length: a target that cuts others needs a run of its own
    (retargeting changes the rate only)."""
    framing, wanted, both = _framings(run, profile)
    if framing.window != wanted.window:
        raise FramingMismatchError(f"{both}: the model cannot take its windows; train a run "
                                   f"for it (harness train ... --target {profile.name})")


def check_run_framing(run: RunDirectory, profile: TargetProfile) -> None:
    """A run trained for another rate, window or hop than the target's is refused, saying how
    to retarget it (same window) or that a run must be trained for the target (other window)."""
    framing, wanted, both = _framings(run, profile)
    if framing.cuts_like(wanted):
        return
    check_run_window(run, profile)
    seconds = (framing.window / framing.rate_hz, wanted.window / wanted.rate_hz)
    raise SampleRateError(
        f"{both}: add --retarget to run the same weights on the held-out recording "
        f"resampled to {wanted.rate_hz:g} Hz (in {run.path / 'retargeted' / profile.name}; "
        f"each window then spans {seconds[1]:.2f} s instead of {seconds[0]:.2f} s, which the "
        f"run's accuracy shows), or train a run for it (harness train ... --target "
        f"{profile.name})")


def check_bulk(options: RunOptions, profile: TargetProfile) -> int:
    """Bulk replay must be possible for this run: not in real time (a replay has no sensor
    clock), and on a backend whose device has a replay region. Returns the region's bytes."""
    if options.realtime:
        raise ReplayUnavailableError("--bulk replays the recording from the device's memory as "
                                     "fast as it computes, --realtime paces samples at the "
                                     "sensor's rate: choose one")
    return get_backend(options.backend).replay_capacity(profile)


def replay_segments(recording: Recording, plan: StreamPlan) -> list[np.ndarray]:
    """The wire counts of each segment the plan streams, for a replay image."""
    return [counts_from_g(recording.accel_g[segment]) for segment in plan.segments]


def flash_board(run_dir: Path, options: RunOptions) -> tuple[DeviceInfo, str, Path]:
    """`harness flash`: the run's firmware built for the board's platform, flashed, the board
    found again and its HELLO checked against the run. Returns (its HELLO, its port, the
    firmware flashed)."""
    run = RunDirectory(run_dir)
    profile = load_target(options.target)
    check_run_framing(run, profile)
    model = run.model_sources(options.variant)
    check_framing(model, profile)
    timeouts = profile.timeouts_for(options.backend, options.timeout, options.timeout_multiplier)
    prepared = prepare_device(options.backend, model, profile,
                              run.build_dir(options.target, options.backend, options.variant),
                              replace(options, flash=True).device_options(timeouts))
    with prepared.device as device, device_session(device, prepared.firmware, timeouts,
                                                   flashed=True) as session:
        check_device(session.info, model, profile, device.url, flashed=True)
        return session.info, device.url, prepared.firmware.path


def report_folder(run_dir: Path, options: RunOptions) -> Path:
    """Where a run's report.json goes: --report, else RUN_DIR/reports/<target>-<backend>-
    <variant>[-realtime][-bulk]/."""
    return options.report or RunDirectory(run_dir).report_dir(
        options.target, options.backend, options.variant, options.realtime, options.bulk)


def run_on_device(run_dir: Path, options: RunOptions, recording: Recording | None = None,
                  progress: Callable[[WindowResult], None] | None = None,
                  running: RunningDevices | None = None) -> RunReport:
    """Stream the held-out recording (or `recording`) through the device; return the report,
    also written to its report.json. A device that fails for infrastructure reasons
    (is_infrastructure_failure) is started again up to `options.retries` times, each failed
    attempt recorded in the report. `running` holds the device while it runs, for another
    thread to stop it (parallel runs)."""
    run = RunDirectory(run_dir)
    folder = report_folder(run_dir, options)
    # The last run's report goes first: a run that fails or is interrupted leaves none, so
    # nothing can read an old pass as this run's.
    (folder / "report.json").unlink(missing_ok=True)
    (folder / "attempts.json").unlink(missing_ok=True)
    profile = load_target(options.target)
    # Bulk replay is refused before anything is built where it cannot run.
    capacity = check_bulk(options, profile) if options.bulk else 0
    if options.flash and get_backend(options.backend).kind != "board":
        raise FlashUnavailableError(f"--flash flashes a physical board; backend "
                                    f"{options.backend} starts its own device with the "
                                    "firmware it builds")
    check_run_framing(run, profile)
    model = run.model_sources(options.variant)
    check_framing(model, profile)
    window, hop = profile.window, profile.hop
    from_heldout = recording is None
    recording = recording or run.heldout()
    limits = Thresholds.resolve(profile, options.overrides)
    plan = plan_stream(recording, window, hop, options.max_windows, options.seed)
    windows = plan.windows
    # The references first: a damaged run directory is refused before any device starts.
    int_reference, quantized, layers = None, None, []
    student = run.load_model(run.deployed_student())
    float_logits = predict_logits(student, as_device_input(windows.x))
    if options.variant != "f32":
        quantized = run.load_quantized(options.variant)
        counts = counts_from_g(windows.x)
        int_reference = quantized.run(counts)
        net = fold_student(student, tuple(model.manifest.class_names), window)
        layers = [layer.to_dict() for layer in layer_numerics(net, quantized, counts)]
    summary = model_summary(model.manifest, quantized, layers, 4 * count_parameters(student))

    build_dir = options.build or run.build_dir(options.target, options.backend, options.variant)
    image = None
    if options.bulk:  # exactly the segments streaming would send, each a segment of the image
        image = write_image(build_dir / "replay.bin", replay_segments(recording, plan))
        check_fits(image, capacity, f"target {profile.name!r} on {options.backend}")
    backend = get_backend(options.backend)
    timeouts = profile.timeouts_for(options.backend, options.timeout, options.timeout_multiplier)
    device_options = options.device_options(timeouts, replay_image=image)
    backend.check_options(device_options)  # a missing --place fails before the build
    firmware = backend.build(model, profile, build_dir)  # once: a failed build is no retry
    attempts: list[dict[str, str]] = []  # the failed ones, for the report
    while True:
        try:
            device = backend.device(firmware, profile, device_options)
            device_run = _run_device(device, firmware, model, profile, recording, plan, options,
                                     timeouts, progress, running)
            break
        except Exception as error:
            if not is_infrastructure_failure(error) or len(attempts) >= options.retries:
                if attempts:
                    _give_up(error, attempts, folder)
                raise
            attempts.append({"error": type(error).__name__, "message": str(error)})
            warnings.warn(f"{profile.name} on {options.backend}, {options.variant}: attempt "
                          f"{len(attempts)} of {options.retries + 1} failed ({type(error).__name__}"
                          f"), starting the device again", InfrastructureWarning, stacklevel=2)

    report = evaluate(device_run, profile, window_set(recording, plan), float_logits,
                      int_reference, limits, summary)
    if report.first_mismatch is not None and from_heldout:  # trace numbers held-out windows
        report.trace_command = trace_command(run.path, options.target, options.backend,
                                             options.variant,
                                             int(plan.heldout_index[report.first_mismatch]))
    report.attempts = attempts
    report.write(folder / "report.json")
    return report


def is_infrastructure_failure(error: BaseException) -> bool:
    """Whether a run that failed with `error` may be started again (--retries): the device
    never got to show what the firmware computes.

    Infrastructure, retried: an emulator that cannot start or died (EmulatorError), a device
    that said no HELLO within its start timeout (NoHelloError), a port that cannot be found,
    opened or vanished (PortError and its subclasses: PortNotFoundError, PortUnavailableError;
    serial.SerialException from opening one).

    Never retried: the device running other firmware (DeviceMismatchError), a fault the
    firmware reports (DeviceError) or a protocol it breaks (ProtocolError), a device that
    stops answering after its HELLO (DeviceTimeoutError), a failed agreement check (a report
    that did not pass is a result, not an error), bad input (threshold, recording, run
    directory, framing) and a failed build (ToolchainError): running again would only repeat
    them."""
    return isinstance(error, (EmulatorError, NoHelloError, PortError, serial.SerialException))


def _give_up(error: BaseException, attempts: list[dict[str, str]], folder: Path) -> None:
    """The last attempt failed too: its error says what the others were, and
    FOLDER/attempts.json lists every one (there is no report.json)."""
    attempts = [*attempts, {"error": type(error).__name__, "message": str(error)}]
    error.add_note(f"{len(attempts)} attempts failed: " + ", ".join(
        f"{n}. {a['error']}" for n, a in enumerate(attempts, 1)))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "attempts.json").write_text(json.dumps({"attempts": attempts}, indent=2) + "\n")


def _run_device(device: Device, firmware: Firmware, model: ModelSources,
                profile: TargetProfile, recording: Recording, plan: StreamPlan,
                options: RunOptions, timeouts: Timeouts,
                progress: Callable[[WindowResult], None] | None,
                running: RunningDevices | None) -> DeviceRun:
    """One attempt: start the device, check it is the run's, stream (or replay) the plan,
    stop it; what it answered."""
    window, hop = profile.window, profile.hop
    windows = plan.windows
    results: list[WindowResult | None] = []
    deadline_misses = 0
    seconds = 0.0  # streaming only: start-up and HELLO are not the device's throughput
    with (running or RunningDevices()).started(device) as device, device_session(
            device, firmware, timeouts, options.link_faults, flashed=options.flash) as session:
        info = session.info
        check_device(info, model, profile, device.url, flashed=options.flash)
        url = device.url  # for the report: a stopped device may have none
        if options.bulk:
            t0 = time.monotonic()
            got = {r.index: r for r in session.replay(timeouts.reply, on_result=progress)}
            seconds = time.monotonic() - t0
            # The device numbers windows across segments: the run's own numbering.
            results = [got.get(k) for k in range(len(windows))]
        else:
            for segment in plan.segments:
                counts = counts_from_g(recording.accel_g[segment])
                rate = profile.sample_rate_hz if options.realtime else None
                t0 = time.monotonic()
                got = {r.index: r for r in session.stream(counts, rate, on_result=progress)}
                seconds += time.monotonic() - t0
                for k in range((len(segment) - window) // hop + 1):
                    result = got.get(k)
                    results.append(result)
                    # Late when it arrives after the next window's last sample was due.
                    due = t0 + (window - 1 + (k + 1) * hop) / profile.sample_rate_hz
                    if options.realtime and result is not None and result.received_at > due:
                        deadline_misses += 1
        stats = session.stats()
        link = asdict(session.link) | {"injected_faults": session.injected_faults}
    return DeviceRun(
        variant=options.variant, backend=options.backend,
        platform=firmware.platform, counter_unit=info.counter_unit,
        class_index=[r.class_index if r else None for r in results],
        logits=[r.logits if r else None for r in results],
        latency=[r.latency if r else None for r in results],
        stack_peak=stats["stack_peak"] or None, memory=firmware.memory,
        realtime=options.realtime, deadline_misses=deadline_misses, seconds=seconds,
        bulk=options.bulk,
        link=link | {"device_bad_frames": stats["bad_frames"], "overruns": stats["overruns"]},
        device={"url": url, "target": info.target, "build_id": info.build_id,
                "model_hash": info.model_hash, "model_variant": info.model_variant,
                "artefact": str(firmware.path)})


class RunningDevices:
    """The devices the jobs of one `harness run` have started, for the main thread to stop
    them all on Ctrl-C or SIGTERM: each job's thread then ends with an error, and no job
    starts a device (or a retry) after that."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._devices: set[Device] = set()
        self.stopping = False

    @contextlib.contextmanager
    def started(self, device: Device) -> Iterator[Device]:
        """`device` started and held here until it stops; KeyboardInterrupt once stopping."""
        with self._lock:
            self._check()
            self._devices.add(device)
        try:
            with device:
                with self._lock:
                    self._check()  # stop_all ran while it started
                yield device
        finally:
            with self._lock:
                self._devices.discard(device)

    def _check(self) -> None:
        if self.stopping:
            raise KeyboardInterrupt("the run is stopping")

    def stop_all(self) -> None:
        """Stop every held device now; refuse any later one. Idempotent."""
        with self._lock:
            self.stopping = True
            devices = list(self._devices)
        for device in devices:
            device.stop()


@dataclass(frozen=True)
class RunJob:
    """One run of several (`harness run --jobs N`): a run directory on one target, backend
    and variant."""

    run_dir: Path
    options: RunOptions
    recording: Recording | None = None  # default: the run directory's held-out animals

    @property
    def name(self) -> str:
        o = self.options
        return f"{self.run_dir} {o.target}-{o.backend}-{o.variant}"


def check_jobs(jobs: list[RunJob], workers: int) -> None:
    """Refuse jobs that would share a report folder (and so a build folder), or a board that
    two jobs at once would talk to."""
    by_folder: dict[Path, RunJob] = {}
    for job in jobs:
        folder = report_folder(job.run_dir, job.options).resolve()
        if folder in by_folder:
            raise HarnessError(f"{by_folder[folder].name} and {job.name} would both write "
                               f"{folder}: give each run its own folder (no --report with "
                               "several jobs), or leave one out")
        by_folder[folder] = job
    ported = [job for job in jobs if get_backend(job.options.backend).needs_port]
    if workers > 1 and len(ported) > 1:
        raise HarnessError(f"{len(ported)} jobs on backend {ported[0].options.backend!r} would "
                           f"talk to the one board on --port at once: use --jobs 1")


JobOutcome = RunReport | HarnessError


def run_jobs(jobs: list[RunJob], workers: int,
             on_done: Callable[[RunJob, JobOutcome], None] | None = None) -> list[JobOutcome]:
    """Run `jobs`, `workers` at a time, each in a thread of its own that starts and stops its
    device (run_on_device); the outcomes in the jobs' order, a HarnessError for a job that
    failed with one. `on_done` sees each as it ends. On Ctrl-C, SIGTERM or a bug every device
    is stopped before this returns (RunningDevices)."""
    check_jobs(jobs, workers)
    running = RunningDevices()
    outcomes: dict[int, JobOutcome] = {}
    pool = ThreadPoolExecutor(max_workers=min(workers, len(jobs)),
                              thread_name_prefix="harness-run")
    futures = {pool.submit(run_on_device, job.run_dir, job.options, job.recording,
                           running=running): n for n, job in enumerate(jobs)}
    try:
        for future in as_completed(futures):
            n = futures[future]
            try:
                outcome: JobOutcome = future.result()
            except HarnessError as error:
                outcome = error
            outcomes[n] = outcome
            if on_done is not None:
                on_done(jobs[n], outcome)
    except BaseException:
        running.stop_all()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [outcomes[n] for n in range(len(jobs))]
