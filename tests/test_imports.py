"""Data flows one way: model/ imports nothing of service/ or worker/; neither of those imports torch."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO


def imported_modules(package: str) -> dict[str, set[str]]:
    """Top-level module names imported anywhere in each file of `package`, lazy imports included."""
    found = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("model", {"service", "worker", "psct"}),
        ("service", {"torch", "worker", "psct"}),
        ("worker", {"torch", "psct"}),
    ],
)
def test_imports_keep_the_data_flowing_one_way(package: str, forbidden: set[str]) -> None:
    files = imported_modules(package)
    assert files, f"no Python files under {package}/"
    offenders = {path: sorted(names & forbidden) for path, names in files.items() if names & forbidden}
    assert offenders == {}


def test_serving_files_of_model_do_not_import_torch() -> None:
    """The worker imports these model/ modules; torch stays in training and export."""
    serving = ["model/geometry.py", "model/radiograph.py", "model/preprocess.py", "model/errors.py", "model/grid.py"]
    files = imported_modules("model")
    assert all("torch" not in files[path] for path in serving)
