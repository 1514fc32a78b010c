"""Parity across Keras backends: `fit` and the loop's two gradient sources on TensorFlow, JAX and
PyTorch, from the same weights on the same batches, in float32 or float64.

Each trainer starts from TensorFlow's initial weights for the seed
(`keras_bp.gradients.tensorflow_initial_weights`) and takes the first `steps` batches of epoch
0's order (`keras_bp.data.batches.epoch_permutation`): `fit` with `shuffle=False`, the autodiff
and hand-written sources one batch at a time, as the reference loop steps them. One process runs
one Keras backend, so `train_on` runs each backend in a subprocess
(`python -m keras_bp.checks.backend_parity ...`), which saves its weights after step 1 and after
`steps`, or after each step of `record` (the report's curves). JAX computes in float32 unless
told, so its subprocess sets `JAX_ENABLE_X64`.
"""

import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

from keras_bp.data.batches import epoch_permutation
from keras_bp.gradients import make_source, tensorflow_initial_weights
from keras_bp.model import build_model

TRAINERS = ("fit", "tape", "manual")
DTYPES = ("float32", "float64")


class _WeightsAt(keras.callbacks.Callback):
    """Keeps the model's weights after each step in `steps` (1-based)."""

    def __init__(self, steps):
        super().__init__()
        self.steps, self.weights = set(steps), {}

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 in self.steps:
            self.weights[batch + 1] = [np.array(w) for w in self.model.get_weights()]


def train_here(
    x, y, steps, batch_size=128, seed=0, dtype="float32", record=None, trainers=TRAINERS
) -> dict:
    """`{trainer: {step: weights}}` on this process's Keras backend, for each of `trainers`
    after each step of `record` (1-based; by default 1 and `steps`)."""
    if steps * batch_size > len(x):
        raise ValueError(f"steps * batch_size = {steps * batch_size} exceeds the {len(x)} samples")
    record = sorted(set(record or (1, steps)))
    if record[0] < 1 or record[-1] > steps:
        raise ValueError(f"record: expected steps within 1..{steps}, received {record}")
    if not set(trainers) <= set(TRAINERS):
        raise ValueError(f"trainers: expected some of {TRAINERS}, received {trainers}")
    keras.config.set_floatx(dtype)  # the layers' weights and the optimizers' state
    indices = epoch_permutation(seed, 0, len(x))[: steps * batch_size].reshape(steps, -1)
    x, y = x.astype(dtype), y.astype(dtype)

    weights = {}
    if "fit" in trainers:
        keras.utils.set_random_seed(seed)
        model = build_model()
        model.set_weights(tensorflow_initial_weights(model))
        at = _WeightsAt(record)
        order = indices.ravel()
        fit_args = {"batch_size": batch_size, "shuffle": False, "verbose": 0, "callbacks": [at]}
        model.fit(x[order], y[order], **fit_args)
        weights["fit"] = at.weights
    for kind in [t for t in trainers if t != "fit"]:
        source, weights[kind] = make_source(kind, seed=seed), {}
        for step, batch in enumerate(indices, start=1):
            _, _, grads = source.loss_and_gradients(x[batch], y[batch])
            source.apply_gradients(grads)
            if step in record:
                weights[kind][step] = [keras.ops.convert_to_numpy(v) for v in source.variables]
    return weights


def train_on(
    backend,
    x,
    y,
    steps,
    batch_size=128,
    seed=0,
    dtype="float32",
    timeout=1800,
    record=None,
    trainers=TRAINERS,
):
    """`train_here` on `backend`, in a subprocess; its data is this process's `x`, `y`."""
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data.npz", Path(tmp) / "weights.npz"
        np.savez(data, x=x, y=y)
        listed = [",".join(map(str, record or (1, steps))), ",".join(trainers)]
        args = [str(a) for a in (data, out, steps, batch_size, seed, dtype, *listed)]
        env = {**os.environ, "KERAS_BACKEND": backend, "JAX_ENABLE_X64": "1"}
        proc = subprocess.run(
            [sys.executable, "-m", "keras_bp.checks.backend_parity", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"training on {backend} failed: {proc.stderr[-2000:]}")
        saved = np.load(out)
        weights = {}
        for key in saved.files:  # "fit/1/0": trainer, step, weight index
            trainer, step, _ = key.split("/")
            weights.setdefault(trainer, {}).setdefault(int(step), []).append(saved[key])
        return weights


def max_abs_difference(a, b):
    return max(float(np.max(np.abs(np.float64(u) - v))) for u, v in zip(a, b, strict=True))


def across_backends(weights: dict, steps: int) -> list:
    """`[(pair, after 1 step, after steps)]`: each pair of backends per trainer, then each pair
    of trainers per backend; `weights` is `{backend: train_here(...)}`."""
    rows = []
    for trainer in TRAINERS:
        for a, b in itertools.combinations(weights, 2):
            wa, wb = weights[a][trainer], weights[b][trainer]
            rows.append(
                (
                    f"{trainer}: {a} vs {b}",
                    max_abs_difference(wa[1], wb[1]),
                    max_abs_difference(wa[steps], wb[steps]),
                )
            )
    for backend, trained in weights.items():
        for a, b in itertools.combinations(TRAINERS, 2):
            rows.append(
                (
                    f"{backend}: {a} vs {b}",
                    max_abs_difference(trained[a][1], trained[b][1]),
                    max_abs_difference(trained[a][steps], trained[b][steps]),
                )
            )
    return rows


if __name__ == "__main__":
    data, out, steps, batch_size, seed, dtype, record, trainers = sys.argv[1:]
    arrays = np.load(data)
    trained = train_here(
        arrays["x"],
        arrays["y"],
        int(steps),
        int(batch_size),
        int(seed),
        dtype,
        record=[int(s) for s in record.split(",")],
        trainers=trainers.split(","),
    )
    np.savez(
        out,
        **{
            f"{trainer}/{step}/{i}": w
            for trainer, by_step in trained.items()
            for step, weights in by_step.items()
            for i, w in enumerate(weights)
        },
    )
