"""Instructions per inference and per MAC of each operation of the model, on every emulated target
and fixed-point variant, against the deadline and the budget, and as a ratio to the plain-C
reference kernels.

    .venv/bin/python benchmarks/kernels.py [--runs runs/demo] [--variants q16,q8]

Needs a run directory per target (`harness demo` makes runs/demo/eartag and runs/demo/collar).
Each figure comes from a real QEMU run (-icount, so instructions): benchmarks/c/op_timer.c is
built with the run's C and -DTAG_MODEL_TRACE, and charges the time between two of the model's
trace hooks to the operation that just ran; the hook's own cost, measured over 1000 calls, is
taken off. The same is built a second time with -DTAG_NN_PLAIN_C, the plain C kernels on every
core, for the ratio.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from readme_tables import write_block  # beside this script, on sys.path when it runs

from device_sim.backends.qemu import QemuDevice
from device_sim.crossbuild import build_firmware
from device_sim.targets import load_target, target_names
from harness.agreement import Thresholds
from models.quantize import IntDense, IntGRU
from models.rundir import RunDirectory
from models.tracing import per_step_ops

OP_TIMER = Path(__file__).parent / "c" / "op_timer.c"
LINE = re.compile(r"^(OP|HOOK|TOTAL)(?: (\d+))? (\d+) (\d+)$")


def macs(op, window: int, per_step: bool) -> int:
    """Multiply-accumulates of one operation over one inference."""
    steps = window if per_step else 1
    if isinstance(op, IntDense):
        return int(op.w_int.size) * steps
    if isinstance(op, IntGRU):
        return int(op.w_ih_int.size + op.w_hh_int.size) * window
    return 0


def op_counts(folder: Path, target_name: str, out: Path, plain: bool) -> dict[str, object]:
    """{'ops': [(instructions, calls)], 'hook': per call, 'total': instructions} of one run."""
    target = load_target(target_name)
    defines = {"TAG_MODEL_TRACE": ""} | ({"TAG_NN_PLAIN_C": ""} if plain else {})
    elf = build_firmware(target, target.platform_for("qemu"),
                         [OP_TIMER, folder / "tag_model.c", folder / "tag_nn.c"], [folder], out,
                         defines, name="op_timer_plain" if plain else "op_timer")
    found: dict[str, object] = {"ops": []}
    with QemuDevice(elf, target, timeout=120) as device:
        port = device.open(timeout=120)
        while "total" not in found:
            line = port.readline().decode("ascii", "replace").strip()
            if not line:
                raise RuntimeError(f"{elf.name} printed nothing more; {device.stderr}")
            kind, _, count, calls = LINE.match(line).groups()
            if kind == "OP":
                found["ops"].append((int(count), int(calls)))
            elif kind == "HOOK":
                found["hook"] = int(count) / int(calls)
            else:
                found["total"] = int(count)
    return found


def table(run_dir: Path, target_name: str, variant: str) -> tuple[list[str], dict[str, float]]:
    """The per-operation table of one target and variant, and its summary row's figures."""
    run = RunDirectory(run_dir)
    model = run.load_quantized(variant)
    folder = run.c_dir(variant)
    profile = load_target(target_name)
    build = run.path / "build" / f"bench-kernels-{variant}"
    tuned = op_counts(folder, target_name, build, plain=False)
    plain = op_counts(folder, target_name, build, plain=True)
    per_step = {op.name for op in model.ops[:per_step_ops(model.ops)]}

    def net(found, i: int) -> float:
        count, calls = found["ops"][i]
        return count - calls * found["hook"]

    lines = [f"### {target_name}, {variant}", "",
             "| operation | instructions / inference | MACs | instructions / MAC | plain C | "
             "plain C / tuned |", "|---|---|---|---|---|---|"]
    def per_mac(found, i: int) -> float:
        return net(found, i) / macs(model.ops[i], model.window, model.ops[i].name in per_step)

    for i, op in enumerate(model.ops):
        n = macs(op, model.window, op.name in per_step)
        mine, theirs = net(tuned, i), net(plain, i)
        lines.append(f"| {op.name} | {mine / 1e6:.2f} M | {n:,} | "
                     f"{f'{per_mac(tuned, i):.2f}' if n else '-'} | "
                     f"{theirs / 1e6:.2f} M | {theirs / mine:.2f} |")
    calls = sum(c for _, c in tuned["ops"])
    total = tuned["total"] - calls * tuned["hook"]
    plain_total = plain["total"] - sum(c for _, c in plain["ops"]) * plain["hook"]
    deadline = profile.in_unit(profile.deadline_cycles, "instructions")
    budget = deadline * Thresholds.resolve(profile).latency_share_of_hop
    all_macs = sum(macs(op, model.window, op.name in per_step) for op in model.ops)
    lines += [f"| **total** | **{total / 1e6:.2f} M** | {all_macs:,} | | "
              f"{plain_total / 1e6:.2f} M | {plain_total / total:.2f} |", "",
              f"total {total / 1e6:.2f} M instructions: {total / deadline:.0%} of the deadline "
              f"({deadline / 1e6:.1f} M), {total / budget:.0%} of the budget "
              f"({budget / 1e6:.1f} M)", ""]
    # The GRU and the dense layer before it (the input perceptron), per MAC.
    gru = next(i for i, op in enumerate(model.ops) if isinstance(op, IntGRU))
    summary = {"gru": per_mac(tuned, gru), "gru_plain": per_mac(plain, gru),
               "perceptron": per_mac(tuned, gru - 1), "total": total,
               "plain_total": plain_total, "budget_share": total / budget}
    return lines, summary


def summary_table(rows: dict[tuple[str, str], dict[str, float]]) -> str:
    """One row per target and variant: what README.md shows."""
    lines = ["| target, variant | GRU instructions / MAC | plain C | perceptron instructions / MAC "
             "| total per inference | of the budget (half the deadline) | plain C total |",
             "|---|---|---|---|---|---|---|"]
    for (target_name, variant), r in rows.items():
        lines.append(f"| {load_target(target_name).label}, {variant} | {r['gru']:.2f} | "
                     f"{r['gru_plain']:.2f} | {r['perceptron']:.2f} | {r['total'] / 1e6:.2f} M | "
                     f"{r['budget_share']:.0%} | {r['plain_total'] / 1e6:.2f} M |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/demo"))
    parser.add_argument("--variants", default="q16,q8")
    parser.add_argument("--readme", action="store_true",
                        help="write the summary into README.md's 'kernels' table")
    args = parser.parse_args()
    rows = {}
    for target_name in target_names():
        for variant in args.variants.split(","):
            lines, rows[target_name, variant] = table(args.runs / target_name, target_name,
                                                      variant)
            print("\n".join(lines))
    print(summary_table(rows))
    if args.readme:
        write_block("kernels", summary_table(rows))


if __name__ == "__main__":
    main()
