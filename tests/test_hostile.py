"""Hostile input: names from a recording are data, never code or paths.

A recording is somebody else's file. Its behaviour labels reach the generated C, its animal ids
the file system; neither may run anything on the host or write outside the output folder.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pytest

from device_sim import toolchain
from device_sim.names import c_string, folder_name
from device_sim.targets import Framing, load_target
from fixtures.synthetic import write_csv
from harness.cli import main
from models.config import EvaluationOptions, ModelSizes, TrainConfig
from models.crossval import leave_one_animal_out
from models.errors import RunDirectoryError
from models.export import build_host, export_quantized
from models.pipeline import DataSource
from models.quantize import fold_student, quantize
from models.rundir import RunDirectory

# A label that ends the #define of TAG_MODEL_CLASS_NAMES (a newline) and leaves a constructor
# in tag_model.h that runs a shell command when the exported C is compiled and run: it did,
# before names were escaped.
EXPLOIT = ('x"}\n__attribute__((constructor)) static void pwn(void) '
           '{ extern int system(const char *); system("touch PWNED"); }\n#define TAIL {"')
needs_gcc = pytest.mark.requires("gcc")  # the generated C is compiled and run on the host
HOSTILE_LABELS = (EXPLOIT, 'back\\slash "quoted"', "new\nline */ /* ??= trigraph", "vache née")

NAMES_MAIN = """#include <stdio.h>
#include "tag_model.h"

int main(void)
{
    static const char *const names[] = TAG_MODEL_CLASS_NAMES;
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; ++i) {
        fputs(names[i], stdout);
        fputc(0, stdout);
    }
    return 0;
}
"""


@needs_gcc
def test_a_c_string_holds_any_text_exactly(tmp_path):
    source = tmp_path / "echo.c"
    texts = [*HOSTILE_LABELS, "", "??/", "\\0 and \x01\x7f", "日本"]
    literals = ",\n".join(c_string(text) for text in texts)
    source.write_text(f'#include <stdio.h>\nstatic const char *const t[] = {{{literals}}};\n'
                      "int main(void) { for (unsigned i = 0; i < sizeof t / sizeof t[0]; ++i)"
                      " { fputs(t[i], stdout); fputc(0, stdout); } return 0; }\n")
    exe = toolchain.compile_host([source], tmp_path / "echo")
    printed = subprocess.run([str(exe)], capture_output=True, check=True, timeout=30).stdout
    assert printed.split(b"\0")[:-1] == [text.encode() for text in texts]


@needs_gcc
def test_hostile_labels_are_names_in_the_c_not_code(tiny_students, toy_windows_g, tmp_path):
    net = fold_student(tiny_students["gru_mlp"], HOSTILE_LABELS[:3], 32)
    folder = export_quantized(quantize(net, toy_windows_g, 16), tmp_path / "q16")
    build_host(folder)  # what `harness export` compiles and runs
    (folder / "names.c").write_text(NAMES_MAIN)
    exe = toolchain.compile_host([folder / "names.c"], tmp_path / "names", [folder])
    printed = subprocess.run([str(exe)], cwd=tmp_path, capture_output=True, check=True,
                             timeout=30).stdout
    assert printed.split(b"\0")[:-1] == [label.encode() for label in HOSTILE_LABELS[:3]]
    assert not (tmp_path / "PWNED").exists()


@needs_gcc
def test_a_recording_with_a_hostile_label_trains_and_exports_safely(tmp_path, monkeypatch):
    recording = DataSource(synthetic_animals=3, synthetic_seconds=12.0,
                           synthetic_bouts=1).load(62.5)
    names = (EXPLOIT, *recording.class_names[1:])
    table = tmp_path / "herd.csv"
    write_csv(dataclasses.replace(recording, class_names=names), table)
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", str(table), "--out", str(run), "--window", "32",
                 "--hop", "16", "--epochs", "1", "--teacher-filters", "4,4,4", "--hidden", "4",
                 "--perceptron", "4", "--head", "4", "--quiet"]) == 0
    assert main(["quantize", str(run)]) == 0
    assert main(["export", str(run)]) == 0  # compiles the C and runs it on the host
    assert not (tmp_path / "PWNED").exists()
    assert EXPLOIT in RunDirectory(run).config()["data"]["class_names"]


ESCAPING_IDS = ("../../escaped", "/tmp/absolute-id", "..", ".", "a/b", "B 07 é")


def test_folder_names_never_leave_their_parent():
    names = [folder_name(animal) for animal in (*ESCAPING_IDS, "A01", "cow_4119")]
    assert names[-2:] == ["A01", "cow_4119"]  # plain ids stay as they are
    assert len(set(names)) == len(names)
    for name in names:
        assert "/" not in name and name not in (".", "..") and not name.startswith(".")


def test_animal_ids_cannot_make_an_evaluation_write_outside_its_folder(tmp_path):
    framing = Framing.of(load_target("eartag"))
    recording = DataSource(synthetic_animals=3, synthetic_seconds=20.0,
                           synthetic_bouts=1).load(framing.rate_hz)
    ids = {"A01": "../../escaped", "A02": "/tmp/absolute-id", "A03": ".."}
    recording = dataclasses.replace(
        recording, animals=np.array([ids[a] for a in recording.animals], dtype=object))
    out = tmp_path / "deep" / "er" / "loao"
    options = EvaluationOptions(
        framing, ModelSizes(student="mlp", mlp_hidden=(4,), teacher_filters=(4, 4, 4)),
        TrainConfig(epochs=1, progress=False), students=("mlp",), multi_level=False,
        train_hop=128, folds=("../../escaped", "/tmp/absolute-id"))
    evaluation = leave_one_animal_out(recording, out, options)
    assert evaluation["folds"] == ["../../escaped", "/tmp/absolute-id"]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_dir() and out not in
                  (p, *p.parents)) == ["deep", "er"]
    assert not Path("/tmp/absolute-id").exists()
    folds = sorted(p.name for p in (out / "folds").iterdir())
    assert folds == sorted(folder_name(a) for a in options.folds)


def test_a_target_name_is_looked_up_not_joined_as_a_path(tmp_path, capsys):
    assert main(["demo", "--targets", "../../etc/passwd", "--out", str(tmp_path)]) == 2
    assert "unknown target '../../etc/passwd'; known targets: collar, eartag" in (
        capsys.readouterr().err)


@pytest.mark.parametrize("variant", ["../../x", "q16/../../x", "Q16"])
def test_a_variant_name_is_looked_up_not_joined_as_a_path(tmp_path, variant):
    run = RunDirectory(tmp_path)
    with pytest.raises(RunDirectoryError, match="unknown model variant"):
        run.c_dir(variant)
    with pytest.raises(RunDirectoryError, match="unknown model variant"):
        run.report_dir("eartag", "qemu", variant)
