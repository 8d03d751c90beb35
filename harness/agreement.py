"""What a device run asserts, against the float model and the integer reference on the same
windows (DESIGN.md, "Agreement"), and the report that carries it.

Every check has a name; a run passes when the list of failed checks is empty. Thresholds come
from the target profile's [thresholds] and [budget], overridden by pyproject.toml
([tool.harness.thresholds]) and the command line, in that order.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device_sim.targets import TargetProfile
from harness.errors import HarnessError
from models.metrics import classification_metrics


def thresholds(profile: TargetProfile, overrides: dict[str, float] | None = None,
               pyproject: Path | None = Path("pyproject.toml")) -> dict[str, float]:
    """The profile's thresholds, then pyproject.toml's, then explicit overrides."""
    merged = dict(profile.thresholds) | {
        "latency_share_of_hop": profile.latency_share_of_hop,
        "cycles_per_instruction": profile.cycles_per_instruction}
    if pyproject is not None and pyproject.is_file():
        table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("harness", {})
        merged |= table.get("thresholds", {})
    for name, value in (overrides or {}).items():
        if name not in merged:
            raise HarnessError(f"unknown threshold {name!r}; known: {', '.join(sorted(merged))}")
        merged[name] = float(value)
    return merged


@dataclass
class DeviceRun:
    """What came back from the device for windows[i] (None where the result was lost)."""

    variant: str  # "q16", "q8" or "f32"
    backend: str
    counter_unit: str
    class_index: list[int | None]
    logits: list[np.ndarray | None]
    latency: list[int | None]
    stack_peak: int | None  # bytes, from the painted stack; None where unknown
    memory: dict[str, int] | None  # from the ELF; None for host-native builds
    realtime: bool
    deadline_misses: int
    seconds: float
    link: dict[str, Any]
    device: dict[str, Any]


def _percentile(values: np.ndarray, q: float) -> int:
    return int(np.percentile(values, q, method="higher"))


def evaluate(run: DeviceRun, profile: TargetProfile, labels: np.ndarray, n_classes: int,
             float_logits: np.ndarray, int_reference: np.ndarray | None,
             limits: dict[str, float]) -> dict[str, Any]:
    """The report of one device run; `passed` is True when no check failed."""
    got = np.array([c is not None for c in run.class_index])
    n = len(got)
    missed = int(n - got.sum())
    failures: list[str] = []

    def check(name: str, ok: bool, detail: str) -> None:
        if not ok:
            failures.append(f"{name}: {detail}")

    device_class = np.array([c if c is not None else -1 for c in run.class_index])
    float_class = float_logits.argmax(axis=1)
    agreement = float(np.mean(device_class[got] == float_class[got])) if got.any() else 0.0

    exact_fraction = first_mismatch = None
    float_error = None
    if int_reference is not None:
        exact = np.array([g and np.array_equal(run.logits[i], int_reference[i])
                          for i, g in enumerate(got)])
        exact_fraction = float(exact[got].mean()) if got.any() else 0.0
        wrong = np.flatnonzero(got & ~exact)
        first_mismatch = int(wrong[0]) if len(wrong) else None
        check("int_exact", exact_fraction >= limits["min_int_exact_fraction"],
              f"{exact_fraction:.4f} of windows equal the integer reference "
              f"(first mismatch at window {first_mismatch})")
    else:
        device_logits = np.stack([run.logits[i] for i in np.flatnonzero(got)])
        float_error = float(np.abs(device_logits - float_logits[got]).max())
    minimum = limits[f"min_float_top1_agreement_{run.variant}"]
    check("float_top1_agreement", agreement >= minimum,
          f"{agreement:.4f} < {minimum} top-1 agreement with the float model")
    check("missed_windows", missed <= limits["max_missed_windows"],
          f"{missed} of {n} windows got no result")

    def scores(classes: np.ndarray) -> dict[str, float]:
        m = classification_metrics(labels[got], classes[got], n_classes)
        return {"accuracy": m["accuracy"], "mcc": m["mcc"]}

    device_scores, float_scores = scores(device_class), scores(float_class)

    latencies = np.array([v for v in run.latency if v is not None])
    deadline_cycles = profile.deadline_cycles
    budget = profile.in_unit(deadline_cycles * limits["latency_share_of_hop"], run.counter_unit)
    deadline = profile.in_unit(deadline_cycles, run.counter_unit)
    latency = {"unit": run.counter_unit, "p50": _percentile(latencies, 50),
               "p99": _percentile(latencies, 99), "max": int(latencies.max()),
               "budget": None if budget is None else int(budget),
               "deadline": None if deadline is None else int(deadline),
               "checked": budget is not None}
    if budget is not None:
        latency["share_of_deadline"] = latency["max"] / deadline
        check("latency_budget", latency["p99"] <= budget,
              f"p99 {latency['p99']} {run.counter_unit} > budget {int(budget)} "
              f"({limits['latency_share_of_hop']:.0%} of the hop)")
        check("deadline", latency["max"] <= deadline,
              f"max {latency['max']} {run.counter_unit} > deadline {int(deadline)} (one hop, "
              f"{profile.hop_seconds:.3f} s at {profile.clock_hz / 1e6:g} MHz)")
    if run.realtime:
        check("realtime", run.deadline_misses == 0,
              f"{run.deadline_misses} results arrived after the next window was due")

    memory: dict[str, Any] = {"flash": None, "ram_static": None, "stack_peak": run.stack_peak,
                              "flash_budget": profile.flash_bytes,
                              "ram_budget": profile.ram_bytes}
    if run.memory is not None:
        memory |= {"flash": run.memory["flash"], "ram_static": run.memory["ram_static"],
                   "stack_reserved": run.memory["stack_reserved"]}
        check("flash", memory["flash"] <= profile.flash_bytes,
              f"{memory['flash']} B > {profile.flash_bytes} B of flash")
        ram_used = memory["ram_static"] + (run.stack_peak or 0)
        memory["ram_used"] = ram_used
        check("ram", ram_used <= profile.ram_bytes,
              f"{ram_used} B (static + stack peak) > {profile.ram_bytes} B of RAM")
        if run.stack_peak is not None:
            check("stack", run.stack_peak <= run.memory["stack_reserved"],
                  f"stack peak {run.stack_peak} B > {run.memory['stack_reserved']} B reserved")
    return {
        "target": profile.name, "backend": run.backend, "variant": run.variant,
        "counter_unit": run.counter_unit, "realtime": run.realtime,
        "windows": n, "missed_windows": missed,
        "int_exact_fraction": exact_fraction, "first_mismatch": first_mismatch,
        "float_max_abs_logit_error": float_error,
        "float_top1_agreement": agreement,
        "accuracy": {"device": device_scores["accuracy"], "float": float_scores["accuracy"]},
        "mcc": {"device": device_scores["mcc"], "float": float_scores["mcc"]},
        "latency": latency, "memory": memory,
        "deadline_misses": run.deadline_misses if run.realtime else None,
        "seconds": round(run.seconds, 2),
        "windows_per_second": round(n / run.seconds, 2) if run.seconds > 0 else None,
        "link": run.link, "device": run.device,
        "thresholds": limits,
        "passed": not failures, "failures": failures,
    }


def format_report(report: dict[str, Any]) -> str:
    """The agreement table a person reads at the end of a run."""
    lat, mem = report["latency"], report["memory"]
    unit = lat["unit"]

    def kb(value: int | None) -> str:
        return "n/a" if value is None else f"{value / 1024:.1f} KB"

    exact = ("n/a (float)" if report["int_exact_fraction"] is None
             else f"{report['int_exact_fraction']:.4f}")
    rows = [
        ("windows (missed)", f"{report['windows']} ({report['missed_windows']})"),
        ("integer exactness", exact),
        ("top-1 agreement with float", f"{report['float_top1_agreement']:.4f}"),
        ("accuracy device / float",
         f"{report['accuracy']['device']:.3f} / {report['accuracy']['float']:.3f}"),
        ("MCC device / float", f"{report['mcc']['device']:.3f} / {report['mcc']['float']:.3f}"),
        (f"latency p50 / p99 / max ({unit})", f"{lat['p50']:,} / {lat['p99']:,} / {lat['max']:,}"),
    ]
    if lat["checked"]:
        rows.append((f"budget / deadline ({unit})",
                     f"{lat['budget']:,} / {lat['deadline']:,} "
                     f"(max is {lat['share_of_deadline']:.1%} of the deadline)"))
    if mem["flash"] is not None:
        rows += [("flash used / budget", f"{kb(mem['flash'])} / {kb(mem['flash_budget'])}"),
                 ("RAM static + stack peak / budget",
                  f"{kb(mem['ram_static'])} + {kb(mem['stack_peak'])} / "
                  f"{kb(mem['ram_budget'])}")]
    rows.append(("windows per second", f"{report['windows_per_second']}"))
    title = (f"{report['target']} on {report['backend']}, {report['variant']}"
             f"{' (real time)' if report['realtime'] else ''}")
    width = max(len(name) for name, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    lines.append("PASSED" if report["passed"] else "FAILED: " + "; ".join(report["failures"]))
    return "\n".join(lines)
