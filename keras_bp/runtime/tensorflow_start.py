"""Start TensorFlow without its start-up lines on the terminal: the one place keras_bp sets
TensorFlow's logging up, before TensorFlow is imported.

Two ways in: keras_bp's commands call `start_tensorflow(verbose)` once their options are read;
importing keras_bp from Python calls `quiet_import()` (in `keras_bp/__init__.py`), so that the
`import tensorflow` that `keras_bp.training.loop`, `keras_bp.gradients` and the rest make later is
quiet too. `KERAS_BP_VERBOSE=1` (or a command's `--verbose`) shows everything again.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile

VERBOSE_ENV = "KERAS_BP_VERBOSE"  # set to 1 to see TensorFlow's start-up lines again
LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"  # TensorFlow's C++ logging: 2 hides INFO and WARNING
# Marks LOG_LEVEL_ENV as set by keras_bp, in this process or in the one that started it (a
# launcher's workers inherit both), so that --verbose takes back only what keras_bp set.
LOG_LEVEL_OURS_ENV = "KERAS_BP_SET_TF_LOG_LEVEL"


def verbose_requested():
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_import():
    """Make a later `import tensorflow` keep its start-up lines off the terminal.

    TensorFlow reads its C++ log level once, as it loads, so it is set here, before; and
    TensorFlow's first lines come before any log setting applies, so the import itself runs with
    stderr set aside (`_QuietTensorFlowImport`). Nothing happens if TensorFlow is already
    imported or `KERAS_BP_VERBOSE=1`.
    """
    if verbose_requested() or "tensorflow" in sys.modules:
        return
    _quiet_log_level()
    if not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def start_tensorflow(verbose=False):
    """Import TensorFlow and find its devices, keeping its start-up lines off the terminal.

    TensorFlow writes them (oneDNN's notice, the CUDA probe, on a machine without a GPU an
    alarming `failed call to cuInit`) straight to file descriptor 2, some before any log
    setting applies. So stderr is pointed at a temporary file for the import and the device
    probe, and shown only if either fails. `verbose` (`--verbose`, or `KERAS_BP_VERBOSE=1`)
    leaves everything as TensorFlow prints it. The devices are unchanged: a GPU is still used.
    """
    _remove_quiet_import()  # this call decides, once the command's options are read
    if verbose or verbose_requested():
        release_log_level()  # set by `import keras_bp`, before --verbose was read
        with _without_matplotlib():
            import tensorflow  # noqa: F401

        return
    _quiet_log_level()
    with _stderr_set_aside(), _without_matplotlib():
        import tensorflow as tf

        tf.config.list_physical_devices()


def _quiet_log_level():
    """No INFO or WARNING lines from TensorFlow's C++ code, unless the user chose a level."""
    if LOG_LEVEL_ENV not in os.environ:
        os.environ[LOG_LEVEL_ENV] = "2"
        os.environ[LOG_LEVEL_OURS_ENV] = "1"


def release_log_level():
    """Take back the log level keras_bp set (here or in a parent process); a user's stays."""
    if os.environ.pop(LOG_LEVEL_OURS_ENV, None):
        os.environ.pop(LOG_LEVEL_ENV, None)


@contextlib.contextmanager
def _stderr_set_aside():
    """File descriptor 2 points at a temporary file inside the block; what was written there is
    shown only if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as Python would, and loads it with stderr set aside and its devices
    probed (where the CUDA probe prints), as `start_tensorflow` does. Used once: it leaves
    `sys.meta_path` when TensorFlow loads (a mere `importlib.util.find_spec` keeps it)."""

    _finding = False  # while asking the other finders

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):  # everything else as the real loader does it
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        _remove_quiet_import()
        module.__loader__ = module.__spec__.loader = self.loader
        with _stderr_set_aside(), _without_matplotlib():
            self.loader.exec_module(module)
            module.config.list_physical_devices()


def _remove_quiet_import():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietTensorFlowImport)]


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
