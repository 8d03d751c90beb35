"""Assertion helpers for a device run's report, for use in anyone's own tests:

    report = hil_run(variant="q16")
    assert_int_exact(report)
    assert_float_agreement(report)             # the target's threshold for q16
    assert_float_agreement(report, minimum=0.995)
    assert_meets_deadline(report)
    assert_fits(report)
    assert_no_regression(report, "baselines/eartag-qemu-q16.json", latency_percent=5)

A limit not given is the one the run was checked against (`report.thresholds`: the target
profile, pyproject.toml, then the command line).
"""

from __future__ import annotations

from pathlib import Path

from harness.agreement import RunReport


def assert_int_exact(report: RunReport, minimum: float | None = None) -> None:
    """The device logits equal the integer reference on (at least) `minimum` of the windows."""
    minimum = report.thresholds.min_int_exact_fraction if minimum is None else minimum
    fraction = report.int_exact_fraction
    assert fraction is not None, f"{report.target}: the {report.variant} variant is not integer"
    assert fraction >= minimum, (f"{report.target}: {fraction} of windows bit-exact < {minimum}; "
                                 f"first mismatch at window {report.first_mismatch}")


def assert_float_agreement(report: RunReport, minimum: float | None = None) -> None:
    """Top-1 agreement with the float model of at least `minimum`."""
    if minimum is None:
        minimum = report.thresholds.min_float_agreement(report.variant)
    agreement = report.float_top1_agreement
    assert agreement >= minimum, (f"{report.target}: top-1 agreement with the float model "
                                  f"{agreement:.4f} < {minimum}")


def assert_no_missed_windows(report: RunReport, maximum: float | None = None) -> None:
    """At most `maximum` windows (the threshold: none) got no result."""
    maximum = report.thresholds.max_missed_windows if maximum is None else maximum
    assert report.missed_windows <= maximum, (
        f"{report.target}: {report.missed_windows} of {report.windows} windows got no result")


def assert_meets_deadline(report: RunReport) -> None:
    """The slowest inference fits in one hop at the target clock, and the p99 in its budget
    (the share of the hop in the thresholds)."""
    latency = report.latency
    assert latency.checked, "latency on this backend says nothing about the tag"
    assert latency.max <= latency.deadline, (
        f"{report.target}: max latency {latency.max:,} {latency.unit} > deadline "
        f"{latency.deadline:,}")
    assert latency.p99 <= latency.budget, (
        f"{report.target}: p99 latency {latency.p99:,} {latency.unit} > budget "
        f"{latency.budget:,}")


def assert_fits(report: RunReport) -> None:
    """Flash and RAM (static plus measured stack peak) within the real device's."""
    memory = report.memory
    assert memory.flash is not None, "memory is only known for firmware builds"
    assert memory.flash <= memory.flash_budget, (
        f"{report.target}: flash {memory.flash} B > {memory.flash_budget} B")
    assert memory.ram_used <= memory.ram_budget, (
        f"{report.target}: RAM {memory.ram_used} B > {memory.ram_budget} B")


def assert_passed(report: RunReport) -> None:
    """Every check of the report held."""
    assert report.passed, f"{report.target}: " + "; ".join(report.failures)


def assert_no_regression(report: RunReport, baseline: Path | str | RunReport,
                         **tolerances: float) -> None:
    """No figure of `report` regressed against `baseline` (a baseline file, a report.json, a
    run directory or a RunReport), with the target's tolerances unless given here."""
    from harness.baseline import Snapshot, Tolerances, compare, format_table, load_snapshot

    before = (Snapshot.of_report(baseline) if isinstance(baseline, RunReport)
              else load_snapshot(Path(baseline)))
    comparison = compare(before, Snapshot.of_report(report),
                         Tolerances.resolve(before.target, tolerances))
    assert comparison.passed, (f"{report.target}: regressed: {', '.join(comparison.regressions)}"
                               f"\n{format_table(comparison)}")
