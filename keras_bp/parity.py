"""Step-by-step parity: `model.fit`, the tape loop and the manual loop from one starting point.

All three start from the same initial weights and see the same batches in the same order: the
first `steps` batches of epoch 0's permutation. `fit` gets them pre-permuted with `shuffle=False`;
the two loop trainers run them through the loop's own compiled steps.
"""

import itertools

import keras
import numpy as np
import tensorflow as tf

from keras_bp.batches import epoch_chunks, epoch_permutation
from keras_bp.compiled import CompiledSteps
from keras_bp.config import LOOP_SPEED, Speed
from keras_bp.gradients import ManualGradients, TapeGradients
from keras_bp.model import build_model


def _trained_weights(source, x, y, indices, speed):
    batch_size = indices.shape[1]
    steps = CompiledSteps(
        source, x.shape[1], y.shape[1], speed.xla, chunk_shape=(speed.steps_per_call, batch_size)
    )
    x, y = tf.constant(x), tf.constant(y)
    for _, chunk in epoch_chunks(indices.ravel(), batch_size, 0, speed.steps_per_call):
        steps.run(x, y, chunk)
    return [v.numpy() for v in source.variables]


def train_in_lockstep(x, y, steps, batch_size=128, seed=0, speed: Speed = LOOP_SPEED):
    """Return `{trainer: weights}` after `steps` identical updates, plus the initial weights.

    `speed.xla` compiles all three with XLA (`fit` with `jit_compile=True`), or none: the
    trainers are compared on the same kernels. Across kernels (XLA's matmul vs oneDNN's) the
    last bits of a pre-activation differ, a ReLU at its kink can flip, and RMSprop's
    `g/√(v + ε)` magnifies the gradient of a weight whose `v` is still tiny (a border pixel).
    `speed.fused` gives all three the fused RMSprop kernel (`keras_bp.fused`);
    `speed.steps_per_call` is the loops' (`fit` keeps Keras's one step per call).
    """
    if steps * batch_size > len(x):
        raise ValueError(f"steps * batch_size = {steps * batch_size} exceeds the {len(x)} samples")
    keras.utils.set_random_seed(seed)
    initial = build_model().get_weights()
    order = epoch_permutation(seed, 0, len(x))[: steps * batch_size]
    indices = order.reshape(steps, batch_size)

    def fresh_model(speed=None):
        model = build_model(speed=speed)
        model.set_weights(initial)
        return model

    fit_model = fresh_model(Speed(xla=speed.xla, fused=speed.fused))
    fit_model.fit(x[order], y[order], batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    tape = TapeGradients(fresh_model(Speed(fused=speed.fused)))
    manual = ManualGradients(fresh_model(), fused=speed.fused)
    return {
        "initial": initial,
        "fit": fit_model.get_weights(),
        "tape": _trained_weights(tape, x, y, indices, speed),
        "manual": _trained_weights(manual, x, y, indices, speed),
    }


def max_abs_difference(a, b):
    return max(float(np.max(np.abs(u.astype(np.float64) - v))) for u, v in zip(a, b, strict=True))


def parity_table(weights):
    """`[(pair, max |Δw|)]` for each pair of trainers, and how far training moved the weights."""
    rows = [
        (f"{a} vs {b}", max_abs_difference(weights[a], weights[b]))
        for a, b in itertools.combinations(["fit", "tape", "manual"], 2)
    ]
    moved = max_abs_difference(weights["initial"], weights["fit"])
    return rows, moved
