"""Assertion helpers for a device run's report, for use in anyone's own tests:

    report = hil_run(variant="q16")
    assert_int_exact(report)
    assert_float_agreement(report, minimum=0.99)
    assert_meets_deadline(report)
    assert_fits(report)
"""

from __future__ import annotations

from typing import Any


def assert_int_exact(report: dict[str, Any]) -> None:
    """Every window's device logits equal the integer reference."""
    fraction = report["int_exact_fraction"]
    assert fraction == 1.0, (f"{report['target']}: {fraction} of windows bit-exact; first "
                             f"mismatch at window {report['first_mismatch']}")


def assert_float_agreement(report: dict[str, Any], minimum: float = 0.99) -> None:
    agreement = report["float_top1_agreement"]
    assert agreement >= minimum, (f"{report['target']}: top-1 agreement with the float model "
                                  f"{agreement:.4f} < {minimum}")


def assert_no_missed_windows(report: dict[str, Any]) -> None:
    assert report["missed_windows"] == 0, (f"{report['target']}: {report['missed_windows']} of "
                                           f"{report['windows']} windows got no result")


def assert_meets_deadline(report: dict[str, Any]) -> None:
    """The slowest inference fits in one hop at the target clock (and its budget)."""
    latency = report["latency"]
    assert latency["checked"], "latency on this backend says nothing about the tag"
    assert latency["max"] <= latency["deadline"], (
        f"{report['target']}: max latency {latency['max']:,} {latency['unit']} > deadline "
        f"{latency['deadline']:,}")
    assert latency["p99"] <= latency["budget"], (
        f"{report['target']}: p99 latency {latency['p99']:,} {latency['unit']} > budget "
        f"{latency['budget']:,}")


def assert_fits(report: dict[str, Any]) -> None:
    """Flash and RAM (static plus measured stack peak) within the real device's."""
    memory = report["memory"]
    assert memory["flash"] is not None, "memory is only known for firmware builds"
    assert memory["flash"] <= memory["flash_budget"], (
        f"{report['target']}: flash {memory['flash']} B > {memory['flash_budget']} B")
    assert memory["ram_used"] <= memory["ram_budget"], (
        f"{report['target']}: RAM {memory['ram_used']} B > {memory['ram_budget']} B")


def assert_passed(report: dict[str, Any]) -> None:
    """Every check of the report held."""
    assert report["passed"], f"{report['target']}: " + "; ".join(report["failures"])
