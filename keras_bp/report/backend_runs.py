"""The recipe on Keras's JAX and PyTorch backends, for the report: each run in a process of its own.

One process has one Keras backend, and the report runs on TensorFlow. So each seed's run on
another backend is the command a user types, `keras-bp train --backend B --seed S`
(`scripts/train.py`): it loads MNIST as the report does (`keras_bp.data.mnist_arrays`), starts
from TensorFlow's initial weights for the seed, takes the same batches in the same order, and
writes its `metrics.json` into the run's directory, where `keras_bp.report.seeds` reads it and
reuses it on the next report.

A first SIGINT or SIGTERM to the report is passed on once to the run, which stops at its next
safe point and keeps its backup; the report then stops too, and the same command resumes it.
"""

import json
import re
import signal
import subprocess
import sys
import tempfile

from keras_bp.config import FitConfig
from keras_bp.runtime import backend_start
from keras_bp.runtime.errors import Interrupted, UsageError
from keras_bp.runtime.interrupts import stop_requests

# The report's `fit` on TensorFlow keeps its label; on another backend it is named as the
# command line names it.
TENSORFLOW = backend_start.DEFAULT_BACKEND


def label(backend: str) -> str:
    """The report's label of `fit` on `backend`: `"fit"` on TensorFlow, else `"fit --backend B"`."""
    return "fit" if backend == TENSORFLOW else f"fit --backend {backend}"


def fit_configs(backends) -> dict:
    """`{label: FitConfig}` of the recipe on each of `backends` other than TensorFlow."""
    return {label(b): FitConfig(backend=b) for b in backends if b != TENSORFLOW}


def train_command(config: FitConfig) -> list:
    """`python -m keras_bp train ...` (`keras-bp train`) for `config`: the recipe with the
    report's settings."""
    args = [sys.executable, "-m", "keras_bp", "train", "--backend", config.backend]
    args += ["--seed", config.seed, "--epochs", config.epochs]
    args += ["--out", config.out]
    if config.train_samples is not None:
        args += ["--train-samples", config.train_samples]
    if config.fresh:
        args.append("--fresh")
    return [str(a) for a in args]


def train_elsewhere(config: FitConfig) -> dict:
    """Run `config` (a backend other than TensorFlow) as `keras-bp train` in a process of its
    own; return the `metrics.json` it wrote.

    Raises:
        UsageError: the run refused its input (exit code 2), in its one line.
        Interrupted: this process was sent SIGINT or SIGTERM; the run stopped at a safe point.
        RuntimeError: the run failed otherwise; the message ends with its last lines of stderr.
    """
    where = f"{label(config.backend)}, seed {config.seed}"
    run_command(train_command(config), where)
    return json.loads((config.out / "metrics.json").read_text())


def run_command(command, where: str):
    """Run `command`, a keras_bp command, and wait for it, passing a first SIGINT or SIGTERM on
    to it; `where` names it in errors.

    The child has a session of its own, so a Ctrl-C in the terminal reaches it once, through
    this process, not twice (a second signal would end it without saving). Its output is
    discarded; its stderr is kept for the message when it fails.

    Raises:
        UsageError: the command refused its input (exit code 2), in its last line.
        Interrupted: a signal came: the command stopped, or had finished, and this stops too.
        RuntimeError: the command failed otherwise; the message ends with its stderr's tail.
    """
    with tempfile.TemporaryFile("w+") as stderr, stop_requests() as stop:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
        passed_on = None
        while True:
            try:
                code = child.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                if stop.requested and passed_on is None:
                    passed_on = stop.requested
                    child.send_signal(passed_on)
        stderr.seek(0)
        lines = [line for line in stderr.read().splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    if stop.requested:
        signum = stop.requested
        if code == 0:
            said = f"{where} finished; stopped before the next run"
        else:  # the child's own line, without its name and signal: the report says those
            said = f"{where}: " + re.sub(r"^.*?: interrupted by SIG\w+: ", "", last)
        raise Interrupted(signum, said)
    if code == 2:
        raise UsageError(f"{where}: {last}")
    if code != 0:
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        tail = "\n".join(lines[-20:])
        raise RuntimeError(f"{where}: {' '.join(map(str, command))} {how}:\n{tail}")
