"""Every package the code imports is declared in pyproject.toml, not installed by chance."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(folder: Path) -> dict[str, str]:
    """Top-level module name -> the first file importing it, for absolute imports under `folder`."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def features() -> list[str]:
    """Every extra but `test`: what a user may install for a feature."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return [name for name in extras if name != "test"]


def declared(*groups: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for group in groups:
        requirements += project["optional-dependencies"][group]
    return {canonical(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]) for requirement in requirements}


def undeclared(folder: Path, allowed: set[str], skip: frozenset[str] = frozenset()) -> list[str]:
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module, where in imported_modules(folder).items():
        if module in sys.stdlib_module_names or module in {"duragent", "tests", "bench"} or module in skip:
            continue
        owners = {canonical(owner) for owner in distributions.get(module, [module])}
        if not owners & allowed:
            missing.append(f"{module} ({where}) from {sorted(owners)}")
    return missing


def test_the_package_declares_every_distribution_it_imports() -> None:
    runtime = declared(*features())
    testing = ROOT / "duragent" / "testing"
    missing = [
        problem
        for problem in undeclared(ROOT / "duragent", runtime | declared("test"))
        if not problem.split(" (")[1].startswith("duragent/testing")
    ]
    missing += undeclared(testing, runtime | declared("test"))
    assert missing == [], "declare these in pyproject.toml"


def test_library_code_outside_the_fakes_needs_no_test_only_package() -> None:
    runtime = declared(*features())
    library = [
        problem
        for problem in undeclared(ROOT / "duragent", runtime)
        if not problem.split(" (")[1].startswith("duragent/testing")
    ]
    assert library == []


def test_the_tests_declare_what_they_import() -> None:
    assert undeclared(ROOT / "tests", declared(*features(), "test")) == []
