"""Windows per second of accelerated streaming on every backend that runs here, and the guest
instructions per second of wall time that gives.

    .venv/bin/python benchmarks/throughput.py [--run runs/demo/eartag] [--windows 200]

Needs a run directory (`harness demo` makes runs/demo/eartag). Streams the held-out bouts whole,
one after the other, until about --windows windows (contiguous windows: each new one needs a
hop of new samples, as on the tag), as fast as the device's credit allows, and times the
streaming alone (start-up and HELLO excluded). For an emulator, the windows' own instruction
counts over the wall time give the guest instructions run per second of streaming: the closer
to the emulator's speed on compute alone, the less the link costs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from device_sim import toolchain
from device_sim.backends import DeviceOptions, prepare_device, registry
from device_sim.targets import load_target
from harness.run import bouts_to_stream
from harness.session import DeviceSession
from models.quantize import counts_from_g
from models.rundir import RunDirectory


def stream_bouts(run_dir: Path, target: str, backend: str, variant: str, windows: int,
                 build_dir: Path) -> dict[str, float]:
    run = RunDirectory(run_dir)
    profile = load_target(target)
    recording = run.heldout()
    bouts, planned = [], 0
    for bout in bouts_to_stream(recording, profile.window):
        bouts.append(bout)
        planned += (len(bout) - profile.window) // profile.hop + 1
        if planned >= windows:
            break
    prepared = prepare_device(backend, run.model_sources(variant), profile, build_dir,
                              DeviceOptions())
    with prepared.device as device, DeviceSession(device.url, baudrate=prepared.firmware.baudrate,
                                                  check_alive=device.check_alive) as session:
        unit = session.info.counter_unit
        started = time.perf_counter()
        results = [r for b in bouts for r in session.stream(counts_from_g(recording.accel_g[b]))]
        wall = time.perf_counter() - started
    guest = sum(r.latency for r in results) / wall if unit == "instructions" else None
    return {"windows": len(results), "seconds": wall, "windows_per_second": len(results) / wall,
            "ms_per_window": 1000 * wall / len(results), "guest_mips": guest and guest / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo/eartag"))
    parser.add_argument("--target", default="eartag")
    parser.add_argument("--variant", default="q16")
    parser.add_argument("--windows", type=int, default=200)
    args = parser.parse_args()
    profile = load_target(args.target)
    rows = {}
    for backend in registry().values():
        if backend.needs_port or (backend.kind != "host" and backend.name not in profile.backends):
            continue
        if toolchain.missing(backend.tools):
            print(f"{backend.name}: not run, needs {toolchain.install_hint(backend.tools)}")
            continue
        rows[backend.name] = stream_bouts(args.run, args.target, backend.name, args.variant,
                                          args.windows, Path("build/bench-throughput")
                                          / f"{args.target}-{backend.name}-{args.variant}")
    print(f"| {args.target} {args.variant} backend | windows | windows/s | ms per window | "
          "guest M instructions per wall second |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        mips = "n/a (host ns)" if row["guest_mips"] is None else f"{row['guest_mips']:.0f}"
        print(f"| {name} | {row['windows']:.0f} | {row['windows_per_second']:.1f} | "
              f"{row['ms_per_window']:.1f} | {mips} |")


if __name__ == "__main__":
    main()
