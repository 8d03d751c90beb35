"""Every default of the model pipeline, in one place: model sizes, training, evaluation, demo.

The command line reads its defaults from these dataclasses (and `--help` shows them), the demo
and `harness evaluate` use the presets below, and the library's own defaults are the same.

    ModelSizes         teacher and student sizes (the published ones by default)
    TrainConfig        optimiser, epochs, KD temperature and weight, early stopping
    TrainOptions       one training run: framing, sizes, training, held-out animals
    EvaluationOptions  leave-one-animal-out: sized for a 2-core machine
    DemoOptions        `harness demo`
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from device_sim.errors import HarnessError
from device_sim.targets import Framing

STUDENT_KINDS = ("gru_mlp", "mlp")
WORD_LENGTHS = (16, 8)
# 127 K parameters instead of 510 K: what two cores train per fold in minutes, not an hour.
COMPACT_TEACHER = (32, 64, 64)


@dataclass(frozen=True)
class ModelSizes:
    """Sizes of the teacher and the student; the defaults are the published ones."""

    student: str = "gru_mlp"  # or "mlp"
    hidden: int = 64  # GRU hidden units
    perceptron: int = 64  # width of the GRU-MLP's input perceptron
    head: int = 32  # width of the GRU-MLP's MLP head
    mlp_pool: int = 8  # the MLP student's average pooling over time
    mlp_hidden: tuple[int, ...] = (64, 32)
    teacher_filters: tuple[int, int, int] = (64, 128, 128)

    def student_config(self, n_classes: int, window: int) -> dict[str, Any]:
        if self.student == "gru_mlp":
            return {"kind": "gru_mlp", "n_classes": n_classes, "hidden": self.hidden,
                    "perceptron": self.perceptron, "head": self.head}
        if self.student == "mlp":
            return {"kind": "mlp", "n_classes": n_classes, "window": window,
                    "pool": self.mlp_pool, "hidden": list(self.mlp_hidden)}
        raise HarnessError(f"unknown student {self.student!r}: choose "
                           f"{' or '.join(STUDENT_KINDS)}")

    def teacher_config(self, n_classes: int) -> dict[str, Any]:
        return {"kind": "resnet", "n_classes": n_classes, "filters": list(self.teacher_filters)}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    class_weights: bool = True  # inverse-frequency class weights in the CE loss, for imbalance
    temperature: float = 4.0  # KD temperature
    # Weight of the soft (KD) term; 1 - alpha on the hard-label CE. 0.5 after a sweep on the
    # synthetic recording (benchmarks/kd_seeds.py): 0.7 left the GRU student below its no-KD twin.
    alpha: float = 0.5
    feature_weight: float = 1.0  # beta: weight of the stage-feature term of multi-level KD
    progress: bool = True  # one tqdm bar over the epochs, loss in its postfix
    val_fraction: float = 0.0  # hold out this fraction of the windows (at random) to validate
    patience: int = 0  # early stopping after this many epochs without a better validation loss
    #                    (needs val_fraction > 0; 0 = off); the best weights are restored


@dataclass
class TrainOptions:
    framing: Framing
    sizes: ModelSizes = field(default_factory=ModelSizes)
    train: TrainConfig = field(default_factory=TrainConfig)
    held_out: tuple[str, ...] | None = None
    held_out_fraction: float = 0.25
    # Draw the held-out animals so that as many classes as possible are on both sides.
    stratify_split: bool = False
    multi_level: bool = False  # also train a student by multi-level (stage-feature) KD
    # Hop between training windows (default: the framing's). A wider hop trains on fewer,
    # less overlapping windows, which is cheaper; held-out windows keep the device's hop.
    train_hop: int | None = None


# One fold trains a teacher, six students and quantizes two: 14 to 28 minutes on one core.
EVALUATION_SIZES = ModelSizes(teacher_filters=COMPACT_TEACHER)
EVALUATION_TRAINING = TrainConfig(epochs=25, val_fraction=0.15, patience=5)


@dataclass
class EvaluationOptions:
    framing: Framing
    sizes: ModelSizes = EVALUATION_SIZES
    train: TrainConfig = EVALUATION_TRAINING
    students: tuple[str, ...] = STUDENT_KINDS
    multi_level: bool = True
    train_hop: int | None = 256  # see TrainOptions.train_hop; 256 = no overlap
    word_lengths: tuple[int, ...] = WORD_LENGTHS
    folds: tuple[str, ...] | None = None  # animals to hold out, one fold each; None: all


@dataclass(frozen=True)
class DemoOptions:
    sizes: ModelSizes = ModelSizes(teacher_filters=COMPACT_TEACHER)
    train: TrainConfig = TrainConfig(epochs=10)
    max_windows: int = 200  # held-out windows streamed through the q16 firmware
    float_windows: int = 4  # windows for the float32 firmware (slow on the collar)

