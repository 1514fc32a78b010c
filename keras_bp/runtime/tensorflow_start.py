"""Start TensorFlow without its start-up lines on the terminal: the one place keras_bp's
commands set TensorFlow's logging up, before TensorFlow is imported."""

import contextlib
import os
import sys
import tempfile

VERBOSE_ENV = "KERAS_BP_VERBOSE"  # set to 1 to see TensorFlow's start-up lines again


def start_tensorflow(verbose=False):
    """Import TensorFlow and find its devices, keeping its start-up lines off the terminal.

    TensorFlow writes them (oneDNN's notice, the CUDA probe, on a machine without a GPU an
    alarming `failed call to cuInit`) straight to file descriptor 2, some before any log
    setting applies. So stderr is pointed at a temporary file for the import and the device
    probe, and shown only if either fails. `verbose` (`--verbose`, or `KERAS_BP_VERBOSE=1`)
    leaves everything as TensorFlow prints it. The devices are unchanged: a GPU is still used.
    """
    if verbose or os.environ.get(VERBOSE_ENV, "") not in ("", "0"):
        with _without_matplotlib():
            import tensorflow  # noqa: F401

        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # and no INFO or WARNING lines later
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with _without_matplotlib():
                import tensorflow as tf

            tf.config.list_physical_devices()
        except Exception:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def _without_matplotlib():
    """Import TensorFlow without matplotlib: Keras imports `matplotlib.pyplot` as TensorFlow loads
    it, only for its image-gallery plots, which keras_bp's commands never draw, and that costs
    about 0.5 s of every command's start. Inside this block `import matplotlib` fails, as if it
    were not installed; after it, `keras_bp.report.figures` imports matplotlib as usual."""
    if "matplotlib" in sys.modules:
        yield
        return
    sys.modules["matplotlib"] = None  # import raises ImportError
    try:
        yield
    finally:
        del sys.modules["matplotlib"]
