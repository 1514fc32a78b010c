"""The command line of the scripts: options into configs, one-line errors, exit code 2.

Only the scripts in `scripts/` import this module; the library never does. It owns no default:
each option's default is the config's (`keras_bp.config`), which the help text shows.
"""

import argparse
import math
import os
import re
import signal
import sys
from dataclasses import fields, replace
from pathlib import Path

from keras_bp.config import (
    DEFAULT_LEARNING_RATES,
    OPTIMIZERS,
    STRATEGIES,
    FitConfig,
    LoopConfig,
    Speed,
)
from keras_bp.runtime import cluster
from keras_bp.runtime.backend_start import BACKENDS, select_backend
from keras_bp.runtime.errors import InputError, Interrupted, NonFiniteLoss, SaveFailed, UsageError
from keras_bp.runtime.interrupts import exit_on_signal
from keras_bp.runtime.runlock import check_not_in_use
from keras_bp.runtime.tensorflow_start import VERBOSE_ENV, start_tensorflow  # noqa: F401


def _one_line_on_ctrl_c(kind, value, traceback, default=sys.excepthook):
    """Ctrl-C while a script still imports (before `run` holds the signals): one line, not a
    traceback; Python still exits as interrupted (130)."""
    if issubclass(kind, KeyboardInterrupt):
        print(f"\n{os.path.basename(sys.argv[0])}: interrupted while starting", file=sys.stderr)
        return
    default(kind, value, traceback)


sys.excepthook = _one_line_on_ctrl_c  # only the scripts import this module


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage block
        fail(message, prog=self.prog)


