"""The recipe on every Keras backend: `scripts/train.py --backend tensorflow|jax|torch`.

One process runs one Keras backend, so JAX and PyTorch run in subprocesses. Tests that need
them are marked `backends` (`make test-backends`, after `make backends`) and skip, saying so,
where the backend is not installed. The checks of what is refused run in the default suite.
"""

import json
import re

import keras
import numpy as np
import pytest
from conftest import run_script

from keras_bp.config import FitConfig, LoopConfig, Speed
from keras_bp.gradients import tensorflow_initial_weights
from keras_bp.model import build_model, weights_digest
from keras_bp.runtime import backend_start
from keras_bp.runtime.errors import UsageError


def needs(backend):
    return pytest.mark.skipif(
        not backend_start.installed(backend),
        reason=f"{backend} is not installed (make backends installs it)",
    )


@pytest.mark.parametrize(
    "settings, refused",
    [
        ({"speed": Speed(fused=True)}, "the fused RMSprop kernel (--fused)"),
        ({"speed": Speed(xla=True)}, "XLA (--xla)"),
        ({"strategy": "mirrored", "replicas": 2}, "tf.distribute (--strategy)"),
    ],
)
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_tensorflow_only_settings_are_refused_naming_the_backend(settings, refused, backend):
    message = f"{refused} runs on the tensorflow backend only; not with --backend {backend}"
    with pytest.raises(ValueError, match=re.escape(message)):
        FitConfig(backend=backend, **settings)
    FitConfig(backend="tensorflow", **settings)  # where they run
    FitConfig(backend=backend, optimizer="sgd", speed=Speed(fused=True))  # sgd runs unfused


def test_the_compiled_loop_and_unknown_backends_are_refused():
    with pytest.raises(ValueError, match="compiled training loop runs on the tensorflow backend"):
        LoopConfig(gradients="manual", backend="jax")
    with pytest.raises(ValueError, match="backend: expected one of"):
        FitConfig(backend="numpy")


def test_a_missing_backend_names_the_extra_to_install(monkeypatch):
    monkeypatch.setattr(backend_start, "installed", lambda backend: False)
    with pytest.raises(UsageError, match=r"jax is not installed; .*pip install 'keras_bp\[jax\]'"):
        backend_start.select_backend("jax")


def test_train_refuses_in_one_line_and_exit_2(tmp_path):
    """The real process: refused from the options, before TensorFlow or Keras is imported."""
    proc = run_script("scripts/train.py", "--backend", "torch", "--xla", "--out", tmp_path / "r")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "train.py: error: XLA (--xla) runs on the tensorflow backend only; not with --backend torch"
    )
    assert not (tmp_path / "r").exists()


def test_one_process_keeps_one_backend(monkeypatch):
    """This process runs Keras on TensorFlow: another backend is refused, not half-switched."""
    monkeypatch.setattr(backend_start, "installed", lambda backend: True)
    with pytest.raises(UsageError, match="Keras already runs on tensorflow in this process"):
        backend_start.select_backend("jax")
    assert backend_start.select_backend("tensorflow") == "tensorflow"


@pytest.mark.parametrize("seed", [0, 7])
def test_tensorflow_initial_weights_are_the_tensorflow_backends(seed):
    """What JAX and PyTorch start from is what TensorFlow draws, bit for bit."""
    keras.utils.set_random_seed(seed)
    model = build_model(compile=False)
    assert weights_digest(tensorflow_initial_weights(model)) == weights_digest(model)


def test_the_run_identity_and_metrics_name_the_backend():
    from keras_bp.training.runlog import run_identity
    from keras_bp.training.runs import RUN_KEYS

    assert run_identity(FitConfig(backend="jax"), "data", 10)["backend"] == "jax"
    assert run_identity(FitConfig(), "data", 10)["backend"] == "tensorflow"
    assert "backend" in RUN_KEYS


def _fit(backend, out, *args):
    proc = run_script(
        "scripts/train.py",
        *["--backend", backend, "--out", out, "--train-samples", "512", "--epochs", "1", *args],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics, keras.saving.load_model(out / "model.keras").get_weights()


@pytest.mark.backends
@pytest.mark.parametrize("backend", [pytest.param(b, marks=needs(b)) for b in ("jax", "torch")])
def test_fit_on_a_backend_follows_tensorflows_fit(backend, tmp_path):
    """Four steps of the recipe from the same weights on the same batches as TensorFlow.

    Measured on this machine's CPU: the largest weight difference is about 1e-7 (float32
    rounding of other kernels); weights from other initial weights or batches differ by 1e-2.
    """
    reference, expected = _fit("tensorflow", tmp_path / "tensorflow")
    metrics, weights = _fit(backend, tmp_path / backend)
    assert metrics["backend"] == backend and reference["backend"] == "tensorflow"
    assert backend in metrics["versions"]
    largest = max(float(np.max(np.abs(a - b))) for a, b in zip(weights, expected, strict=True))
    assert largest < 1e-5, largest
    assert metrics["history"]["loss"][0] == pytest.approx(reference["history"]["loss"][0], rel=1e-5)


@pytest.mark.slow
@pytest.mark.backends
@pytest.mark.parametrize("backend", [pytest.param(b, marks=needs(b)) for b in ("jax", "torch")])
def test_the_recipe_reaches_the_published_accuracy_on_a_backend(backend, tmp_path):
    proc = run_script("scripts/train.py", "--backend", backend, "--out", tmp_path / backend)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / backend / "metrics.json").read_text())
    print(f"{backend}: test accuracy {metrics['test_accuracy']:.4f}")
    assert metrics["test_accuracy"] >= 0.975
