"""The package boundaries a deployment depends on, read from the import statements of every module.

A serving module that imports torch or the export package breaks the Lambda bundle (which ships neither); an
artifact module that imports FastAPI or Powertools drags them into every export; an import cycle makes
import order decide whether a cold start works.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"amaas": ROOT / "functions" / "amaas", "amaas_export": ROOT / "export" / "amaas_export",
            "amaas_cli": ROOT / "cli" / "amaas_cli"}  # fmt: skip


def _modules(package: str) -> Iterator[tuple[str, Path]]:
    base = PACKAGES[package]
    for path in sorted(base.rglob("*.py")):
        parts = [package, *path.relative_to(base).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _imports(module: str, path: Path, *, top_level_only: bool) -> set[str]:
    """Absolute names of what ``module`` imports: everything, or only what runs when it is imported (not
    inside functions, not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def add(node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            return
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names)

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                add(node)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit([*node.body, *(s for h in node.handlers for s in h.body), *node.orelse, *node.finalbody])

    if top_level_only:
        visit(tree.body)
    else:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                add(node)
    return names


def _roots(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize(("module", "path"), list(_modules("amaas")), ids=lambda v: str(v).split("/")[-1])
def test_the_lambda_bundle_needs_neither_torch_nor_the_local_packages(module: str, path: Path) -> None:
    assert not _roots(_imports(module, path, top_level_only=False)) & {"torch", "torchvision", "amaas_export",
                                                                       "amaas_cli", "uvicorn"}  # fmt: skip


def test_the_artifact_contract_imports_no_web_framework_and_no_lambda_tooling() -> None:
    allowed_amaas = ("amaas.artifact", "amaas.errors")
    for module, path in _modules("amaas"):
        if not module.startswith("amaas.artifact"):
            continue
        names = _imports(module, path, top_level_only=False)
        assert not _roots(names) & {"fastapi", "starlette", "pydantic", "mangum", "aws_lambda_powertools", "boto3"}
        stray = {n for n in names if n.startswith("amaas.") and not n.startswith(allowed_amaas)}
        assert not stray, f"{module} reaches outside the contract: {sorted(stray)}"


def test_export_uses_only_the_artifact_contract_from_the_serving_side() -> None:
    for module, path in _modules("amaas_export"):
        names = _imports(module, path, top_level_only=False)
        serving = {n for n in names if n == "amaas" or n.startswith("amaas.")}
        stray = {n for n in serving if not n.startswith(("amaas.artifact", "amaas.errors"))}
        assert not stray, f"{module} imports serving code outside amaas.artifact: {sorted(stray)}"
        assert "amaas_cli" not in _roots(names), module


def test_no_package_has_an_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for module, path in _modules(package):
            graph[module] = _imports(module, path, top_level_only=True)
    known = set(graph)
    # A module's own parent packages are initialised before it runs: importing from them closes no cycle.
    edges = {
        m: {n for n in names if n in known and not (m == n or m.startswith(n + "."))} for m, names in graph.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(edges):
        if module not in state:
            cycle = walk(module)
            assert cycle is None, " -> ".join(cycle)