def fail(message, prog=None):
    prog = prog or os.path.basename(sys.argv[0])
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _number(convert, expected, accept):
    """An argparse type: `convert(text)`, refused in one line unless `accept(value)`."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, received {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, received {value}")
        return value

    return parse


positive_int = _number(int, "a positive integer", lambda v: v > 0)
non_negative_int = _number(int, "an integer >= 0", lambda v: v >= 0)
positive_float = _number(float, "a positive number", lambda v: 0 < v < math.inf)


def seed_list(text):
    """An argparse type: `"5"` is seeds 0 to 4, `"3-7"` seeds 3 to 7."""
    if re.fullmatch(r"\d+", text) and int(text) > 0:
        return list(range(int(text)))
    match = re.fullmatch(r"(\d+)-(\d+)", text)
    if match and int(match[1]) <= int(match[2]):
        return list(range(int(match[1]), int(match[2]) + 1))
    raise argparse.ArgumentTypeError(
        f"expected a count such as 5 or a range such as 3-7, received {text!r}"
    )


def backend_list(text):
    """An argparse type: `"tensorflow,jax"`, Keras backends, each once."""
    backends = text.split(",")
    for backend in backends:
        if backend not in BACKENDS:
            raise argparse.ArgumentTypeError(
                f"expected backends among {','.join(BACKENDS)}, received {text!r}"
            )
    if len(set(backends)) != len(backends):
        raise argparse.ArgumentTypeError(f"each backend once, received {text!r}")
    return backends


def train_parser(description, trainer, out=None):
    """A parser with the options of `trainer` (`"fit"`, `"tape"` or `"manual"`).

    `out` replaces the trainer's default output directory, for a script that runs several.
    """
    d = FitConfig(out=out) if trainer == "fit" else LoopConfig(gradients=trainer, out=out)
    p = Parser(description=description)
    add_verbose(p)
    p.add_argument("--epochs", type=positive_int, help=f"default: {d.epochs}")
    p.add_argument("--batch-size", type=positive_int, help=f"default: {d.batch_size}")
    p.add_argument(
        "--seed",
        type=non_negative_int,
        help=f"random seed of the initial weights and each epoch's shuffle (default: {d.seed})",
    )
    p.add_argument("--out", type=Path, default=out, help=f"output directory (default: {d.out})")
    p.add_argument(
        "--train-samples",
        type=positive_int,
        metavar="N",
        help="train on the first N training images only (default: all 60000)",
    )
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=f"default: {d.optimizer}")
    p.add_argument(
        "--learning-rate",
        type=positive_float,
        metavar="LR",
        help="default: the optimizer's own (Keras's): "
        + ", ".join(f"{lr:g} for {name}" for name, lr in DEFAULT_LEARNING_RATES.items()),
    )
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="bit-identical reruns on one machine: seeded everything, deterministic ops, "
        "fixed threads",
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="start over: delete the resume state in --out instead of resuming from it",
    )
    p.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        help="update with RMSprop as one fused kernel: the same rule, equal to float rounding "
        f"(keras_bp/fused.py); --no-fused: Keras's op-by-op update (default: "
        f"{'--fused' if d.speed.fused else '--no-fused'})",
    )
    p.add_argument(
        "--early-stopping",
        type=positive_int,
        metavar="PATIENCE",
        help="hold out the last sixth of the training images (10000 of 60000) as validation; "
        "stop when the validation loss has not improved for PATIENCE epochs, and keep the "
        "weights of the epoch where it was lowest",
    )
    p.add_argument(
        "--tensorboard",
        type=Path,
        metavar="DIR",
        help="write TensorBoard event files into DIR: train, validation and test loss and "
        "accuracy, and weight histograms, per epoch (tensorboard --logdir DIR)",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        help="train data-parallel with tf.distribute: mirrored replicas in this process, or "
        "multi-worker across the processes TF_CONFIG names (scripts/run_workers.py starts them)",
    )
    p.add_argument(
        "--replicas",
        type=positive_int,
        metavar="N",
        help="--strategy mirrored: N replicas (logical CPU devices, or the GPUs); they split "
        "each batch evenly",
    )
    if trainer == "fit":
        p.add_argument(
            "--backend",
            choices=BACKENDS,
            help="Keras's backend: the same data, initial weights and batches on each; jax and "
            f"torch are extras (make backends) (default: {d.backend})",
        )
        p.add_argument(
            "--keras-shuffle",
            action="store_true",
            help="let fit shuffle the arrays itself; seeded, Keras repeats one order every "
            "epoch (default: a new order each epoch, the loops' order)",
        )
        p.add_argument(
            "--steps-per-execution",
            dest="steps_per_call",
            type=positive_int,
            metavar="N",
            help=f"run N steps per compiled call; same updates (default: {d.speed.steps_per_call})",
        )
        p.add_argument("--xla", action="store_true", help="compile with XLA; same updates")
        return p
    p.add_argument(
        "--steps-per-call",
        type=positive_int,
        metavar="STEPS",
        help=f"training steps per compiled call (default: {d.speed.steps_per_call})",
    )
    p.add_argument(
        "--xla",
        action="store_true",
        help="compile the steps with XLA: faster, same math, other kernels; the weights then "
        "drift from fit's (about 1e-2 after 100 steps, see README)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=non_negative_int,
        metavar="STEPS",
        help="checkpoint every STEPS steps, and at each epoch end; 0: epoch ends only "
        f"(default: {d.checkpoint_every})",
    )
    return p


def start_backend(backend, verbose=False):
    """Set Keras's backend, then start TensorFlow, which keras_bp's data path uses on every
    backend. A backend that is not installed is a `UsageError` naming the extra to install."""
    select_backend(backend)
    start_tensorflow(verbose)


def add_verbose(parser):
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"show TensorFlow's start-up lines (or set {VERBOSE_ENV}=1)",
    )


def config_from_args(args, trainer):
    """The `FitConfig` or `LoopConfig` that `train_parser(…, trainer)`'s options describe."""
    cls = FitConfig if trainer == "fit" else LoopConfig
    given = {k: v for k, v in vars(args).items() if v is not None}
    speed = {f.name: given.pop(f.name) for f in fields(Speed) if f.name in given}
    names = {f.name for f in fields(cls)}
    kwargs = {k: v for k, v in given.items() if k in names}
    if cls is LoopConfig:
        kwargs["gradients"] = trainer
    default_speed = cls.__dataclass_fields__["speed"].default
    tensorboard = given.get("tensorboard")
    if tensorboard is not None and tensorboard.exists() and not tensorboard.is_dir():
        fail(f"--tensorboard {tensorboard} is a file, not a directory")
    if speed.get("fused") and given.get("optimizer", cls.optimizer) != "rmsprop":
        fail(f"--fused applies to rmsprop only, received --optimizer {given['optimizer']}")
    try:
        config = cls(**kwargs, speed=replace(default_speed, **speed))
    except ValueError as e:
        fail(str(e))
    if config.strategy == "multi-worker":  # before TensorFlow starts its server and waits
        cluster.check_port_free(cluster.read())
        cluster.start_join_deadline()
    return config


