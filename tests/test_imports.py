"""Import graphs read from the source with ``ast`` (nothing is imported), and the rules
they must keep: the engine's modules import one another without a cycle, and the dashboard
reaches the server only through the REST client (``backend.client``), which itself needs
nothing else of ``backend``. Imports inside functions count; those under ``if
TYPE_CHECKING:`` do not."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from itertools import pairwise
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def module_name(path: Path, root: Path) -> str:
    """``root/a/b/c.py`` is ``a.b.c``; ``root/a/b/__init__.py`` is ``a.b``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str, root: Path) -> bool:
    """Whether ``name`` is a module or package in the source tree under ``root``."""
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, root: Path) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.root = root
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):  # imported for annotations only, never at run time
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            parts = self.package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module or ""
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            self.found.add(submodule if is_module(submodule, self.root) else source)


def imports_of(path: Path, package_root: Path) -> set[str]:
    """Every module the file at ``path`` imports, at module level or inside functions, as
    absolute dotted names; imports under ``if TYPE_CHECKING:`` are left out. ``package_root``
    is the folder of the file's top-level package: relative imports are resolved against it,
    and ``from p import x`` names ``p.x`` when ``x`` is a module in the tree beside it."""
    root = package_root.parent
    visitor = _Imports(module_name(path, root), path.name == "__init__.py", root)
    visitor.visit(ast.parse(path.read_text(), filename=str(path)))
    return visitor.found


def module_graph(package: str, root: Path = REPO) -> dict[str, set[str]]:
    """Each module of ``package`` (a folder under ``root``) and the modules of the same
    package it imports (a package's ``__init__`` is the package's own name)."""
    package_root = root / package
    paths = [p for p in sorted(package_root.rglob("*.py")) if "__pycache__" not in p.parts]
    modules = {module_name(p, root): p for p in paths}
    return {
        name: {m for m in imports_of(path, package_root) if m in modules and m != name}
        for name, path in modules.items()
    }


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of the graph, or None (graphlib finds it)."""
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as err:
        return list(reversed(err.args[1]))  # graphlib lists it against the import arrows
    return None


def test_the_engine_has_no_import_cycle() -> None:
    graph = module_graph("tap_engine")
    assert "tap_engine.runner" in graph and "tap_engine.algorithms" in graph  # the walk found them
    cycle = import_cycle(graph)
    assert cycle is None, "an import cycle in tap_engine: " + " -> ".join(cycle or [])


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_walker_finds_function_level_and_relative_cycles_but_not_type_checking_ones(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg import a\n",
            "pkg/a.py": "def late():\n    from . import b\n",
            "pkg/b.py": "from pkg.a import late\nfrom pkg import VERSION\nimport os\n",
            "pkg/c.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pkg import d\nelse:\n    from pkg.sub import e\n"
            ),
            "pkg/d.py": "import pkg.c\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/e.py": "from .. import a\n",
        },
    )
    assert imports_of(tmp_path / "pkg/b.py", tmp_path / "pkg") == {"pkg.a", "pkg", "os"}
    graph = module_graph("pkg", tmp_path)
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.a", "pkg"},
        "pkg.c": {"pkg.sub.e"},  # only the else branch of ``if TYPE_CHECKING`` runs
        "pkg.d": {"pkg.c"},
        "pkg.sub": set(),
        "pkg.sub.e": {"pkg.a"},
    }
    # c and d import each other only while type checking: the one cycle is pkg, a and b.
    cycle = import_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"pkg", "pkg.a", "pkg.b"}
    assert all(b in graph[a] for a, b in pairwise(cycle))


CLIENT = "backend.client"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _sources(folder: str) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize(
    ("path", "package"),
    [(p, "dashboard") for p in _sources("dashboard")]
    + [(p, "backend") for p in _sources("backend/client")],
    ids=lambda v: str(v.relative_to(REPO)) if isinstance(v, Path) else "",
)
def test_the_dashboard_and_the_client_import_only_the_client_of_backend(
    path: Path, package: str
) -> None:
    imported = imports_of(path, REPO / package)
    wrong = sorted(m for m in imported if _within(m, "backend") and not _within(m, CLIENT))
    assert not wrong, f"{path.relative_to(REPO)} imports backend outside {CLIENT}: {wrong}"
    # A module deleted from this tree must not still be imported (an editable install can
    # hide that by finding it elsewhere).
    missing = sorted(
        m
        for m in imported
        if (_within(m, "dashboard") or _within(m, CLIENT)) and not is_module(m, REPO)
    )
    assert not missing, f"{path.relative_to(REPO)} imports what is not in this tree: {missing}"


def test_the_walker_sees_a_function_level_import_of_the_server(tmp_path: Path) -> None:
    _write(
        tmp_path, {"dash/page.py": "import os\n\ndef f():\n    from backend.settings import S\n"}
    )
    assert imports_of(tmp_path / "dash/page.py", tmp_path / "dash") == {"os", "backend.settings"}
