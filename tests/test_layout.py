"""The package's layers point only down, and the docs' layout page names every module.

The top of `keras_bp/` holds the lesson and the public API; every tool around it is a subpackage
named for its job. Each top-level module and each subpackage sits in one layer, from the bottom:
the runtime plumbing (no TensorFlow), the settings, the maths, the data, the lesson's loop and
gradient sources, the training machinery, the checks and speed, the report, and the command line
at the edge. A unit may import from its own layer and the layers below it, never from above:
the library never imports `keras_bp.cli`.
"""

import ast
import subprocess
import sys

import pytest
from conftest import ROOT

LAYERS = {
    "runtime": ["runtime"],
    "settings": ["config"],
    "maths": ["backprop", "fused", "optimizers", "layers", "model", "saving"],
    "data": ["data"],
    "lesson loop": ["gradients", "reference"],
    "training": ["training"],
    "checks": ["checks", "speed"],
    "report": ["report"],
    "edge": ["cli", "__main__"],
}
LEVEL = {unit: i for i, units in enumerate(LAYERS.values()) for unit in units}
PACKAGE = ROOT / "keras_bp"


def unit_of(path):
    """The layer unit a file belongs to: its subpackage, or its own name at the top level."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def imported_units(path):
    """The keras_bp units `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # keras_bp imports absolutely; a relative import would hide a layer
                raise AssertionError(f"{path}: relative import of {node.module!r}")
            module = node.module or ""
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith("keras_bp.")}
    return found & set(LEVEL)


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_the_top_level_is_the_lesson_and_a_handful_of_subpackages():
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert top | subpackages == set(LEVEL)
    assert len(subpackages) <= 8


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    unit = unit_of(path)
    above = {
        imported: next(name for name, units in LAYERS.items() if imported in units)
        for imported in imported_units(path)
        if LEVEL[imported] > LEVEL[unit]
    }
    assert not above, f"{unit} imports from layers above it: {above}"


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check can fail: a maths module importing the loop is caught."""
    bad = tmp_path / "backprop.py"
    bad.write_text("def f():\n    from keras_bp.training.loop import train_loop\n")
    assert imported_units(bad) == {"training"}
    bad.write_text("from keras_bp.training import recipe\nfrom keras_bp.checks import parity\n")
    assert imported_units(bad) == {"training", "checks"}
    assert LEVEL["training"] > LEVEL["backprop"]


def test_the_command_line_starts_without_tensorflow():
    """Bad options fail in a fraction of a second: cli and config import no TensorFlow."""
    code = "import sys, keras_bp.cli; print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_layout_page_names_every_module():
    layout = (ROOT / "docs" / "layout.md").read_text()
    names = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    names |= {f"{p.name}/" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    missing = sorted(n for n in names if n.split("/")[-1] not in layout and n not in layout)
    assert not missing, f"docs/layout.md does not name {missing}"
