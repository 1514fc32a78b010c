"""Importing keras_bp from Python starts TensorFlow as quietly as keras_bp's commands do."""

import os
import subprocess
import sys

from conftest import ROOT

from keras_bp.runtime import tensorflow_start

HOOK = "any(type(f).__name__ == '_QuietTensorFlowImport' for f in sys.meta_path)"


def python(code, **env):
    # As in a user's shell: none of the variables keras_bp sets or reads.
    unset = ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BP_SET_TF_LOG_LEVEL", "KERAS_BP_VERBOSE", *env)
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_importing_the_training_loop_prints_nothing_on_stderr():
    proc = python(
        "import importlib.util, keras_bp; importlib.util.find_spec('tensorflow'); "  # a look only
        "import keras_bp.training.loop, tensorflow as tf; "
        "print(float(tf.reduce_sum(tf.ones(3))), tf.__spec__.loader is tf.__loader__)"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no oneDNN notice, CUDA probe or `failed call to cuInit`
    assert proc.stdout.split() == ["3.0", "True"]  # TensorFlow itself works as usual


def test_verbose_leaves_tensorflow_alone():
    code = f"import os, sys, keras_bp; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), {HOOK})"
    assert python(code).stdout.split() == ["2", "True"]
    assert python(code, KERAS_BP_VERBOSE="1").stdout.split() == ["None", "False"]


def test_verbose_takes_back_only_the_log_level_keras_bp_set(monkeypatch):
    """Set by `import keras_bp` here or in the launcher that started this process: taken back.
    The user's own: kept."""
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("KERAS_BP_SET_TF_LOG_LEVEL", "1")
    tensorflow_start.release_log_level()
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    assert "KERAS_BP_SET_TF_LOG_LEVEL" not in os.environ
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    tensorflow_start.release_log_level()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
