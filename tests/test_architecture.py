"""The import graph: `training/` is a stack of layers that import only downward, and the core knows nothing of it.

Every import statement of every module is read with `ast` (function-local imports included, relative imports
resolved), so a cycle cannot hide behind a late import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The layers of `training/`, bottom first: a module may import its own layer and the layers below it.
LAYERS = ("common", "catalogs", "mocks", "dataset", "emulator")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module named by an import in the file, as an absolute dotted name."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def _modules(top: str) -> list[Path]:
    return sorted(p for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "training" and parts[1] in LAYERS else None


def test_every_training_module_sits_in_a_layer():
    """No module floats beside the layers (only training/__init__.py lives at the top)."""
    loose = [str(p.relative_to(ROOT)) for p in _modules("training")
             if p != ROOT / "training" / "__init__.py" and _layer(_module_name(p)) is None]
    assert not loose, f"modules outside the layers {LAYERS}: {loose}"


@pytest.mark.parametrize("path", _modules("training"), ids=lambda p: str(p.relative_to(ROOT)))
def test_training_imports_only_downward(path):
    layer = _layer(_module_name(path))
    if layer is None:
        return
    upward = sorted(name for name in _imports(path)
                    if (other := _layer(name)) is not None and LAYERS.index(other) > LAYERS.index(layer))
    assert not upward, f"{path.relative_to(ROOT)} (layer {layer!r}) imports from a higher layer: {upward}"


def test_nothing_imports_the_training_package_root_for_names():
    """`from training import x` would hide which layer x comes from; every import names its module."""
    offenders = []
    for top in ("training", "tests", "scripts", "benchmarks"):
        for path in _modules(top):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "training" and not node.level:
                    bad = [a.name for a in node.names if a.name not in LAYERS]
                    if bad:
                        offenders.append(f"{path.relative_to(ROOT)}: {bad}")
    assert not offenders, offenders


@pytest.mark.parametrize("path", _modules("iaemu_theory"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_never_imports_training(path):
    bad = sorted(n for n in _imports(path) if n == "training" or n.startswith("training."))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: iaemu_theory must not depend on training"


@pytest.mark.parametrize("path", _modules("training/catalogs/nbody"), ids=lambda p: str(p.relative_to(ROOT)))
def test_nbody_code_knows_nothing_of_halotools(path):
    """The N-body pipeline makes halos; galaxies and halotools(-IA) come later, in training.mocks."""
    bad = sorted(n for n in _imports(path) if n.split(".")[0] == "halotools")
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_import_parser_sees_local_and_relative_imports(tmp_path):
    """The checks above are only as good as `_imports`: it must see imports inside functions and resolve dots."""
    path = ROOT / "training" / "catalogs" / "nbody" / "catalog.py"
    names = _imports(path)
    assert "training.catalogs.nbody.cosmology" in names  # `from . import cosmology`
    assert "training.common.datafiles" in names
    sources = _imports(ROOT / "training" / "catalogs" / "sources.py")
    assert "training.catalogs.nbody.load_catalog_columns" in sources  # imported inside a function
