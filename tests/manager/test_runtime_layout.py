"""The Python runtime folder: what it may import and which names it puts on sys.path."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from hotpool.manager.runtimes import PYTHON_BOOTSTRAP as BOOTSTRAP_PATH

pytestmark = pytest.mark.unit


def _top_level_imports(source: Path) -> set[str]:
    """The top-level names of every absolute import in ``source``."""
    names = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def test_the_runtime_imports_only_the_standard_library_and_itself():
    # it runs on any python3 with -S: no site-packages, and nothing of hotpool.*
    sources = sorted(BOOTSTRAP_PATH.rglob("*.py"))
    assert BOOTSTRAP_PATH / "__main__.py" in sources
    allowed = sys.stdlib_module_names | {"__future__", "hotpool_runtime"}
    outside = {
        str(source.relative_to(BOOTSTRAP_PATH)): sorted(_top_level_imports(source) - allowed)
        for source in sources
    }
    assert {path: names for path, names in outside.items() if names} == {}


def test_the_runtime_puts_two_names_on_sys_path_that_no_function_module_meets():
    # the folder is sys.path[0] of every container, behind the function's code: any other
    # name here would shadow, or be shadowed by, a module of the function
    names = {p.name for p in BOOTSTRAP_PATH.iterdir() if p.name != "__pycache__"}
    assert names == {"__main__.py", "hotpool_runtime"}
