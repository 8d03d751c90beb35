"""`harness`: the command line of the pipeline.

    harness inspect  DATA [recording options] [--plot FILE]   (before training: what is read)
    harness train    --data PATH | --synthetic  --out RUN_DIR  [--epochs N] [--seed N] ...
    harness quantize RUN_DIR [--bits 16 8]
    harness export   RUN_DIR
    harness run      RUN_DIR --target TARGET --backend BACKEND [--variant V]
    harness trace    RUN_DIR --target TARGET --backend BACKEND --window N [--variant V]
    harness evaluate --data PATH --out DIR [--folds ID,ID | --max-folds N]   (leave one animal out)
    harness targets  DIR       (the same students on the host, the ear tag and the collar)
    harness report   DIR  [--seeds DIR ...]  (Markdown and PNG plots of an evaluation)
    harness baseline save REPORT|RUN_DIR [--out FILE]
    harness compare  BASELINE CANDIDATE [--tolerance NAME=VALUE] [--format markdown|json]
    harness demo

A HarnessError is printed as one line and exits with status 2; argparse does the same for an
unknown option value.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import textwrap
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from device_sim.backends import DEFAULT_BACKEND, backend_names, registry
from device_sim.model_sources import VARIANTS
from device_sim.targets import DEFAULT_TARGET, load_target, target_names
from harness.errors import (
    AssessmentWarning,
    HarnessError,
    InfrastructureWarning,
    RecordingWarning,
)
from harness.run import RunOptions
from harness.target_table import FIXED_POINT_WINDOWS, FLOAT_WINDOWS
from models.config import (
    STUDENT_KINDS,
    WORD_LENGTHS,
    DemoOptions,
    EvaluationOptions,
    ModelSizes,
    TrainConfig,
    TrainOptions,
)
from models.crossval import OTHER_CLASS
from models.pipeline import DataSource
from models.rundir import DEPLOYED_STUDENT

DATA_DEFAULTS = DataSource()
DEMO = DemoOptions()


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")\
            from None


def _number(kind: type, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> Any:
    """An argparse type: a `kind` within [low, high] (low excluded when `low_open`)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high) or value != value:  # NaN
            bound = (f"above {low:g}" if low_open else f"at least {low:g}") if low is not None \
                else ""
            bound += (" and " if bound and high is not None else "") + (
                f"at most {high:g}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"{text} is not {bound}")
        return value
    parse.__name__ = kind.__name__  # what argparse names in its messages
    return parse


COUNT = _number(int, 1)             # windows, epochs, units: one or more
NON_NEGATIVE = _number(int, 0)
POSITIVE = _number(float, 0.0, low_open=True)
NON_NEGATIVE_REAL = _number(float, 0.0)
SHARE = _number(float, 0.0, 1.0)    # a fraction of something
OPEN_SHARE = _number(float, 0.0, 1.0, low_open=True)
VALIDATION_SHARE = _number(float, 0.0, 0.9)  # some windows must be left to train on


def _str_tuple(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _choice_tuple(choices: Sequence[str]) -> Any:
    """An argparse type: one or more of `choices`, comma-separated."""
    def parse(text: str) -> tuple[str, ...]:
        names = _str_tuple(text)
        wrong = [name for name in names if name not in choices]
        if wrong or not names:
            raise argparse.ArgumentTypeError(
                f"invalid choice: {', '.join(map(repr, wrong)) or repr(text)} (choose from "
                f"{', '.join(map(repr, choices))}, comma-separated)")
        return tuple(dict.fromkeys(names))
    parse.__name__ = "names"
    return parse


def _add_data_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    source = parser.add_argument_group("recording")
    which = source.add_mutually_exclusive_group(required=required)
    which.add_argument("--data", type=Path, metavar="PATH",
                       help="a table (CSV or Parquet) or a folder of labelled bouts")
    which.add_argument("--synthetic", action="store_true",
                       help="a generated recording (synthetic, not animal data)")
    source.add_argument("--units", default=None, choices=["g", "m/s2", "counts"],
                        help="acceleration units (g for tables, m/s2 for bouts unless given)")
    source.add_argument("--scale", type=POSITIVE, help="g per count, with --units counts")
    source.add_argument("--source-rate", type=POSITIVE, metavar="HZ",
                        help="sample rate of the recording when it has no time column")
    source.add_argument("--drop-implausible", action="store_true",
                        help="leave out bouts whose median |a| is far from 1 g (reported "
                             "either way)")
    table = parser.add_argument_group("table columns")
    for column, what in (("time", "time in seconds or a timestamp; empty for none"),
                         ("x", "x acceleration"), ("y", "y acceleration"),
                         ("z", "z acceleration"), ("label", "behaviour label"),
                         ("animal", "animal id; empty for none")):
        table.add_argument(f"--{column}-column", default=getattr(DATA_DEFAULTS.columns, column),
                           metavar="NAME", help=f"column of the {what}")
    bouts = parser.add_argument_group("bout folders")
    bouts.add_argument("--axes", type=_str_tuple, default=DATA_DEFAULTS.axes,
                       metavar="X,Y,Z", help="the three axis columns of each bout file")
    bouts.add_argument("--bout-pattern", default=DATA_DEFAULTS.bout_pattern, metavar="REGEX",
                       help="file-name pattern with (?P<label>) and (?P<animal>) groups")
    bouts.add_argument("--label-from", choices=["file", "folder"],
                       default=DATA_DEFAULTS.label_from,
                       help="take a bout's label from its file name or its folder")
    bouts.add_argument("--bout-time-column", default=DATA_DEFAULTS.bout_time_column,
                       metavar="NAME", help="the time column of each bout file; empty for none")
    synthetic = parser.add_argument_group("synthetic recording")
    synthetic.add_argument("--synthetic-animals", type=COUNT,
                           default=DATA_DEFAULTS.synthetic_animals, help="animals")
    synthetic.add_argument("--synthetic-seconds", type=POSITIVE,
                           default=DATA_DEFAULTS.synthetic_seconds, help="seconds per bout")
    synthetic.add_argument("--synthetic-bouts", type=COUNT, default=DATA_DEFAULTS.synthetic_bouts,
                           help="bouts per behaviour and animal")


def _data_source(args: argparse.Namespace) -> DataSource:
    from models.recordings import TableColumns

    columns = TableColumns(time=args.time_column or None, x=args.x_column, y=args.y_column,
                           z=args.z_column, label=args.label_column,
                           animal=args.animal_column or None)
    return DataSource(path=None if args.synthetic else args.data, units=args.units,
                      scale=args.scale, rate_hz=args.source_rate, columns=columns,
                      axes=args.axes, bout_pattern=args.bout_pattern, label_from=args.label_from,
                      bout_time_column=args.bout_time_column or None,
                      synthetic_animals=args.synthetic_animals,
                      synthetic_seconds=args.synthetic_seconds,
                      synthetic_bouts=args.synthetic_bouts,
                      drop_implausible=args.drop_implausible)


def _framing(args: argparse.Namespace):
    from device_sim.targets import Framing

    target = Framing.of(load_target(args.target))
    framing = Framing(rate_hz=target.rate_hz if args.rate is None else args.rate,
                      window=target.window if args.window is None else args.window,
                      hop=target.hop if args.hop is None else args.hop, target=target.target)
    if framing.hop > framing.window:
        raise HarnessError(f"--hop {framing.hop} is longer than the window of {framing.window} "
                           "samples: windows would skip samples; give a hop from 1 to the window")
    return framing


# (config, field, type, help): one command-line option each, named after its field
# (--mlp-hidden sets ModelSizes.mlp_hidden), its default the config's.
CONFIG_OPTIONS = (
    ("sizes", "hidden", COUNT, "GRU hidden units"),
    ("sizes", "perceptron", COUNT, "input perceptron width"),
    ("sizes", "head", COUNT, "MLP head width of the GRU-MLP"),
    ("sizes", "mlp_pool", COUNT, "the MLP student's pooling over time"),
    ("sizes", "mlp_hidden", _int_tuple, "the MLP student's hidden layers"),
    ("sizes", "teacher_filters", _int_tuple, "filters of the teacher's three residual stages"),
    ("train", "epochs", COUNT, "at most this many epochs"),
    ("train", "batch_size", COUNT, "windows per batch"),
    ("train", "lr", POSITIVE, "Adam learning rate"),
    ("train", "temperature", POSITIVE, "KD temperature"),
    ("train", "alpha", SHARE, "weight of the distillation term"),
    ("train", "feature_weight", NON_NEGATIVE_REAL, "weight of the stage-feature term of "
     "multi-level KD"),
    ("train", "patience", NON_NEGATIVE, "early stopping after this many epochs without "
     "progress (0: off)"),
    ("train", "val_fraction", VALIDATION_SHARE, "training windows set aside to choose the "
     "epoch"),
    ("train", "seed", int, "seed of everything random"),
)


def _add_config_options(group: argparse._ArgumentGroup, which: str, config: Any) -> None:
    for owner, name, kind, text in CONFIG_OPTIONS:
        if owner == which:
            group.add_argument(f"--{name.replace('_', '-')}", type=kind,
                               default=getattr(config, name),
                               metavar="N,N" if kind is _int_tuple else None, help=text)


def _config_values(args: argparse.Namespace, which: str) -> dict[str, Any]:
    return {name: getattr(args, name) for owner, name, _, _ in CONFIG_OPTIONS if owner == which}


def _add_model_options(parser: argparse.ArgumentParser, sizes: ModelSizes,
                       train: TrainConfig) -> None:
    """Model sizes and training settings, with `sizes` and `train` as their defaults."""
    model = parser.add_argument_group("models")
    model.add_argument("--student", choices=STUDENT_KINDS, default=sizes.student,
                       help="student kind")
    _add_config_options(model, "sizes", sizes)
    kd = parser.add_argument_group("training and distillation")
    _add_config_options(kd, "train", train)
    kd.add_argument("--no-class-weights", action="store_true",
                    help="plain cross-entropy instead of inverse-frequency class weights")
    kd.add_argument("--quiet", action="store_true", help="no progress bars")


def _model_sizes(args: argparse.Namespace) -> ModelSizes:
    return ModelSizes(student=args.student, **_config_values(args, "sizes"))


def _train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(class_weights=not args.no_class_weights, progress=not args.quiet,
                       **_config_values(args, "train"))


def cmd_train(args: argparse.Namespace) -> int:
    from models.pipeline import train_run

    framing = _framing(args)
    recording = _data_source(args).load(framing.rate_hz, seed=args.seed)
    print(f"recording: {recording.source}, {len(recording)} samples at {recording.rate_hz} Hz",
          file=sys.stderr)
    options = TrainOptions(framing, _model_sizes(args), _train_config(args),
                           held_out=args.held_out, held_out_fraction=args.held_out_fraction,
                           stratify_split=args.stratify_split, multi_level=args.multi_level)
    metrics = train_run(recording, args.out, options, replace=args.force)
    for name in ("teacher", "student_kd", "student_no_kd", "student_mlkd"):
        if name not in metrics:
            continue
        m = metrics[name]
        print(f"{name:14s} accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  "
              f"MCC {m['mcc']:.3f}")
    print(f"held-out animals: {', '.join(metrics['data']['held_out_animals'])}; "
          f"run directory: {args.out}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """What the loader sees, before any training; 0 whatever it finds (the findings are for a
    person), 2 when the recording cannot be read."""
    from models.inspection import format_inspection, inspect_recording, plot_inspection

    if args.recording is not None:
        args.data = args.recording
    elif args.data is None and not args.synthetic:
        raise HarnessError("give the recording to inspect: harness inspect DATA (a table or a "
                           "folder of bouts), or --synthetic")
    found = inspect_recording(_data_source(args), _framing(args), args.held_out,
                              args.held_out_fraction, args.seed, args.stratify_split)
    print(format_inspection(found))
    if args.plot is not None:
        print(f"plot: {plot_inspection(found, args.plot)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from models.crossval import describe, leave_one_animal_out, merge_rare_classes, model_keys

    framing = _framing(args)
    recording = _data_source(args).load(framing.rate_hz, seed=args.seed)
    if args.merge_rare:
        recording = merge_rare_classes(recording, args.merge_rare, args.other_name)
    animals = sorted(set(recording.animals.tolist()))
    folds = args.folds or tuple(animals[:args.max_folds] if args.max_folds else animals)
    print(f"recording: {recording.source}; classes {', '.join(recording.class_names)}; "
          f"{len(animals)} animals; folds: {', '.join(folds)}", file=sys.stderr)
    options = EvaluationOptions(framing, _model_sizes(args), _train_config(args),
                                students=args.students,
                                multi_level=not args.no_multi_level, train_hop=args.train_hop,
                                folds=folds)

    def on_fold(fold: dict) -> None:
        scores = "  ".join(f"{key} {fold['models'][key]['mcc']:.3f}"
                           for key in ("teacher", f"{args.students[0]}/student_kd"))
        print(f"fold {fold['animal']}: MCC {scores}  ({fold['seconds']:.0f} s)", file=sys.stderr)

    evaluation = leave_one_animal_out(recording, args.out, options, on_fold)
    print(f"{len(evaluation['folds'])} folds: {', '.join(evaluation['folds'])}")
    print(f"{'model':28s} {'accuracy':>15s} {'macro-F1':>15s} {'MCC':>15s}")
    for key in model_keys(tuple(args.students), options.multi_level, options.word_lengths):
        row = evaluation["summary"][key]
        cells = " ".join(f"{row[m]['mean']:7.3f} ± {row[m]['std']:.3f}"
                         for m in ("accuracy", "macro_f1", "mcc"))
        print(f"{describe(key):28s} {cells}")
    print(f"evaluation: {args.out / 'evaluation.json'}")
    return 0


def cmd_ports(args: argparse.Namespace) -> int:
    from device_sim.boards import load_hardware_map, markdown_ports, resolve_port, serial_ports
    from device_sim.errors import PortError

    boards = load_hardware_map(args.hardware_map)  # a bad map fails before anything prints
    ports = serial_ports()
    print(markdown_ports(ports))
    if boards:
        print("\n| board | target | identity | port |\n|---|---|---|---|")
    for board in boards.values():
        identity = board.identity
        try:
            where = resolve_port(board.name, boards, ports)
        except PortError as error:
            where = f"not found ({type(error).__name__})"
        print(f"| {board.name} | {board.target or '-'} | {identity} | {where} |")
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from harness.evaluation_report import targets_markdown
    from harness.target_table import targets_table

    def progress(report) -> None:
        print(f"{report.target:7s} {report.backend:7s} {report.variant:4s} "
              f"{report.latency.p50:>12,} {report.latency.unit}  {report.path}", file=sys.stderr)

    table = targets_table(args.directory, args.fold, variants=args.variants,
                          max_windows=args.max_windows, float_windows=args.float_windows,
                          on_report=progress)
    print(targets_markdown(table))
    print(f"targets: {args.directory / 'targets.json'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.evaluation_report import write_report

    print(f"report: {write_report(args.directory, args.out, tuple(args.seeds))}")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from models.numeric import format_numerics
    from models.pipeline import quantize_run

    results = quantize_run(args.run_dir, tuple(args.bits), args.student)
    for bits in args.bits:
        r = results[str(bits)]
        print(f"{bits:2d}-bit DQ: top-1 agreement {r['top1_agreement']:.4f}  accuracy "
              f"{r['accuracy']:.3f}  MCC {r['mcc']:.3f}  parameters {r['param_bytes']} B")
        print(format_numerics(r["layers"]) + "\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from models.pipeline import export_run

    results = export_run(args.run_dir, args.student, check=not args.no_check)
    print(json.dumps(results, indent=2))
    return 0


def _threshold(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, got {text!r}") from None


def _run_jobs(args: argparse.Namespace) -> list:
    """The jobs of `harness run`: every run directory on each of its targets and every variant.
    Without --target, one run directory runs on the default target and several each on the
    target it was trained for."""
    from harness.run import RunJob
    from models.rundir import RunDirectory

    recordings: dict[str, Any] = {}  # --data or --synthetic, loaded once per target's rate
    jobs = []
    for given in args.run_dir:
        targets = args.target or (
            (DEFAULT_TARGET,) if len(args.run_dir) == 1
            else (RunDirectory(given).framing().target or DEFAULT_TARGET,))
        for target in targets:
            run_dir = given
            if args.retarget:
                from harness.target_table import retarget
                run_dir = retarget(given, load_target(target))
                if run_dir != given:
                    print(f"retargeted to {target}: {run_dir}", file=sys.stderr)
            if (args.data is not None or args.synthetic) and target not in recordings:
                recordings[target] = _data_source(args).load(load_target(target).sample_rate_hz,
                                                             args.seed)
            for variant in args.variant:
                options = RunOptions(target=target, backend=args.backend, variant=variant,
                                     realtime=args.realtime, port=args.port,
                                     max_windows=args.max_windows, seed=args.seed,
                                     timeout=args.timeout,
                                     timeout_multiplier=args.timeout_multiplier,
                                     retries=args.retries, link_faults=args.link_faults,
                                     overrides=dict(args.threshold), report=args.report,
                                     bulk=args.bulk, hardware_map=args.hardware_map,
                                     flash=args.flash, place=args.place,
                                     coordinator=args.coordinator, lg_env=args.lg_env)
                jobs.append(RunJob(run_dir, options, recordings.get(target)))
    return jobs


def cmd_run(args: argparse.Namespace) -> int:
    from harness.agreement import format_report
    from harness.run import run_jobs, run_on_device

    jobs = _run_jobs(args)
    baseline = None
    if args.baseline is not None:  # read first: a wrong path fails before the device starts
        if len(jobs) > 1:
            raise HarnessError(f"--baseline compares one run, these are {len(jobs)}: give one "
                               "RUN_DIR, target and variant")
        from harness.baseline import Tolerances, load_snapshot
        baseline = load_snapshot(args.baseline)
        tolerances = Tolerances.resolve(baseline.target, dict(args.tolerance))
    if len(jobs) > 1:
        def show(job, outcome) -> None:
            if isinstance(outcome, HarnessError):
                print(f"\n{job.name}: error: {outcome}")
            else:
                print("\n" + format_report(outcome) + f"\nreport: {outcome.path}")

        outcomes = run_jobs(jobs, args.jobs, show)
        print("\n=== summary")
        for job, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, HarnessError):
                o = job.options
                first = str(outcome).splitlines()[0] if str(outcome) else ""
                print(f"{o.target:7s} {o.variant:4s} ERROR {type(outcome).__name__}: {first}")
            else:
                print(summary_line(outcome))
        if any(isinstance(outcome, HarnessError) for outcome in outcomes):
            return 2
        return 0 if all(outcome.passed for outcome in outcomes) else 1
    job = jobs[0]
    report = run_on_device(job.run_dir, job.options, job.recording)
    print(format_report(report))
    print(f"report: {report.path}")
    if baseline is None:
        return 0 if report.passed else 1
    from harness.baseline import Snapshot, compare

    comparison = compare(baseline, Snapshot.of_report(report), tolerances)
    print()
    _print_comparison(comparison, "table", None)
    return 0 if report.passed and comparison.passed else 1


def cmd_flash(args: argparse.Namespace) -> int:
    from harness.run import RunOptions, flash_board

    info, port, firmware = flash_board(args.run_dir, RunOptions(
        target=args.target, backend=args.backend, variant=args.variant, port=args.port,
        hardware_map=args.hardware_map, place=args.place, coordinator=args.coordinator,
        lg_env=args.lg_env, timeout=args.timeout))
    print(f"flashed {firmware} on {port}: it says HELLO as {info.target}, model "
          f"{info.model_hash} ({info.model_variant}), build {info.build_id}: the run's")
    return 0


def summary_line(r) -> str:
    """One run report as a line of a summary table (harness run with several jobs, demo)."""
    lat, mem = r.latency, r.memory
    exact = "n/a" if r.int_exact_fraction is None else f"{r.int_exact_fraction:.3f}"
    share = "" if lat.deadline is None else f" ({lat.p99 / lat.deadline:.0%} of deadline)"
    memory = "" if mem.flash is None else f"  flash {mem.flash:,} B  RAM {mem.ram_used:,} B"
    retried = f"  after {len(r.attempts)} retries" if r.attempts else ""
    return (f"{r.target:7s} {r.variant:4s} exact {exact:>5s}  agreement "
            f"{r.float_top1_agreement:.3f}  p99 {lat.p99:>12,} {lat.unit}{share}{memory}  "
            f"{'passed' if r.passed else 'FAILED'}{retried}  {r.path}")


def _pick(args: argparse.Namespace) -> dict[str, str | None]:
    """--target, --backend and --variant, to pick a report in a run directory."""
    return {"target": args.target, "backend": args.backend, "variant": args.variant}


def cmd_baseline_save(args: argparse.Namespace) -> int:
    from harness.baseline import load_snapshot, save_baseline

    snapshot = load_snapshot(args.source, **_pick(args))
    path = save_baseline(snapshot, args.out)
    print(f"baseline of {snapshot.name} ({snapshot.figures['windows']} windows, model "
          f"{snapshot.model.get('hash')}): {path}")
    return 0


COMPARE_FORMATS = ("table", "markdown", "json")


def _print_comparison(comparison, output_format: str, out: Path | None) -> None:
    from harness.baseline import format_json, format_markdown, format_table

    text = {"table": format_table, "markdown": format_markdown,
            "json": format_json}[output_format](comparison)
    if out is not None:
        out.write_text(text if text.endswith("\n") else text + "\n")
    print(text.rstrip("\n"))


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.baseline import Tolerances, compare, load_snapshot

    baseline = load_snapshot(args.baseline, **_pick(args))
    candidate = load_snapshot(args.candidate, **_pick(args))
    comparison = compare(baseline, candidate,
                         Tolerances.resolve(baseline.target, dict(args.tolerance)))
    _print_comparison(comparison, args.format, args.out)
    if not comparison.passed:
        print(f"harness compare: regressed: {', '.join(comparison.regressions)}",
              file=sys.stderr)
    return 0 if comparison.passed else 1


def cmd_trace(args: argparse.Namespace) -> int:
    """One held-out window through the trace build: 0 if every layer equals the integer
    reference, 1 if one diverges."""
    from harness.trace import trace_window

    report = trace_window(args.run_dir, args.target, args.backend, args.variant, args.window,
                          args.timeout, port=args.port, link_faults=args.link_faults)
    print(report.format())
    return 0 if report.equal else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthetic recording -> teacher and students -> 16/8-bit DQ -> C -> firmware on the
    emulated ear tag and collar -> agreement tables."""
    from device_sim.targets import Framing
    from harness.agreement import format_report
    from harness.run import RunOptions, run_on_device
    from models.pipeline import make_run

    summary = []
    for name in args.targets:
        target = load_target(name)
        out = args.out / name
        framing = Framing.of(target)
        recording = DataSource().load(framing.rate_hz, seed=args.seed)
        print(f"\n=== {target.name}: {target.description}\nrecording: {recording.source}")
        train = dataclasses.replace(DEMO.train, epochs=args.epochs, seed=args.seed,
                                    progress=not args.quiet)
        metrics, quantized, export = make_run(recording, out,
                                              TrainOptions(framing, DEMO.sizes, train),
                                              replace=True)  # the demo's own folder
        print(_model_table(metrics, quantized, export))
        if note := demo_note(metrics, args.epochs):
            print(note)
        for variant, windows in (("q16", args.max_windows), ("f32", args.float_windows)):
            report = run_on_device(out, RunOptions(target=name, backend=args.backend,
                                                   variant=variant, max_windows=windows))
            print("\n" + format_report(report))
            summary.append(report)
    print("\n=== summary")
    for r in summary:
        print(summary_line(r))
    print(f"\nrun directories and reports: {args.out}/<target>/")
    return 0


def _model_table(metrics: dict, quantized: dict, export: dict) -> str:
    data = metrics["data"]
    lines = [f"held-out animals {', '.join(data['held_out_animals'])}: "
             f"{data['held_out_windows']} windows",
             f"{'model':16s} {'accuracy':>8s} {'MCC':>6s} {'top-1 vs float':>15s} "
             f"{'C == reference':>15s} {'parameters':>11s}"]
    for name in ("teacher", "student_no_kd", "student_kd"):
        m = metrics[name]
        lines.append(f"{name:16s} {m['accuracy']:8.3f} {m['mcc']:6.3f} {'':>15s} {'':>15s} "
                     f"{4 * m['parameters']:9d} B")
    for bits in ("16", "8"):
        q, e = quantized[bits], export[f"q{bits}"]
        exact = f"{e['bit_exact_windows']}/{e['windows']}"
        lines.append(f"{'student_kd q' + bits:16s} {q['accuracy']:8.3f} {q['mcc']:6.3f} "
                     f"{q['top1_agreement']:15.4f} {exact:>15s} {q['param_bytes']:9d} B")
    f32 = export["f32"]
    lines.append(f"{'student_kd f32 C':16s} {'':>8s} {'':>6s} {f32['top1_agreement']:15.4f} "
                 f"{'max err ' + format(f32['max_abs_logit_error'], '.1e'):>15s}")
    return "\n".join(lines)


def demo_note(metrics: dict[str, Any], epochs: int) -> str | None:
    """What the demo's model table cannot show, said under it when the run's recording is
    synthetic: a teacher below its students, or KD below no KD, is then no finding."""
    if not metrics["data"]["synthetic"]:
        return None
    return textwrap.fill(
        f"note: these models were trained for {epochs} epoch{'s' if epochs != 1 else ''} on a "
        "generated (synthetic) recording; a run this short cannot show what distillation "
        "does, so a teacher below its students or KD below no KD here is no finding. For a "
        "real comparison, run `harness evaluate --data RECORDING --out DIR` (leave one animal "
        "out, mean ± std over folds) and `harness report DIR`.", width=96,
        break_on_hyphens=False, break_long_words=False)


def _default(options: type, name: str) -> Any:
    """The default of field `name` of a config dataclass (models/config.py)."""
    found = next(f for f in dataclasses.fields(options) if f.name == name)
    return found.default_factory() if found.default is dataclasses.MISSING else found.default


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (tuples as written on the command line)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS \
                or not action.option_strings:
            return text
        if isinstance(default, tuple | list):
            default = ",".join(map(str, default))
        return f"{text} (default: {str(default).replace('%', '%%')})"


def _add_framing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", choices=target_names(), default=DEFAULT_TARGET,
                        help="sets the sample rate, window and hop")
    parser.add_argument("--rate", type=POSITIVE, metavar="HZ", help="override the target's rate")
    parser.add_argument("--window", type=COUNT, help="override the target's window (samples)")
    parser.add_argument("--hop", type=COUNT, help="override the target's hop (samples)")


def _add_split_options(parser: argparse.ArgumentParser) -> None:
    split = parser.add_argument_group("animal split")
    split.add_argument("--held-out", type=_str_tuple, metavar="ID,ID",
                       help="animals to evaluate on (default: a seeded share of them)")
    split.add_argument("--held-out-fraction", type=OPEN_SHARE,
                       default=_default(TrainOptions, "held_out_fraction"),
                       help="share of the animals held out when --held-out is not given")
    split.add_argument("--stratify-split", action="store_true",
                       help="without --held-out, hold out the animals that put the most "
                            "classes on both sides of the split (harness inspect shows it)")


def _add_tolerance_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tolerance", type=_threshold, action="append", default=[],
                        metavar="NAME=VALUE",
                        help="override a tolerance of the comparison, e.g. latency_percent=5 "
                             "or flash_bytes=1024 (defaults: the target profile's "
                             "[tolerances])")


def _add_pick_options(parser: argparse.ArgumentParser) -> None:
    pick = parser.add_argument_group("which report of a run directory")
    pick.add_argument("--target", choices=target_names())
    pick.add_argument("--backend", choices=backend_names())
    pick.add_argument("--variant", choices=list(VARIANTS))


def _add_board_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", help="where a physical tag is attached, for a backend that "
                                       "needs a port: a device path (--backend serial --port "
                                       "/dev/ttyUSB0), serial-number:XYZ, location:LOC or the "
                                       "name of a board in the hardware map (`harness ports` "
                                       "lists them)")
    parser.add_argument("--hardware-map", type=Path, metavar="FILE",
                        help="TOML naming the boards ([boards.NAME]: target, serial_number, "
                             "location or port, flash, probe); default: pyproject.toml's "
                             "[tool.harness.hardware]")


