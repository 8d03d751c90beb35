"""Regression checking: baselines of real device runs, and `harness compare` against them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from device_sim.targets import load_target
from harness.agreement import Latency, RunReport, energy_figures
from harness.assertions import assert_no_regression
from harness.baseline import Snapshot, Tolerances, compare, format_markdown, load_snapshot
from harness.cli import main
from harness.errors import BaselineError, RecordingMismatchError, ThresholdError
from harness.run import RunOptions, run_on_device

EARTAG = pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
WINDOWS = 24


@pytest.fixture(scope="module")
def qemu_reports(hil_run_dir, tmp_path_factory) -> dict[str, Path]:
    """report.json of the q16 and the q8 model of one run, on the same windows in QEMU."""
    out = tmp_path_factory.mktemp("reports")
    paths = {}
    for variant in ("q16", "q8"):
        options = RunOptions(target="eartag", backend="qemu", variant=variant,
                             max_windows=WINDOWS, report=out / variant)
        paths[variant] = run_on_device(hil_run_dir, options).path
    return paths


def edited(report: Path, out: Path, edit) -> Path:
    """A copy of a report.json with `edit(data)` applied: a candidate that differs in one known
    way from a real run."""
    data = json.loads(report.read_text())
    edit(data)
    out.write_text(json.dumps(data))
    return out


def on_qemu(test):
    """A test of the ear tag's q16 and q8 runs in QEMU."""
    return EARTAG(pytest.mark.hil(backend="qemu")(test))


