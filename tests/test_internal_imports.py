"""Every `from letterwise... import name` in the package and the stages names something that
exists, including the imports made lazily inside functions (a moved function otherwise fails
only when that code path runs: the probe stage did, inside a study run)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SOURCES = sorted([*(REPO_ROOT / "letterwise").rglob("*.py"), *(REPO_ROOT / "stages").glob("*.py")])


def internal_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) for each absolute `from letterwise... import name` in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.lineno, node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
        and node.module.split(".")[0] == "letterwise"
        for alias in node.names
    ]  # fmt: skip


def test_the_scan_finds_lazy_imports() -> None:
    probe_stage = REPO_ROOT / "stages" / "probe.py"
    found = {(module, name) for _, module, name in internal_imports(probe_stage)}
    assert ("letterwise.probe.arms", "compare") in found  # made inside main()


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_internal_imports_resolve(path: Path) -> None:
    missing = []
    for line, module_name, name in internal_imports(path):
        module = importlib.import_module(module_name)
        if name == "*" or hasattr(module, name):
            continue
        try:  # `from package import submodule`
            importlib.import_module(f"{module_name}.{name}")
        except ModuleNotFoundError:
            missing.append(f"line {line}: {module_name}.{name}")
    assert not missing, f"{path.relative_to(REPO_ROOT)} imports names that do not exist: {missing}"
