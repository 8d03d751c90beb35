"""Every target on every backend that runs here: start-up to HELLO, latency and its unit,
windows per second, flash and RAM, and the integer exactness of the run.

    .venv/bin/python benchmarks/backends.py [--runs runs/demo] [--max-windows 64] [--variant q16]

Needs a run directory per target (`harness demo` makes runs/demo/eartag and runs/demo/collar).
Each row is a real `harness run` (firmware built, device started, held-out windows streamed);
start-up is timed separately, from starting the device to its HELLO. Prints a Markdown table
and, per target, each backend's latency and throughput as a ratio to QEMU's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from device_sim import toolchain
from device_sim.backends import DeviceOptions, prepare_device, registry
from device_sim.targets import load_target, target_names
from harness.run import RunOptions, run_on_device
from harness.session import DeviceSession
from models.rundir import RunDirectory


def start_to_hello(run_dir: Path, target: str, backend: str, variant: str,
                   build_dir: Path) -> float:
    """Seconds from starting the device to its HELLO (the firmware is built beforehand)."""
    prepared = prepare_device(backend, RunDirectory(run_dir).model_sources(variant),
                              load_target(target), build_dir, DeviceOptions())
    started = time.perf_counter()
    with prepared.device as device, DeviceSession(device.url,
                                                  check_alive=device.check_alive):
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/demo"))
    parser.add_argument("--max-windows", type=int, default=64)
    parser.add_argument("--variant", default="q16")
    args = parser.parse_args()

    rows = []
    for target in target_names():
        run_dir = args.runs / target
        profile = load_target(target)
        for backend in registry().values():
            if backend.needs_port or (backend.kind != "host"
                                      and backend.name not in profile.backends):
                continue
            if toolchain.missing(backend.tools):
                print(f"{target} on {backend.name}: not run, needs "
                      f"{toolchain.install_hint(backend.tools)}")
                continue
            report = run_on_device(run_dir, RunOptions(
                target=target, backend=backend.name, variant=args.variant,
                max_windows=args.max_windows, report=Path("build/bench") / target / backend.name))
            hello = start_to_hello(run_dir, target, backend.name, args.variant,
                                   Path("build/bench") / target / f"{backend.name}-build")
            rows.append((target, backend.name, report, hello))

    print("| target | backend | platform | latency p50 | windows/s | start to HELLO | flash | "
          "static RAM + stack | integer exact |")
    print("|---|---|---|---|---|---|---|---|---|")
    for target, backend, r, hello in rows:
        flash = "n/a" if r.memory.flash is None else f"{r.memory.flash:,} B"
        static = "n/a" if r.memory.ram_static is None else f"{r.memory.ram_static:,}"
        memory = (flash, f"{static} + {r.memory.stack_peak or 0:,} B")
        print(f"| {target} | {backend} | {r.platform} | {r.latency.p50:,} {r.latency.unit} | "
              f"{r.windows_per_second} | {hello:.2f} s | {memory[0]} | {memory[1]} | "
              f"{r.int_exact_fraction} ({r.windows} windows) |")
    print()
    for target in target_names():
        on = {backend: r for t, backend, r, _ in rows if t == target}
        if "qemu" not in on:
            continue
        qemu = on["qemu"]
        for backend, r in on.items():
            if r.latency.unit == qemu.latency.unit:
                print(f"{target}: {backend} latency / QEMU's = "
                      f"{r.latency.p50 / qemu.latency.p50:.6f}")
            print(f"{target}: {backend} windows per second / QEMU's = "
                  f"{r.windows_per_second / qemu.windows_per_second:.2f}")


if __name__ == "__main__":
    main()