@on_qemu
def test_a_report_compared_with_its_own_baseline_passes(qemu_reports, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    assert main(["baseline", "save", str(qemu_reports["q16"]), "--out", str(baseline)]) == 0
    saved = json.loads(baseline.read_text())
    assert saved["format"] == "tag-baseline/1"
    assert saved["model"]["formats"]["gru.h"] == "Q0.15 (16-bit)"
    assert 0 < len(saved["windows"]) == saved["figures"]["windows"] <= WINDOWS
    assert {"id", "bout", "animal", "label", "class"} <= set(saved["windows"][0])
    assert saved["figures"]["latency_unit"] == "instructions"
    assert saved["figures"]["flash_bytes"] > 0 and saved["figures"]["stack_peak_bytes"] > 0
    capsys.readouterr()
    assert main(["compare", str(baseline), str(qemu_reports["q16"])]) == 0
    out = capsys.readouterr().out
    assert "no regression" in out and "0 of" in out


@on_qemu
def test_a_slower_larger_candidate_fails_naming_latency_and_flash(qemu_reports, tmp_path,
                                                                  capsys):
    def slower_and_larger(data):
        for key in ("p50", "p99", "max"):
            data["latency"][key] = int(data["latency"][key] * 1.10)
        data["memory"]["flash"] += 4096

    candidate = edited(qemu_reports["q16"], tmp_path / "report.json", slower_and_larger)
    assert main(["compare", str(qemu_reports["q16"]), str(candidate)]) == 1
    captured = capsys.readouterr()
    assert "regressed: latency_p50, latency_p99, latency_max, flash_bytes" in captured.err
    assert "ram_static_bytes" not in captured.err and "accuracy" not in captured.err
    # A looser tolerance on the command line lets the same candidate pass.
    assert main(["compare", str(qemu_reports["q16"]), str(candidate), "--tolerance",
                 "latency_percent=15", "--tolerance", "flash_bytes=8192"]) == 0


def test_tolerances_come_from_the_profile_then_pyproject_then_the_command_line(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.harness.tolerances]\nlatency_percent = 7.5\nstack_bytes = 0\n")
    tolerances = Tolerances.resolve("eartag", {"stack_bytes": 64}, pyproject)
    assert tolerances.latency_percent == 7.5  # pyproject over the profile's 2 %
    assert tolerances.stack_bytes == 64  # the command line over pyproject
    assert tolerances.flash_bytes == load_target("eartag").tolerances["flash_bytes"]
    with pytest.raises(ThresholdError, match=r"unknown name.*latency.*known: latency_percent"):
        Tolerances.resolve("eartag", {"latency": 1.0}, pyproject)


@on_qemu
def test_q8_against_q16_lists_the_changed_formats_and_every_flipped_window(qemu_reports):
    q16, q8 = (load_snapshot(qemu_reports[v]) for v in ("q16", "q8"))
    comparison = compare(q16, q8)
    changed = {f.tensor: (f.baseline, f.candidate) for f in comparison.formats}
    assert changed["gru.h"] == ("Q0.15 (16-bit)", "Q0.7 (8-bit)")
    assert "gru.pre.r" not in changed  # the gates stay 16-bit in both word lengths
    # The flipped windows are exactly those whose device class differs, matched by id.
    before = {w["id"]: w["class"] for w in q16.windows}
    flipped = {w["id"] for w in q8.windows if w["class"] != before[w["id"]]}
    assert {w.id for w in comparison.windows} == flipped
    assert any("variant: q16 -> q8" in note for note in comparison.notes)
    layers = {row["name"]: row for row in comparison.to_dict()["layers"]}
    assert layers["gru"]["candidate_format"] == "Q0.7 (8-bit)"
    assert layers["gru"]["candidate_sqnr_db"] < layers["gru"]["baseline_sqnr_db"]
    markdown = format_markdown(comparison)
    assert "#### Q formats that changed" in markdown and "| gru.h | Q0.15 (16-bit) |" in markdown


@on_qemu
def test_windows_that_change_class_say_whether_they_became_right_or_wrong(qemu_reports,
                                                                         tmp_path):
    n_classes = len(json.loads(qemu_reports["q16"].read_text())["class_names"])

    def right_first(data):  # window 0 right, window 1 answered
        first, second = data["window_results"][:2]
        first["device"], second["device"] = first["label"], 0

    def wrong_then_lost(data):
        right_first(data)
        first, second = data["window_results"][:2]
        first["device"], second["device"] = (first["label"] + 1) % n_classes, None

    before = load_snapshot(edited(qemu_reports["q16"], tmp_path / "b.json", right_first))
    after = load_snapshot(edited(qemu_reports["q16"], tmp_path / "c.json", wrong_then_lost))
    ids = [w["id"] for w in before.windows[:2]]
    assert {w.id: w.became for w in compare(before, after).windows} == {ids[0]: "wrong",
                                                                        ids[1]: "lost"}
    assert {w.id: w.became for w in compare(after, before).windows} == {ids[0]: "right",
                                                                        ids[1]: "recovered"}


@on_qemu
def test_another_recording_or_other_windows_are_refused(qemu_reports, tmp_path, capsys):
    def other_recording(data):
        data["recording"]["fingerprint"] = "0" * 16

    def fewer_windows(data):
        data["window_results"] = data["window_results"][:-3]

    for edit, message in ((other_recording, "another recording"),
                          (fewer_windows, "streamed other windows")):
        candidate = load_snapshot(edited(qemu_reports["q16"], tmp_path / "c.json", edit))
        with pytest.raises(RecordingMismatchError, match=message):
            compare(load_snapshot(qemu_reports["q16"]), candidate)
    assert main(["compare", str(qemu_reports["q16"]), str(tmp_path / "c.json")]) == 2
    assert "harness compare: error: the runs streamed other windows" in capsys.readouterr().err


def test_a_damaged_or_foreign_baseline_is_refused(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(BaselineError, match="format 'other/9' is not 'tag-baseline/1'"):
        load_snapshot(tmp_path / "b.json")
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(BaselineError, match="not JSON"):
        load_snapshot(tmp_path / "b.json")


@on_qemu
def test_assert_no_regression_names_the_figure(qemu_reports, tmp_path):
    report = RunReport.read(qemu_reports["q16"])
    assert_no_regression(report, qemu_reports["q16"])

    def smaller_stack(data):
        data["memory"]["stack_peak"] -= 200

    baseline = edited(qemu_reports["q16"], tmp_path / "b.json", smaller_stack)
    with pytest.raises(AssertionError, match="regressed: stack_peak_bytes"):
        assert_no_regression(report, baseline)
    assert_no_regression(report, baseline, stack_bytes=256)


@on_qemu
def test_mcc_over_windows_of_one_class_is_not_assessed(qemu_reports, tmp_path):
    def one_class(data):
        for row in data["per_class"][1:]:
            row.update(windows=0, recall_device=None, recall_float=None)

    snapshot = load_snapshot(edited(qemu_reports["q16"], tmp_path / "c.json", one_class))
    mcc = next(f for f in compare(snapshot, snapshot).figures if f.name == "mcc")
    assert mcc.verdict == "not assessed" and mcc.baseline is None


@pytest.mark.parametrize("unit", ["instructions", "cycles"])
def test_energy_follows_from_the_mean_latency_and_the_datasheet(unit):
    profile = load_target("eartag")
    latency = Latency(unit, 0, 0, 0, None, None, True, mean=6_400_000.0)
    energy = energy_figures(latency, profile)
    active_s = 6_400_000 / 64e6 * (profile.cycles_per_instruction if unit == "instructions"
                                   else 1.0)
    milliamps = 52.0 * 64 / 1000  # 52 µA/MHz at 64 MHz
    per_day = milliamps * active_s * 86_400 / profile.hop_seconds / 3600
    assert energy.active_ms_per_hop == pytest.approx(active_s * 1000)
    assert energy.charge_per_inference_uc == pytest.approx(milliamps * active_s * 1000, rel=1e-4)
    assert energy.inference_mah_per_day == pytest.approx(per_day, rel=1e-3)
    assert energy.days_inference_only == pytest.approx(1000.0 / per_day, abs=0.06)
    assert energy.days_with_sleep < energy.days_inference_only
    assert ("instruction" in energy.assumption) == (unit == "instructions")


def test_energy_from_host_nanoseconds_is_not_assessed():
    latency = Latency("nanoseconds", 5, 5, 5, None, None, False, mean=5.0)
    energy = energy_figures(latency, load_target("collar"))
    assert not energy.assessed and "says nothing about the tag" in energy.why_not


@on_qemu
def test_the_report_carries_what_a_baseline_needs(qemu_reports):
    report = RunReport.read(qemu_reports["q8"])
    assert report.model["word_bits"] == 8 and report.model["param_bytes"] > 0
    assert [layer["name"] for layer in report.model["layers"]][:2] == ["input", "perceptron"]
    assert report.energy.assessed and report.energy.days_with_sleep > 0
    ids = [w["id"] for w in report.window_results]
    assert len(set(ids)) == len(ids) == report.windows
    assert sum(c.windows for c in report.per_class) == report.windows - report.missed_windows
    exact = np.array([w["exact"] for w in report.window_results])
    assert exact.mean() == report.int_exact_fraction
    assert Snapshot.of_report(report).name == "eartag-qemu-q8"
