"""Dynamic fixed point: formats, primitives, folding, the integer reference and its files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import QuantizationError, RunDirectoryError
from models import fixedpoint
from models.fixedpoint import MAX_FRAC, MIN_FRAC, align, choose_format
from models.numeric import MAX_WINDOWS, layer_numerics
from models.quantize import (
    INPUT_FRAC,
    FloatDense,
    FloatInput,
    FloatNet,
    IntDense,
    IntGRU,
    as_device_input,
    counts_from_g,
    fold_student,
    load_quantized,
    quantize,
    save_quantized,
    worst_case_accumulator,
)


@given(st.floats(min_value=1e-12, max_value=1e6), st.sampled_from([8, 16]))
def test_chosen_format_is_the_finest_that_holds_the_range(max_abs, bits):
    fmt = choose_format(max_abs, bits)
    assert MIN_FRAC <= fmt.frac <= MAX_FRAC  # the C's shifts stay defined
    if fmt.frac > MIN_FRAC:
        assert max_abs * 2.0**fmt.frac <= fmt.max_int
    if fmt.frac < MAX_FRAC:
        assert max_abs * 2.0 ** (fmt.frac + 1) > fmt.max_int  # one more bit would overflow


@given(st.integers(-(2**31), 2**31 - 1), st.integers(0, 24), st.integers(0, 24))
def test_align_rounds_half_up_and_saturates(value, from_frac, to_frac):
    got = int(align(np.array([value]), from_frac, to_frac)[0])
    exact = value * 2.0 ** (to_frac - from_frac)
    if to_frac <= from_frac:
        assert got == np.floor(exact + 0.5)
    else:
        assert got == int(np.clip(exact, -(2**31), 2**31 - 1))


def test_sigmoid_and_tanh_tables_are_accurate_monotone_and_saturating():
    errors = fixedpoint.activation_errors()
    assert errors["sigmoid_max_abs_error"] < 5e-4
    assert errors["tanh_max_abs_error"] < 5e-4
    q12 = np.arange(-32768, 32768, 7)
    for table in (fixedpoint.sigmoid_q15, fixedpoint.tanh_q15):
        assert np.all(np.diff(table(q12, 12)) >= 0)
    # Beyond the table the output holds its end value, whatever the input's format.
    assert fixedpoint.tanh_q15(np.array([1 << 30]), 12)[0] == 32767
    assert fixedpoint.sigmoid_q15(np.array([-(1 << 30)]), 0)[0] == fixedpoint.SIGMOID_LUT[0]


@pytest.mark.parametrize("kind", ["gru_mlp", "mlp"])
def test_folding_the_normalisation_keeps_the_student(tiny_students, kind, toy_windows_g):
    student = tiny_students[kind]
    net = fold_student(student, ("a", "b", "c"), toy_windows_g.shape[1])
    with torch.no_grad():
        expected = student(torch.tensor(toy_windows_g)).double().numpy()
    np.testing.assert_allclose(net.run(toy_windows_g), expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["gru_mlp", "mlp"])
def test_16_bit_model_tracks_the_float_model(tiny_students, kind, toy_windows_g):
    net = fold_student(tiny_students[kind], ("a", "b", "c"), toy_windows_g.shape[1])
    model = quantize(net, toy_windows_g, 16)  # in range everywhere: measures rounding alone
    int_logits = model.run(counts_from_g(toy_windows_g)) * 2.0**-model.logit_frac
    float_logits = net.run(as_device_input(toy_windows_g))
    spread = np.ptp(float_logits)
    assert np.abs(int_logits - float_logits).max() < 0.02 * spread
    assert np.mean(int_logits.argmax(1) == float_logits.argmax(1)) >= 0.97


def test_8_bit_model_stores_half_the_bytes_of_16_bit(tiny_students, toy_windows_g):
    net = fold_student(tiny_students["gru_mlp"], ("a", "b", "c"), toy_windows_g.shape[1])
    q16, q8 = quantize(net, toy_windows_g, 16), quantize(net, toy_windows_g, 8)
    n_params = sum(a.size for a in q16.arrays().values())
    assert q16.param_bytes == 2 * n_params
    assert q8.param_bytes == n_params
    assert all(a.min() >= -128 and a.max() <= 127 for a in q8.arrays().values())


@pytest.mark.parametrize("bits", [8, 16])
def test_no_input_can_overflow_an_int32_accumulator(tiny_students, toy_windows_g, bits):
    net = fold_student(tiny_students["gru_mlp"], ("a", "b", "c"), toy_windows_g.shape[1])
    model = quantize(net, toy_windows_g, bits)
    for op in model.ops:
        if isinstance(op, IntDense):
            bias = np.abs(align(op.b_int, op.b.frac, op.acc_frac)).max()
            assert worst_case_accumulator(op.w_int, op.x.bits) + bias < 2**31
        if isinstance(op, IntGRU):
            for g in range(3):
                assert worst_case_accumulator(op.w_ih_int[g], op.x.bits) < 2**31
                assert worst_case_accumulator(op.w_hh_int[g], op.h.bits) < 2**31


@pytest.mark.parametrize("bits", [16, 8])
def test_the_gru_pre_activation_sums_are_proved_to_fit_int32_or_not(tiny_students,
                                                                    toy_windows_g, bits):
    """The exporter lets the C add pre-activation terms in 32 bits only on this proof."""
    net = fold_student(tiny_students["gru_mlp"], ("a", "b", "c"), toy_windows_g.shape[1])
    gru = next(op for op in quantize(net, toy_windows_g, bits).ops if isinstance(op, IntGRU))
    assert gru.pre_sums_fit_int32()
    # A pre-activation format 16 bits finer widens each term by 2^16: the sum no longer fits.
    finer = dict(gru.pre, r=fixedpoint.QFormat(16, gru.pre["r"].frac + 16))
    assert not dataclasses.replace(gru, pre=finer).pre_sums_fit_int32()


def test_weight_format_is_narrowed_when_a_row_could_overflow():
    # 64 inputs at full scale times weights near 1.0 in Q.14 would reach 2**35.
    w = np.full((2, 64), 0.99)
    net = FloatNet("mlp", [FloatInput(), FloatDense("mlp0", w, np.zeros(2), relu=False)], 64,
                   ("a", "b"))
    calibration = np.full((4, 64, 3), 1.0)
    dense = quantize(net, calibration[:, :, :1].reshape(4, 64), 16).ops[1]
    assert choose_format(0.99, 16).frac == 15
    assert dense.w.frac < 15
    assert worst_case_accumulator(dense.w_int, 16) < 2**31


def test_word_length_other_than_8_or_16_is_refused(tiny_students, toy_windows_g):
    net = fold_student(tiny_students["mlp"], ("a", "b", "c"), toy_windows_g.shape[1])
    with pytest.raises(QuantizationError, match="8 or 16"):
        quantize(net, toy_windows_g, 12)


def test_saved_model_reloads_identically_without_pickle(tmp_path, tiny_students, toy_windows_g):
    net = fold_student(tiny_students["gru_mlp"], ("a", "b", "c"), toy_windows_g.shape[1])
    model = quantize(net, toy_windows_g, 16)
    save_quantized(model, tmp_path / "q16")
    reloaded = load_quantized(tmp_path / "q16")
    counts = counts_from_g(toy_windows_g)
    np.testing.assert_array_equal(reloaded.run(counts), model.run(counts))
    assert reloaded.model_hash == model.model_hash
    description = json.loads((tmp_path / "q16" / "model.json").read_text())
    assert description["model_hash"] == model.model_hash
    assert description["input_frac"] == INPUT_FRAC
    with np.load(tmp_path / "q16" / "weights.npz", allow_pickle=False) as npz:
        assert all(npz[key].dtype.kind == "i" for key in npz.files)


def test_missing_quantized_files_say_which_step_to_run(tmp_path):
    with pytest.raises(RunDirectoryError, match="harness quantize"):
        load_quantized(tmp_path)


def test_model_hash_changes_with_a_single_weight(tiny_students, toy_windows_g):
    net = fold_student(tiny_students["gru_mlp"], ("a", "b", "c"), toy_windows_g.shape[1])
    model = quantize(net, toy_windows_g, 16)
    before = model.model_hash
    model.ops[-1].w_int[0, 0] += 1
    assert model.model_hash != before


# --- the per-layer numeric view --------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gru_mlp", "mlp"])
def test_the_numeric_view_follows_every_activation_in_order(tiny_students, toy_windows_g, kind):
    net = fold_student(tiny_students[kind], ("a", "b", "c"), toy_windows_g.shape[1])
    counts = counts_from_g(toy_windows_g)
    views = {bits: layer_numerics(net, quantize(net, toy_windows_g, bits), counts)
             for bits in (16, 8)}
    names = [layer.name for layer in views[16]]
    expected = (["input", "perceptron", "gru", "mlp0", "mlp1"] if kind == "gru_mlp"
                else ["pool", "input", "mlp0", "mlp1", "mlp2"])
    assert names == expected
    for wide, narrow in zip(views[16][1:], views[8][1:], strict=True):
        assert wide.sqnr_db > narrow.sqnr_db + 20  # about 6 dB a bit
        assert "16-bit" in wide.format and "8-bit" in narrow.format
    if kind == "gru_mlp":  # every step of the GRU's state is compared
        assert views[16][2].values == min(len(counts), MAX_WINDOWS) * toy_windows_g.shape[1] * 8


def test_the_numeric_view_names_the_layer_whose_format_is_too_narrow(tiny_students,
                                                                     toy_windows_g):
    net = fold_student(tiny_students["gru_mlp"], ("a", "b", "c"), toy_windows_g.shape[1])
    model = quantize(net, toy_windows_g, 16)
    counts = counts_from_g(toy_windows_g)
    good = {layer.name: layer for layer in layer_numerics(net, model, counts)}
    head = next(op for op in model.ops if op.name == "mlp0")
    head.y = fixedpoint.QFormat(16, head.y.frac + 4)  # 16 times too little range
    bad = {layer.name: layer for layer in layer_numerics(net, model, counts)}
    assert bad["mlp0"].at_limit > 0 and good["mlp0"].at_limit == 0
    assert bad["mlp0"].sqnr_db < good["mlp0"].sqnr_db - 10
    assert bad["gru"] == good["gru"]  # the layers before it are untouched
