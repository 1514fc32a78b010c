"""`keras-bp` and `python -m keras_bp`: one installed command for what `scripts/` does.

    keras-bp train --epochs 1          # the same as: python scripts/train.py --epochs 1
    keras-bp custom-loop --no-fused    # python scripts/custom_loop.py --no-fused
    keras-bp --help

Each subcommand runs its script, the very file `python scripts/<name>.py` runs: the wheel
installs `scripts/` as the package `keras_bp.scripts`. So the options, the output and the exit
codes are the script's, and there is no second copy of any of them.
"""

import ast
import importlib.util
import runpy
import sys

SUBCOMMANDS = {
    "train": "train",
    "custom-loop": "custom_loop",
    "manual": "manual_backprop",
    "compare": "compare",
    "parity": "parity",
    "gradient-check": "gradient_check",
    "worked-example": "worked_example",
    "bench": "bench",
    "profile": "profile_ops",
    "run-workers": "run_workers",
    "report": "report",
}
ALIASES = {"loop": "custom-loop"}


def main(argv=None):
    """Run `keras-bp SUBCOMMAND [OPTIONS]`; `--help` lists the subcommands."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        raise SystemExit(0 if argv else 2)
    name = ALIASES.get(argv[0], argv[0])
    if name not in SUBCOMMANDS:
        print(
            f"keras-bp: error: unknown command {argv[0]!r}; choose from {', '.join(SUBCOMMANDS)}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    sys.argv = [f"keras-bp {name}", *argv[1:]]  # the script's messages name the subcommand
    runpy.run_module(f"keras_bp.scripts.{SUBCOMMANDS[name]}", run_name="__main__")


def usage():
    width = max(map(len, SUBCOMMANDS))
    lines = [f"  {name:<{width}}  {_summary(module)}" for name, module in SUBCOMMANDS.items()]
    return (
        "usage: keras-bp SUBCOMMAND [OPTIONS]   (keras-bp SUBCOMMAND --help for its options)\n\n"
        "Backpropagation on the classic Keras MNIST example, three ways.\n\n"
        "subcommands:\n" + "\n".join(lines) + "\n  (loop is custom-loop)"
    )


def _summary(module):
    """The first line of the script's docstring, read without running the script."""
    origin = importlib.util.find_spec(f"keras_bp.scripts.{module}").origin
    with open(origin, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    first = next((line for line in doc.splitlines() if line.strip()), "")
    return first.removeprefix("Title: ")
