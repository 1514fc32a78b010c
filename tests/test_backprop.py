"""keras_bp.backprop: each forward against Keras, each backward against the tape and against
numerical differences, in float64 (the math) and float32 (what training uses).

Tolerances are `gradcheck.TOLERANCES`: float64 rtol=1e-12, atol=1e-14; float32 rtol=1e-5,
atol=1e-6; against numerical differences (float64) rtol=1e-7, atol=1e-8.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_bp import backprop
from keras_bp.checks import gradcheck

DTYPES = ["float64", "float32"]
ACTIVATIONS = sorted(backprop.ACTIVATIONS)
LOSSES = sorted(backprop.LOSSES)
CCE = "categorical_crossentropy"


def all_cases(dtype):
    """Each activation, each loss, the seed's network in miniature, and a deeper stack."""
    return (
        [gradcheck.activation_case(name, 6, 5, dtype) for name in ACTIVATIONS]
        + [gradcheck.loss_case(name, 6, 5, dtype) for name in LOSSES]
        + [
            gradcheck.network_case([12, 16, 10], ["relu", "softmax"], CCE, 8, dtype),
            gradcheck.network_case(
                [5, 7, 6, 4], ["sigmoid", "tanh", "linear"], "mean_squared_error", 3, dtype
            ),
        ]
    )


CASE_IDS = [case.name for case in all_cases("float64")]


# Forward passes against Keras's own ops: the tape differentiates our forward, so it cannot
# catch a wrong one.


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_dense_forward_matches_keras(name, dtype):
    rng = np.random.default_rng(1)
    x, w, b = (rng.normal(size=s).astype(dtype) for s in [(4, 3), (3, 5), (5,)])
    y, _ = backprop.dense_forward(x, w, b, name)
    assert y.dtype == dtype
    expected = keras.activations.get(name)(tf.constant(x @ w + b))
    np.testing.assert_allclose(y, expected, **gradcheck.TOLERANCES[dtype])


def test_softmax_forward_is_stable_for_large_logits():
    z = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4, -1e4]], dtype="float32")
    p, _ = backprop.activation_forward(z, "softmax")
    np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
def test_loss_value_matches_keras(name, dtype):
    rng = np.random.default_rng(2)
    y_true = np.eye(4)[rng.integers(0, 4, 6)].astype(dtype)
    y_pred = rng.uniform(0.05, 1.0, size=(6, 4)).astype(dtype)  # unnormalised on purpose
    loss, _ = backprop.get_loss(name)(y_true, y_pred)
    assert loss.dtype == dtype and loss.shape == ()
    expected = gradcheck.keras_loss(name, y_true, y_pred)
    np.testing.assert_allclose(loss, expected, **gradcheck.TOLERANCES[dtype])


# Backward passes against the tape on the same forward computation.


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_gradients_match_tape(index, dtype):
    case = all_cases(dtype)[index]
    assert all(g.dtype == dtype for g in case.manual)
    errors = gradcheck.assert_close(case.manual, gradcheck.tape_gradients(case), dtype)
    if dtype == "float64":
        assert errors.relative <= 1e-12


@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_gradients_match_numerical_float64(index):
    case = all_cases("float64")[index]
    numerical = gradcheck.numerical_gradients(case)
    for manual, expected in zip(case.manual, numerical, strict=True):
        np.testing.assert_allclose(manual, expected, **gradcheck.NUMERICAL_TOLERANCE)
    assert gradcheck.max_errors(case.manual, numerical).relative <= 1e-7


