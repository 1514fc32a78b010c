"""The package's layers point only down, and the README's layout names every module.

Layers, from the bottom: the foundation (no TensorFlow), the maths, the data, the training
machinery, the checks, and the command line at the edge. A module may import from its own layer
and the layers below it, never from above: the library never imports `keras_bp.cli`.
"""

import ast
import subprocess
import sys

import pytest
from conftest import ROOT

LAYERS = {
    "foundation": [
        "errors",
        "atomic",
        "config",
        "runlock",
        "interrupts",
        "tensorflow_start",
        "published",
        "cluster",
        "walltime",
    ],
    "maths": ["backprop", "fused", "optimizers", "layers", "model", "saving"],
    "data": ["data", "mnist_mirror", "batches"],
    "training": [
        "gradients",
        "reference",
        "compiled",
        "checkpoints",
        "runlog",
        "loop",
        "fit_guards",
        "fit_backup",
        "fit_input",
        "early_stopping",
        "summaries",
        "distribute",
        "recipe",
        "runs",
        "reproducible",
    ],
    "checks": [
        "gradcheck",
        "parity",
        "floors",
        "bench",
        "stats",
        "figures",
        "report",
        "report_document",
        "op_times",
        "profiling",
    ],
    "edge": ["cli", "commands", "__main__"],
}
LEVEL = {module: i for i, modules in enumerate(LAYERS.values()) for module in modules}
PACKAGE = ROOT / "keras_bp"


def imported_modules(path):
    """The keras_bp modules `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # `from .loop import x` and `from . import loop` count as keras_bp imports too.
            module = ("keras_bp." if node.level else "") + (node.module or "")
            names = [module] + [f"{module.rstrip('.')}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith("keras_bp.")}
    return found & set(LEVEL)


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(LEVEL)


@pytest.mark.parametrize("module", sorted(LEVEL))
def test_imports_point_down(module):
    above = {
        imported: next(name for name, mods in LAYERS.items() if imported in mods)
        for imported in imported_modules(PACKAGE / f"{module}.py")
        if LEVEL[imported] > LEVEL[module]
    }
    assert not above, f"{module} imports from layers above it: {above}"


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check can fail: a maths module importing the loop is caught."""
    bad = tmp_path / "backprop.py"
    bad.write_text("def f():\n    from keras_bp.loop import train_loop\n")
    assert imported_modules(bad) == {"loop"}
    bad.write_text("from .recipe import train_fit\nfrom . import parity\n")
    assert imported_modules(bad) == {"recipe", "parity"}
    assert LEVEL["loop"] > LEVEL["backprop"]


def test_the_command_line_starts_without_tensorflow():
    """Bad options fail in a fraction of a second: cli and config import no TensorFlow."""
    code = "import sys, keras_bp.cli; print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    missing = [m for m in LEVEL if f"{m}.py" not in layout]
    assert not missing, f"README's layout section does not name {missing}"