def print_summary(metrics, out: Path, clock=None):
    """The end of every trainer's output: test accuracy and loss, the files written, and with a
    `keras_bp.runtime.walltime.WallClock`, where the wall time went."""
    stopping = metrics.get("early_stopping")
    if stopping:
        ran = stopping["stopped_epoch"] or metrics["epochs"]
        print(f"early stopping: best epoch {stopping['best_epoch']} of {ran} trained")
    print(f"test accuracy: {metrics['test_accuracy']:.4f}")
    if clock is None:
        print(f"test loss: {metrics['test_loss']:.4f}  ({metrics['train_seconds']:.1f} s training)")
    else:  # the wall-time line splits the training time; one figure, not two that differ
        print(f"test loss: {metrics['test_loss']:.4f}")
    print(f"wrote {out / 'metrics.json'} and {out / 'model.keras'}")
    if clock is not None:
        print(clock.summary())


def check_out_dir(path: Path) -> Path:
    """Fail fast, in one line, on an `--out` that cannot be used; create nothing.

    A file where the directory should be, or a directory another run holds, is refused before
    TensorFlow is even imported. The trainers create the directory once the run is validated.
    """
    from keras_bp.runtime import resume_files

    path = Path(path)
    _check_name_lengths(path)
    if path.is_symlink() and not path.exists():
        raise UsageError(
            f"--out {path} is a symlink to {os.readlink(path)}, which does not exist; create "
            "that directory, or choose another --out"
        )
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} is a file, not a directory")
    existing = next(p for p in [path, *path.absolute().parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {path}: cannot write there ({existing} is not writable)")
    check_not_in_use(path)
    resume_files.check(path / "resume")
    return path


# The longest path keras_bp writes under --out: a worker's checkpoint data file, say.
_LONGEST_INSIDE = len("/workers/worker-999/resume/checkpoints/ckpt-999999_temp/part-00000-of-00001")


def _check_name_lengths(path: Path):
    """Refuse an `--out` the filesystem cannot name: a component past its NAME_MAX, or a path
    that, with what keras_bp writes inside it, passes PATH_MAX."""
    full = path.absolute()
    existing = next(p for p in full.parents if os.path.isdir(p))
    name_max = os.pathconf(existing, "PC_NAME_MAX")
    path_max = os.pathconf(existing, "PC_PATH_MAX")
    for part in full.parts:
        if len(os.fsencode(part)) > name_max:
            raise UsageError(
                f"--out {str(path)[:60]}…: the name {part[:20]}… is {len(os.fsencode(part))} bytes "
                f"long, past this filesystem's limit of {name_max}; choose a shorter --out"
            )
    length = len(os.fsencode(str(full)))
    if length + _LONGEST_INSIDE >= path_max:
        raise UsageError(
            f"--out {str(path)[:60]}…: a path of {length} bytes leaves no room "
            f"under this system's limit of {path_max} for the files keras_bp writes inside it; "
            "choose a shorter --out"
        )


def run(main):
    """Call `main()`; bad input and missing data become one line and exit code 2.

    When the process was started for this script (`python scripts/X.py`, as `make` runs them)
    and the command ran TensorFlow, the process exits as soon as `main()` returns (every file
    written and closed), with `main()`'s exit code, without the interpreter's teardown of
    TensorFlow's modules and threads: about 1 s that a finished command does not need. Called
    any other way (`keras-bp`, `python -m keras_bp`, `commands.main` from Python) it returns,
    and so does a task of a multi-worker cluster (`TF_CONFIG` set), so TensorFlow can close its
    links.
    """
    from keras_bp.data import MnistUnavailable

    try:
        with exit_on_signal():  # until training starts, a signal has nothing to save
            result = main()
        started_for_this = getattr(sys.modules.get("__main__"), "main", None) is main
        if started_for_this and "tensorflow" in sys.modules and not os.environ.get("TF_CONFIG"):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(result if isinstance(result, int) else 0)
        return result
    except (UsageError, InputError, MnistUnavailable) as e:
        fail(str(e))
    except (NonFiniteLoss, SaveFailed) as e:  # not bad input: training diverged, or a save failed
        print(f"{os.path.basename(sys.argv[0])}: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except Interrupted as e:  # stopped at a safe point; the message says what was saved
        name = signal.Signals(e.signum).name
        print(f"\n{os.path.basename(sys.argv[0])}: interrupted by {name}: {e}", file=sys.stderr)
        raise SystemExit(128 + e.signum) from None
    except KeyboardInterrupt:  # outside training (loading, saving): nothing to resume from
        print(f"\n{os.path.basename(sys.argv[0])}: interrupted", file=sys.stderr)
        raise SystemExit(128 + signal.SIGINT) from None