@pytest.mark.parametrize("dtype", DTYPES)
def test_crossentropy_gradient_is_zero_where_keras_clips(dtype):
    y_true = np.array([[1, 0, 0], [0, 0, 1]], dtype=dtype)
    y_pred = np.array([[1e-9, 0.5, 0.5], [1e-9, 1e-9, 1.0]], dtype=dtype)  # both rows clip
    loss, dy_pred = backprop.categorical_crossentropy(y_true, y_pred)
    case = gradcheck.Case(CCE, [y_pred], lambda p: gradcheck.keras_loss(CCE, y_true, p), [dy_pred])
    np.testing.assert_allclose(loss, case.loss_fn(y_pred), **gradcheck.TOLERANCES[dtype])
    gradcheck.assert_close([dy_pred], gradcheck.tape_gradients(case), dtype)
    # Exactness is the point: the clip blocks the gradient of the clipped entries entirely.
    assert dy_pred[0, 0] == 0 and dy_pred[1, 2] == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_softmax_crossentropy_matches_two_steps_and_keras(dtype):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(7, 10)).astype(dtype)
    y_true = np.eye(10)[rng.integers(0, 10, 7)].astype(dtype)
    p, softmax_cache = backprop.activation_forward(logits, "softmax")
    _, dp = backprop.categorical_crossentropy(y_true, p)
    two_step = backprop.activation_backward(dp, softmax_cache)
    fused = backprop.softmax_crossentropy_backward(y_true, p)
    gradcheck.assert_close([fused], [two_step], dtype)
    np.testing.assert_allclose(fused, (p - y_true) / 7, **gradcheck.TOLERANCES[dtype])
    # From logits, the path Keras takes for a softmax layer's output.
    loss, dz = backprop.softmax_crossentropy(y_true, logits)
    z = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(z)
        expected = tf.reduce_mean(keras.losses.categorical_crossentropy(y_true, z, True))
    np.testing.assert_allclose(loss, expected, **gradcheck.TOLERANCES[dtype])
    gradcheck.assert_close([dz], [tape.gradient(expected, z)], dtype)


