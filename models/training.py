"""Training: the teacher on hard labels, a student with or without knowledge distillation (KD).

KD after Hinton, Vinyals & Dean (2015): the student matches the teacher's class probabilities
softened by a temperature T, blended with the ordinary cross-entropy on the labels:

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
         + (1 - alpha) * CE(student, labels)

The T^2 keeps the soft term's gradients on the same scale as the hard term's when T changes.

Multi-level KD adds the teacher's intermediate representations, in the manner of stage-wise
(stage-logits) distillation for activity recognition: each residual stage's features, averaged
over time and standardised, are regressed from the student's hidden state through a small linear
projection per stage, which is trained with the student and then thrown away:

    loss += beta * mean over stages s of MSE(P_s(h_student), standardise(mean_t f_s(teacher)))

Everything here takes plain numpy windows x (N, L, 3) float32 in g and labels y (N,) int.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from models.config import TrainConfig


def use_available_cores() -> None:
    """One torch thread per core this process may run on (2 on the build machine), unless
    OMP_NUM_THREADS says otherwise (to run two trainings side by side, give each 1).

    More threads than cores only adds contention; fewer leaves a core idle.
    """
    requested = os.environ.get("OMP_NUM_THREADS", "")
    if requested.isdigit() and int(requested) > 0:
        torch.set_num_threads(int(requested))
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, cores or 1))


def fit_normalization(model: nn.Module, x: np.ndarray) -> None:
    """Per-axis mean and std over every sample of the training windows, into the model."""
    samples = np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1])  # (N*L, 3)
    # The floor keeps a constant axis (a tag lying still in tests) from dividing by zero.
    std = np.maximum(samples.std(axis=0), 1e-3)
    model.set_normalization(torch.tensor(samples.mean(axis=0), dtype=torch.float32),
                            torch.tensor(std, dtype=torch.float32))


def inverse_frequency_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """w_c = N / (K * n_c) over the K classes present; 0 for absent ones (never a target)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor, temperature: float, alpha: float,
                      class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)."""
    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1),
                    F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, labels, weight=class_weights)
    return alpha * t * t * soft + (1.0 - alpha) * hard


class StageProjections(nn.Module):
    """One linear map per teacher stage, from the student's hidden state (B, width) to that
    stage's time-averaged features (B, filters[s]). Training only: the tag never runs it."""

    def __init__(self, student_width: int, stage_widths: Sequence[int]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(student_width, w) for w in stage_widths)

    def forward(self, h: torch.Tensor) -> list[torch.Tensor]:
        return [head(h) for head in self.heads]


@torch.no_grad()
def stage_targets(teacher: nn.Module, x: np.ndarray, batch_size: int = 256) -> list[torch.Tensor]:
    """Each teacher stage's features averaged over time, (N, filters[s]), standardised per
    channel over the N windows so that every stage weighs alike in the loss."""
    was_training = teacher.training
    teacher.eval()
    xs = torch.as_tensor(np.asarray(x, dtype=np.float32))
    try:
        chunks = [[f.mean(dim=2) for f in teacher.stage_features(xs[i:i + batch_size])]
                  for i in range(0, len(xs), batch_size)]  # per batch: (b, filters[s]) per stage
    finally:
        teacher.train(was_training)
    stages = [torch.cat(parts) for parts in zip(*chunks, strict=True)]
    return [(f - f.mean(dim=0)) / f.std(dim=0).clamp_min(1e-6) for f in stages]


