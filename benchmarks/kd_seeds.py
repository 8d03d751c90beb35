"""Distilled against non-distilled student over several seeds, with 16/8-bit DQ agreement.

    .venv/bin/python benchmarks/kd_seeds.py [--seeds 0 1 2] [--epochs 20] [--data PATH]

Trains the teacher and the GRU-MLP student with and without knowledge distillation once per seed
(each seed also draws its own held-out animals and, for --synthetic, its own recording), quantizes
the distilled student, and prints per-seed figures, mean ± standard deviation, and whether the
distilled student's mean MCC is at least the non-distilled mean minus one standard deviation.
Run directories are kept under --out for inspection.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from device_sim.targets import Framing, load_target
from models.config import ModelSizes, TrainConfig, TrainOptions
from models.pipeline import DataSource, quantize_run, train_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--data", type=Path, help="a recording; default: the synthetic one")
    parser.add_argument("--units", default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/kd_seeds"))
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--target", default="eartag", help="sets the rate, window and hop")
    args = parser.parse_args()

    framing = Framing.of(load_target(args.target))
    rows = []
    for seed in args.seeds:
        recording = DataSource(path=args.data, units=args.units).load(framing.rate_hz, seed)
        started = time.perf_counter()
        options = TrainOptions(framing, ModelSizes(hidden=args.hidden, perceptron=args.hidden),
                               TrainConfig(epochs=args.epochs, seed=seed, progress=False))
        run_dir = args.out / f"seed{seed}"
        metrics = train_run(recording, run_dir, options)
        quantized = quantize_run(run_dir)
        rows.append({"seed": seed, "teacher": metrics["teacher"]["mcc"],
                     "kd": metrics["student_kd"]["mcc"], "no_kd": metrics["student_no_kd"]["mcc"],
                     "q16": quantized["16"]["top1_agreement"],
                     "q8": quantized["8"]["top1_agreement"],
                     "seconds": time.perf_counter() - started})
        r = rows[-1]
        print(f"seed {seed}: MCC teacher {r['teacher']:.3f}  KD {r['kd']:.3f}  no KD "
              f"{r['no_kd']:.3f}  | top-1 agreement q16 {r['q16']:.4f}  q8 {r['q8']:.4f}  "
              f"| {r['seconds']:.0f} s", flush=True)

    def spread(key: str) -> tuple[float, float]:
        values = [r[key] for r in rows]
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    print(f"\nsource: {recording.source}")
    for key, label in (("teacher", "teacher"), ("kd", "student KD"), ("no_kd", "student no KD"),
                       ("q16", "q16 agreement"), ("q8", "q8 agreement")):
        mean, std = spread(key)
        print(f"{label:15s} {mean:.4f} ± {std:.4f}")
    kd_mean, _ = spread("kd")
    no_kd_mean, no_kd_std = spread("no_kd")
    verdict = "holds" if kd_mean >= no_kd_mean - no_kd_std else "does NOT hold"
    print(f"KD mean MCC >= no-KD mean - 1 std ({no_kd_mean - no_kd_std:.4f}): {verdict}")


if __name__ == "__main__":
    main()
