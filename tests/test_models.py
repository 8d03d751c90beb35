"""Teacher and students: shapes, padding, structure the quantizer relies on, rebuild from config."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from models.students import GRUMLPStudent, MLPStudent, build_model, count_parameters
from models.teacher import ConvBN, ResidualBlock, ResNetTeacher

TINY_CONFIGS = {
    "resnet": {"kind": "resnet", "n_classes": 4, "filters": [8, 16, 16]},
    "gru_mlp": {"kind": "gru_mlp", "n_classes": 4, "hidden": 8, "perceptron": 6, "head": 5},
    "mlp": {"kind": "mlp", "n_classes": 4, "window": 32, "pool": 4, "hidden": [12, 6]},
}


def _windows(n: int = 5, length: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, length, 3, generator=torch.Generator().manual_seed(seed))


def test_teacher_gives_logits_and_one_feature_map_per_block():
    teacher = ResNetTeacher(4, filters=(8, 16, 16)).eval()
    x = _windows()
    assert teacher(x).shape == (5, 4)
    shapes = [tuple(f.shape) for f in teacher.stage_features(x)]
    assert shapes == [(5, 8, 32), (5, 16, 32), (5, 16, 32)]


@pytest.mark.parametrize("length", [31, 32, 33])
def test_teacher_accepts_any_window_length(length):
    teacher = ResNetTeacher(3, filters=(4, 8, 8)).eval()
    assert teacher.stage_features(_windows(2, length))[-1].shape == (2, 8, length)


@pytest.mark.parametrize("kernel", [8, 5, 3, 1])
def test_same_padding_keeps_length_and_centres_even_kernels_like_keras(kernel):
    layer = ConvBN(1, 1, kernel).eval()
    # A kernel that picks one tap: with "same" padding, tap (kernel-1)//2 is the identity
    # (kernel 8: 3 samples of padding on the left, 4 on the right).
    with torch.no_grad():
        layer.conv.weight.zero_()
        layer.conv.weight[0, 0, (kernel - 1) // 2] = 1.0
    x = torch.randn(2, 1, 17)
    y = layer.conv(layer.pad(x))
    assert y.shape == x.shape
    torch.testing.assert_close(y, x)


def test_shortcut_is_a_projection_only_when_the_width_changes():
    widening = ResidualBlock(3, 8, (8, 5, 3))
    assert isinstance(widening.shortcut, ConvBN) and widening.shortcut.conv.kernel_size == (1,)
    same = ResidualBlock(8, 8, (8, 5, 3))
    assert isinstance(same.shortcut, torch.nn.BatchNorm1d)
    assert [c.conv.kernel_size[0] for c in same.convs] == [8, 5, 3]
    # The block ends in a ReLU after the sum.
    assert (same(torch.randn(2, 8, 20)) >= 0).all()


def test_gru_student_is_perceptron_then_gru_final_state_then_mlp():
    student = GRUMLPStudent(4, hidden=8, perceptron=6, head=5).eval()
    student.set_normalization(torch.tensor([0.1, -0.2, 1.0]), torch.tensor([0.5, 0.4, 0.3]))
    x = _windows()
    with torch.no_grad():
        z = (x - student.input_mean) / student.input_std
        outputs, _ = student.gru(torch.relu(student.perceptron(z)))
        h = outputs[:, -1]  # the state after the last step
        logits = student.mlp[1](torch.relu(student.mlp[0](h)))
        torch.testing.assert_close(student.hidden_state(x), h)
        torch.testing.assert_close(student(x), logits)
    assert student.gru.num_layers == 1 and not student.gru.bidirectional
    assert student.hidden_state(x).shape == (5, 8) and student(x).shape == (5, 4)


def test_mlp_student_pools_in_blocks_and_flattens_time_major():
    # No hidden layer and an identity weight: the logits are the pooled, flattened input.
    window, pool = 16, 4
    student = MLPStudent(3 * window // pool, window=window, pool=pool, hidden=()).eval()
    with torch.no_grad():
        student.mlp[0].weight.copy_(torch.eye(12))
        student.mlp[0].bias.zero_()
    t = torch.arange(window, dtype=torch.float32)
    x = torch.stack([t, 100 + t, 1000 + t], dim=1)[None]  # (1, L, 3)
    with torch.no_grad():
        out = student(x)[0]
    block_means = t.reshape(4, 4).mean(dim=1)  # 1.5, 5.5, 9.5, 13.5
    expected = torch.stack([block_means, 100 + block_means, 1000 + block_means], dim=1)
    torch.testing.assert_close(out, expected.reshape(-1))  # index t*3 + axis


def test_mlp_student_shapes_and_hidden_state():
    student = MLPStudent(4, window=32, pool=4, hidden=(12, 6)).eval()
    x = _windows()
    assert [layer.in_features for layer in student.mlp] == [24, 12, 6]
    assert student(x).shape == (5, 4)
    hidden = student.hidden_state(x)
    assert hidden.shape == (5, 6) and (hidden >= 0).all()
    torch.testing.assert_close(student(x), student.mlp[-1](hidden))


@pytest.mark.parametrize("pool", [0, 3, 6, 64])
def test_mlp_student_rejects_a_pool_that_is_not_a_power_of_two_dividing_the_window(pool):
    with pytest.raises(ValueError, match="pool"):
        MLPStudent(4, window=32, pool=pool)


def test_mlp_student_rejects_windows_of_another_length():
    with pytest.raises(ValueError, match="32"):
        MLPStudent(4, window=32, pool=4)(_windows(2, 64))


@pytest.mark.parametrize("kind", sorted(TINY_CONFIGS))
def test_build_model_from_json_config_reproduces_the_model(kind):
    original = build_model(TINY_CONFIGS[kind], seed=1)
    original.set_normalization(torch.tensor([0.1, 0.2, 0.9]), torch.tensor([0.3, 0.3, 0.2]))
    if kind == "resnet":  # make the batch-norm statistics differ from their initial values
        with torch.no_grad():
            original.train()(_windows(8, seed=3))
    original.eval()
    config = json.loads(json.dumps(original.config))
    assert config["kind"] == kind
    rebuilt = build_model(config, seed=2)  # other initial weights: the state dict must win
    assert rebuilt.config == original.config
    rebuilt.load_state_dict(original.state_dict())
    rebuilt.eval()
    x = _windows(seed=4)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), original(x))


@pytest.mark.parametrize("kind", sorted(TINY_CONFIGS))
def test_normalisation_buffers_are_saved_and_used(kind):
    model = build_model(TINY_CONFIGS[kind], seed=0).eval()
    state = model.state_dict()
    assert torch.equal(state["input_mean"], torch.zeros(3))
    assert torch.equal(state["input_std"], torch.ones(3))
    x = _windows()
    with torch.no_grad():
        before = model(x)
        model.set_normalization(torch.tensor([0.5, 0.0, 1.0]), torch.tensor([2.0, 1.0, 0.5]))
        after = model(x)
    assert torch.equal(model.state_dict()["input_std"], torch.tensor([2.0, 1.0, 0.5]))
    assert not torch.allclose(before, after)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_build_model_seed_fixes_the_initial_weights_without_touching_the_global_rng():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(TINY_CONFIGS["gru_mlp"], seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    b = build_model(TINY_CONFIGS["gru_mlp"], seed=7)
    c = build_model(TINY_CONFIGS["gru_mlp"], seed=8)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.gru.weight_hh_l0, c.gru.weight_hh_l0)


def test_build_model_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        build_model({"kind": "transformer", "n_classes": 2})


def test_parameter_counts_match_the_architecture():
    # Perceptron 3->64, GRU 64->64 (three gates, two biases each), MLP 64->32->4.
    p, h, m, c = 64, 64, 32, 4
    expected = (3 * p + p) + 3 * (h * p + h * h + 2 * h) + (h * m + m) + (m * c + c)
    assert count_parameters(GRUMLPStudent(c)) == expected == 27_428
    # MLP: 3*256/8 = 96 inputs -> 64 -> 32 -> 4.
    assert count_parameters(MLPStudent(4, window=256)) == 96 * 64 + 64 + 64 * 32 + 32 + 32 * 4 + 4
    # Teacher: conv weights (no bias before BN) + 2 BN parameters per channel + head.
    teacher = ResNetTeacher(4)
    convs = sum(m.weight.numel() for m in teacher.modules() if isinstance(m, torch.nn.Conv1d))
    norms = sum(2 * m.num_features for m in teacher.modules()
                if isinstance(m, torch.nn.BatchNorm1d))
    assert count_parameters(teacher) == convs + norms + 128 * 4 + 4


def test_teacher_layers_follow_the_published_resnet():
    teacher = ResNetTeacher(4)
    convs = [m for m in teacher.modules() if isinstance(m, torch.nn.Conv1d)]
    # Per block: three convs (8, 5, 3) and a 1x1 projection where the width changes (3->64,
    # 64->128); the third block keeps 128 channels and has a plain BN shortcut.
    shapes = [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs]
    assert shapes == [(3, 64, 8), (64, 64, 5), (64, 64, 3), (3, 64, 1),
                      (64, 128, 8), (128, 128, 5), (128, 128, 3), (64, 128, 1),
                      (128, 128, 8), (128, 128, 5), (128, 128, 3)]
    x = _windows(2, 40)
    teacher.eval()
    with torch.no_grad():  # logits = head(mean over time of the last block)
        expected = teacher.head(teacher.stage_features(x)[-1].mean(dim=2))
        torch.testing.assert_close(teacher(x), expected)
        assert F.softmax(teacher(x), dim=1).shape == (2, 4)