def test_runs_inside_tf_function_with_unknown_batch():
    spec = [tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 2], tf.float32)]
    rng = np.random.default_rng(4)
    w, b = rng.normal(size=(3, 2)).astype("float32"), rng.normal(size=(2,)).astype("float32")

    def step(x, y_true):
        y, cache = backprop.dense_forward(x, w, b, "softmax")
        loss, dy = backprop.categorical_crossentropy(y_true, y)
        return (loss, *backprop.dense_backward(dy, cache))

    x = rng.normal(size=(5, 3)).astype("float32")
    y_true = np.eye(2, dtype="float32")[rng.integers(0, 2, 5)]
    compiled = tf.function(step, input_signature=spec)
    for got, expected in zip(compiled(x, y_true), step(x, y_true), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_arguments_are_not_modified():
    rng = np.random.default_rng(5)
    x, w, b, dy = (rng.normal(size=s) for s in [(4, 3), (3, 2), (2,), (4, 2)])
    before = [a.copy() for a in (x, w, b, dy)]
    for name in ACTIVATIONS:
        _, cache = backprop.dense_forward(x, w, b, name)
        backprop.dense_backward(dy, cache)
    for a, a0 in zip((x, w, b, dy), before, strict=True):
        np.testing.assert_array_equal(a, a0)  # exactness is the point


# Property tests: random batch sizes (including 1), widths, activations, losses and dtypes.


@st.composite
def networks(draw):
    dtype = draw(st.sampled_from(DTYPES))
    loss = draw(st.sampled_from(LOSSES))
    depth = draw(st.integers(1, 2))
    widths = draw(st.lists(st.integers(1, 6), min_size=depth, max_size=depth))
    widths.append(draw(st.integers(2 if loss == CCE else 1, 6)))  # classes: Keras wants ≥ 2
    hidden = draw(st.lists(st.sampled_from(ACTIVATIONS), min_size=depth - 1, max_size=depth - 1))
    # Cross-entropy needs positive outputs, as in Keras.
    last = draw(st.sampled_from(["sigmoid", "softmax"] if loss == CCE else ACTIVATIONS))
    batch = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    return gradcheck.network_case(widths, [*hidden, last], loss, batch, dtype, seed), dtype


@settings(max_examples=60, deadline=None)
@given(networks())
def test_random_networks_match_tape(case_and_dtype):
    case, dtype = case_and_dtype
    errors = gradcheck.assert_close(case.manual, gradcheck.tape_gradients(case), dtype)
    if dtype == "float64":
        assert errors.relative <= 1e-12


# Error paths: a one-line ValueError naming what was received and what is supported.


def test_unknown_names_are_rejected():
    z = np.zeros((2, 3), "float32")
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'; supported: \['linear'"):
        backprop.activation_forward(z, "gelu")
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        backprop.dense_forward(z, np.zeros((3, 1), "float32"), np.zeros(1, "float32"), "swish")
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'; supported: \['categorical"):
        backprop.get_loss("hinge")


@pytest.mark.parametrize(
    "x_shape, w_shape, b_shape, message",
    [
        ((4, 3), (2, 5), (5,), r"x: expected shape \(None, 2\), received \(4, 3\)"),
        ((4, 3), (3, 5), (4,), r"b: expected shape \(5,\), received \(4,\)"),
        ((4, 3), (3, 5, 1), (5,), r"w: expected shape \(None, None\), received \(3, 5, 1\)"),
        ((3,), (3, 5), (5,), r"x: expected shape \(None, 3\), received \(3,\)"),
    ],
)
def test_bad_shapes_are_rejected(x_shape, w_shape, b_shape, message):
    x, w, b = (np.zeros(s, "float32") for s in (x_shape, w_shape, b_shape))
    with pytest.raises(ValueError, match=message):
        backprop.dense_forward(x, w, b)


def test_bad_backward_and_loss_shapes_are_rejected():
    _, cache = backprop.dense_forward(np.ones((4, 3)), np.ones((3, 2)), np.ones(2), "relu")
    with pytest.raises(ValueError, match=r"da: expected shape \(4, 2\), received \(4, 3\)"):
        backprop.dense_backward(np.ones((4, 3)), cache)
    for name in LOSSES:
        with pytest.raises(ValueError, match=r"y_pred: expected shape \(2, 3\), received \(2, 4\)"):
            backprop.get_loss(name)(np.ones((2, 3)), np.ones((2, 4)))


def test_dtype_mismatch_is_rejected():
    x, w, b = np.ones((2, 3), "float32"), np.ones((3, 2), "float64"), np.ones(2, "float32")
    with pytest.raises(ValueError, match="expected one dtype.*'w': 'float64'"):
        backprop.dense_forward(x, w, b)
    _, cache = backprop.dense_forward(x, w.astype("float32"), b)
    with pytest.raises(ValueError, match="expected one dtype.*'da': 'float64'"):
        backprop.dense_backward(np.ones((2, 2)), cache)
    with pytest.raises(ValueError, match="expected one dtype"):
        backprop.categorical_crossentropy(np.ones((2, 2), "float32"), np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"expected floating tensors.*'x': 'int64'"):
        backprop.dense_forward(np.ones((2, 3), "int64"), np.ones((3, 2)), np.ones(2))


def test_network_backward_can_skip_the_inputs_gradient():
    rng = np.random.default_rng(5)
    params = [rng.normal(size=s) for s in [(6, 4), (4,), (4, 3), (3,)]]
    x, dy = rng.normal(size=(5, 6)), rng.normal(size=(5, 3))
    _, caches = backprop.network_forward(x, params, ["relu", "linear"])
    dx, grads = backprop.network_backward(dy, caches)
    none, same = backprop.network_backward(dy, caches, input_grad=False)
    assert dx is not None and none is None
    for a, b in zip(grads, same, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # the same ops: bit for bit


def test_relu_gradient_at_exact_zeros_matches_the_tape():
    # Random inputs never land on the kink; here a third of z is exactly 0 (and -0).
    z = tf.constant([[0.0, -0.0, 1.5], [-2.0, 0.0, 3.0]], tf.float64)
    da = tf.constant([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]], tf.float64)
    a, cache = backprop.relu_forward(z)
    with tf.GradientTape() as tape:
        tape.watch(z)
        reference = tf.nn.relu(z)
    np.testing.assert_array_equal(a.numpy(), reference.numpy())
    np.testing.assert_array_equal(
        backprop.relu_backward(da, cache).numpy(), tape.gradient(reference, z, da).numpy()
    )


def test_network_forward_names_the_flat_params_it_expects():
    w1, b1 = np.ones((3, 2)), np.zeros(2)
    with pytest.raises(ValueError, match=r"expected a flat list \[w1, b1, w2, b2, …\] of 2 arrays"):
        backprop.network_forward(np.ones((1, 3)), [(w1, b1)], ["relu"])
