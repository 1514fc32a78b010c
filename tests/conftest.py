import gc
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# In-process tests import TensorFlow without keras_bp.cli: keep its C++ chatter quiet here too.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(items):
    """Start the tests marked `heavy(seconds)` first, the longest first. The two xdist workers
    take tests in this order, so the long ones are shared out at the start and the suite ends
    on short ones, not with one worker idle while the other runs a long test it took last."""

    def order(item):
        heavy = item.get_closest_marker("heavy")
        return (0, -heavy.args[0]) if heavy else (1, 0)

    items.sort(key=order)  # stable: the rest keep their order


def pytest_collection_finish(session):
    """Exempt what the imports built (TensorFlow, Keras: about 500,000 objects per worker) from
    Python's garbage collection: each full collection otherwise walks them all again, 14-15
    times per worker in one run, 3.3-5.1 s of a worker's time; 2.2-3.1 s after."""
    gc.collect()
    gc.freeze()


class Killed(BaseException):
    """Stands in for SIGKILL inside one process: not an Exception, so nothing catches it."""


def die_after(monkeypatch, owner, method, when=lambda calls: True):
    """Let `owner.method` run, then raise `Killed` once `when(calls)` is true.

    `calls` lists the positional arguments of each call so far, the latest last; the same list is
    returned, so a test can see where the kill came (the epoch and step of the last save, say).
    """
    real, calls = getattr(owner, method), []

    def then_die(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        calls.append(args)
        if when(calls):
            raise Killed
        return result

    monkeypatch.setattr(owner, method, then_die)
    return calls


# A small real-MNIST loop run that checkpoints often, for runs stopped in a subprocess.
LOOP_RUN = [
    "--deterministic",
    "--train-samples",
    "9600",
    "--epochs",
    "3",
    "--batch-size",
    "32",
    "--steps-per-call",
    "25",
    "--checkpoint-every",
    "25",
]


@pytest.fixture(scope="session")
def mnist():
    """Real, verified MNIST (uint8), loaded once per session."""
    from keras_bp.data import load_mnist

    return load_mnist()


def make_synthetic_data():
    """A small preprocessed classification problem shaped like MNIST: 784 features, 10 classes."""
    from keras_bp.data import preprocess

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(320, 28, 28), dtype=np.uint8)
    labels = (images.reshape(320, -1)[:, :10].argmax(axis=1)).astype(np.uint8)
    return preprocess(images[:256], labels[:256]), preprocess(images[256:], labels[256:])


@pytest.fixture
def synthetic_data():
    return make_synthetic_data()


def run_script(*args, timeout=600):
    """Run a script of the project with this interpreter; return the CompletedProcess."""
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_main(script, *args):
    """Run `scripts/<script>`'s `main()` in this process, through `cli.run` as the script does.

    Returns `subprocess.CompletedProcess(args, exit code, stdout, stderr)`, as `run_script`
    does, in milliseconds where the process would spend seconds starting TensorFlow: for tests
    of what a command checks. Each script keeps at least one `run_script` test for the real
    process's exit code and its one-line message.
    """
    import importlib.util
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    from keras_bp import cli

    path = ROOT / "scripts" / script
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    command = [str(path), *map(str, args)]
    argv, sys.argv = sys.argv, command
    stdout, stderr = StringIO(), StringIO()
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            code = cli.run(module.main) or 0
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(command, code, stdout.getvalue(), stderr.getvalue())
