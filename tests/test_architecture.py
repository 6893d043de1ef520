"""The design's rules that code can check (../shared/DESIGN.md): tasks are plug-ins that no
module outside rnnfast/tasks/ names, the import graph has no circle, the backends do not
import each other, and no package imports another package's private module."""

import ast
from pathlib import Path

import pytest

from rnnfast.tasks import builtin_names

PACKAGE = Path(__file__).resolve().parents[1] / "rnnfast"


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(encoding="utf-8"))
    return out


MODULES = _modules()


def _imports(name: str, tree: ast.Module) -> set[str]:
    """rnnfast modules `name` imports anywhere (module level or inside functions)."""
    package = name if name in _packages() else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
    return {m for m in out if m in MODULES and m != name}


def _packages() -> set[str]:
    return {p.relative_to(PACKAGE.parent).as_posix().replace("/", ".")
            for p in PACKAGE.rglob("__init__.py") for p in [p.parent]}  # fmt: skip


GRAPH = {name: _imports(name, tree) for name, tree in MODULES.items()}


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_no_module_outside_tasks_names_a_task():
    names = set(builtin_names())
    found = []
    for name, tree in MODULES.items():
        if name.startswith("rnnfast.tasks"):
            continue
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and id(node) not in docs and node.value in names:
                found.append(f"{name}:{node.lineno} {node.value!r}")
    assert found == []


def test_the_import_graph_has_no_circle():
    # packages import their own submodules (re-exports); a circle through a package's
    # __init__ and its own child is not a circle between modules
    def edges(m):
        return {d for d in GRAPH[m] if not (d.startswith(m + ".") or m.startswith(d + "."))}

    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(edges(m)):
            if state.get(d) == 1:
                pytest.fail("import circle: " + " -> ".join(path[path.index(d) :] + [d]))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_the_backends_do_not_import_each_other():
    for name, deps in GRAPH.items():
        if name.startswith("rnnfast.cuda"):
            assert not [d for d in deps if d.startswith("rnnfast.cpu")], name
        if name.startswith("rnnfast.cpu"):
            assert not [d for d in deps if d.startswith("rnnfast.cuda")], name


def test_no_package_imports_another_packages_private_module():
    bad = []
    for name, deps in GRAPH.items():
        own = name if name in _packages() else name.rpartition(".")[0]
        for d in deps:
            parent, _, leaf = d.rpartition(".")
            if leaf.startswith("_") and not leaf.startswith("__") and parent != own:
                if parent != "rnnfast":  # rnnfast._blas etc.: the top package's own helpers
                    bad.append(f"{name} imports {d}")
    assert bad == []
