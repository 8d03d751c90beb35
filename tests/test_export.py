"""The generated C, compiled for the host with gcc, against the Python references.

Fixed point must equal the numpy integer reference bit for bit on every window, including
full-scale, all-zero and saturating ones; float32 must agree with PyTorch within FLOAT_TOLERANCE.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from device_sim.model_sources import ModelSources
from models.export import build_host, export_float, export_quantized, run_host
from models.quantize import INPUT_FRAC, fold_student, g_from_counts, quantize

pytestmark = pytest.mark.requires("gcc")  # every test compiles the C with the host's gcc

# Float32 C against PyTorch (float32 too, other summation order): logits within this, absolute.
FLOAT_TOLERANCE = 1e-4
CLASSES = ("a", "b", "c")
TOY_WINDOW = 32  # as tests/conftest.py


@pytest.fixture(scope="module")
def builds(tmp_path_factory, tiny_students, toy_windows_g):
    """Every (kind, variant) exported and compiled once: {(kind, variant): (executable, ref)}."""
    root = tmp_path_factory.mktemp("export")
    built = {}
    for kind, student in tiny_students.items():
        net = fold_student(student, CLASSES, TOY_WINDOW)
        for bits in (16, 8):
            model = quantize(net, toy_windows_g, bits)
            folder = export_quantized(model, root / kind / f"q{bits}")
            built[kind, f"q{bits}"] = (build_host(folder), model)
        built[kind, "f32"] = (build_host(export_float(net, root / kind / "f32")), student)
    return built


@pytest.mark.parametrize("kind", ["gru_mlp", "mlp"])
@pytest.mark.parametrize("variant", ["q16", "q8"])
def test_fixed_point_c_equals_integer_reference_on_1000_windows(builds, thousand_windows, kind,
                                                                variant):
    executable, model = builds[kind, variant]
    classes, logits = run_host(executable, thousand_windows, float_logits=False)
    reference = model.run(thousand_windows)
    assert logits.shape == reference.shape == (1000, len(CLASSES))
    np.testing.assert_array_equal(logits, reference)
    np.testing.assert_array_equal(classes, reference.argmax(axis=1))


def _special_window(fill: str) -> np.ndarray:
    shape = (TOY_WINDOW, 3)
    if fill == "zero":
        return np.zeros(shape, np.int16)
    if fill == "max":
        return np.full(shape, 32767, np.int16)
    if fill == "min":
        return np.full(shape, -32768, np.int16)
    # alternating rails: drives every accumulator and pre-activation to saturation
    return np.where(np.indices(shape).sum(axis=0) % 2 == 0, 32767, -32768).astype(np.int16)


windows_strategy = st.one_of(
    st.sampled_from(["zero", "max", "min", "alternating"]).map(_special_window),
    arrays(np.int16, (TOY_WINDOW, 3), elements=st.integers(-32768, 32767)),
    arrays(np.int16, (TOY_WINDOW, 3), elements=st.sampled_from([-32768, -1, 0, 1, 32767])),
)


@pytest.mark.parametrize("kind", ["gru_mlp", "mlp"])
@pytest.mark.parametrize("variant", ["q16", "q8"])
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(windows_strategy, min_size=1, max_size=6))
def test_fixed_point_c_equals_reference_on_extreme_windows(builds, kind, variant, batch):
    executable, model = builds[kind, variant]
    counts = np.stack(batch)
    _, logits = run_host(executable, counts, float_logits=False)
    np.testing.assert_array_equal(logits, model.run(counts))


@pytest.mark.parametrize("kind", ["gru_mlp", "mlp"])
def test_float_c_agrees_with_pytorch(builds, thousand_windows, kind):
    executable, student = builds[kind, "f32"]
    classes, logits = run_host(executable, thousand_windows, float_logits=True)
    x_g = g_from_counts(thousand_windows)
    with torch.no_grad():
        expected = student(torch.tensor(x_g)).numpy()
    assert np.abs(logits - expected).max() < FLOAT_TOLERANCE
    clear = np.sort(expected, axis=1)[:, -1] - np.sort(expected, axis=1)[:, -2] > FLOAT_TOLERANCE
    np.testing.assert_array_equal(classes[clear], expected.argmax(axis=1)[clear])


def test_generated_api_is_the_same_for_every_variant(builds):
    headers = {variant: (executable.parent / "tag_model.h").read_text()
               for (kind, variant), (executable, _) in builds.items() if kind == "gru_mlp"}
    for text in headers.values():
        assert "void tag_model_init(tag_model_t *model);" in text
        assert "int tag_model_run(tag_model_t *model, const int16_t *window);" in text
        assert "const tag_logit_t *tag_model_logits(const tag_model_t *model);" in text
        assert f"#define TAG_MODEL_INPUT_FRAC {INPUT_FRAC}" in text
    assert "#define TAG_MODEL_LOGIT_FLOAT 1" in headers["f32"]
    assert "#define TAG_MODEL_LOGIT_FLOAT 0" in headers["q16"]


def test_generated_c_allocates_nothing(builds):
    for executable, _ in builds.values():
        for source in executable.parent.glob("*.c"):
            text = source.read_text()
            assert "malloc" not in text and "calloc" not in text, source


def test_every_variant_folder_describes_its_model_in_a_manifest(builds):
    for (kind, variant), (executable, model) in builds.items():
        manifest = ModelSources.load(executable.parent).manifest
        assert (manifest.kind, manifest.variant, manifest.window) == (kind, variant, TOY_WINDOW)
        assert manifest.class_names == CLASSES and manifest.axes == 3
        assert manifest.input_frac == INPUT_FRAC
        if variant == "f32":
            folded = fold_student(model, CLASSES, TOY_WINDOW)
            assert manifest.model_hash == folded.model_hash
            assert (manifest.logit_type, manifest.logit_frac) == ("float32", None)
        else:
            assert manifest.model_hash == model.model_hash
            assert manifest.logit_type == f"int{variant[1:]}"
            assert manifest.logit_frac == model.logit_frac
        assert manifest.framing is None  # exported without a run: the firmware build refuses