def _board_backends() -> list[str]:
    return [name for name, backend in registry().items() if backend.kind == "board"]


def _add_place_options(parser: argparse.ArgumentParser) -> None:
    place = parser.add_argument_group("labgrid place (--backend labgrid)")
    place.add_argument("--place", metavar="NAME",
                       help="the labgrid place of a shared tag: acquired for the run and "
                            "released after it")
    place.add_argument("--coordinator", metavar="HOST:PORT",
                       help="the labgrid coordinator of --place (default: LG_COORDINATOR, else "
                            "127.0.0.1:20408, as labgrid-client)")
    place.add_argument("--lg-env", type=Path, metavar="FILE",
                       help="labgrid environment file whose bootstrap driver flashes the "
                            "place's tag (with --flash)")


def _backend_help(needs_port: bool | None = None) -> str:
    return "; ".join(f"{b.name}: {b.summary}" for b in registry().values()
                     if needs_port is None or b.needs_port == needs_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0],
                                     formatter_class=_HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=text,
                                   formatter_class=_HelpFormatter)

    train = command("train", "train the teacher and the students")
    _add_data_options(train)
    train.add_argument("--out", type=Path, required=True, metavar="RUN_DIR",
                       help="the run directory to write")
    _add_framing_options(train)
    _add_split_options(train)
    _add_model_options(train, _default(TrainOptions, "sizes"), _default(TrainOptions, "train"))
    train.add_argument("--multi-level", action="store_true",
                       help="also train a student by multi-level (stage-feature) KD")
    train.add_argument("--force", action="store_true",
                       help="replace the run in --out (its models, C and reports go)")
    train.set_defaults(func=cmd_train)

    inspect = command("inspect", "what the loader sees in a recording, before any training: "
                                 "bouts, rate, classes by animals, plausibility, the split")
    inspect.add_argument("recording", nargs="?", type=Path, metavar="DATA",
                         help="a table (CSV or Parquet) or a folder of labelled bouts")
    _add_data_options(inspect, required=False)
    _add_framing_options(inspect)
    _add_split_options(inspect)
    inspect.add_argument("--seed", type=int, default=_default(TrainConfig, "seed"),
                         help="seed of the split (as `harness train --seed`)")
    inspect.add_argument("--plot", type=Path, metavar="FILE",
                         help="also draw classes per animal and time per class to this PNG")
    inspect.set_defaults(func=cmd_inspect)

    evaluate = command("evaluate",
                       "leave-one-animal-out: the model pipeline once per held-out animal")
    _add_data_options(evaluate)
    evaluate.add_argument("--out", type=Path, required=True, metavar="DIR",
                          help="the evaluation directory to write (or resume)")
    _add_framing_options(evaluate)
    evaluate.add_argument("--train-hop", type=COUNT,
                          default=_default(EvaluationOptions, "train_hop"), metavar="SAMPLES",
                          help="hop between training windows (256: no overlap); held-out "
                               "windows keep the target's hop")
    evaluate.add_argument("--folds", type=_str_tuple, metavar="ID,ID",
                          help="hold out only these animals, one fold each")
    evaluate.add_argument("--max-folds", type=COUNT, metavar="N",
                          help="only the first N animals (in sorted order)")
    evaluate.add_argument("--students", type=_str_tuple,
                          default=_default(EvaluationOptions, "students"), metavar="KIND,KIND",
                          help="student kinds")
    evaluate.add_argument("--no-multi-level", action="store_true",
                          help="skip the multi-level KD students")
    evaluate.add_argument("--merge-rare", type=OPEN_SHARE, metavar="FRACTION",
                          help="merge classes under this fraction of the samples into one")
    evaluate.add_argument("--other-name", default=OTHER_CLASS, help="name of the merged class")
    _add_model_options(evaluate, _default(EvaluationOptions, "sizes"),
                       _default(EvaluationOptions, "train"))
    evaluate.set_defaults(func=cmd_evaluate)

    targets = command("targets", "the same students on the host and every emulated target: "
                                 "accuracy, MCC, agreement, latency, memory, energy (reports in "
                                 "RUN_DIR/reports/targets/, apart from those of harness run)")
    targets.add_argument("directory", type=Path, metavar="DIR",
                         help="an evaluation directory (harness evaluate) or a run directory")
    targets.add_argument("--fold", metavar="ID", help="the fold whose models run (default: "
                                                     "the first finished)")
    targets.add_argument("--variants", type=_str_tuple, default=VARIANTS,
                         metavar="V,V", help="model variants to run")
    targets.add_argument("--max-windows", type=COUNT, default=FIXED_POINT_WINDOWS,
                         help="held-out windows streamed through fixed-point firmware")
    targets.add_argument("--float-windows", type=COUNT, default=FLOAT_WINDOWS,
                         help="windows for float32 firmware (slow on the collar)")
    targets.set_defaults(func=cmd_targets)

    ports = command("ports", "serial ports with their USB identity, and the boards of the "
                             "hardware map with the port each is on")
    ports.add_argument("--hardware-map", type=Path, metavar="FILE",
                       help="TOML naming the boards (default: pyproject.toml's "
                            "[tool.harness.hardware])")
    ports.set_defaults(func=cmd_ports)

    report = command("report", "an evaluation as Markdown with PNG plots")
    report.add_argument("directory", type=Path, metavar="DIR",
                        help="an evaluation directory (harness evaluate)")
    report.add_argument("--out", type=Path, metavar="FOLDER",
                        help="where report.md and the plots go (default DIR/report)")
    report.add_argument("--seeds", type=Path, nargs="+", default=[], metavar="DIR",
                        help="the same evaluation trained with other --seed: weigh each KD "
                             "gain against the seed-to-seed spread")
    report.set_defaults(func=cmd_report)

    quantize = command("quantize", "dynamic fixed-point quantization")
    quantize.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    quantize.add_argument("--bits", type=int, nargs="+", choices=[8, 16],
                          default=list(WORD_LENGTHS), help="word lengths")
    quantize.add_argument("--student", choices=["student_kd", "student_no_kd"],
                          default=DEPLOYED_STUDENT, help="the float student to quantize")
    quantize.set_defaults(func=cmd_quantize)

    export = command("export", "generate C and check it on the host")
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    export.add_argument("--student", choices=["student_kd", "student_no_kd"],
                        default=DEPLOYED_STUDENT, help="the float student for the float32 "
                        "variant")
    export.add_argument("--no-check", action="store_true",
                        help="skip compiling on the host and comparing with the references")
    export.set_defaults(func=cmd_export)

    run = command("run", "stream a recording through a device and check it; several run "
                         "directories, targets or variants make one job each combination, run "
                         "--jobs at a time, each with its own device and report folder")
    run.add_argument("run_dir", type=Path, nargs="+", metavar="RUN_DIR")
    run.add_argument("--target", type=_choice_tuple(target_names()), metavar="T[,T]",
                     help=f"the device's target profile(s); default {DEFAULT_TARGET} for one "
                          "RUN_DIR, and for several each RUN_DIR's own (the target it was "
                          "trained for)")
    run.add_argument("--backend", choices=backend_names(), default=DEFAULT_BACKEND,
                     help=_backend_help())
    run.add_argument("--variant", type=_choice_tuple(VARIANTS), default=("q16",),
                     metavar="V[,V]", help="the model variant(s) to run")
    run.add_argument("--jobs", type=COUNT, default=1, metavar="N",
                     help="run N jobs at once, each starting and stopping its own device")
    run.add_argument("--retries", type=NON_NEGATIVE, default=_default(RunOptions, "retries"),
                     metavar="N",
                     help="start a run again up to N times after an infrastructure failure: an "
                          "emulator that dies or cannot start, no HELLO, a port that cannot "
                          "be opened or vanished; never after a failed check. Each retry is "
                          "in report.json's attempts")
    run.add_argument("--timeout-multiplier", type=POSITIVE,
                     default=_default(RunOptions, "timeout_multiplier"), metavar="X",
                     help="scale every timeout (the target profile's [timeouts.BACKEND], or "
                          "--timeout) by X, for a slow or busy machine")
    run.add_argument("--realtime", action="store_true",
                     help="send samples at the sensor's rate instead of as fast as allowed")
    run.add_argument("--bulk", action="store_true",
                     help="emulators and native only: load the recording into the device's "
                          "memory and replay it there, results only on the wire (not with "
                          "--realtime)")
    run.add_argument("--retarget", action="store_true",
                     help="a run trained at another rate (same window): run its weights on "
                          "the held-out recording resampled to the target's rate, from "
                          "RUN_DIR/retargeted/TARGET")
    _add_board_options(run)
    run.add_argument("--flash", action="store_true",
                     help="flash the firmware on the board first (as `harness flash` does)")
    _add_place_options(run)
    run.add_argument("--max-windows", type=COUNT, metavar="N",
                     help="stream a sample of N windows, stratified by class and animal and "
                          "seeded by --seed, instead of every window")
    run.add_argument("--timeout", type=POSITIVE, default=_default(RunOptions, "timeout"),
                     metavar="SECONDS",
                     help="longest wait for the device to start and for any answer from it "
                          "(default: the target profile's [timeouts.BACKEND] start and reply)")
    run.add_argument("--link-faults", metavar="OPTIONS",
                     help="damage the link on purpose: fault:// options such as "
                          "corrupt=0.01&drop=0.001&seed=1 (see harness/urlhandler)")
    run.add_argument("--threshold", type=_threshold, action="append", default=[],
                     metavar="NAME=VALUE", help="override a pass threshold")
    run.add_argument("--report", type=Path, metavar="FOLDER",
                     help="where report.json goes (default RUN_DIR/reports/...)")
    run.add_argument("--baseline", type=Path, metavar="FILE",
                     help="compare the run with this baseline (harness baseline save); a "
                          "regression fails the run")
    _add_tolerance_option(run)
    run.add_argument("--seed", type=int, default=0,
                     help="seed of the --max-windows sample and of --synthetic")
    _add_data_options(run, required=False)
    run.set_defaults(func=cmd_run)

    flash = command("flash", "flash a run's firmware on a board and check that it answers")
    flash.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    flash.add_argument("--target", choices=target_names(), default=DEFAULT_TARGET,
                       help="the board's target profile")
    flash.add_argument("--backend", choices=_board_backends(), default="serial",
                       help="how the board is reached")
    flash.add_argument("--variant", choices=list(VARIANTS), default="q16",
                       help="the model variant to flash")
    _add_board_options(flash)
    _add_place_options(flash)
    flash.add_argument("--timeout", type=POSITIVE, default=_default(RunOptions, "timeout"),
                       metavar="SECONDS",
                       help="longest wait for the board's port and HELLO after flashing")
    flash.set_defaults(func=cmd_flash)

    baseline = command("baseline", "baselines of device runs, to compare later runs with")
    baseline_commands = baseline.add_subparsers(dest="baseline_command", required=True)
    save = baseline_commands.add_parser(
        "save", help="write a baseline of a run", formatter_class=_HelpFormatter,
        description="write a baseline of a run: what ran, its figures and every window's "
                    "class, as versioned JSON to commit next to the model")
    save.add_argument("source", type=Path, metavar="REPORT|RUN_DIR",
                      help="a report.json or a run directory")
    save.add_argument("--out", type=Path, metavar="FILE",
                      help="the baseline file, or a folder for <target>-<backend>-<variant>.json "
                           "(default ./baseline-<target>-<backend>-<variant>.json)")
    _add_pick_options(save)
    save.set_defaults(func=cmd_baseline_save)

    compare = command("compare", "a candidate run against a baseline: regressions, changed "
                                 "windows, changed Q formats")
    compare.add_argument("baseline", type=Path, metavar="BASELINE",
                         help="a baseline, a report.json or a run directory")
    compare.add_argument("candidate", type=Path, metavar="CANDIDATE",
                         help="a report.json, a run directory or another baseline")
    _add_tolerance_option(compare)
    compare.add_argument("--format", choices=COMPARE_FORMATS, default="table",
                         help="table for a terminal, markdown for a pull request, json")
    compare.add_argument("--out", type=Path, metavar="FILE", help="also write it to FILE")
    _add_pick_options(compare)
    compare.set_defaults(func=cmd_compare)

    trace = command("trace", "one window layer by layer: where the device first differs "
                             "from the integer reference")
    trace.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    trace.add_argument("--target", choices=target_names(), default=DEFAULT_TARGET,
                       help="the device's target profile")
    trace.add_argument("--backend", choices=backend_names(), default=DEFAULT_BACKEND,
                       help=_backend_help())
    trace.add_argument("--window", type=NON_NEGATIVE, required=True, metavar="N",
                       help="the held-out window, numbered as `harness run` reports it")
    trace.add_argument("--variant", choices=list(VARIANTS), default="q16",
                       help="the fixed-point model variant to trace")
    trace.add_argument("--timeout", type=POSITIVE, default=_default(RunOptions, "timeout"),
                       metavar="SECONDS", help="longest wait for the device to start and for "
                       "any answer from it (default: the target profile's [timeouts.BACKEND])")
    trace.add_argument("--port", help="where a physical tag (flashed with the trace build) is "
                                      "attached, for a backend that needs a port")
    trace.add_argument("--link-faults", metavar="OPTIONS",
                       help="damage the link on purpose: fault:// options (see --link-faults "
                            "of run)")
    trace.set_defaults(func=cmd_trace)

    demo = command("demo", "the whole pipeline on a synthetic recording")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), metavar="RUN_DIR",
                      help="where the run directories go, one per target")
    demo.add_argument("--epochs", type=COUNT, default=DEMO.train.epochs,
                      help="training epochs of each model")
    demo.add_argument("--seed", type=int, default=DEMO.train.seed, help="seed of everything")
    demo.add_argument("--targets", type=_str_tuple,
                      default=tuple(sorted(target_names(), key=lambda n: n != DEFAULT_TARGET)),
                      metavar="T,T", help="targets to run on")
    unattended = [b.name for b in registry().values() if not b.needs_port]
    demo.add_argument("--backend", choices=unattended, default=DEFAULT_BACKEND,
                      help=_backend_help(needs_port=False))
    demo.add_argument("--max-windows", type=COUNT, default=DEMO.max_windows,
                      help="held-out windows streamed through the q16 firmware")
    demo.add_argument("--float-windows", type=COUNT, default=DEMO.float_windows,
                      help="windows for the float32 firmware (slow on the collar)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)
    return parser


class Terminated(BaseException):
    """SIGTERM (what a CI timeout sends): unwinds like Ctrl-C, so every device is stopped."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """The harness's own warnings as one line a person reads, 'harness: warning: ...'; any
    other as Python prints it."""
    if issubclass(category, (RecordingWarning, AssessmentWarning, InfrastructureWarning)):
        print(f"harness: warning: {message}", file=file or sys.stderr)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _print_warning
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return args.func(args)
    except HarnessError as error:
        print(f"harness {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"harness {args.command}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        warnings.showwarning = _python_showwarning
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
