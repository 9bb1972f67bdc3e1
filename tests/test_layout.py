"""The test tree never shadows an installed module.

pytest puts a test folder on ``sys.path`` (the rootdir of a package-less folder, or the folder above
the top package); a test package named like a dependency then hides it from everything imported in
the session. ``tests/kernels/`` once hid the ``kernels`` package that transformers imports, and the
whole suite failed at collection. ``tests/`` is a package, so only ``tests`` itself is a top-level
name; the names inside it are checked too, so that a change of layout cannot bring the problem back.
"""

from __future__ import annotations

import importlib.machinery
import importlib.metadata
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _names_under(folder: Path) -> set[str]:
    """Every name ``import NAME`` would find in ``folder`` were it on ``sys.path``."""
    names = set()
    for entry in folder.iterdir():
        if entry.name.startswith((".", "__")):
            continue
        if entry.is_dir():
            names.add(entry.name)  # a package, or a namespace package without __init__.py
        elif entry.suffix == ".py":
            names.add(entry.stem)
    return names


def _installed(name: str) -> bool:
    """Whether ``name`` is importable from the environment alone: stdlib, site-packages, built-ins."""
    if name in sys.builtin_module_names or name in sys.stdlib_module_names:
        return True
    if name in importlib.metadata.packages_distributions():
        return True
    outside = [p for p in sys.path if p and Path(p).resolve() not in (TESTS, ROOT, Path.cwd().resolve())]
    return importlib.machinery.PathFinder.find_spec(name, outside) is not None


def test_tests_is_a_package_and_its_folder_is_not_on_sys_path():
    assert (TESTS / "__init__.py").is_file(), "tests/ must be a package: its folders then stay tests.NAME"
    assert str(TESTS) not in sys.path


def test_no_test_name_is_an_installed_module():
    clashes = sorted(name for name in _names_under(TESTS) | {"tests"} if _installed(name))
    assert not clashes, f"test modules or packages named like installed modules: {clashes}; rename them"


def test_the_check_sees_an_installed_module(tmp_path):
    """The check itself: a folder named like a dependency is caught."""
    (tmp_path / "transformers").mkdir()
    (tmp_path / "ordinary_test_helpers").mkdir()
    assert {name for name in _names_under(tmp_path) if _installed(name)} == {"transformers"}
