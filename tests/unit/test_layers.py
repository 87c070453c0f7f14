"""The layering rule of DESIGN.md, checked on the source: recipes import only from the layers below
them, never from each other; `pipeline.py` alone calls recipes; below the recipes, only the
command line (`cli.py`) reaches up to them. Imports are read with `ast`, so an import inside a
function counts as much as one at the top of a file."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "tiller"
RECIPES = SRC / "recipes"
RECIPE_MODULES = {f"tiller.recipes.{p.stem}" for p in RECIPES.glob("*.py") if p.stem != "__init__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module `source` (the text of `module`) imports, and for `from X import y` also
    X.y (y may be a submodule), with relative imports resolved."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            found.add(origin)
            found.update(f"{origin}.{alias.name}" for alias in node.names)
    return found


def recipes_imported_by(path: Path) -> set[str]:
    name = module_name(path)
    return (imported(path.read_text(), name, path.stem == "__init__") & RECIPE_MODULES) - {name}


def test_the_checker_sees_every_form_of_import():
    module = "tiller.recipes.dpo"
    for line in ("from tiller.recipes.sft import IGNORE", "from tiller.recipes import sft", "import tiller.recipes.sft",
                 "from . import sft", "from .sft import IGNORE", "def f():\n    from tiller.recipes import sft"):
        assert "tiller.recipes.sft" in imported(line, module) & RECIPE_MODULES, line
    assert not imported("from tiller.data.run_files import load_pairs", module) & RECIPE_MODULES


def test_recipes_never_import_each_other():
    assert {"tiller.recipes.sft", "tiller.recipes.rloo", "tiller.recipes.pipeline"} <= RECIPE_MODULES
    offenders = {path.name: sorted(recipes_imported_by(path)) for path in sorted(RECIPES.glob("*.py"))
                 if path.name != "pipeline.py" and recipes_imported_by(path)}
    assert not offenders, f"recipes importing other recipes (move the shared code down a layer): {offenders}"


def test_only_the_pipeline_and_the_command_line_call_recipes():
    offenders = {str(path.relative_to(SRC)): sorted(recipes_imported_by(path)) for path in sorted(SRC.rglob("*.py"))
                 if RECIPES not in path.parents and path.name != "cli.py" and recipes_imported_by(path)}
    assert not offenders, f"modules below the recipes importing a recipe: {offenders}"