def stage_loss(projected: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over stages of the mean squared error between projection and teacher feature."""
    return torch.stack([F.mse_loss(p, t) for p, t in zip(projected, targets, strict=True)]).mean()


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits (N, C) float32 in eval mode; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    xs = torch.as_tensor(np.asarray(x, dtype=np.float32))
    try:
        if len(xs) == 0:  # no windows: one dummy window tells the number of classes
            return model(torch.zeros(1, *xs.shape[1:]))[:0].numpy().astype(np.float32)
        chunks = [model(xs[i:i + batch_size]) for i in range(0, len(xs), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(chunks).numpy().astype(np.float32)


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                 y: torch.Tensor, order: torch.Tensor, config: TrainConfig,
                 weights: torch.Tensor | None, teacher_logits: torch.Tensor | None = None,
                 stages: list[torch.Tensor] | None = None,
                 projections: StageProjections | None = None) -> float:
    """One pass over the windows in `order`, in mini-batches; returns the mean loss."""
    model.train()
    total = 0.0
    for start in range(0, len(order), config.batch_size):
        batch = order[start:start + config.batch_size]
        h = model.hidden_state(x[batch])  # (b, width)
        logits = model.classify(h)        # (b, C)
        if teacher_logits is None:
            loss = F.cross_entropy(logits, y[batch], weight=weights)
        else:
            loss = distillation_loss(logits, teacher_logits[batch], y[batch],
                                     config.temperature, config.alpha, weights)
        if projections is not None:
            loss = loss + config.feature_weight * stage_loss(
                projections(h), [s[batch] for s in stages])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / len(order)


def train_classifier(model: nn.Module, x: np.ndarray, y: np.ndarray, n_classes: int,
                     config: TrainConfig, teacher: nn.Module | None = None,
                     multi_level: bool = False, description: str = "") -> dict[str, Any]:
    """Train `model` in place with Adam; with a teacher, by distillation (of the logits, and with
    `multi_level` of the stage features too). Returns the history.

    History: `train_loss` per epoch (mean over windows), `val_loss` and `val_accuracy` per epoch
    when validating, `epochs_run`, `stopped_early`, and `best_epoch`: the 1-based epoch whose
    weights the model holds on return. The model is left in eval mode.
    """
    use_available_cores()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many labels as windows, and at least one: {len(x)} windows, "
                         f"{len(y)} labels")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    if multi_level and teacher is None:
        raise ValueError("multi-level distillation needs a teacher")

    # Optional validation split, at random (windows of one animal overlap, so this is only
    # good for choosing an epoch; evaluation proper is by held-out animal).
    order = rng.permutation(len(x))
    n_val = 0
    if config.val_fraction > 0:  # at least one window on each side
        n_val = min(max(round(config.val_fraction * len(x)), 1), len(x) - 1)
    train_idx, val_idx = np.sort(order[n_val:]), np.sort(order[:n_val])
    x_train, y_train = x[train_idx], torch.from_numpy(y[train_idx])
    x_val, y_val = x[val_idx], torch.from_numpy(y[val_idx])

    fit_normalization(model, x_train)
    weights = inverse_frequency_weights(y[train_idx], n_classes) if config.class_weights else None
    # The teacher is fixed and sees no augmentation, so its logits on every window are computed
    # once: the same numbers it would give batch by batch, at a fraction of the cost.
    teacher_logits = (torch.from_numpy(predict_logits(teacher, x_train))
                      if teacher is not None else None)
    x_train_t = torch.from_numpy(x_train)
    stages = stage_targets(teacher, x_train) if multi_level else None
    projections = None
    parameters = list(model.parameters())
    if stages is not None:
        with torch.no_grad():
            width = model.hidden_state(x_train_t[:1]).shape[1]
        projections = StageProjections(width, [s.shape[1] for s in stages])
        parameters += list(projections.parameters())

    optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    history: dict[str, Any] = {"train_loss": []}
    if n_val:
        history |= {"val_loss": [], "val_accuracy": []}
    best = {"loss": float("inf"), "epoch": 0, "state": None}
    stopped_early = False

    bar = tqdm(range(1, config.epochs + 1), desc=description or "train", unit="epoch",
               disable=not config.progress)
    for epoch in bar:
        order = torch.from_numpy(rng.permutation(len(x_train_t)))  # a fresh shuffle each epoch
        loss = _train_epoch(model, optimizer, x_train_t, y_train, order, config, weights,
                            teacher_logits, stages, projections)
        history["train_loss"].append(loss)
        postfix = {"loss": f"{loss:.4f}"}

        if n_val:
            # Validate on the labels alone: the KD term is a means, label accuracy the end.
            val_logits = torch.from_numpy(predict_logits(model, x_val))
            val_loss = F.cross_entropy(val_logits, y_val, weight=weights).item()
            history["val_loss"].append(val_loss)
            history["val_accuracy"].append(
                float((val_logits.argmax(dim=1) == y_val).float().mean()))
            postfix["val"] = f"{val_loss:.4f}"
            if val_loss < best["loss"]:
                best = {"loss": val_loss, "epoch": epoch,
                        "state": copy.deepcopy(model.state_dict())}
            elif config.patience and epoch - best["epoch"] >= config.patience:
                stopped_early = True
        bar.set_postfix(postfix)
        if stopped_early:
            break
    bar.close()

    epochs_run = len(history["train_loss"])
    best_epoch = epochs_run
    if n_val:
        history["best_val_epoch"] = best["epoch"]
        # Only early stopping restores the best weights; without it the last epoch's stay.
        if config.patience and best["state"] is not None:
            model.load_state_dict(best["state"])
            best_epoch = best["epoch"]
    model.eval()
    return history | {"epochs_run": epochs_run, "stopped_early": stopped_early,
                      "best_epoch": best_epoch}
