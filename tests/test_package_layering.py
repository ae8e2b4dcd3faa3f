"""The core (`llava/`) never imports a plugin: plugins reach it only through the projector registry
and the `llava.projectors` entry point. Checked on the source, so a lazy import inside a function
counts as much as one at the top of a file."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("parrot_moe", "pargo")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def plugin_imports_in(folder: Path) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports {module}"
            for path in sorted(folder.rglob("*.py"))
            for line, module in imported_modules(path)
            if module.split(".")[0] in PLUGINS]


def test_no_file_of_the_core_imports_a_plugin():
    assert list((ROOT / "llava").rglob("*.py")), "llava/ not found next to tests/"
    assert plugin_imports_in(ROOT / "llava") == []


def test_the_scan_sees_a_lazy_plugin_import(tmp_path, monkeypatch):
    monkeypatch.setattr("test_package_layering.ROOT", tmp_path)
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "bad.py").write_text("def f():\n    from parrot_moe.router import route_by_text\n", encoding="utf-8")
    (tmp_path / "core" / "good.py").write_text("import torch\nfrom llava.constants import IGNORE_INDEX\n", encoding="utf-8")
    assert plugin_imports_in(tmp_path / "core") == ["core/bad.py:2 imports parrot_moe.router"]
