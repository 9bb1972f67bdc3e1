"""vsdpo.sharing's modules: each imports on its own, and they depend on one another one way only."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import vsdpo.sharing

PACKAGE = "vsdpo.sharing"
FOLDER = Path(vsdpo.sharing.__file__).parent
MODULES = sorted(f"{PACKAGE}.{info.name}" for info in pkgutil.iter_modules([str(FOLDER)]))


def imported_siblings(module: str) -> set[str]:
    """The modules of the package that ``module`` imports anywhere in its text (the package itself
    counts as one: importing it imports every module)."""
    tree = ast.parse((FOLDER / f"{module.rpartition('.')[2]}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in MODULES or name == PACKAGE}


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone_in_a_fresh_interpreter(module):
    run = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_modules_depend_on_each_other_one_way():
    graph = {module: imported_siblings(module) for module in MODULES}
    assert all(PACKAGE not in deps for deps in graph.values()), "a module imports the package itself"
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in path:
            cycle = " -> ".join((*path[path.index(module) :], module))
            pytest.fail(f"import cycle: {cycle}")
        if module in done:
            return
        for dependency in graph[module]:
            visit(dependency, (*path, module))
        done.add(module)

    for module in MODULES:
        visit(module, ())
