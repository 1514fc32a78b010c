"""Choose Keras's backend (TensorFlow, JAX or PyTorch) before Keras is imported.

Keras reads `KERAS_BACKEND` once, when it is first imported, so a command picks its backend
first thing. TensorFlow is keras_bp's own dependency; JAX and PyTorch are optional extras
(`pip install 'keras_bp[jax]'`, `'keras_bp[torch]'`, or `make backends`). Imports nothing heavy.
"""

import importlib.util
import os
import sys

from keras_bp.runtime.errors import UsageError

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT_BACKEND = "tensorflow"
# The package each backend needs, and the extra that installs it.
_PACKAGE = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def installed(backend: str) -> bool:
    """Whether `backend`'s package can be imported here (without importing it)."""
    return importlib.util.find_spec(_PACKAGE[backend]) is not None


def missing_message(backend: str, option: str = "--backend") -> str:
    """The one line that says how to install a backend that is not installed; it names the
    `option` that asked for it."""
    return (
        f"{option} {backend}: {_PACKAGE[backend]} is not installed; install the extra with "
        f"pip install 'keras_bp[{backend}]' (or make backends)"
    )


def select_backend(backend: str = DEFAULT_BACKEND) -> str:
    """Set `KERAS_BACKEND` for this process; call before anything imports Keras.

    Raises:
        UsageError: an unknown backend, one that is not installed, or Keras already imported
            with another backend (one process has one Keras backend).
    """
    if backend not in BACKENDS:
        raise UsageError(f"--backend: expected one of {BACKENDS}, received {backend!r}")
    if not installed(backend):
        raise UsageError(missing_message(backend))
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise UsageError(
                f"--backend {backend}: Keras already runs on {current} in this process"
            )
    os.environ["KERAS_BACKEND"] = backend
    return backend


def refusal(backend: str, what: str) -> str:
    """The one line refusing something that runs on TensorFlow only."""
    return f"{what} runs on the tensorflow backend only; not with --backend {backend}"
