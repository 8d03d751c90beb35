"""The pytest plugin as a user meets it: in a separate pytest run, through its entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

HIL_TEST = """
import pytest

@pytest.mark.hil
def test_on_the_tag(hil_target):
    assert hil_target.name == "collar"
"""

@pytest.fixture
def bare_path(tmp_path) -> str:
    """A PATH with this Python but without QEMU or any compiler."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    return str(bin_dir)


def path_without(tmp_path: Path, tool: str) -> str:
    """A PATH with every program of this one but `tool`: as if it were not installed."""
    bin_dir = tmp_path / f"without-{tool}"
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if not Path(folder).is_dir():
            continue
        for program in Path(folder).iterdir():
            link = bin_dir / program.name
            if program.name != tool and not link.exists() and os.access(program, os.X_OK):
                link.symlink_to(program)
    return str(bin_dir)


def test_a_missing_emulator_skips_with_what_to_install(pytester, bare_path, monkeypatch):
    monkeypatch.setenv("PATH", bare_path)
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(HIL_TEST)
    result = pytester.runpytest_subprocess("-m", "hil", "--hil-target", "collar", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs arm-none-eabi-gcc, newlib, qemu-system-arm: apt-get "
                                 "install gcc-arm-none-eabi libnewlib-arm-none-eabi "
                                 "qemu-system-arm*"])


def test_strict_mode_turns_the_skip_into_a_failure(pytester, bare_path, monkeypatch):
    monkeypatch.setenv("PATH", bare_path)
    pytester.makepyfile(HIL_TEST)
    result = pytester.runpytest_subprocess("-m", "hil", "--hil-target", "collar",
                                           "--hil-strict")
    result.assert_outcomes(errors=1)  # failed in setup, before the test body ran
    result.stdout.fnmatch_lines(["*apt-get install *qemu-system-arm*--hil-strict*"])


def test_ci_environment_means_strict(pytester, bare_path, monkeypatch):
    monkeypatch.setenv("PATH", bare_path)
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(HIL_TEST)
    pytester.runpytest_subprocess("-m", "hil", "--hil-target", "collar").assert_outcomes(
        errors=1)


