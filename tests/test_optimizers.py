"""The hand-written optimizers against their formulas and against Keras's own."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bp import optimizers


def test_sgd_is_w_minus_eta_times_gradient():
    w = tf.Variable([[1.0, -2.0]], dtype=tf.float64)
    optimizers.SGD(learning_rate=0.5).apply([tf.constant([[0.2, 4.0]], tf.float64)], [w])
    np.testing.assert_allclose(w.numpy(), [[0.9, -4.0]], rtol=0, atol=1e-15)


def test_rmsprop_matches_keras_for_100_steps_of_identical_gradients():
    rng = np.random.default_rng(0)
    shapes = [(7, 5), (5,)]
    initial = [rng.normal(size=s).astype(np.float32) for s in shapes]
    mine = [tf.Variable(w) for w in initial]
    theirs = [keras.Variable(w) for w in initial]
    hand = optimizers.RMSprop().build(mine)
    reference = keras.optimizers.RMSprop()  # defaults: lr 1e-3, rho 0.9, epsilon 1e-7
    reference.build(theirs)
    for _step in range(100):
        # Gradients spanning tiny to large magnitudes, where the ε placement shows.
        scale = 10.0 ** rng.integers(-6, 2)
        grads = [(scale * rng.normal(size=s)).astype(np.float32) for s in shapes]
        hand.apply([tf.constant(g) for g in grads], mine)
        reference.apply([tf.constant(g) for g in grads], theirs)
    for a, b in zip(mine, theirs, strict=True):
        np.testing.assert_allclose(a.numpy(), keras.ops.convert_to_numpy(b), rtol=0, atol=1e-6)
    # The weights moved far more than the tolerance, so the comparison means something.
    assert max(np.max(np.abs(a.numpy() - w)) for a, w in zip(mine, initial, strict=True)) > 1e-2


def test_epsilon_inside_the_square_root():
    # One step from v = 0 with g = 1e-4: v = 0.1·g² = 1e-9, so √(v + ε) ≈ 3.18e-4 (ε inside)
    # whereas √v + ε would be ≈ 3.17e-5: the two placements differ tenfold here.
    w = tf.Variable([0.0], dtype=tf.float64)
    opt = optimizers.RMSprop().build([w])
    opt.apply([tf.constant([1e-4], tf.float64)], [w])
    expected = -1e-3 * 1e-4 / np.sqrt(0.1 * 1e-8 + 1e-7)
    np.testing.assert_allclose(w.numpy(), [expected], rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"learning_rate": 0}, "learning_rate: expected a positive finite number, received 0"),
        ({"rho": 1.0}, r"rho: expected a number in \[0, 1\), received 1.0"),
        ({"epsilon": -1}, "epsilon: expected a positive number, received -1"),
    ],
)
def test_rmsprop_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.RMSprop(**kwargs)


def test_unknown_optimizer_name():
    with pytest.raises(
        ValueError, match=r"unknown optimizer 'adam'; supported: \['rmsprop', 'sgd'\]"
    ):
        optimizers.get("adam")
