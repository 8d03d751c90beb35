"""Leave-one-animal-out evaluation, the heterogeneous-target table and the report, end to end on
a tiny synthetic recording with tiny models."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from device_sim.targets import Framing, load_target
from fixtures.synthetic import write_csv
from harness import target_table
from harness.agreement import NOT_ASSESSED, RunReport
from harness.cli import main
from harness.errors import AssessmentWarning, HarnessError
from harness.evaluation_report import (
    MIN_FOLDS_FOR_PAIRED_T,
    clipped_errors,
    confusion_panel,
    confusion_panels,
    few_folds_note,
    header,
    kd_series,
    paired_t_text,
    targets_markdown,
    word_length_series,
    wrapped_label,
    write_report,
)
from harness.run import RunOptions, run_on_device
from harness.target_table import Device, compare_targets, devices, retarget, targets_table
from models.config import EvaluationOptions, ModelSizes, TrainConfig
from models.crossval import (
    compare_seeds,
    describe,
    leave_one_animal_out,
    merge_rare_classes,
    model_keys,
    paired_difference,
    summarize,
)
from models.pipeline import DataSource, export_run
from models.rundir import RunDirectory, load_recording_npz, read_json

FRAMING = Framing.of(load_target("eartag"))
TINY = ModelSizes(hidden=8, perceptron=8, head=8, mlp_hidden=(8,), teacher_filters=(4, 8, 8))
OPTIONS = EvaluationOptions(FRAMING, TINY, TrainConfig(epochs=2, progress=False,
                                                       val_fraction=0.2, patience=1),
                            train_hop=128, folds=("A01", "A02"))


@pytest.fixture(scope="module")
def recording():
    return DataSource(synthetic_animals=3, synthetic_seconds=20.0,
                      synthetic_bouts=1).load(FRAMING.rate_hz)


@pytest.fixture(scope="module")
def evaluation_dir(recording, tmp_path_factory):
    out = tmp_path_factory.mktemp("loao")
    leave_one_animal_out(recording, out, OPTIONS)
    return out


@pytest.fixture(scope="module")
def seed_1_dir(recording, tmp_path_factory):
    """The evaluation of `evaluation_dir` trained with another seed."""
    out = tmp_path_factory.mktemp("loao-seed-1")
    options = dataclasses.replace(OPTIONS, train=dataclasses.replace(OPTIONS.train, seed=1))
    leave_one_animal_out(recording, out, options)
    return out


def test_each_fold_holds_out_its_animal_and_its_students_share_one_teacher(evaluation_dir):
    for animal in OPTIONS.folds:
        teachers = []
        for kind in OPTIONS.students:
            config = read_json(evaluation_dir / "folds" / animal / kind / "config.json")
            assert config["data"]["held_out_animals"] == [animal]
            assert config["data"]["train_animals"] == sorted({"A01", "A02", "A03"} - {animal})
            assert config["training"]["train_hop"] == 128
            assert config["models"]["student_kd"]["kind"] == kind
            heldout = load_recording_npz(evaluation_dir / "folds" / animal / kind / "heldout.npz")
            assert set(heldout.animals) == {animal}
            # Every animal shows every behaviour: each class is on both sides of each fold.
            coverage = config["data"]["coverage"]
            assert [c["name"] for c in coverage["classes"]] == config["data"]["class_names"]
            assert all(c["train_windows"] and c["held_out_windows"]
                       for c in coverage["classes"]) and coverage["problems"] == []
            teachers.append(torch.load(evaluation_dir / "folds" / animal / kind / "teacher.pt",
                                       weights_only=True))
        assert all(torch.equal(teachers[0][k], teachers[1][k]) for k in teachers[0])


def test_the_summary_is_the_mean_and_sample_std_over_the_folds(evaluation_dir):
    evaluation = read_json(evaluation_dir / "evaluation.json")
    folds = [read_json(evaluation_dir / "folds" / a / "fold.json") for a in OPTIONS.folds]
    assert evaluation["folds"] == list(OPTIONS.folds)
    assert evaluation["data"]["coverage"] == {"single_animal_classes": {}, "problems": []}
    keys = model_keys(OPTIONS.students, True, (16, 8))
    assert list(evaluation["summary"]) == keys
    for key in keys:
        for metric in ("accuracy", "macro_f1", "mcc"):
            values = [f["models"][key][metric] for f in folds]
            stats = evaluation["summary"][key][metric]
            assert stats["mean"] == pytest.approx(np.mean(values))
            assert stats["std"] == pytest.approx(np.std(values, ddof=1))
        confusion = np.sum([f["models"][key]["confusion"] for f in folds], axis=0)
        assert evaluation["confusion"][key] == confusion.tolist()
    kd = evaluation["mcc_differences"]["gru_mlp/student_kd"]
    gain = np.subtract(evaluation["per_fold"]["gru_mlp/student_kd"]["mcc"],
                       evaluation["per_fold"]["gru_mlp/student_no_kd"]["mcc"])
    assert kd["mean"] == pytest.approx(gain.mean())
    assert kd["wins"] == int((gain > 0).sum())
    if gain.std() > 0:
        assert kd["paired_t"] == pytest.approx(gain.mean() / (gain.std(ddof=1) / np.sqrt(2)))


def test_a_paired_difference_weighs_the_mean_against_spread_and_folds():
    d = paired_difference([0.5, 0.7, 0.9], [0.4, 0.7, 0.6])  # differences 0.1, 0.0, 0.3
    assert d["mean"] == pytest.approx(0.4 / 3)
    assert d["std"] == pytest.approx(np.sqrt(0.07 / 3))
    assert d["paired_t"] == pytest.approx((0.4 / 3) / (np.sqrt(0.07 / 3) / np.sqrt(3)))
    assert (d["wins"], d["folds"]) == (2, 3)
    assert d["fold_spread"] == pytest.approx(np.sqrt(0.07 / 3))  # std of 0.4, 0.7, 0.6
    assert d["exceeds_spread"] is False
    assert paired_difference([0.9, 0.8], [0.1, 0.2])["exceeds_spread"] is True
    assert paired_difference([0.5], [0.4])["paired_t"] is None


def test_seeds_are_compared_fold_by_fold(evaluation_dir, seed_1_dir, tmp_path):
    runs = [read_json(d / "evaluation.json") for d in (evaluation_dir, seed_1_dir)]
    comparison = compare_seeds([evaluation_dir, seed_1_dir])
    assert comparison["seeds"] == [0, 1]
    assert comparison["folds"] == list(OPTIONS.folds)

    def mcc(key):  # [seed, fold]
        return np.array([run["per_fold"][key]["mcc"] for run in runs])

    teacher = comparison["models"]["teacher"]
    assert teacher["fold_mean_per_seed"] == pytest.approx(mcc("teacher").mean(axis=1))
    assert teacher["seed_spread"] == pytest.approx(
        np.sqrt(np.mean(np.var(mcc("teacher"), axis=0, ddof=1))))
    gain = mcc("gru_mlp/student_kd") - mcc("gru_mlp/student_no_kd")
    kd = comparison["kd"]["gru_mlp/student_kd"]
    assert kd["mean_per_seed"] == pytest.approx(gain.mean(axis=1))
    assert kd["over_seeds"]["mean"] == pytest.approx(gain.mean())
    assert kd["over_seeds"]["std"] == pytest.approx(np.std(gain.mean(axis=0), ddof=1))
    assert set(comparison["kd"]) == {f"{k}/{n}" for k in OPTIONS.students
                                     for n in ("student_kd", "student_mlkd")}

    assert main(["report", str(evaluation_dir), "--out", str(tmp_path / "report"),
                 "--seeds", str(seed_1_dir)]) == 0
    page = (tmp_path / "report" / "report.md").read_text()
    assert "## Seed to seed" in page
    assert f"| ResNet teacher | {mcc('teacher')[0].mean():.3f} | {mcc('teacher')[1].mean():.3f}" \
        in page
    assert read_json(tmp_path / "report" / "seeds.json") == json.loads(json.dumps(comparison))


def test_only_the_same_evaluation_with_another_seed_compares(evaluation_dir, tmp_path):
    with pytest.raises(HarnessError, match="repeat a seed"):
        compare_seeds([evaluation_dir, evaluation_dir])
    other = tmp_path / "other"
    shutil.copytree(evaluation_dir, other)
    plan = read_json(other / "plan.json")
    plan["training"]["epochs"] += 1
    (other / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(HarnessError, match="data or options differ"):
        compare_seeds([evaluation_dir, other])
    with pytest.raises(HarnessError, match="at least two"):
        compare_seeds([evaluation_dir])


def test_the_quantized_rows_are_the_kd_student_in_fixed_point(evaluation_dir):
    fold = read_json(evaluation_dir / "folds" / "A01" / "fold.json")
    for kind in OPTIONS.students:
        metrics = read_json(evaluation_dir / "folds" / "A01" / kind / "metrics.json")
        assert metrics["quantized"]["student"] == "student_kd"
        for bits in (16, 8):
            row = fold["models"][f"{kind}/q{bits}"]
            assert row["mcc"] == metrics["quantized"][str(bits)]["mcc"]
            assert row["top1_agreement"] == metrics["quantized"][str(bits)]["top1_agreement"]
        assert fold["models"][f"{kind}/student_mlkd"]["mcc"] == metrics["student_mlkd"]["mcc"]


def test_finished_folds_are_kept_and_new_ones_added(evaluation_dir, recording, tmp_path):
    out = tmp_path / "loao"
    shutil.copytree(evaluation_dir, out)
    kept = (out / "folds" / "A01" / "fold.json").stat().st_mtime_ns
    options = EvaluationOptions(OPTIONS.framing, OPTIONS.sizes, OPTIONS.train,
                                train_hop=OPTIONS.train_hop, folds=("A01", "A03"))
    evaluation = leave_one_animal_out(recording, out, options)
    assert (out / "folds" / "A01" / "fold.json").stat().st_mtime_ns == kept
    assert evaluation["folds"] == ["A01", "A02", "A03"]
    assert len(evaluation["per_fold"]["teacher"]["mcc"]) == 3


def test_other_options_in_the_same_directory_are_refused(evaluation_dir, recording, tmp_path):
    out = tmp_path / "loao"
    shutil.copytree(evaluation_dir, out)
    other = EvaluationOptions(OPTIONS.framing, OPTIONS.sizes, OPTIONS.train, train_hop=64,
                              folds=("A03",))
    with pytest.raises(HarnessError, match="other data or options"):
        leave_one_animal_out(recording, out, other)
    assert not (out / "folds" / "A03").exists()


def test_an_unknown_animal_is_named(recording, tmp_path):
    options = EvaluationOptions(OPTIONS.framing, OPTIONS.sizes, OPTIONS.train, folds=("B07",))
    with pytest.raises(HarnessError, match=r"no animal.*B07.*A01, A02, A03"):
        leave_one_animal_out(recording, tmp_path, options)


def test_rare_classes_merge_into_other(recording):
    keep = recording.labels != 0
    rare = recording.labels == 0
    keep[np.flatnonzero(rare)[:10]] = True  # ten samples of class 0 remain: rare
    thinned = type(recording)(**{**recording.__dict__, "accel_g": recording.accel_g[keep],
                                 "labels": recording.labels[keep],
                                 "animals": recording.animals[keep],
                                 "bouts": recording.bouts[keep]})
    merged = merge_rare_classes(thinned, 0.01)
    assert merged.class_names == tuple(sorted([*thinned.class_names[1:], "other"]))
    other = merged.class_names.index("other")
    assert (merged.labels == other).sum() == 10
    assert merge_rare_classes(recording, 0.01) is recording  # nothing rare: unchanged


def test_the_report_shows_every_model_and_plot(evaluation_dir, tmp_path):
    page = write_report(evaluation_dir, tmp_path / "report")
    text = page.read_text()
    evaluation = read_json(evaluation_dir / "evaluation.json")
    for key in model_keys(OPTIONS.students, True, (16, 8)):
        stats = evaluation["summary"][key]["mcc"]
        assert f"| {describe(key)} |" in text
        assert f"{stats['mean']:.3f} ± {stats['std']:.3f}" in text
    for name in ("confusion.png", "mcc_kd.png", "word_length.png"):
        assert f"![{name}]({name})" in text
        assert (tmp_path / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "targets.png" not in text  # no targets.json yet


def test_confusion_cells_give_share_and_count_and_absent_classes_are_marked():
    names = ["grazing", "ruminating while lying down", "walking"]
    panel = confusion_panel("model", [[6, 2, 0], [0, 0, 0], [1, 0, 3]], names)
    assert panel.cells[0] == ["0.75\n(6)", "0.25\n(2)", "0.00\n(0)"]
    assert panel.cells[2] == ["0.25\n(1)", "0.00\n(0)", "0.75\n(3)"]
    # No window of the second class: no recall to draw, not a row of zeros.
    assert panel.absent == [1]
    assert panel.cells[1] == ["", "", ""] and np.isnan(panel.share[1]).all()
    assert panel.row_labels == ["grazing", "ruminating while lying down (absent)", "walking"]
    assert panel.column_labels == names
    assert all(wrapped_label(name).replace("\n", " ") == name for name in panel.row_labels)


def test_the_confusion_plots_name_every_class_in_full(evaluation_dir):
    evaluation = read_json(evaluation_dir / "evaluation.json")
    names = evaluation["data"]["class_names"]
    panels = confusion_panels(evaluation)
    assert [p.title for p in panels] == [describe(k) for k in (
        "teacher", "gru_mlp/student_kd", "gru_mlp/q8", "mlp/student_kd", "mlp/q8")]
    teacher = np.asarray(evaluation["confusion"]["teacher"])
    for panel in panels:
        assert panel.column_labels == names
        assert [label.removesuffix(" (absent)") for label in panel.row_labels] == names
        assert panel.absent == [i for i, n in enumerate(teacher.sum(axis=1)) if n == 0]
    counts = [[int(cell.split("(")[1].rstrip(")")) for cell in row] for row in panels[0].cells
              if row[0]]
    assert counts == [row for row in teacher.tolist() if sum(row)]


def test_error_bars_stop_at_the_metric_range_and_folds_are_points(evaluation_dir):
    stats = [{"mean": 0.9, "std": 0.3}, {"mean": 0.1, "std": 0.3}, {"mean": 0.5, "std": 0.1}]
    np.testing.assert_allclose(clipped_errors(stats, "accuracy"), [[0.3, 0.1, 0.1],
                                                                   [0.1, 0.3, 0.1]])
    np.testing.assert_allclose(clipped_errors([{"mean": -0.9, "std": 0.3}], "mcc"),
                               [[0.1], [0.3]])
    evaluation = read_json(evaluation_dir / "evaluation.json")
    folds = [1.0, 0.3]  # mean + std over 1
    for metric in ("accuracy", "mcc"):
        evaluation["per_fold"]["gru_mlp/student_kd"][metric] = folds
        evaluation["summary"]["gru_mlp/student_kd"][metric] = {
            "mean": float(np.mean(folds)), "std": float(np.std(folds, ddof=1))}
    kd = next(s for s in kd_series(evaluation) if s.label == "KD")
    assert kd.keys[0] == "gru_mlp/student_kd" and kd.folds[0] == folds
    assert kd.means[0] + kd.errors[1][0] == pytest.approx(1.0)
    assert kd.means[0] - kd.errors[0][0] == pytest.approx(np.mean(folds) - np.std(folds, ddof=1))
    for metric in ("accuracy", "mcc"):
        line = word_length_series(evaluation, metric)[0]
        assert line.keys[0] == "gru_mlp/student_kd" and line.folds[0] == folds
        assert line.means[0] + line.errors[1][0] == pytest.approx(1.0)
        assert (np.asarray(line.means) + line.errors[1] <= 1.0 + 1e-12).all()


def test_the_header_counts_only_the_finished_folds(evaluation_dir, tmp_path):
    out = tmp_path / "loao"
    shutil.copytree(evaluation_dir, out)
    (out / "folds" / "A03" / "gru_mlp").mkdir(parents=True)  # started, never finished
    evaluation = summarize(out)
    text = header(evaluation)
    held_out = sum(read_json(out / "folds" / a / "fold.json")["held_out_windows"]
                   for a in OPTIONS.folds)
    assert "3 animals, 2 of them held out, one fold each (A01, A02)" in text
    assert "1 animal held out in no evaluated fold (A03)" in text
    assert f"the 2 evaluated folds hold out {held_out} windows" in text


def test_too_few_folds_for_a_paired_t_say_it_is_no_evidence(evaluation_dir, tmp_path):
    page = write_report(evaluation_dir, tmp_path / "report").read_text()
    assert few_folds_note(len(OPTIONS.folds)) in page
    evaluation = read_json(evaluation_dir / "evaluation.json")
    for d in evaluation["mcc_differences"].values():
        if d["paired_t"] is not None:
            assert paired_t_text(d) in page
            assert paired_t_text(d).endswith(f"not evidence over {len(OPTIONS.folds)} folds")
    enough = {"paired_t": 2.5, "folds": MIN_FOLDS_FOR_PAIRED_T}
    assert few_folds_note(MIN_FOLDS_FOR_PAIRED_T) is None
    assert paired_t_text(enough) == "; paired t = 2.50"
    assert paired_t_text({"paired_t": None, "folds": 1}) == ""


def test_a_run_retargets_to_a_sensor_of_another_rate(evaluation_dir, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(evaluation_dir / "folds" / "A01" / "gru_mlp", run_dir)
    (run_dir / "c").mkdir()  # retarget copies the C folder, whatever it holds
    assert retarget(run_dir, load_target("eartag")) == run_dir
    collar = load_target("collar")
    moved = retarget(run_dir, collar)
    config = read_json(moved / "config.json")
    assert config["framing"]["rate_hz"] == collar.sample_rate_hz
    assert config["retargeted_from"]["rate_hz"] == FRAMING.rate_hz
    before = load_recording_npz(run_dir / "heldout.npz")
    after = load_recording_npz(moved / "heldout.npz")
    assert after.rate_hz == collar.sample_rate_hz
    assert len(after) == pytest.approx(len(before) * collar.sample_rate_hz / FRAMING.rate_hz,
                                       rel=0.01)
    assert (moved / "student_kd.pt").read_bytes() == (run_dir / "student_kd.pt").read_bytes()


@pytest.mark.hil(backend="qemu")
@pytest.mark.requires("gcc", "mono", "renode")  # the host and Renode rows
def test_the_target_table_comes_from_runs_on_every_device(evaluation_dir, tmp_path):
    out = tmp_path / "loao"
    shutil.copytree(evaluation_dir, out)
    table = targets_table(out, variants=("q16",), max_windows=3)
    assert table["fold"] == "A01"
    rows = table["rows"]
    assert [(r["student"], r["device"]) for r in rows] == [
        (kind, device.name) for kind in OPTIONS.students for device in devices("eartag")]
    for row in rows:
        report = json.loads(Path(row["report"]).read_text())
        assert row["latency_p50"] == report["latency"]["p50"]
        assert report["schema_version"] == 3
        assert row["int_exact_fraction"] == 1.0
        on_tag = row["backend"] in ("qemu", "renode")
        assert row["latency_unit"] == ("instructions" if on_tag else "nanoseconds")
        assert (row["flash"] is not None) == on_tag
        assert row["deadline_holds"] == (row["share_of_deadline"] <= 1.0)
    assert table["left_out"] == []
    assert {r["backend"] for r in rows} == {"native", "qemu", "renode"}
    collar = [r for r in rows if r["target"] == "collar"]
    assert all("retargeted/collar" in r["report"] for r in collar)
    page = write_report(out).read_text()
    assert "The same students on every target (models of fold A01)" in page
    assert page.count(" | q16 | ") == len(rows)


@pytest.mark.requires("gcc")
def test_the_target_table_leaves_a_harness_run_report_alone(evaluation_dir, tmp_path,
                                                            monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(evaluation_dir / "folds" / "A01" / "mlp", run_dir)
    export_run(run_dir)
    mine = run_on_device(run_dir, RunOptions(target="eartag", backend="native", variant="q16",
                                             max_windows=3))
    written = mine.path.read_bytes()
    # The host row alone: what is tested is where its report goes, not the emulators.
    monkeypatch.setattr(target_table, "devices",
                        lambda run_target: (Device("host CPU", "native", "eartag"),))
    with pytest.warns(AssessmentWarning, match="accuracy and MCC"):
        [row] = compare_targets(run_dir, variants=("q16",), max_windows=1)
    assert mine.path.read_bytes() == written
    expected = RunDirectory(run_dir).targets_report_dir("eartag", "native", "q16")
    assert row["report"] == str(expected / "report.json") != str(mine.path)
    # One window: one class, so neither MCC nor accuracy is assessed.
    report = RunReport.read(Path(row["report"]))
    assert not report.scores_assessed
    assert (row["accuracy"], row["mcc"]) == (None, None)
    assert row["float_top1_agreement"] == report.float_top1_agreement
    line = targets_markdown({"rows": [row | {"student": "mlp"}]}).splitlines()[2]
    assert f"| {NOT_ASSESSED} | {NOT_ASSESSED} | {report.float_top1_agreement:.3f} |" in line
    # A sample stratified by class: several classes, both assessed.
    [row] = compare_targets(run_dir, variants=("q16",), max_windows=8)
    report = RunReport.read(Path(row["report"]))
    assert report.scores_assessed
    assert (row["accuracy"], row["mcc"]) == (report.accuracy.device, report.mcc.device)
    line = targets_markdown({"rows": [row | {"student": "mlp"}]}).splitlines()[2]
    assert (f"| {report.accuracy.device:.3f} | {report.mcc.device:.3f} | "
            f"{report.float_top1_agreement:.3f} |") in line
    assert mine.path.read_bytes() == written


def test_the_evaluate_and_report_commands_on_a_table(recording, tmp_path, capsys):
    table = tmp_path / "recording.csv"
    write_csv(recording, table)
    out = tmp_path / "loao"
    argv = ["evaluate", "--data", str(table), "--out", str(out), "--max-folds", "2",
            "--epochs", "1", "--students", "mlp", "--mlp-hidden", "8",
            "--teacher-filters", "4,4,4", "--no-multi-level", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    evaluation = read_json(out / "evaluation.json")
    assert evaluation["folds"] == ["A01", "A02"]
    assert "mlp/student_mlkd" not in evaluation["summary"]
    mcc = evaluation["summary"]["mlp/student_kd"]["mcc"]["mean"]
    assert f"{describe('mlp/student_kd'):28s}" in printed and f"{mcc:7.3f}" in printed
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "report.md").exists()


def test_report_and_targets_on_a_folder_without_results_say_what_to_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no evaluation.json: run `harness evaluate" in capsys.readouterr().err
    assert main(["targets", str(tmp_path)]) == 2
    assert "neither an evaluation directory" in capsys.readouterr().err
