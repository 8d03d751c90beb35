"""Metrics, the distillation loss, and training on a toy problem a working loop must solve."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.metrics import classification_metrics, matthews_corrcoef, top1_agreement
from models.students import build_model
from models.teacher import ResNetTeacher
from models.training import (
    TrainConfig,
    distillation_loss,
    fit_normalization,
    inverse_frequency_weights,
    predict_logits,
    stage_targets,
    train_classifier,
)

WINDOW = 32
GRU = {"kind": "gru_mlp", "n_classes": 2, "hidden": 8, "perceptron": 8, "head": 8}
MLP = {"kind": "mlp", "n_classes": 2, "window": WINDOW, "pool": 2, "hidden": [16]}
FAST = TrainConfig(epochs=12, batch_size=32, lr=1e-2, progress=False)


def sine_windows(n: int, seed: int, rate_hz: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes: a slow (0.8 Hz) or fast (3 Hz) sway on gravity, random phase, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    freq = np.where(y == 0, 0.8, 3.0)[:, None, None]
    t = np.arange(WINDOW)[None, :, None] / rate_hz
    amplitude = rng.uniform(0.3, 0.6, (n, 1, 3))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 3))
    x = (np.array([0.0, 0.0, 1.0]) + amplitude * np.sin(2 * np.pi * freq * t + phase)
         + rng.normal(0, 0.1, (n, WINDOW, 3)))
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def toy():
    return sine_windows(256, seed=0), sine_windows(128, seed=1)


# --- metrics ----------------------------------------------------------------------------------

def test_metrics_on_a_hand_computed_three_class_example():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    m = classification_metrics(y_true, y_pred, 3)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]  # rows true, columns predicted
    assert m["accuracy"] == pytest.approx(4 / 6)
    # F1 per class: 2TP / (2TP + FP + FN) = 2/4, 4/5, 2/3.
    assert m["f1_per_class"] == pytest.approx([0.5, 0.8, 2 / 3])
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # Gorodkin: c=4, s=6, t=(2,2,2), p=(2,3,1): (24 - 12) / sqrt((36 - 14) * (36 - 12)).
    assert m["mcc"] == pytest.approx(12 / math.sqrt(22 * 24))
    assert m["n_samples"] == 6
    json.dumps(m)  # plain Python types only
    assert all(type(v) is float for k, v in m.items() if k in ("accuracy", "macro_f1", "mcc"))


def test_mcc_reduces_to_the_binary_formula():
    tp, fn, fp, tn = 7, 3, 2, 8
    binary = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert matthews_corrcoef(np.array([[tn, fp], [fn, tp]])) == pytest.approx(binary)


def test_perfect_prediction_scores_one_and_constant_prediction_zero():
    y = np.array([0, 1, 2, 2, 1, 0, 3])
    perfect = classification_metrics(y, y, 4)
    assert perfect["accuracy"] == perfect["macro_f1"] == perfect["mcc"] == 1.0
    constant = classification_metrics(y, np.full_like(y, 2), 4)
    assert constant["mcc"] == 0.0  # undefined (one predicted class) is reported as 0
    assert constant["accuracy"] == pytest.approx(2 / 7)
    assert classification_metrics([1, 1, 1], [1, 1, 1], 3)["mcc"] == 0.0


def test_macro_f1_on_an_imbalanced_case_ignores_classes_absent_from_both():
    y_true = [0] * 8 + [1] * 2
    y_pred = [0] * 10  # a majority-class guesser: 80 % accurate, useless
    m = classification_metrics(y_true, y_pred, 3)  # class 2 appears nowhere
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["f1_per_class"][0] == pytest.approx(16 / 18) and m["f1_per_class"][1] == 0.0
    assert m["f1_per_class"][2] is None
    assert m["macro_f1"] == pytest.approx((16 / 18 + 0.0) / 2)
    assert m["mcc"] == 0.0


def test_metrics_reject_labels_out_of_range_and_mismatched_lengths():
    with pytest.raises(ValueError):
        classification_metrics([0, 3], [0, 1], 3)
    with pytest.raises(ValueError):
        classification_metrics([0, 1], [0], 3)


def test_mcc_agrees_with_sklearn_when_installed():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 4, 200))
    m = classification_metrics(y_true, y_pred, 4)
    assert m["mcc"] == pytest.approx(sklearn_metrics.matthews_corrcoef(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(y_true, y_pred,
                                                                    average="macro"))


def test_top1_agreement():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 3.0], [5.0, 1.0]])
    b = np.array([[3.0, 1.0], [1.0, 0.0], [0.0, 9.0], [0.0, 1.0]])
    assert top1_agreement(a, b) == 0.5
    assert top1_agreement(a, a) == 1.0
    with pytest.raises(ValueError):
        top1_agreement(a, b[:3])


# --- losses and normalisation -----------------------------------------------------------------

def test_distillation_loss_with_alpha_zero_is_the_weighted_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(6, 3, generator=gen), torch.randn(6, 3, generator=gen)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    weights = torch.tensor([0.5, 1.0, 3.0])
    torch.testing.assert_close(
        distillation_loss(student, teacher, labels, temperature=4.0, alpha=0.0,
                          class_weights=weights),
        F.cross_entropy(student, labels, weight=weights))


def test_distillation_loss_soft_term_is_t_squared_kl_and_grows_with_disagreement():
    teacher = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    labels = torch.tensor([0, 1])
    t = 3.0
    same = distillation_loss(teacher.clone(), teacher, labels, temperature=t, alpha=1.0)
    assert same.item() == pytest.approx(0.0, abs=1e-7)

    student = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    p = torch.softmax(teacher / t, dim=1)
    q = torch.softmax(student / t, dim=1)
    kl = (p * (p.log() - q.log())).sum(dim=1).mean()  # batchmean
    soft = distillation_loss(student, teacher, labels, temperature=t, alpha=1.0)
    torch.testing.assert_close(soft, t * t * kl)

    losses = [distillation_loss(teacher + s * (student - teacher), teacher, labels,
                                temperature=t, alpha=1.0).item() for s in (0.25, 0.5, 1.0)]
    assert losses[0] < losses[1] < losses[2]

    blend = distillation_loss(student, teacher, labels, temperature=t, alpha=0.7)
    torch.testing.assert_close(blend, 0.7 * soft + 0.3 * F.cross_entropy(student, labels))


def test_inverse_frequency_weights():
    weights = inverse_frequency_weights(np.array([0, 0, 0, 1]), 3)
    # N / (K n_c) over the K = 2 classes present; the absent class gets 0.
    torch.testing.assert_close(weights, torch.tensor([4 / 6, 2.0, 0.0]))


def test_fit_normalization_is_per_axis_over_all_samples_with_a_floor():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(1.0, 2.0, (50, 20)), rng.normal(-3.0, 0.5, (50, 20)),
                  np.full((50, 20), 0.98)], axis=-1).astype(np.float32)
    model = build_model(GRU)
    fit_normalization(model, x)
    flat = x.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(model.input_mean.numpy(), flat.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(model.input_std.numpy()[:2], flat.std(axis=0)[:2], rtol=1e-5)
    assert model.input_std[2].item() == pytest.approx(1e-3)  # a constant axis


# --- training ---------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("config", [GRU, MLP], ids=["gru_mlp", "mlp"])
def test_students_learn_an_easy_toy_problem(toy, config):
    (x, y), (x_test, y_test) = toy
    model = build_model(config, seed=0)
    history = train_classifier(model, x, y, 2, FAST)
    assert len(history["train_loss"]) == FAST.epochs == history["best_epoch"]
    assert history["train_loss"][-1] < history["train_loss"][0]
    accuracy = (predict_logits(model, x_test).argmax(axis=1) == y_test).mean()
    assert accuracy >= 0.9  # chance is 0.5
    # Training fitted the normalisation: the third axis carries gravity.
    assert model.input_mean[2].item() == pytest.approx(x[..., 2].mean(), abs=1e-4)


class AlwaysClassZero(torch.nn.Module):
    """A fixed teacher that is certain of class 0 whatever it sees."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([6.0, -6.0]).expand(len(x), 2)


