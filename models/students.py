"""The students: models small enough to run on the tag.

Both take windows (B, L, 3) in g and return logits (B, n_classes). Their structure is a contract:
the fixed-point quantizer (`models/quantize.py`) and the C generator walk them by attribute name
(`input_mean`, `input_std`, `perceptron`, `gru`, `mlp`) and rebuild them from `config`.

    GRUMLPStudent: normalise -> perceptron + ReLU per time step -> GRU -> final state -> MLP
    MLPStudent:    normalise -> average-pool over time -> flatten time-major -> MLP
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import torch
from torch import nn

from models.teacher import ResNetTeacher


class _Normalised(nn.Module):
    """Per-axis input normalisation held in buffers, so it is saved with the weights."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))

    def set_normalization(self, mean: torch.Tensor | np.ndarray,
                          std: torch.Tensor | np.ndarray) -> None:
        self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.input_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std


def _run_mlp(layers: nn.ModuleList, h: torch.Tensor, relu_after_last: bool = False) -> torch.Tensor:
    """Linear layers with ReLU between them (and after the last only when asked)."""
    for i, layer in enumerate(layers):
        h = layer(h)
        if relu_after_last or i < len(layers) - 1:
            h = torch.relu(h)
    return h


class GRUMLPStudent(_Normalised):
    """Input perceptron per time step, one GRU layer, and a two-layer MLP on its final state."""

    def __init__(self, n_classes: int, hidden: int = 64, perceptron: int = 64, head: int = 32,
                 in_channels: int = 3) -> None:
        super().__init__(in_channels)
        self.config: dict[str, Any] = {
            "kind": "gru_mlp", "n_classes": n_classes, "hidden": hidden,
            "perceptron": perceptron, "head": head, "in_channels": in_channels}
        self.perceptron = nn.Linear(in_channels, perceptron)
        self.gru = nn.GRU(perceptron, hidden, batch_first=True)
        self.mlp = nn.ModuleList([nn.Linear(hidden, head), nn.Linear(head, n_classes)])

    def hidden_state(self, x: torch.Tensor) -> torch.Tensor:
        """The GRU's state after the last time step, (B, hidden)."""
        z = self.normalise(x)                # (B, L, in_channels)
        p = torch.relu(self.perceptron(z))   # (B, L, perceptron): the same layer at every step
        _, h_last = self.gru(p)              # (1, B, hidden): one layer, one direction
        return h_last[0]                     # (B, hidden)

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from the hidden state: (B, hidden) -> (B, n_classes)."""
        return _run_mlp(self.mlp, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.hidden_state(x))  # (B, n_classes)


class MLPStudent(_Normalised):
    """Average-pool the window over time, flatten it, and classify with an MLP."""

    def __init__(self, n_classes: int, window: int, pool: int = 8,
                 hidden: tuple[int, ...] = (64, 32), in_channels: int = 3) -> None:
        super().__init__(in_channels)
        # A power of two so the device can average with a shift; dividing the window so every
        # pooled step sees `pool` samples.
        if pool < 1 or pool & (pool - 1) or window % pool:
            raise ValueError(f"pool must be a power of two that divides the window ({window}); "
                             f"got {pool}")
        self.config: dict[str, Any] = {
            "kind": "mlp", "n_classes": n_classes, "window": window, "pool": pool,
            "hidden": list(hidden), "in_channels": in_channels}
        self.window, self.pool = window, pool
        widths = [in_channels * window // pool, *hidden, n_classes]
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, axes = x.shape
        if length != self.window:
            raise ValueError(f"MLPStudent was built for windows of {self.window} samples, "
                             f"got {length}")
        z = self.normalise(x)                                            # (B, L, 3)
        z = z.reshape(batch, length // self.pool, self.pool, axes).mean(dim=2)  # (B, L/pool, 3)
        return z.reshape(batch, -1)  # (B, 3L/pool), time-major: index t*3 + axis

    def hidden_state(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the last hidden layer, after its ReLU, (B, hidden[-1])."""
        return _run_mlp(self.mlp[:-1], self._pooled(x), relu_after_last=True)

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        """Logits from the hidden state: (B, hidden[-1]) -> (B, n_classes)."""
        return self.mlp[-1](h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.hidden_state(x))  # (B, n_classes)


_KINDS: dict[str, type[nn.Module]] = {
    "resnet": ResNetTeacher, "gru_mlp": GRUMLPStudent, "mlp": MLPStudent}


def build_model(config: dict[str, Any], seed: int | None = None) -> nn.Module:
    """Rebuild a teacher or student from its `.config` (as read back from JSON).

    With `seed`, the initial weights come from that seed without touching the global RNG.
    """
    args = dict(config)
    kind = args.pop("kind", None)
    if kind not in _KINDS:
        raise ValueError(f"unknown model kind {kind!r}: expected one of {sorted(_KINDS)}")
    # JSON turns tuples into lists; the constructors take tuples.
    for key in ("filters", "kernels", "hidden"):
        if isinstance(args.get(key), list):
            args[key] = tuple(args[key])
    if seed is None:
        return _KINDS[kind](**args)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _KINDS[kind](**args)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (normalisation buffers and batch-norm statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
