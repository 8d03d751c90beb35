"""Windows per second on every backend that runs here, streamed and bulk-replayed, and for the
instruction-counting emulators how close bulk replay comes to the emulator's compute alone.

    .venv/bin/python benchmarks/throughput.py [--runs runs/demo] [--windows 200] [--readme]

Needs a run directory per target (`harness demo` makes runs/demo/eartag and runs/demo/collar).
Takes the held-out bouts whole, one after the other, until about --windows windows (contiguous
windows: each new one needs a hop of new samples, as on the tag), and

- streams them as fast as the device's credit allows, timing the streaming alone (start-up and
  HELLO excluded);
- replays them in bulk (`harness run --bulk`): timed from REPLAY to REPLAY_DONE;
- on an emulator that counts instructions, runs benchmarks/c/infer_loop.c, the model's
  inference alone in a loop, timed from its START line to its DONE line (no start-up): the
  emulator's guest instructions per wall second on compute alone. Over the instructions per
  window (the RESULTs' latency) that is the compute-bound window rate, and the share is bulk's
  windows per second over it: what the rest (UART, host, ring) leaves of the emulator's speed.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
from readme_tables import write_block  # beside this script, on sys.path when it runs

from device_sim import toolchain
from device_sim.backends import DeviceOptions, prepare_device, registry
from device_sim.backends.qemu import QemuDevice
from device_sim.backends.renode import RenodeDevice
from device_sim.crossbuild import build_firmware
from device_sim.model_sources import ModelSources
from device_sim.replay import write_image
from device_sim.targets import TargetProfile, load_target, target_names
from harness.run import bouts_to_stream
from harness.session import DeviceSession
from models.quantize import counts_from_g
from models.rundir import RunDirectory

INFER_LOOP = Path(__file__).parent / "c" / "infer_loop.c"
READY = re.compile(rb"READY")
START = re.compile(rb"START\r\n")
DONE = re.compile(rb"DONE (\d+) (\d+)\r")
SHARE_NOISE = 1.10  # bulk's share may pass 100 % by the compute-alone run's noise, not more
COMPUTE_DEVICES = {"qemu": QemuDevice, "renode": RenodeDevice}  # instruction-counting


def chosen_bouts(run: RunDirectory, profile: TargetProfile, windows: int) -> list[np.ndarray]:
    """Wire counts of whole held-out bouts, in order, until about `windows` windows."""
    recording = run.heldout()
    bouts, planned = [], 0
    for bout in bouts_to_stream(recording, profile.window):
        bouts.append(counts_from_g(recording.accel_g[bout]))
        planned += (len(bout) - profile.window) // profile.hop + 1
        if planned >= windows:
            break
    return bouts


def timed(run: RunDirectory, profile: TargetProfile, backend: str, variant: str,
          bouts: list[np.ndarray], build_dir: Path, bulk: bool) -> dict[str, float]:
    """Stream (or replay) `bouts`: windows, wall seconds, instructions per window."""
    image = write_image(build_dir / "replay.bin", bouts) if bulk else None
    prepared = prepare_device(backend, run.model_sources(variant), profile, build_dir,
                              DeviceOptions(timeout=60.0, replay_image=image))
    with prepared.device as device, DeviceSession(device.url, 60.0,
                                                  baudrate=prepared.firmware.baudrate,
                                                  check_alive=device.check_alive) as session:
        unit = session.info.counter_unit
        started = time.perf_counter()
        results = session.replay() if bulk else [r for b in bouts for r in session.stream(b)]
        wall = time.perf_counter() - started
    per_window = (float(np.mean([r.latency for r in results])) if unit == "instructions"
                  else None)
    return {"windows": len(results), "seconds": wall, "windows_per_second": len(results) / wall,
            "instructions_per_window": per_window}


def compute_alone_mips(model: ModelSources, profile: TargetProfile, backend: str,
                       build_dir: Path, loops: int, repeats: int = 3) -> float:
    """Guest M instructions per wall second of the model's inference alone (infer_loop.c):
    the best of `repeats` runs, as an emulator's speed on the same code varies from run to
    run with what else the host does (by a quarter on QEMU here)."""
    platform = profile.platform_for(backend)
    elf = build_firmware(profile, platform, [INFER_LOOP, *model.sources], [model.folder],
                         build_dir, {"TAG_INFER_LOOPS": f"{loops}u"}, name="infer_loop")
    return max(_loop_mips(elf, profile, backend) for _ in range(repeats))


def _loop_mips(elf: Path, profile: TargetProfile, backend: str) -> float:
    with COMPUTE_DEVICES[backend](elf, profile, timeout=120.0) as device:
        port = device.open(timeout=1.0)
        give_up = time.monotonic() + 300.0

        def read_until(mark: re.Pattern[bytes]) -> re.Match[bytes]:
            text = b""
            while not (found := mark.search(text)):
                if time.monotonic() > give_up or not device.alive:
                    raise RuntimeError(f"{elf.name} said {text[-200:]!r}, not {mark.pattern!r}:"
                                       f" {device.stderr}")
                text += port.read(port.in_waiting or 1)
            return found

        read_until(READY)
        port.write(b"g")  # go
        read_until(START)
        started = time.perf_counter()
        found = read_until(DONE)
        wall = time.perf_counter() - started
    instructions, _ = map(int, found.groups())
    return instructions / wall / 1e6


def measure(run: RunDirectory, profile: TargetProfile, variant: str, windows: int,
            compute_loops: int) -> dict[str, dict]:
    """Stream, bulk and (on instruction-counting emulators) compute-alone figures per backend."""
    bouts = chosen_bouts(run, profile, windows)
    rows = {}
    for backend in registry().values():
        if backend.needs_port or (backend.kind != "host" and backend.name not in profile.backends):
            continue
        if toolchain.missing(backend.tools):
            print(f"{backend.name}: not run, needs {toolchain.install_hint(backend.tools)}")
            continue
        out = Path("build/bench-throughput") / f"{profile.name}-{backend.name}-{variant}"
        row = {"stream": timed(run, profile, backend.name, variant, bouts, out, False),
               "bulk": timed(run, profile, backend.name, variant, bouts, out, True)}
        if backend.name in COMPUTE_DEVICES:
            row["mips"] = compute_alone_mips(run.model_sources(variant), profile,
                                             backend.name, out / "compute", compute_loops)
        rows[backend.name] = row
    return rows


def markdown(variant: str, measured: dict[str, dict[str, dict]]) -> str:
    lines = ["| target | backend | windows | stream windows/s | bulk windows/s | bulk / stream | "
             "M instructions per window | compute-alone guest MIPS | compute-bound windows/s | "
             "bulk share of compute-bound |", "|---|---|---|---|---|---|---|---|---|---|"]
    for target_name, rows in measured.items():
        for name, row in rows.items():
            stream, bulk = row["stream"], row["bulk"]
            cells = [f"{load_target(target_name).label}, {variant}", name,
                     f"{bulk['windows']:.0f}", f"{stream['windows_per_second']:.1f}",
                     f"{bulk['windows_per_second']:.1f}",
                     f"{bulk['windows_per_second'] / stream['windows_per_second']:.2f}"]
            per_window = bulk["instructions_per_window"]
            if per_window is None or "mips" not in row:
                cells += ["n/a (host ns)" if per_window is None else f"{per_window / 1e6:.2f}",
                          "n/a", "n/a", "n/a"]
            else:
                bound = row["mips"] * 1e6 / per_window
                share = bulk["windows_per_second"] / bound
                # Bulk well above compute alone: the loop ran slower than the application's
                # inference, so it bounds nothing (Renode here), and no share is claimed.
                verdict = (f"{share:.0%}" if share <= SHARE_NOISE else
                           f"not assessed (bulk {share:.0%} of the loop: no bound)")
                cells += [f"{per_window / 1e6:.2f}", f"{row['mips']:.0f}", f"{bound:.1f}",
                          verdict]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/demo"),
                        help="a run directory per target, RUNS/<target>")
    parser.add_argument("--targets", default=",".join(target_names()))
    parser.add_argument("--variant", default="q16")
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--compute-loops", type=int, default=100,
                        help="inferences of the compute-alone run")
    parser.add_argument("--readme", action="store_true",
                        help="write the table into README.md's 'throughput' block")
    args = parser.parse_args()
    measured = {name: measure(RunDirectory(args.runs / name), load_target(name), args.variant,
                              args.windows, args.compute_loops)
                for name in args.targets.split(",")}
    table = markdown(args.variant, measured)
    print(table)
    if args.readme:
        write_block("throughput", table)


if __name__ == "__main__":
    main()