@pytest.mark.slow
def test_distillation_follows_the_teacher_not_the_labels(toy):
    (x, y), (x_test, _) = toy
    config = TrainConfig(epochs=6, batch_size=32, lr=1e-2, alpha=1.0, progress=False)
    student = build_model(MLP, seed=0)
    train_classifier(student, x, y, 2, config, teacher=AlwaysClassZero())
    predicted = predict_logits(student, x_test).argmax(axis=1)
    assert (predicted == 0).mean() >= 0.95  # the labels are balanced; the teacher is not

    plain = build_model(MLP, seed=0)
    train_classifier(plain, x, y, 2, config)  # same config, no teacher: follows the labels
    assert 0.3 < (predict_logits(plain, x_test).argmax(axis=1) == 0).mean() < 0.7


@pytest.mark.slow
def test_a_real_teacher_is_used_in_eval_mode_and_left_unchanged(toy):
    (x, y), _ = toy
    teacher = ResNetTeacher(2, filters=(4, 8, 8))
    teacher.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = build_model(GRU, seed=0)
    config = TrainConfig(epochs=1, batch_size=64, progress=False)
    history = train_classifier(student, x[:64], y[:64], 2, config, teacher=teacher)
    assert math.isfinite(history["train_loss"][0])
    # Eval mode, no gradients: batch-norm statistics and weights are untouched, mode restored.
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert teacher.training


