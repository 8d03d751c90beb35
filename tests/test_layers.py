"""The layers import downward, and every error sits on one base class.

    device_sim   targets, toolchain, firmware, backends, protocol: imports only itself
    models       data, training, quantization, export (and fixtures, its synthetic data):
                 may import device_sim
    harness      streaming, agreement, reports, CLI, pytest plugin: may import everything
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import device_sim
import harness
import models
from device_sim.errors import HarnessError

ALLOWED = {
    "device_sim": {"device_sim"},
    "models": {"device_sim", "models", "fixtures"},
    "fixtures": {"device_sim", "models", "fixtures"},
}
PROJECT = {"device_sim", "models", "fixtures", "harness"}


def project_imports(path: Path) -> set[tuple[str, int]]:
    """(top-level project package, line) of every import in a module, wherever it stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {(name.split(".")[0], node.lineno) for name in names
                  if name.split(".")[0] in PROJECT}
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(repository, layer):
    wrong = [f"{path.relative_to(repository)}:{line} imports {package}"
             for path in sorted((repository / layer).rglob("*.py"))
             for package, line in project_imports(path) if package not in ALLOWED[layer]]
    assert not wrong, "\n".join(wrong)


def test_the_rule_sees_a_wrong_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from harness.errors import HarnessError\n")
    assert project_imports(module) == {("harness", 2)}


def _modules(package) -> list:
    return [importlib.import_module(info.name)
            for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")]


def test_every_error_the_project_defines_is_a_harness_error():
    errors = {cls for package in (device_sim, models, harness) for module in _modules(package)
              for _, cls in inspect.getmembers(module, inspect.isclass)
              if issubclass(cls, Exception) and not issubclass(cls, Warning)
              and cls.__module__.startswith(("device_sim", "models", "harness"))}
    assert len(errors) >= 20
    assert all(issubclass(cls, HarnessError) for cls in errors), sorted(
        cls.__name__ for cls in errors if not issubclass(cls, HarnessError))


def test_harness_errors_lists_every_error():
    from harness import errors

    defined = {cls.__name__ for package in (device_sim, models, harness)
               for module in _modules(package)
               for _, cls in inspect.getmembers(module, inspect.isclass)
               if issubclass(cls, HarnessError) and cls.__module__ == module.__name__}
    assert defined <= set(errors.__all__), sorted(defined - set(errors.__all__))
