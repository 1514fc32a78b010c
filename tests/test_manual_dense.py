"""ManualDense: a drop-in for keras.layers.Dense whose gradient is the hand-written one.

Tolerances are `gradcheck.TOLERANCES`: float64 rtol=1e-12, atol=1e-14; float32 rtol=1e-5,
atol=1e-6; against numerical differences (float64) rtol=1e-7, atol=1e-8.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_bp import backprop
from keras_bp.checks import gradcheck
from keras_bp.data import preprocess
from keras_bp.layers import ManualDense
from keras_bp.model import build_model, weights_digest

DTYPES = ["float64", "float32"]
ACTIVATIONS = sorted(backprop.ACTIVATIONS)


def dense_pair(activation, dtype, input_dim=6, units=4):
    """A Dense and a ManualDense with the same (random, non-zero) weights."""
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(input_dim, units)), rng.normal(size=(units,))]
    layers = []
    for cls in (keras.layers.Dense, ManualDense):
        layer = cls(units, activation=activation, dtype=dtype)
        layer.build((None, input_dim))
        layer.set_weights([w.astype(dtype) for w in weights])
        layers.append(layer)
    return layers


def outputs_and_gradients(layer, x, upstream):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * upstream)
    return y, tape.gradient(loss, [x, layer.kernel, layer.bias])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_matches_keras_dense(activation, dtype):
    dense, manual = dense_pair(activation, dtype)
    rng = np.random.default_rng(1)
    x, upstream = rng.normal(size=(5, 6)).astype(dtype), rng.normal(size=(5, 4)).astype(dtype)
    y_dense, grads_dense = outputs_and_gradients(dense, x, upstream)
    y_manual, grads_manual = outputs_and_gradients(manual, x, upstream)
    assert y_manual.dtype == dtype
    gradcheck.assert_close([y_manual], [y_dense], dtype)
    gradcheck.assert_close(grads_manual, grads_dense, dtype)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_matches_numerical_gradients_float64(activation):
    case = gradcheck.manual_dense_case(activation, 5, 4, 3, "float64")
    numerical = gradcheck.numerical_gradients(case)
    for manual, expected in zip(case.manual, numerical, strict=True):
        np.testing.assert_allclose(manual, expected, **gradcheck.NUMERICAL_TOLERANCE)


def test_gradient_is_the_hand_written_one(monkeypatch):
    """Doubling backprop.dense_backward's output doubles the layer's gradients: the tape
    goes through the hand-written backward, not through autodiff of the forward."""
    _, layer = dense_pair("tanh", "float64")
    x, upstream = np.ones((2, 6)), np.ones((2, 4))
    _, grads = outputs_and_gradients(layer, x, upstream)
    original = backprop.dense_backward
    monkeypatch.setattr(
        backprop, "dense_backward", lambda dy, cache: [2 * g for g in original(dy, cache)]
    )
    _, doubled = outputs_and_gradients(layer, x, upstream)
    for g, g2 in zip(grads, doubled, strict=True):
        np.testing.assert_allclose(g2, 2 * g, rtol=1e-12, atol=1e-14)


def test_same_seed_same_initial_weights_as_dense():
    keras.utils.set_random_seed(0)
    expected = weights_digest(build_model())
    keras.utils.set_random_seed(0)
    model = build_model(dense=ManualDense)
    assert [type(layer) for layer in model.layers] == [ManualDense, ManualDense]
    assert weights_digest(model) == expected  # exactness is the point: same draws


def test_fit_trains_like_dense():
    """model.fit with ManualDense follows model.fit with Dense step for step."""
    rng = np.random.default_rng(2)
    x, labels = rng.integers(0, 256, (256, 28, 28), dtype=np.uint8), rng.integers(0, 10, 256)
    x, y = preprocess(x, labels)
    runs = []
    for dense in (keras.layers.Dense, ManualDense):
        keras.utils.set_random_seed(0)
        model = build_model(dense=dense)
        history = model.fit(x, y, epochs=2, batch_size=64, shuffle=False, verbose=0)
        runs.append((history.history["loss"], model.get_weights()))
    (loss_dense, weights_dense), (loss_manual, weights_manual) = runs
    assert loss_manual[-1] < loss_manual[0]
    np.testing.assert_allclose(loss_manual, loss_dense, rtol=1e-5, atol=1e-6)
    for w_manual, w_dense in zip(weights_manual, weights_dense, strict=True):
        np.testing.assert_allclose(w_manual, w_dense, rtol=1e-5, atol=1e-6)


def test_get_config_round_trips():
    layer = ManualDense(7, activation="sigmoid", kernel_initializer="he_normal", name="hidden")
    config = layer.get_config()
    assert (config["units"], config["activation"], config["name"]) == (7, "sigmoid", "hidden")
    clone = ManualDense.from_config(config)
    assert clone.get_config() == config
    assert isinstance(clone.kernel_initializer, keras.initializers.HeNormal)
    assert ManualDense(3).activation == "linear"


def test_save_and_load_keras_file(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(dense=ManualDense)
    x = np.random.default_rng(3).random((16, 784)).astype("float32")
    model.fit(x, np.eye(10, dtype="float32")[np.arange(16) % 10], verbose=0)  # optimizer state too
    path = tmp_path / "manual.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert [type(layer) for layer in loaded.layers] == [ManualDense, ManualDense]
    assert weights_digest(loaded) == weights_digest(model)
    # Same weights and the same ops: predictions are bit-identical, so exactness is the point.
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"units": 0}, "units: expected a positive integer, received 0"),
        ({"units": -3}, "units: expected a positive integer, received -3"),
        ({"units": 2.5}, "units: expected a positive integer, received 2.5"),
        ({"units": "8"}, "units: expected a positive integer, received '8'"),
        ({"units": True}, "units: expected a positive integer, received True"),
        ({"units": 4, "activation": "gelu"}, r"activation: expected one of \[.*received 'gelu'"),
        ({"units": 4, "activation": keras.activations.relu}, "activation: expected one of"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ManualDense(**kwargs)


@pytest.mark.slow
def test_seed_model_reaches_seed_accuracy(mnist):
    """The seed's recipe with ManualDense in place of Dense: 5 epochs, batch 128, ≥ 97.5 %."""
    (x_train, y_train), (x_test, y_test) = mnist
    x_train, y_train = preprocess(x_train, y_train)
    x_test, y_test = preprocess(x_test, y_test)
    keras.utils.set_random_seed(0)
    model = build_model(dense=ManualDense)
    model.fit(x_train, y_train, epochs=5, batch_size=128, verbose=2)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"ManualDense test accuracy: {accuracy:.4f}")
    assert accuracy >= 0.975
