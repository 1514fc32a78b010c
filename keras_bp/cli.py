"""Command-line plumbing shared by the scripts: one argparse setup, one-line errors, exit code 2."""

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from keras_bp.errors import InputError, NonFiniteLoss, UsageError


@dataclass
class TrainConfig:
    """What every trainer needs; the defaults are the seed's recipe."""

    epochs: int = 5
    batch_size: int = 128
    seed: int = 0
    out: Path = Path("runs/fit")


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        fail(message, prog=self.prog)


def fail(message, prog=None):
    prog = prog or os.path.basename(sys.argv[0])
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, received {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {value}")
    return value


def non_negative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, received {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, received {value}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, received {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, received {value}")
    return value


def train_parser(description, default_out):
    """A parser with the options every trainer takes.

    --epochs --batch-size --seed --out --train-samples --deterministic --fused --fresh
    """
    p = Parser(description=description)
    d = TrainConfig()
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help="default: %(default)s")
    p.add_argument(
        "--batch-size", type=positive_int, default=d.batch_size, help="default: %(default)s"
    )
    p.add_argument("--seed", type=non_negative_int, default=d.seed, help="default: %(default)s")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(default_out),
        help="output directory (default: %(default)s)",
    )
    p.add_argument(
        "--train-samples",
        type=positive_int,
        default=None,
        metavar="N",
        help="train on the first N training images only (default: all 60000)",
    )
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="bit-identical reruns on one machine: seeded everything, deterministic ops, "
        "fixed threads",
    )
    p.add_argument(
        "--fused",
        action="store_true",
        help="update with RMSprop as one fused kernel: the same rule, equal to float rounding, "
        "much faster without XLA (keras_bp/fused.py)",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="start over: delete the resume state in --out (checkpoints, or model.fit's "
        "backup) instead of resuming from it",
    )
    return p


def loop_parser(description, default_out):
    """`train_parser` plus the custom loop's options."""
    p = train_parser(description, default_out)
    p.add_argument(
        "--checkpoint-every",
        type=non_negative_int,
        default=100,
        metavar="STEPS",
        help="checkpoint every STEPS steps, and at each epoch end; 0: epoch ends only "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--steps-per-call",
        type=positive_int,
        default=52,
        metavar="STEPS",
        help="training steps per compiled call (default: %(default)s)",
    )
    p.add_argument(
        "--xla",
        action="store_true",
        help="compile the steps with XLA: faster, same math, other kernels; the weights then "
        "drift from fit's (about 1e-2 after 100 steps, see README)",
    )
    return p


def check_out_dir(path: Path) -> Path:
    """Create the output directory, or fail with one line if it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"--out {path}: cannot write there ({e.strerror or e})") from None
    return path


def run(main):
    """Call `main()`; bad input and missing data become one line and exit code 2."""
    from keras_bp.data import MnistUnavailable

    try:
        return main()
    except (UsageError, InputError, MnistUnavailable) as e:
        fail(str(e))
    except NonFiniteLoss as e:  # not bad input: the training itself diverged
        print(f"{os.path.basename(sys.argv[0])}: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        fail("interrupted")
