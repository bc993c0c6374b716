"""The layout's rules: the core knows no backend, backends know each other not, modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "servekit"
BACKENDS = PACKAGE / "backends"
#: what the core may know of the backends: the interface and the registry of names
CORE_MAY_IMPORT = {"servekit.backends", "servekit.backends.base"}
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_names(node: ast.Import | ast.ImportFrom, package: str) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        anchor = parts[: len(parts) - node.level + 1]
        base = ".".join([*anchor, *([base] if base else [])])
    return {base, *(f"{base}.{alias.name}" for alias in node.names)}


def _module_level(nodes: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported (not under TYPE_CHECKING, not in a def)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            found += _module_level(node.body) + _module_level(node.orelse)
        elif isinstance(node, (ast.Try, ast.With)):
            found += _module_level(node.body)
    return found


def _imports(path: Path, *, module_level_only: bool = False) -> set[str]:
    """Every servekit module ``path`` imports (or only those imported when it is imported)."""
    tree = ast.parse(path.read_text())
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    if module_level_only:
        nodes = _module_level(tree.body)
    else:
        nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    found: set[str] = set()
    for node in nodes:
        found |= _import_names(node, package)
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m.startswith("servekit") and m in modules}


def _sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


CORE = [p for p in _sources(PACKAGE) if BACKENDS not in p.parents and p.parent.name != "workers"]


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_imports_no_backend(path: Path) -> None:
    """A core module imports at most the backend interface and the registry, never a backend."""
    backend_imports = {m for m in _imports(path) if m.startswith("servekit.backends")}
    assert backend_imports <= CORE_MAY_IMPORT, backend_imports - CORE_MAY_IMPORT


FAMILIES = sorted(p for p in BACKENDS.iterdir() if p.is_dir() and p.name != "__pycache__")


@pytest.mark.parametrize("family", FAMILIES, ids=lambda p: p.name)
def test_backends_do_not_import_each_other(family: Path) -> None:
    """A backend family imports the core and itself, never another family."""
    others = {f"servekit.backends.{f.name}" for f in FAMILIES if f != family}
    for path in _sources(family):
        crossing = {m for m in _imports(path) if any(m.startswith(o) for o in others)}
        assert not crossing, (path, crossing)


def test_no_import_cycle_at_module_level() -> None:
    """servekit's modules import each other without a cycle (at run time, at module level)."""
    graph = {_module_name(p): _imports(p, module_level_only=True) for p in _sources(PACKAGE)}
    state: dict[str, int] = {}

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt.startswith(node + "."):
                continue  # a package importing its own submodule is not a cycle
            if state.get(nxt) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*trail, node, nxt])}")
            if nxt not in state:
                walk(nxt, [*trail, node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [])


def test_modules_stay_small() -> None:
    """No module of servekit is over 400 lines."""
    big = {
        str(p.relative_to(ROOT)): n
        for p in _sources(PACKAGE)
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big, big
