"""The package's architecture, checked: the layer contracts and no import cycle.

The contracts live in setup.cfg ([importlinter]); import-linter checks them.
The cycle check below is stricter than import-linter's "acyclic siblings": it
looks at single modules, and counts imports inside functions and under
TYPE_CHECKING, so a cycle cannot hide in a late import.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "scrapy_resume"


def test_the_layer_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run(
        [lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every module of the package that ``path`` imports, wherever the import is."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in modules and c != name)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, modules) for f in files}


def test_the_package_has_no_import_cycle():
    assert cycles(package_graph()) == []


def test_the_cycle_check_sees_late_and_type_checking_imports():
    # the checker itself: a cycle made only of such imports is found
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    graph = package_graph()
    runtime = graph["scrapy_resume.engine.runtime"]
    assert "scrapy_resume.store.redis.leases" in runtime  # imported under TYPE_CHECKING


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def oversized(files: list[Path], root: Path = REPO) -> list[str]:
    """Modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES."""
    found = []
    for path in files:
        text = path.read_text()
        name = path.relative_to(root)
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    return found


def test_no_module_or_function_is_too_long_to_read_in_one_look():
    assert oversized(sorted(PACKAGE.rglob("*.py"))) == []


def test_the_size_check_lists_the_offenders(tmp_path):
    long_module = tmp_path / "long.py"
    long_module.write_text("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES + "\n" * 400)
    assert oversized([long_module], root=tmp_path) == [
        f"long.py: {MAX_FUNCTION_LINES + 1 + 400} lines",
        f"long.py:1 f: {MAX_FUNCTION_LINES + 1} lines",
    ]
