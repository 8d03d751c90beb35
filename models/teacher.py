"""The teacher: a ResNet for multivariate time-series classification.

After Wang, Yan & Oates, "Time series classification from scratch with deep neural networks: a
strong baseline" (IJCNN 2017). Three residual blocks; each block is three convolutions with
kernels 8, 5 and 3, each followed by batch norm, with ReLU between them and after the sum with the
shortcut. Global average pooling over time and a linear layer give the logits.

The teacher runs only on the host. It is large (about half a million parameters at full size)
and exists to hand its soft labels to a student small enough for the tag.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


class ConvBN(nn.Module):
    """Conv1d with "same" padding, then batch norm. (B, C_in, L) -> (B, C_out, L)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int) -> None:
        super().__init__()
        # For an even kernel the padding cannot be symmetric: put the odd sample on the right,
        # as Keras/TensorFlow "same" does (kernel 8: 3 left, 4 right), so the length stays L.
        left = (kernel - 1) // 2
        self.pad = nn.ConstantPad1d((left, kernel - 1 - left), 0.0)
        # No conv bias: the batch norm right after it has its own shift.
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, bias=False)
        self.bn = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.pad(x)))


class ResidualBlock(nn.Module):
    """Three ConvBN layers plus a shortcut. (B, C_in, L) -> (B, C_out, L)."""

    def __init__(self, in_channels: int, out_channels: int, kernels: tuple[int, ...]) -> None:
        super().__init__()
        widths = [in_channels] + [out_channels] * len(kernels)
        self.convs = nn.ModuleList(
            ConvBN(widths[i], widths[i + 1], k) for i, k in enumerate(kernels))
        # The shortcut must match the block's output: a 1x1 conv when the width changes,
        # otherwise batch norm alone (as in the original Keras implementation).
        if in_channels != out_channels:
            self.shortcut: nn.Module = ConvBN(in_channels, out_channels, 1)
        else:
            self.shortcut = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i, conv in enumerate(self.convs):
            y = conv(y)
            if i < len(self.convs) - 1:
                y = torch.relu(y)
        # The last ReLU comes after the sum, so the block can pass its input through.
        return torch.relu(y + self.shortcut(x))


class ResNetTeacher(nn.Module):
    """ResNet teacher: windows (B, L, in_channels) in g -> logits (B, n_classes)."""

    def __init__(self, n_classes: int, in_channels: int = 3,
                 filters: tuple[int, int, int] = (64, 128, 128),
                 kernels: tuple[int, int, int] = (8, 5, 3)) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "kind": "resnet", "n_classes": n_classes, "in_channels": in_channels,
            "filters": list(filters), "kernels": list(kernels)}
        # Input normalisation lives in buffers so it is saved with the weights.
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))
        widths = [in_channels, *filters]
        self.blocks = nn.ModuleList(
            ResidualBlock(widths[i], widths[i + 1], tuple(kernels)) for i in range(len(filters)))
        self.head = nn.Linear(filters[-1], n_classes)

    def set_normalization(self, mean: torch.Tensor | np.ndarray,
                          std: torch.Tensor | np.ndarray) -> None:
        self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.input_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each residual block's output, (B, filters[i], L), for multi-level distillation."""
        z = (x - self.input_mean) / self.input_std  # (B, L, C_in)
        h = z.transpose(1, 2)                      # (B, C_in, L): Conv1d wants channels first
        features = []
        for block in self.blocks:
            h = block(h)                           # (B, filters[i], L)
            features.append(h)
        return features

    def hidden_state(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's features averaged over time (global average pooling), (B, F)."""
        return self.stage_features(x)[-1].mean(dim=2)  # (B, filters[-1], L) -> (B, filters[-1])

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h)  # (B, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.hidden_state(x))
