"""Fixtures shared by the tests: tiny students, short toy windows, a run directory to damage."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from models.quantize import counts_from_g
from models.students import build_model

TOY_WINDOW = 32
TOY_CLASSES = 3


def _toy_windows(n: int, seed: int) -> np.ndarray:
    """Windows in g that look like a collar: gravity on a tilted axis plus a rhythm and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(TOY_WINDOW) / 25.0
    tilt = rng.normal(0.0, 0.3, size=(n, 1, 3)) + np.array([0.0, 0.0, 1.0])
    freq = rng.uniform(0.3, 2.0, size=(n, 1, 1))
    amp = rng.uniform(0.0, 0.6, size=(n, 1, 3))
    motion = amp * np.sin(2 * np.pi * freq * t[None, :, None] + rng.uniform(0, 6, (n, 1, 3)))
    return (tilt + motion + rng.normal(0, 0.02, (n, TOY_WINDOW, 3))).astype(np.float32)


@pytest.fixture(scope="session")
def toy_windows_g() -> np.ndarray:
    return _toy_windows(300, seed=1)


@pytest.fixture(scope="session")
def thousand_windows() -> np.ndarray:
    """1,000 windows as int16 wire counts."""
    return counts_from_g(_toy_windows(1000, seed=7))


@pytest.fixture(scope="session")
def tiny_students(toy_windows_g) -> dict[str, torch.nn.Module]:
    """Untrained but normalised students: quantization and export care about shapes and ranges."""
    torch.manual_seed(0)
    configs = {
        "gru_mlp": {"kind": "gru_mlp", "n_classes": TOY_CLASSES, "hidden": 8, "perceptron": 8,
                    "head": 6},
        "mlp": {"kind": "mlp", "n_classes": TOY_CLASSES, "window": TOY_WINDOW, "pool": 4,
                "hidden": [16, 8]},
    }
    flat = toy_windows_g.reshape(-1, 3)
    students = {}
    for kind, config in configs.items():
        model = build_model(config)
        model.set_normalization(torch.tensor(flat.mean(0)), torch.tensor(flat.std(0)))
        students[kind] = model.eval()
    return students


@pytest.fixture
def run_copy(hil_run_dir, tmp_path):
    """A copy of the hil run directory (the plugin's tiny trained run) of the test's own, to
    damage or retrain."""
    copy = tmp_path / "run"
    shutil.copytree(hil_run_dir, copy, ignore=shutil.ignore_patterns("build", "reports"))
    return copy
