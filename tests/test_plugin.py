"""The pytest plugin as a user meets it: in a separate pytest run, through its entry point."""

from __future__ import annotations

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
    """A PATH with this Python but without QEMU or the cross-compiler."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    return str(bin_dir)


def test_a_missing_emulator_skips_with_what_to_install(pytester, bare_path, monkeypatch):
    monkeypatch.setenv("PATH", bare_path)
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(HIL_TEST)
    result = pytester.runpytest_subprocess("-m", "hil", "--hil-target", "collar", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*apt-get install qemu-system-arm gcc-arm-none-eabi*"])


def test_strict_mode_turns_the_skip_into_a_failure(pytester, bare_path, monkeypatch):
    monkeypatch.setenv("PATH", bare_path)
    pytester.makepyfile(HIL_TEST)
    result = pytester.runpytest_subprocess("-m", "hil", "--hil-target", "collar",
                                           "--hil-strict")
    result.assert_outcomes(errors=1)  # failed in setup, before the test body ran
    result.stdout.fnmatch_lines(["*apt-get install qemu-system-arm*--hil-strict*"])


def test_ci_environment_means_strict(pytester, bare_path, monkeypatch):
    monkeypatch.setenv("PATH", bare_path)
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(HIL_TEST)
    pytester.runpytest_subprocess("-m", "hil", "--hil-target", "collar").assert_outcomes(
        errors=1)


def test_one_test_per_selected_target(pytester):
    pytester.makepyfile("""
        import pytest

        def test_profile(hil_target):
            assert hil_target.window == 256
    """)
    result = pytester.runpytest_subprocess("--hil-target", "collar,eartag", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_profile?collar?*", "*test_profile?eartag?*"])


@pytest.mark.hil
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