@pytest.mark.slow
def test_the_same_seed_gives_identical_weights(toy):
    (x, y), _ = toy
    config = TrainConfig(epochs=2, batch_size=32, seed=3, progress=False)
    a, b = build_model(GRU, seed=0), build_model(GRU, seed=0)
    train_classifier(a, x[:128], y[:128], 2, config)
    train_classifier(b, x[:128], y[:128], 2, config)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    c = build_model(GRU, seed=0)  # another training seed shuffles differently
    train_classifier(c, x[:128], y[:128], 2, TrainConfig(epochs=2, batch_size=32, seed=4,
                                                         progress=False))
    assert not torch.equal(a.mlp[1].weight, c.mlp[1].weight)


def test_early_stopping_stops_after_patience_epochs_without_improvement(toy):
    (x, y), _ = toy
    # lr = 0: the validation loss never improves on the first epoch's.
    config = TrainConfig(epochs=20, lr=0.0, weight_decay=0.0, val_fraction=0.25, patience=3,
                         progress=False)
    history = train_classifier(build_model(MLP, seed=0), x, y, 2, config)
    assert history["stopped_early"] and history["epochs_run"] == 4
    assert len(history["val_loss"]) == 4 and history["best_epoch"] == 1


@pytest.mark.slow
def test_early_stopping_restores_the_weights_of_the_best_epoch():
    # Random labels and a large step: the validation loss soon gets worse.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, WINDOW, 3)).astype(np.float32)
    y = rng.integers(0, 2, 160)
    config = TrainConfig(epochs=40, batch_size=16, lr=3e-2, val_fraction=0.3, patience=3,
                         class_weights=False, progress=False)
    model = build_model(MLP, seed=0)
    history = train_classifier(model, x, y, 2, config)
    best = history["best_epoch"]
    assert history["stopped_early"] and best < history["epochs_run"]
    assert best == int(np.argmin(history["val_loss"])) + 1
    # Training again for exactly `best` epochs (same split, same shuffles) lands on those weights.
    replay = build_model(MLP, seed=0)
    train_classifier(replay, x, y, 2,
                     dataclasses.replace(config, epochs=best, patience=0))
    for (name, pa), pb in zip(model.state_dict().items(), replay.state_dict().values(),
                              strict=True):
        assert torch.equal(pa, pb), name


def test_training_rejects_labels_out_of_range():
    x = np.zeros((4, WINDOW, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="labels"):
        train_classifier(build_model(MLP), x, np.array([0, 1, 2, 0]), 2, FAST)


def test_predict_logits_handles_any_batch_size_and_restores_the_mode():
    model = build_model(GRU, seed=0).train()
    x = sine_windows(10, seed=2)[0]
    logits = predict_logits(model, x, batch_size=3)
    assert logits.shape == (10, 2) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, predict_logits(model, x, batch_size=512), rtol=1e-5,
                               atol=1e-6)
    assert model.training
    assert predict_logits(model, x[:0]).shape == (0, 2)


def test_stage_targets_are_standardised_time_means_of_each_teacher_stage(toy):
    (x, _), _ = toy
    teacher = ResNetTeacher(2, filters=(4, 8, 6)).eval()
    targets = stage_targets(teacher, x[:100], batch_size=32)  # batches must not matter
    assert [t.shape for t in targets] == [(100, 4), (100, 8), (100, 6)]
    for t in targets:
        assert torch.allclose(t.mean(dim=0), torch.zeros(t.shape[1]), atol=1e-5)
        assert torch.allclose(t.std(dim=0), torch.ones(t.shape[1]), atol=1e-4)
    with torch.no_grad():
        last = teacher.stage_features(torch.from_numpy(x[:100]))[-1].mean(dim=2)
    expected = (last - last.mean(dim=0)) / last.std(dim=0)
    assert torch.allclose(targets[-1], expected, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("student", [GRU, MLP], ids=["gru_mlp", "mlp"])
def test_multi_level_kd_moves_the_student_only_through_the_feature_term(toy, student):
    (x, y), _ = toy
    teacher = ResNetTeacher(2, filters=(4, 8, 8)).eval()
    train_classifier(teacher, x[:128], y[:128], 2, TrainConfig(epochs=1, progress=False))

    def distilled(multi_level: bool, feature_weight: float) -> torch.nn.Module:
        model = build_model(student, seed=0)
        config = TrainConfig(epochs=2, batch_size=32, feature_weight=feature_weight,
                             progress=False)
        train_classifier(model, x[:128], y[:128], 2, config, teacher=teacher,
                         multi_level=multi_level)
        return model

    logit_only = distilled(False, 1.0).state_dict()
    weightless = distilled(True, 0.0).state_dict()
    multi_level = distilled(True, 1.0).state_dict()
    # The projections are training scaffolding: the student's weights are all it keeps.
    assert multi_level.keys() == logit_only.keys()
    assert all(torch.equal(weightless[k], logit_only[k]) for k in logit_only)
    assert not all(torch.equal(multi_level[k], logit_only[k]) for k in logit_only)


def test_multi_level_kd_without_a_teacher_is_refused(toy):
    (x, y), _ = toy
    with pytest.raises(ValueError, match="needs a teacher"):
        train_classifier(build_model(MLP), x[:32], y[:32], 2, FAST, multi_level=True)