def test_requires_and_a_pinned_backend_name_their_tools(pytester, bare_path, monkeypatch):
    monkeypatch.setenv("PATH", bare_path)
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.requires("gcc")
        def test_host_compiler():
            pass

        @pytest.mark.hil(backend="native")
        def test_on_the_host():
            pass

        def test_needs_nothing():
            pass
    """)
    result = pytester.runpytest_subprocess("-rs", "--hil-backend", "qemu")
    result.assert_outcomes(passed=1, skipped=2)
    # Both for gcc: the pinned backend's tools, not --hil-backend's (no QEMU).
    result.stdout.fnmatch_lines(["SKIPPED [[]2[]] *: needs gcc: apt-get install gcc (*"])
    assert "qemu-system-arm" not in result.stdout.str()


def test_a_cross_compiler_without_newlib_is_not_enough(pytester, bare_path, monkeypatch):
    """A compiler that finds no libc_nano.a (it prints the bare name back, as gcc does)."""
    compiler = Path(bare_path) / "arm-none-eabi-gcc"
    compiler.write_text("#!/bin/sh\necho libc_nano.a\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("PATH", bare_path)
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.requires("arm-none-eabi-gcc", "newlib")
        def test_links_firmware():
            pass
    """)
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs newlib: apt-get install libnewlib-arm-none-eabi (*"])


def test_an_unknown_tool_is_an_error_not_a_skip(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.requires("no-such-tool")
        def test_it():
            pass
    """)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown tool 'no-such-tool'*"])


def test_one_test_per_selected_target(pytester):
    pytester.makepyfile("""
        import pytest

        def test_profile(hil_target):
            assert hil_target.window == 256
    """)
    result = pytester.runpytest_subprocess("--hil-target", "collar,eartag", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_profile?collar?*", "*test_profile?eartag?*"])


def test_the_backend_choices_are_the_registry(pytester):
    result = pytester.runpytest_subprocess("--hil-backend", "no-such-backend")
    result.stderr.fnmatch_lines(
        ["*--hil-backend*invalid choice*'native', 'qemu', 'renode', 'labgrid', 'serial'*"])


@pytest.mark.hil(backend="native")
@pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
def test_a_run_attaches_its_figures_to_the_junit_xml(pytester, hil_run_dir):
    pytester.makepyfile("""
        from harness.assertions import assert_int_exact

        def test_native_run(hil_run):
            assert_int_exact(hil_run("q16", max_windows=3))
    """)
    xml = Path(pytester.path) / "report.xml"
    result = pytester.runpytest_subprocess(
        "--hil-target", "eartag", "--hil-backend", "native", "--hil-run-dir", str(hil_run_dir),
        f"--junitxml={xml}", "-o", "junit_family=xunit1")
    result.assert_outcomes(passed=1)
    properties = {p.get("name"): p.get("value") for p in ET.parse(xml).iter("property")}
    assert properties["hil_int_exact_fraction"] == "1.0"
    assert properties["hil_latency_unit"] == "nanoseconds"
    assert int(properties["hil_windows"]) == 3


@pytest.mark.hil(backend="qemu")
@pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
def test_hil_baseline_compares_every_run_and_fails_a_regression(pytester, hil_run_dir):
    pytester.makepyfile("""
        def test_q16(hil_run):
            hil_run("q16", max_windows=3)
    """)
    baselines = Path(pytester.path) / "baselines"
    xml = Path(pytester.path) / "report.xml"

    def run_pytest(*options: str):
        return pytester.runpytest_subprocess(
            "--hil-target", "eartag", "--hil-backend", "qemu", "--hil-run-dir",
            str(hil_run_dir), "--hil-baseline", str(baselines), f"--junitxml={xml}",
            "-o", "junit_family=xunit1", *options)

    run_pytest().assert_outcomes(failed=1)  # no baseline yet: not a silent pass
    run_pytest("--hil-baseline-update").assert_outcomes(passed=1)
    baseline = baselines / "eartag-qemu-q16.json"
    assert json.loads(baseline.read_text())["figures"]["windows"] == 3
    run_pytest().assert_outcomes(passed=1)
    properties = {p.get("name"): p.get("value") for p in ET.parse(xml).iter("property")}
    assert properties["hil_delta_latency_p99"] == "0"
    assert properties["hil_baseline_regressions"] == ""
    data = json.loads(baseline.read_text())
    data["figures"]["flash_bytes"] -= 4096  # the candidate is now 4 KB larger than allowed
    baseline.write_text(json.dumps(data))
    result = run_pytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*regressed against*eartag-qemu-q16.json: flash_bytes*"])


def test_ci_without_qemu_fails_every_hil_test_that_needs_it_and_skips_none(tmp_path,
                                                                           repository):
    """This project's own `pytest -m hil`, as CI runs it, on a machine whose QEMU is gone."""
    env = os.environ | {"PATH": path_without(tmp_path, "qemu-system-arm"), "CI": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "hil", "-q", "-p", "no:cacheprovider",
         f"--basetemp={tmp_path / 'basetemp'}", str(repository / "tests")],
        cwd=repository, env=env, capture_output=True, text=True, timeout=600)
    summary = result.stdout.strip().splitlines()[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}
    assert result.returncode == 1, result.stdout[-3000:]
    assert counts.get("skipped", 0) == 0, summary
    assert counts.get("errors", 0) + counts.get("failed", 0) >= 20, summary
    assert re.search(r"needs [^:\n]*qemu-system-arm[^:\n]*: apt-get install [^\n]*qemu-system-arm",
                     result.stdout), result.stdout[-3000:]


@pytest.mark.hil(backend="native")
@pytest.mark.parametrize("hil_target", ["eartag"], indirect=True, scope="session")
def test_two_xdist_workers_share_a_run_directory_without_colliding(pytester, run_copy):
    """`pytest -n 2`: with --dist each both workers run the same test, so both build the same
    firmware from the same --hil-run-dir at once; each builds into a folder of its own."""
    pytester.makepyfile("""
        from harness.assertions import assert_int_exact

        def test_native_run(hil_run, record_property):
            report = hil_run("q16", max_windows=3)
            assert_int_exact(report)
            record_property("report", str(report.path))
    """)
    result = pytester.runpytest_subprocess(
        "-n", "2", "--dist", "each", "-p", "no:cacheprovider", "--hil-target", "eartag",
        "--hil-backend", "native", "--hil-run-dir", str(run_copy), "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines_random(["*gw0*PASSED*", "*gw1*PASSED*"])
    builds = sorted(p.name for p in (run_copy / "build").iterdir())
    assert builds == ["eartag-native-q16-gw0", "eartag-native-q16-gw1"]
