"""The dashboard talks to the server only through the REST client: no module under
``dashboard/`` imports anything of ``backend`` but ``backend.client``, and the client itself
imports nothing else of ``backend`` (it runs without the server's settings or database).
Every import is read from the source with ``ast``, those inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIENT = "backend.client"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in the file: ``import x`` gives ``x``, ``from x
    import y`` gives ``x.y`` (a module, or an attribute of ``x``)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def top_level_names(path: Path) -> set[str]:
    """What a module defines or imports at its top level; nothing for a missing file."""
    if not path.is_file():
        return set()
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def modules_under(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_walk_sees_function_level_imports(tmp_path: Path) -> None:
    source = tmp_path / "page.py"
    source.write_text("import os\n\ndef f():\n    from backend.settings import Settings\n")
    assert (4, "backend.settings.Settings") in imported_modules(source)


@pytest.mark.parametrize("path", modules_under("dashboard"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_dashboard_imports_only_the_client_of_backend(path: Path) -> None:
    wrong = [
        f"line {line}: {module}"
        for line, module in imported_modules(path)
        if within(module, "backend") and not within(module, CLIENT)
    ]
    assert not wrong, f"{path.relative_to(ROOT)} imports backend outside {CLIENT}: {wrong}"


@pytest.mark.parametrize(
    "path", modules_under("backend/client"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_client_imports_nothing_else_of_backend(path: Path) -> None:
    wrong = [
        f"line {line}: {module}"
        for line, module in imported_modules(path)
        if within(module, "backend") and not within(module, CLIENT)
    ]
    assert not wrong, f"{path.relative_to(ROOT)} imports backend outside {CLIENT}: {wrong}"


@pytest.mark.parametrize("path", modules_under("dashboard"), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_dashboard_module_it_imports_is_in_this_tree(path: Path) -> None:
    """``dashboard.x`` names dashboard/x.py (or a package): nothing deleted is still used."""
    missing = []
    for line, module in imported_modules(path):
        if not within(module, "dashboard") and not within(module, CLIENT):
            continue
        file = ROOT.joinpath(*module.split("."))
        is_module = file.with_suffix(".py").is_file() or (file / "__init__.py").is_file()
        # ``from dashboard.ui import MAIN`` names an attribute of a module or a package.
        is_attribute = file.name in top_level_names(file.parent.with_suffix(".py")) | (
            top_level_names(file.parent / "__init__.py")
        )
        if not (is_module or is_attribute):
            missing.append(f"line {line}: {module}")
    assert not missing, f"{path.relative_to(ROOT)} imports what is not here: {missing}"
