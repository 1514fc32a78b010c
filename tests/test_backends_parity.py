"""`scripts/parity.py --backends`: `fit` and the reference loop's two gradient sources on
TensorFlow, JAX and PyTorch, from the same weights on the same batches
(`keras_bp.checks.backend_parity`). The bounds of what is refused run in the default suite; the
training runs a subprocess per backend and is marked `backends`.
"""

import pytest
from conftest import make_synthetic_data, run_script

from keras_bp.runtime import backend_start

INSTALLED = [b for b in backend_start.BACKENDS if backend_start.installed(b)]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backends", "tensorflow,numpy"], "expected backends among tensorflow,jax,torch"),
        (["--backends", "jax,jax"], "each backend once"),
        (["--backends", "tensorflow", "--xla"], "without --xla and --replicas"),
        (["--dtype", "float16"], "invalid choice: 'float16'"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args, message):
    proc = run_script("scripts/parity.py", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.backends
@pytest.mark.skipif(len(INSTALLED) < 3, reason="jax or torch is not installed (make backends)")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_step_agrees_across_backends_and_trainers(dtype):
    """Every pair, across backends and across trainers, within 1e-6 after one step.

    Measured on this machine's CPU (float32, real MNIST, batch 128): about 1.5e-8 after 1 step.
    """
    from keras_bp.checks import backend_parity

    (x, y), _ = make_synthetic_data()
    weights = {b: backend_parity.train_on(b, x, y, 3, 64, 0, dtype) for b in INSTALLED}
    rows = backend_parity.across_backends(weights, 3)
    assert len(rows) == 3 * 3 + 3 * 3  # each trainer's backend pairs, each backend's trainer pairs
    for pair, after_one, after_three in rows:
        assert after_one <= 1e-6, (pair, after_one)
        assert after_three <= 1e-5, (pair, after_three)
        # In float64, TensorFlow's and JAX's trainers agree to float64 rounding (measured about
        # 1e-16 after 100 steps). Keras's matmul on PyTorch computes float64 in float32, so
        # PyTorch's Dense (fit and the tape) stays at float32's 1e-8.
        if dtype == "float64" and "torch" not in pair:
            assert after_three <= 1e-12, (pair, after_three)
    # The check can fail: training moved the weights far beyond the bound.
    moved = backend_parity.max_abs_difference(
        weights["tensorflow"]["fit"][1], weights["tensorflow"]["fit"][3]
    )
    assert moved > 1e-4
