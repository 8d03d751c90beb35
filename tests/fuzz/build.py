"""Build the fuzz targets and their seed corpora (run by tools/fuzz.sh).

    python tests/fuzz/build.py OUT

writes OUT/fuzz_link and OUT/fuzz_app (clang, libFuzzer, AddressSanitizer and
UndefinedBehaviorSanitizer) and seeds OUT/corpus/link and OUT/corpus/app from the Python
codec's frames, so that the fuzzer starts from valid sessions. The application target runs a
tiny untrained GRU-MLP exported for the ear tag: what matters is the code around it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY))

from device_sim import crossbuild, toolchain  # noqa: E402
from device_sim.appbuild import APP_SOURCE, HOST_DEFINES, app_defines  # noqa: E402
from device_sim.protocol import (  # noqa: E402
    LINK_SOURCE,
    MESSAGES,
    encode_body,
    encode_frame,
    write_c_header,
)
from device_sim.targets import Framing, load_target  # noqa: E402
from models.export import export_quantized  # noqa: E402
from models.quantize import fold_student, quantize  # noqa: E402
from models.students import build_model  # noqa: E402

HERE = Path(__file__).resolve().parent
CLANG_FLAGS = ["-g", "-O1", "-std=c99", "-Wall", "-Wextra", "-Werror",
               "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all"]
TARGET = "eartag"
SAMPLES_PER_FRAME = MESSAGES["SAMPLES"].constants["MAX"]


def tiny_model(out: Path) -> Path:
    """A 4-unit GRU-MLP for the target's window, quantized to 16 bits and exported."""
    target = load_target(TARGET)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    calibration = rng.normal(0.0, 0.3, (16, target.window, 3)) + np.array([0.0, 0.0, 1.0])
    model = build_model({"kind": "gru_mlp", "n_classes": 3, "hidden": 4, "perceptron": 4,
                         "head": 4})
    flat = calibration.reshape(-1, 3).astype(np.float32)
    model.set_normalization(flat.mean(0), flat.std(0))
    net = fold_student(model.eval(), ("a", "b", "c"), target.window)
    return export_quantized(quantize(net, calibration, 16), out / "model",
                            Framing.of(target))


def clang(sources: list[Path], includes: list[Path], defines: dict[str, str],
          output: Path) -> Path:
    compiler = toolchain.require("clang", "libfuzzer")
    command = [compiler, *CLANG_FLAGS, *(f"-I{d}" for d in includes),
               *(f"-D{k}" if v == "" else f"-D{k}={v}" for k, v in defines.items()),
               *map(str, sources), "-o", str(output)]
    result = subprocess.run(command, capture_output=True, text=True,
                            timeout=toolchain.COMPILE_TIMEOUT_S)
    if result.returncode != 0:
        raise SystemExit(f"building {output.name} failed:\n{result.stderr}")
    return output


def frame_payload(name: str, seq: int, **fields) -> bytes:
    """A chunk of the app target's script: kind 1, a well-formed frame of type, seq, body."""
    body = bytes([MESSAGES[name].id, seq]) + encode_body(MESSAGES[name], fields)
    return bytes([1, len(body)]) + body


def app_seeds() -> dict[str, bytes]:
    """Scripts of whole sessions: stream two windows and ask for stats; and the same with
    garbage, a lost frame and idle time mixed in."""
    target = load_target(TARGET)
    rng = np.random.default_rng(1)
    counts = rng.integers(-4096, 4096, (target.window + target.hop, 3)).astype(int)
    frames, seq = [frame_payload("RESET", 0)], 1
    for start in range(0, len(counts), SAMPLES_PER_FRAME):
        frames.append(frame_payload("SAMPLES", seq % 256, samples=counts[
            start:start + SAMPLES_PER_FRAME].ravel().tolist()))
        seq += 1
    frames += [frame_payload("PING", seq % 256, token=7),
               frame_payload("STATS_REQUEST", (seq + 1) % 256)]
    session = b"".join(frames)
    noisy = bytes([2, 40]) + bytes([0, 6]) + b"\x41\x00\x05\xff\x00\x02" + b"".join(
        frame for i, frame in enumerate(frames) if i != 3)
    return {"session": session, "noisy_session": noisy, "idle": bytes([2, 255, 2, 255])}


def link_seeds() -> dict[str, bytes]:
    """Frames of every message type, as the codec writes them."""
    return {"ping": encode_frame("PING", 1, token=5), "reset": encode_frame("RESET", 2),
            "samples": encode_frame("SAMPLES", 3, samples=list(range(-60, 60))),
            "result": encode_frame("RESULT", 4, window_index=9, class_index=1, latency=123,
                                   logits=[1, -2, 3]),
            "credit": encode_frame("CREDIT", 5, limit=256, ack_seq=4),
            "glued": encode_frame("PING", 6, token=1)[:-4] + encode_frame("PING", 7, token=2)}


def write_corpus(folder: Path, seeds: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (folder / f"seed_{name}").write_bytes(data)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_c_header(out)
    model = tiny_model(out)
    clang([LINK_SOURCE, HERE / "fuzz_link.c"], [out], {}, out / "fuzz_link")
    defines = {**app_defines(load_target(TARGET), test_hooks=False), **HOST_DEFINES,
               "TAG_BUILD_ID": '"fuzz"', "main": "tag_app_main"}
    clang([APP_SOURCE, *sorted(model.glob("*.c")), LINK_SOURCE, HERE / "fuzz_app.c"],
          [crossbuild.FIRMWARE_DIR, out, model], defines, out / "fuzz_app")
    write_corpus(out / "corpus" / "link", link_seeds())
    write_corpus(out / "corpus" / "app", app_seeds())


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPOSITORY / "build" / "fuzz")
