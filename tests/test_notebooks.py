"""The committed notebooks: stripped of outputs, and built on the package rather than copies of it.

They are executed by the test suite itself (``pytest --nbmake``, configured in pyproject.toml).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == [
        "1.0-cdnow-walkthrough.ipynb",
        "2.0-model-comparison.ipynb",
        "3.0-model-reach.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    """Run `make strip` (nbstripout) before committing a notebook you have run."""
    book = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(book.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; run `make strip`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_imports_the_package_and_defines_no_model_code(path):
    book = nbformat.read(path, as_version=4)
    code = "\n".join(cell.source for cell in book.cells if cell.cell_type == "code")
    assert re.search(r"^from crmvalue[.\w]* import", code, re.MULTILINE)
    assert not re.search(r"^\s*(def|class) ", code, re.MULTILINE), "notebooks use crmvalue's functions, not copies"
