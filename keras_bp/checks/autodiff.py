"""The hand-written gradients against every Keras backend's autodiff, and numerical differences.

The forward computations of `keras_bp.checks.gradcheck` are written with `keras.ops`, so this
process's backend differentiates the very computation the hand-written backward inverts:

- TensorFlow: `tf.GradientTape` (`gradcheck.tape_gradients`);
- JAX: `jax.grad` over all the parameters;
- PyTorch: `torch.autograd`, `loss.backward()` on leaf tensors.

One process runs one Keras backend, so `check_backend` runs another backend in a subprocess
(`python -m keras_bp.checks.autodiff BACKEND` prints its rows as JSON). JAX computes in float32
unless told otherwise, so its subprocess sets `JAX_ENABLE_X64` before JAX is imported. The
`ManualDense` cases are a TensorFlow custom gradient and are checked on TensorFlow only.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np

from keras_bp.checks import gradcheck

# Each comparison with the tolerance the tests hold it to (gradcheck's, autodiff for the tape).
COMPARISONS = {
    "float32 vs autodiff": ("float32", gradcheck.TOLERANCES["float32"]),
    "float64 vs autodiff": ("float64", gradcheck.TOLERANCES["float64"]),
    "float64 vs numerical": ("float64", gradcheck.NUMERICAL_TOLERANCE),
}
ENGINES = {
    "tensorflow": "tf.GradientTape",
    "jax": "jax.grad",
    "torch": "torch.autograd",
}


def autodiff_gradients(case):
    """∂loss/∂param for each of `case.params`, by this process's backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return gradcheck.tape_gradients(case)
    if backend == "jax":
        import jax

        params = [keras.ops.convert_to_tensor(p) for p in case.params]
        return jax.grad(case.loss_fn, argnums=tuple(range(len(params))))(*params)
    if backend == "torch":
        import torch

        params = [torch.tensor(p, requires_grad=True) for p in case.params]
        case.loss_fn(*params).backward()
        return [p.grad for p in params]
    raise ValueError(f"no autodiff for backend {backend!r}")


def numerical_gradients(case, delta=gradcheck.NUMERICAL_DELTA):
    """Numerical differences on this backend: on TensorFlow `tf.test.compute_gradient`
    (`gradcheck.numerical_gradients`), elsewhere `central_differences`, which computes the same."""
    if keras.backend.backend() == "tensorflow":
        return gradcheck.numerical_gradients(case, delta)
    return central_differences(case, delta)


def central_differences(case, delta=gradcheck.NUMERICAL_DELTA):
    """`(L(p + δ·e_i) − L(p − δ·e_i)) / 2δ` for each entry i of each param, in numpy."""
    loss_fn = case.loss_fn
    if keras.backend.backend() == "jax":  # compiled once: eager JAX dispatches op by op
        import jax

        loss_fn = jax.jit(loss_fn)

    def loss(params):
        return float(keras.ops.convert_to_numpy(loss_fn(*params)))

    grads = []
    for i, p in enumerate(case.params):
        g = np.zeros(np.shape(p))
        for index in np.ndindex(np.shape(p)):
            step = np.zeros(np.shape(p), p.dtype)
            step[index] = delta
            above = [*case.params[:i], p + step, *case.params[i + 1 :]]
            below = [*case.params[:i], p - step, *case.params[i + 1 :]]
            g[index] = (loss(above) - loss(below)) / (2 * delta)
        grads.append(g)
    return grads


def check(manual_dense=None) -> dict:
    """`{comparison: largest elementwise error}` over `gradcheck.tested_cases` in this process's
    backend (`gradcheck.elementwise_errors`: at most rtol exactly where the tests' assert passes).
    `ManualDense`'s cases join on TensorFlow unless `manual_dense=False`."""
    if manual_dense is None:
        manual_dense = keras.backend.backend() == "tensorflow"
    largest = {}
    for label, (dtype, tolerance) in COMPARISONS.items():
        reference = numerical_gradients if "numerical" in label else autodiff_gradients
        errors = [
            gradcheck.elementwise_errors(
                [keras.ops.convert_to_numpy(g) for g in case.manual],
                [keras.ops.convert_to_numpy(g) for g in reference(case)],
                **tolerance,
            )
            for case in gradcheck.tested_cases(dtype, manual_dense)
        ]
        largest[label] = float(np.max(np.concatenate(errors), initial=0.0))
    return largest


def within_tolerance(errors: dict) -> bool:
    """True when each comparison's largest error is at most its rtol (a NaN fails)."""
    return all(e <= COMPARISONS[label][1]["rtol"] for label, e in errors.items())


def check_backend(backend: str, manual_dense=False, timeout=600) -> dict:
    """`check()` run on `backend` in a subprocess; raises `RuntimeError` with its stderr if it
    fails. `manual_dense=False` by default: the cases every backend shares."""
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_ENABLE_X64": "1"}
    args = [sys.executable, "-m", "keras_bp.checks.autodiff", backend]
    if manual_dense:
        args.append("--manual-dense")
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the gradient check on {backend} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    backend = sys.argv[1]
    if keras.backend.backend() != backend:
        sys.exit(f"KERAS_BACKEND={backend} must be set before Keras is imported")
    print(json.dumps(check(manual_dense="--manual-dense" in sys.argv)))
