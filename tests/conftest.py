import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# In-process tests import TensorFlow without keras_bp.cli: keep its C++ chatter quiet here too.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


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
