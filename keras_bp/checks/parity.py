"""Step-by-step parity: `model.fit`, the tape loop and the manual loop from one starting point.

All three start from the same initial weights and see the same batches in the same order: the
first `steps` batches of epoch 0's permutation. `fit` gets them pre-permuted with `shuffle=False`;
the two loop trainers run them through the loop's own compiled steps. `train_in_lockstep` gives
the weights at the end, `trajectories` the differences after every step.
"""

import contextlib
import itertools
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_bp.config import LOOP_SPEED, Speed
from keras_bp.data.batches import epoch_chunks, epoch_permutation
from keras_bp.gradients import GradientSource, ManualGradients, TapeGradients
from keras_bp.model import build_model
from keras_bp.training.compiled import CompiledSteps
from keras_bp.training.distribute import DistributedSteps

TRAINERS = ("fit", "tape", "manual")
PAIRS = tuple(itertools.combinations(TRAINERS, 2))  # (fit, tape), (fit, manual), (tape, manual)


class _Start(NamedTuple):
    """The common starting point: the initial weights, the three trainers holding them, and
    `indices: (steps, batch_size)`, each step's samples."""

    initial: list
    fit: keras.Model
    tape: TapeGradients
    manual: ManualGradients
    indices: np.ndarray


def _start_in_lockstep(n, steps, batch_size, seed, speed: Speed, strategy=None) -> _Start:
    """Three trainers at the initial weights of `seed`, and the first `steps` batches of epoch 0.

    `speed.xla` compiles all three with XLA (`fit` with `jit_compile=True`), or none: the
    trainers are compared on the same kernels. Across kernels (XLA's matmul vs oneDNN's) the
    last bits of a pre-activation differ, a ReLU at its kink can flip, and RMSprop's
    `g/√(v + ε)` magnifies the gradient of a weight whose `v` is still tiny (a border pixel).
    `speed.fused` gives all three the fused RMSprop kernel (`keras_bp.fused`). With a
    `strategy`, all three are built under its scope: data-parallel over its replicas.
    """
    if steps * batch_size > n:
        raise ValueError(f"steps * batch_size = {steps * batch_size} exceeds the {n} samples")
    keras.utils.set_random_seed(seed)
    initial = build_model().get_weights()

    def fresh_model(speed=None):
        model = build_model(speed=speed)
        model.set_weights(initial)
        return model

    # fit keeps Keras's one step per call; the loops' `steps_per_call` is theirs alone.
    with strategy.scope() if strategy else contextlib.nullcontext():
        fit_model = fresh_model(Speed(xla=speed.xla, fused=speed.fused))
        tape = TapeGradients(fresh_model(Speed(fused=speed.fused)))
        manual = ManualGradients(fresh_model(), fused=speed.fused)
    order = epoch_permutation(seed, 0, n)[: steps * batch_size]
    return _Start(initial, fit_model, tape, manual, order.reshape(steps, batch_size))


def _compiled_steps(source: GradientSource, x, y, batch_size, speed, strategy=None):
    if strategy:
        return DistributedSteps(source, strategy, x.shape[1], y.shape[1], batch_size)
    # Under XLA every chunk is padded to this one shape, so a one-step chunk runs the very
    # program a full chunk of `steps_per_call` does: the same math, one compile.
    chunk_shape = (speed.steps_per_call, batch_size)
    return CompiledSteps(source, x.shape[1], y.shape[1], speed.xla, chunk_shape=chunk_shape)


def _weights(source: GradientSource):
    return [v.numpy() for v in source.variables]


def train_in_lockstep(
    x, y, steps, batch_size=128, seed=0, speed: Speed = LOOP_SPEED, strategy=None
):
    """Return `{trainer: weights}` after `steps` identical updates, plus the initial weights.

    The trainers and their kernels are `_start_in_lockstep`'s. The loops run their batches in
    chunks of `speed.steps_per_call`, `fit` in its own one step per call; with a `strategy`
    (`keras_bp.training.distribute`), each batch split over its replicas.
    """
    start = _start_in_lockstep(len(x), steps, batch_size, seed, speed, strategy)
    order = start.indices.ravel()
    start.fit.fit(x[order], y[order], batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    x_tensor, y_tensor = tf.constant(x), tf.constant(y)
    weights = {"initial": start.initial, "fit": start.fit.get_weights()}
    for source in (start.tape, start.manual):
        compiled = _compiled_steps(source, x, y, batch_size, speed, strategy)
        for _, chunk in epoch_chunks(order, batch_size, 0, speed.steps_per_call):
            compiled.run(x_tensor, y_tensor, chunk)
        weights[source.name] = _weights(source)
    return weights


def trajectories(x, y, steps, batch_size=128, seed=0, speed: Speed = LOOP_SPEED) -> dict:
    """`{"fit vs tape": (steps,), ...}`: each pair's `max_abs_difference` after steps 1..steps.

    The start, batches, models and kernels of `train_in_lockstep`, so the last point of each
    pair is its `parity_table` entry. The three step together, one batch at a time, and only
    the current weights are kept. `fit` steps by `train_on_batch`, which calls the same
    compiled `train_step` as `fit` (Keras's `make_train_function`); the loops run one-step
    chunks of their compiled steps.
    """
    start = _start_in_lockstep(len(x), steps, batch_size, seed, speed)
    loops = [
        (source, _compiled_steps(source, x, y, batch_size, speed))
        for source in (start.tape, start.manual)
    ]
    x_tensor, y_tensor = tf.constant(x), tf.constant(y)
    differences = {f"{a} vs {b}": np.empty(steps) for a, b in PAIRS}
    for step, batch in enumerate(start.indices):
        start.fit.train_on_batch(x[batch], y[batch])
        weights = {"fit": start.fit.get_weights()}
        for source, compiled in loops:
            compiled.run(x_tensor, y_tensor, batch[np.newaxis])
            weights[source.name] = _weights(source)
        for a, b in PAIRS:
            differences[f"{a} vs {b}"][step] = max_abs_difference(weights[a], weights[b])
    return differences


def max_abs_difference(a, b):
    return max(float(np.max(np.abs(u.astype(np.float64) - v))) for u, v in zip(a, b, strict=True))


def replica_table(one_device, replicated):
    """`[(trainer, max |Δw|)]`: each trainer with replicas against itself on one device."""
    return [(t, max_abs_difference(one_device[t], replicated[t])) for t in TRAINERS]


def parity_table(weights):
    """`[(pair, max |Δw|)]` for each pair of trainers, and how far training moved the weights."""
    rows = [(f"{a} vs {b}", max_abs_difference(weights[a], weights[b])) for a, b in PAIRS]
    moved = max_abs_difference(weights["initial"], weights["fit"])
    return rows, moved
