"""The README's tables are made from the single sources they describe."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from device_sim import toolchain


def _update_readme(repository):
    spec = importlib.util.spec_from_file_location("update_readme",
                                                  repository / "tools" / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_tables_are_current(repository):
    update = _update_readme(repository)
    assert update.stale((repository / "README.md").read_text()) == [], (
        "run `python tools/update_readme.py`")


def test_a_stale_table_is_found(repository):
    update = _update_readme(repository)
    text = (repository / "README.md").read_text().replace("`gcc-arm-none-eabi`", "`gcc-arm`")
    assert update.stale(text) == ["toolchain"]
    assert update.stale(update.updated(text)) == []


def test_setup_installs_the_packages_of_the_toolchain_table(repository):
    script = (repository / "tools" / "setup.sh").read_text()
    assert "python3 -m device_sim.toolchain packages --missing" in script
    listed = subprocess.run([sys.executable, "-m", "device_sim.toolchain", "packages"],
                            cwd=repository, capture_output=True, text=True, check=True).stdout
    assert listed.split() == list(dict.fromkeys(t.package for t in toolchain.TOOLS.values()
                                                 if t.package))
