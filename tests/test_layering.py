"""The import graph of the project's packages: no cycle, and every arrow points down the layers (docs/layers.md).

Every ``import`` in every module counts, also those inside functions or ``if TYPE_CHECKING:``.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Bottom first: a package may import itself and the packages before it, never one after it.
LAYERS = ("contracts", "earlyexit", "policy", "converter", "host")


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of every package under ``root`` that ``LAYERS`` names."""
    out = {}
    for package in LAYERS:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The project modules that ``source`` (the text of ``module``) imports, wherever the import sits."""
    found = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" if base else alias.name for alias in node.names] + [base]
        else:
            continue
        for name in names:
            # the longest known prefix: `from converter import verify` is converter.verify, `__version__` is converter
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def project_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = _modules(root)
    known = set(modules)
    return {
        m: imports_of(path.read_text(), m, path.name == "__init__.py", known) for m, path in sorted(modules.items())
    }


def upward_arrows(graph: dict[str, set[str]], layers: tuple[str, ...] = LAYERS) -> list[str]:
    """``a -> b`` for every import of a higher layer's module ``b`` by ``a``."""
    rank = {package: k for k, package in enumerate(layers)}
    return sorted(
        f"{a} -> {b}" for a, targets in graph.items() for b in targets if rank[b.split(".")[0]] > rank[a.split(".")[0]]
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_every_package_has_a_layer():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(LAYERS), f"place {packages - set(LAYERS)} in LAYERS (and docs/layers.md)"


def test_imports_only_point_down_the_layers():
    assert upward_arrows(project_graph()) == []


def test_no_module_import_cycle():
    assert cycles(project_graph()) == []


def test_the_graph_sees_every_kind_of_import():
    graph = project_graph()
    assert "contracts.protocol" in graph["host.bridge"]  # from contracts.protocol import (...)
    assert "policy.embed" in graph["converter.build"]  # inside a function
    assert "converter" in graph["converter.codegen"]  # from converter import __version__
    assert "host.tier" in graph["host.edge"]
    relative = "from . import tier\nfrom .tier import Upstream\nfrom .. import contracts\n"
    assert imports_of(relative, "host.edge", False, {"host.tier", "contracts"}) == {"host.tier", "contracts"}


@pytest.mark.parametrize(
    "source, module",
    [
        ("import host.bridge\n", "contracts.protocol"),
        ("def f():\n    from host import bridge\n", "contracts.protocol"),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from converter.build import run\n", "policy.embed"),
    ],
)
def test_the_checker_fails_on_an_upward_import(source, module):
    known = {"contracts.protocol", "host", "host.bridge", "converter", "converter.build", "policy.embed"}
    graph = {module: imports_of(source, module, False, known)}
    assert upward_arrows(graph), f"{source!r} in {module} should be an upward arrow: {graph}"


def test_the_checker_finds_a_cycle():
    graph = {"host.cloud": {"host.edge"}, "host.edge": {"host.tier", "host.cloud"}, "host.tier": set()}
    assert cycles(graph) == [["host.cloud", "host.edge"]]
    assert cycles({**graph, "host.edge": {"host.tier"}}) == []
