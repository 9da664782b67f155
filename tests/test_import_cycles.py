"""No import cycle in letterwise/: no module imports, directly or through other letterwise
modules, a module that imports it back. The graph is built statically with `ast`, so the test
needs none of the heavy dependencies those modules import.

Every import counts, the ones inside functions too. A lazy import keeps a cycle from failing at
import time, but it is still a cycle in the design: two modules that cannot be read, tested or
moved one without the other (the experiments code was such a pair: the grid's command line
imported the fan-out inside `main`, the fan-out imported the grid at the top). What does not
count: imports under `if TYPE_CHECKING:`, which never run, and the implicit import of a parent
package (`import a.b` runs a/__init__.py first): a package's __init__ importing its own
submodules is how a package presents them, not a cycle between modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file for every module of the package at `root` (its __init__ included)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The import statements under `node`, skipping `if TYPE_CHECKING:` bodies (their `else:`
    runs, so it counts)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [node]
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children: list[ast.AST] = list(node.orelse)
    else:
        children = list(ast.iter_child_nodes(node))
    return [found for child in children for found in _import_nodes(child)]


def imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `module` (the file `path`) imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
            continue
        if node.level:  # from . import x, from ..a import b: relative to this module's package
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            source = ".".join([*base, *([node.module] if node.module else [])])
        else:
            source = node.module or ""
        for alias in node.names:
            # `from pkg import sub` imports the submodule; `from mod import name` the module
            submodule = f"{source}.{alias.name}"
            found.add(submodule if submodule in known else source)
    return {name for name in found if name in known and name != module}


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    modules = module_names(root)
    return {name: imported(name, path, set(modules)) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module, or of one that imports itself
    (Tarjan's algorithm, iterative, so a deep chain cannot hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            child = next(successors, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    found.append(component)
    return found


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_checker_reports_exactly_the_cycle_a_b_a(tmp_path):
    pkg = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg import a\n",  # the package presenting a: no cycle
            "pkg/a.py": "import json\n\ndef f():\n    from pkg import b\n",  # lazy: counts
            "pkg/b.py": "from .a import f\n",
            "pkg/c.py": "import pkg.a\nimport pkg.b\n",  # into the cycle, not part of it
        },
    )
    assert cycles(import_graph(pkg)) == [{"pkg.a", "pkg.b"}]


def test_the_checker_finds_no_cycle_in_a_one_way_package(tmp_path):
    pkg = write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "import json\n",
            "pkg/b.py": "from pkg.a import x\nfrom pkg import a\n",
            "pkg/c.py": (
                "from typing import TYPE_CHECKING\nfrom . import b\n"
                "if TYPE_CHECKING:\n    from pkg.sub.d import D\n"  # never runs: no c -> d
            ),
            "pkg/sub/__init__.py": "",
            "pkg/sub/d.py": "from .. import c\nfrom ..a import x\n",  # two levels up: pkg
        },
    )
    graph = import_graph(pkg)
    assert graph == {
        "pkg": set(), "pkg.a": set(), "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.b"},
        "pkg.sub": set(), "pkg.sub.d": {"pkg.c", "pkg.a"},
    }  # fmt: skip
    assert cycles(graph) == []


def test_letterwise_has_no_import_cycle():
    found = cycles(import_graph(REPO_ROOT / "letterwise"))
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)
