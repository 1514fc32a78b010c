"""What a user would pick instead of keras_bp's shipped loops: the bench's peer rows.

Four rows, each the recipe (784 → 512 relu → 10 softmax, RMSprop lr 1e-3, categorical
cross-entropy, batch 128) from the seed's initial weights on keras_bp's batches:

- `fit` on Keras's JAX backend and on its PyTorch backend (`keras-bp train --backend ...`), each
  in a process of its own, since a process has one Keras backend;
- a plain JAX loop (`keras_bp.speed.jax_loop`) and a plain PyTorch loop
  (`keras_bp.speed.torch_loop`), no Keras, in the bench's own process.

JAX and PyTorch are optional extras; `skip_missing` drops the rows whose package is not
installed and says so in one line.
"""

import importlib.metadata
import os

from keras_bp.runtime import backend_start
from keras_bp.runtime.walltime import startup_seconds
from keras_bp.speed import bench

# Each peer row and the package it needs.
ROWS = {
    "peer: fit --backend jax": "jax",
    "peer: fit --backend torch": "torch",
    "peer: plain jax loop (jax.jit over a lax.scan of each epoch)": "jax",
    "peer: plain torch loop (eager, Keras's RMSprop rule)": "torch",
}


def peer_runs(data, epochs, seed=0):
    """`{name: run}` for the rows of `ROWS`; `run()` returns `bench.run_figures`' keys."""
    fit_jax, fit_torch, plain_jax, plain_torch = ROWS
    return {
        fit_jax: lambda: time_fit_on("jax", epochs, seed),
        fit_torch: lambda: time_fit_on("torch", epochs, seed),
        plain_jax: lambda: time_plain_loop("jax", data, epochs, seed),
        plain_torch: lambda: time_plain_loop("torch", data, epochs, seed),
    }


def time_fit_on(backend, epochs, seed=0):
    """The recipe through `fit` on `backend`, in its own process. PyTorch gets one thread per
    core, as the plain loop sets and TensorFlow takes."""
    env = {"OMP_NUM_THREADS": str(os.cpu_count() or 1)} if backend == "torch" else None
    return bench.time_process(["train", "--backend", backend, "--seed", str(seed)], epochs, env=env)


def time_plain_loop(backend, data, epochs, seed=0):
    """Train the plain loop of `backend` (`"jax"` or `"torch"`) in this process; return its
    `bench.run_figures`: the seconds of its epochs (the first includes compiling), the
    first epoch's time above a later one's, and the test accuracy."""
    (x_train, y_train), (x_test, y_test) = data
    if backend == "torch":
        import torch

        from keras_bp.speed import torch_loop as loop

        torch.set_num_threads(os.cpu_count() or 1)  # as TensorFlow's intra-op pool
    else:
        import jax

        from keras_bp.speed import jax_loop as loop

        jax.clear_caches()  # every repeat compiles, as a new process does and keras_bp's loops do
    trained, history = loop.train(initial_weights(seed), x_train, y_train, epochs, seed=seed)
    return {
        "seconds": sum(history["seconds"]),
        "startup": startup_seconds(history["seconds"]),
        "test_accuracy": loop.evaluate(trained, x_test, y_test),
    }


def initial_weights(seed=0):
    """`[W1, b1, W2, b2]` as the trainers start from them under `seed`: TensorFlow's draw
    (`keras_bp.gradients.tensorflow_initial_weights`)."""
    import keras

    from keras_bp.gradients import tensorflow_initial_weights
    from keras_bp.model import build_model

    keras.utils.set_random_seed(seed)
    return tensorflow_initial_weights(build_model(compile=False))


def skip_missing(runs):
    """`(runs, line)`: `runs` without the peer rows whose package is not installed, and the one
    line that says which were skipped and how to install them (`None` if none were)."""
    missing = {name: ROWS[name] for name in runs if name in ROWS}
    missing = {name: pkg for name, pkg in missing.items() if not backend_start.installed(pkg)}
    if not missing:
        return runs, None
    packages = " and ".join(sorted(set(missing.values())))
    line = (
        f"skipped {len(missing)} peer row{'s' * (len(missing) > 1)} ({packages} not installed; "
        f"make backends installs them): {'; '.join(missing)}"
    )
    return {name: run for name, run in runs.items() if name not in missing}, line


def versions(runs) -> dict:
    """`{"JAX": version, "PyTorch": version}`, for the engines the peer rows in `runs` run on."""
    packages = {ROWS[name] for name in runs if name in ROWS}
    names = {"jax": "JAX", "torch": "PyTorch"}
    return {names[p]: importlib.metadata.version(p) for p in sorted(packages)}
