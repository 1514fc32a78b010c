"""Hand-written gradients measured against TensorFlow's: the tape, and numerical differences.

A `Case` is one scalar loss, written with `keras.ops` so each backend's autodiff (the tape here,
`jax.grad` and `torch.autograd` in `keras_bp.checks.autodiff`) and the numerical checker can
differentiate it, plus the gradients `keras_bp.backprop` computes by hand.
The tests and `scripts/gradient_check.py` both build their cases here.

One metric reports them everywhere (`make gradient-check`, the reproduction report, the docs):
the elementwise error `|m − r| / (atol/rtol + |r|)` of a hand-written entry `m` against the
reference's `r`. It is at most `rtol` exactly where the tests' `assert_allclose(m, r, rtol, atol)`
passes, so each comparison's verdict is its largest error against its `rtol`.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from keras_bp import backprop
from keras_bp.layers import ManualDense

# float64 tests the math; float32 tests what training uses. In float32 a sum of a few O(1)
# terms carries a few ulps (1.2e-7 each) of absolute error, hence atol=1e-6 beside rtol=1e-5.
TOLERANCES = {
    "float64": {"rtol": 1e-12, "atol": 1e-14},
    "float32": {"rtol": 1e-5, "atol": 1e-6},
}
# Central differences with delta=1e-6: truncation error ~delta², round-off ~1e-16/delta.
NUMERICAL_DELTA = 1e-6
NUMERICAL_TOLERANCE = {"rtol": 1e-7, "atol": 1e-8}


class Errors(NamedTuple):
    """`relative` is max |manual − reference| / max |reference|, per tensor, so entries
    that cancel to almost zero do not inflate it; `absolute` is max |manual − reference|."""

    relative: float
    absolute: float


@dataclass
class Case:
    name: str
    params: list  # the tensors the gradients are taken with respect to
    loss_fn: Callable  # loss_fn(*params) -> scalar, as keras.ops
    manual: list  # the hand-written ∂loss/∂param, in the order of params


def max_errors(manual, reference) -> Errors:
    relative, absolute = 0.0, 0.0
    for m, r in zip(manual, reference, strict=True):
        m, r = np.asarray(m, np.float64), np.asarray(r, np.float64)
        diff = np.max(np.abs(m - r), initial=0.0)
        scale = np.max(np.abs(r), initial=0.0)
        relative = max(relative, diff / scale if scale > 0 else (np.inf if diff > 0 else 0.0))
        absolute = max(absolute, diff)
    return Errors(float(relative), float(absolute))


def tape_gradients(case):
    params = [tf.convert_to_tensor(p) for p in case.params]
    with tf.GradientTape() as tape:
        tape.watch(params)
        loss = case.loss_fn(*params)
    return tape.gradient(loss, params)


def numerical_gradients(case, delta=NUMERICAL_DELTA):
    """Central differences from `tf.test.compute_gradient`, reshaped like the params."""
    _, jacobians = tf.test.compute_gradient(case.loss_fn, list(case.params), delta=delta)
    return [np.reshape(j, np.shape(p)) for j, p in zip(jacobians, case.params, strict=True)]


# The three comparisons, each with the tolerance the tests hold it to.
COMPARISONS = {
    "float32 vs tape": ("float32", tape_gradients, TOLERANCES["float32"]),
    "float64 vs tape": ("float64", tape_gradients, TOLERANCES["float64"]),
    "float64 vs numerical": ("float64", numerical_gradients, NUMERICAL_TOLERANCE),
}


def tape_errors(case) -> Errors:
    return max_errors(case.manual, tape_gradients(case))


def numerical_errors(case, delta=NUMERICAL_DELTA) -> Errors:
    return max_errors(case.manual, numerical_gradients(case, delta))


def assert_close(manual, reference, dtype):
    """Assert elementwise closeness within `TOLERANCES[dtype]`; return the `Errors`."""
    for m, r in zip(manual, reference, strict=True):
        np.testing.assert_allclose(np.asarray(m), np.asarray(r), **TOLERANCES[dtype])
    return max_errors(manual, reference)


# Cases. Inputs are O(1) and pre-activations stay at least `margin` away from 0 (the ReLU
# kink), so central differences never straddle it.


def _normal(rng, shape, dtype, margin=0.0):
    a = rng.normal(size=shape)
    return (a + margin * np.sign(a)).astype(dtype)


def _probabilities(rng, shape, dtype, one_hot):
    if one_hot:
        return np.eye(shape[-1])[rng.integers(0, shape[-1], shape[0])].astype(dtype)
    a = rng.uniform(0.05, 1.0, size=shape)
    return (a / a.sum(axis=-1, keepdims=True)).astype(dtype)


def keras_loss(name, y_true, y_pred):
    """The Keras loss on plain tensors (no `_keras_logits`), averaged over the batch.

    Off TensorFlow, `keras.ops.mean` computes in float32 whatever its input's dtype (Keras's
    type promotion maps float64 to float32 there), so the means are written as sums over the
    count: on TensorFlow the same numbers, elsewhere the same function kept in float64.
    """
    if name == "mean_squared_error":  # Keras's: the mean over the last axis of (ŷ − y)²
        per_sample = (
            keras.ops.sum(keras.ops.square(keras.ops.subtract(y_pred, y_true)), axis=-1)
            / y_pred.shape[-1]
        )
    else:
        per_sample = keras.losses.get(name)(y_true, y_pred)
    return keras.ops.sum(per_sample) / per_sample.shape[0]


def activation_case(name, batch, width, dtype, seed=0, margin=0.1):
    """L = Σ r·f(z) for a fixed random r, so ∂L/∂z = activation_backward(r)."""
    rng = np.random.default_rng(seed)
    z, r = _normal(rng, (batch, width), dtype, margin), _normal(rng, (batch, width), dtype)
    _, cache = backprop.activation_forward(z, name)
    manual = [backprop.activation_backward(r, cache)]
    return Case(
        name,
        [z],
        lambda z: keras.ops.sum(keras.ops.multiply(backprop.activation_forward(z, name)[0], r)),
        manual,
    )


def loss_case(name, batch, width, dtype, seed=0):
    """Keras's own loss against `backprop`'s; cross-entropy gets unnormalised probabilities."""
    rng = np.random.default_rng(seed)
    if name == "categorical_crossentropy":
        y_true = _probabilities(rng, (batch, width), dtype, one_hot=False)
        y_pred = rng.uniform(0.05, 1.0, size=(batch, width)).astype(dtype)
    else:
        y_true, y_pred = _normal(rng, (batch, width), dtype), _normal(rng, (batch, width), dtype)
    _, dy_pred = backprop.get_loss(name)(y_true, y_pred)
    return Case(name, [y_pred], lambda p: keras_loss(name, y_true, p), [dy_pred])


def network_case(widths, activations, loss, batch, dtype, seed=0, margin=1e-3):
    """A stack of dense layers `y = f(x·w + b)` and a loss; params are x, w1, b1, w2, b2, ..."""
    rng = np.random.default_rng(seed)

    def forward(x, *weights):
        return backprop.network_forward(x, weights, activations)

    while True:  # resample until every pre-activation z is clear of the ReLU kink
        params = [_normal(rng, (batch, widths[0]), dtype)]
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            params += [
                (rng.normal(size=(fan_in, fan_out)) / np.sqrt(fan_in)).astype(dtype),
                _normal(rng, (fan_out,), dtype),
            ]
        y_pred, caches = forward(*params)
        pre_activations = [cache[1][1] for cache in caches]  # cache = (affine, (name, z, _))
        if min(np.min(np.abs(keras.ops.convert_to_numpy(z))) for z in pre_activations) >= margin:
            break
    one_hot = loss == "categorical_crossentropy"
    y_true = (
        _probabilities(rng, (batch, widths[-1]), dtype, one_hot)
        if one_hot
        else _normal(rng, (batch, widths[-1]), dtype)
    )
    _, dy = backprop.get_loss(loss)(y_true, y_pred)
    dx, grads = backprop.network_backward(dy, caches)
    name = "-".join(activations) + f" net, {loss}"
    return Case(name, params, lambda *p: keras_loss(loss, y_true, forward(*p)[0]), [dx, *grads])


def manual_dense_case(activation, batch, input_dim, units, dtype, seed=0, margin=1e-3):
    """ManualDense's gradients (its custom gradient) against Dense's math, via the tape."""
    rng = np.random.default_rng(seed)
    while True:  # resample until x·w + b is clear of the ReLU kink
        x, r = _normal(rng, (batch, input_dim), dtype), _normal(rng, (batch, units), dtype)
        w, b = _normal(rng, (input_dim, units), dtype), _normal(rng, (units,), dtype)
        if np.min(np.abs(x @ w + b)) >= margin:
            break
    layer = ManualDense(units, activation=activation, dtype=dtype)
    layer.build((batch, input_dim))
    layer.set_weights([w, b])
    x_tensor = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tensor)
        loss = tf.reduce_sum(layer(x_tensor) * r)
    manual = tape.gradient(loss, [x_tensor, layer.kernel, layer.bias])
    f = keras.activations.get(activation)

    def dense_loss(x, w, b):  # what keras.layers.Dense.call computes
        return tf.reduce_sum(f(keras.ops.add(keras.ops.matmul(x, w), b)) * r)

    return Case(f"ManualDense {activation}", [x, w, b], dense_loss, manual)


# The distribution of the errors, for the reproduction report's histogram.


def tested_cases(dtype, manual_dense=True):
    """The cases the gradient tests check: each activation and loss (`tests/test_backprop.py`),
    the tutorial's network in miniature and a deeper stack, and `ManualDense` per activation
    (`tests/test_manual_dense.py`; a TensorFlow custom gradient: `manual_dense=False` leaves it
    out)."""
    dense = sorted(backprop.ACTIVATIONS) if manual_dense else []
    return (
        [activation_case(name, 6, 5, dtype) for name in sorted(backprop.ACTIVATIONS)]
        + [loss_case(name, 6, 5, dtype) for name in sorted(backprop.LOSSES)]
        + [
            network_case([12, 16, 10], ["relu", "softmax"], "categorical_crossentropy", 8, dtype),
            network_case(
                [5, 7, 6, 4], ["sigmoid", "tanh", "linear"], "mean_squared_error", 3, dtype
            ),
        ]
        + [manual_dense_case(name, 5, 4, 3, dtype) for name in dense]
    )


def elementwise_errors(manual, reference, rtol, atol):
    """`|m − r| / (atol/rtol + |r|)` per element, flattened over the tensors.

    `np.testing.assert_allclose(m, r, rtol, atol)` passes where `|m − r| ≤ atol + rtol·|r|`,
    that is where this is `≤ rtol`: a relative error, floored at `atol/rtol` for entries near 0.
    """
    floor = atol / rtol
    errors = []
    for m, r in zip(manual, reference, strict=True):
        m, r = np.asarray(m, np.float64), np.asarray(r, np.float64)
        errors.append((np.abs(m - r) / (floor + np.abs(r))).ravel())
    return np.concatenate(errors)


class ErrorSamples(NamedTuple):
    """`errors[label]`: every element's `elementwise_errors` over `tested_cases`; `rtol[label]`:
    the tolerance the tests hold them to. Labels: `"float32 vs tape"`, `"float64 vs tape"`,
    `"float64 vs numerical"`."""

    errors: dict
    rtol: dict


def error_samples() -> ErrorSamples:
    """The elementwise relative errors of the hand-written gradients, per reference."""
    errors, rtol = {}, {}
    for label, (dtype, gradients, tolerance) in COMPARISONS.items():
        errors[label] = np.concatenate(
            [
                elementwise_errors(case.manual, gradients(case), **tolerance)
                for case in tested_cases(dtype)
            ]
        )
        rtol[label] = tolerance["rtol"]
    return ErrorSamples(errors, rtol)


class Row(NamedTuple):
    """One case of `make gradient-check`: its largest elementwise error per comparison
    (`COMPARISONS`' labels), and whether every one is within its `rtol`."""

    name: str
    errors: dict
    passed: bool


def check(cases_by_dtype) -> list:
    """`Row`s for cases given as `{"float32": [...], "float64": [...]}`, the same cases in the
    same order for each dtype (as `tested_cases` builds them)."""
    names = [case.name for case in cases_by_dtype["float64"]]
    errors = {name: {} for name in names}
    for label, (dtype, gradients, tolerance) in COMPARISONS.items():
        for name, case in zip(names, cases_by_dtype[dtype], strict=True):
            e = elementwise_errors(case.manual, gradients(case), **tolerance)
            errors[name][label] = float(np.max(e, initial=0.0))
    return [Row(name, e, within_tolerance(e)) for name, e in errors.items()]


def within_tolerance(errors: dict) -> bool:
    """`errors`: `{label: largest elementwise error}`; true when each is at most its rtol
    (a NaN fails)."""
    return all(e <= COMPARISONS[label][2]["rtol"] for label, e in errors.items())
