"""The two gradient sources: one interface, every option honoured, no hidden mutation."""

import keras
import numpy as np
import pytest

from keras_bp import gradients, optimizers
from keras_bp.gradients import GradientSource, ManualGradients, TapeGradients, make_source
from keras_bp.layers import ManualDense
from keras_bp.model import build_model, weights_digest


def _batch(synthetic_data, n=32):
    (x, y), _ = synthetic_data
    return x[:n], y[:n]


@pytest.mark.parametrize("kind", ["tape", "manual"])
def test_both_sources_implement_the_protocol_and_train(kind, synthetic_data):
    source = make_source(kind, seed=0)
    assert isinstance(source, GradientSource) and source.name == kind
    x, y = _batch(synthetic_data)
    loss, scores, grads = source.loss_and_gradients(x, y)
    assert scores.shape == (32, 10) and np.isfinite(float(loss))
    assert [tuple(g.shape) for g in grads] == [tuple(v.shape) for v in source.variables]
    before = weights_digest(source.variables)
    loss, correct = gradients.train_step(source, x, y)
    assert weights_digest(source.variables) != before
    assert 0 <= int(correct) <= 32


def test_an_object_missing_a_member_is_not_a_source():
    class NoUpdate:
        name, variables, optimizer_variables = "broken", [], []

        def loss_and_gradients(self, x, y): ...

        def export_model(self): ...

    assert not isinstance(NoUpdate(), GradientSource)


def test_exporting_the_manual_model_leaves_the_given_model_alone(synthetic_data):
    keras.utils.set_random_seed(0)
    given = build_model(compile=False)
    initial = weights_digest(given)
    source = ManualGradients(given)
    gradients.train_step(source, *_batch(synthetic_data))
    exported = source.export_model()
    assert weights_digest(given) == initial
    assert exported is not given
    assert weights_digest(exported) == weights_digest(source.variables) != initial
    assert exported.compiled and exported.loss == "categorical_crossentropy"


def test_the_manual_source_accepts_a_model_of_manual_dense_layers(synthetic_data):
    keras.utils.set_random_seed(0)
    dense = build_model(compile=False)
    manual_dense = build_model(dense=ManualDense, compile=False)
    manual_dense.set_weights(dense.get_weights())
    x, y = _batch(synthetic_data)
    _, _, expected = ManualGradients(dense).loss_and_gradients(x, y)
    _, _, got = ManualGradients(manual_dense).loss_and_gradients(x, y)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # the same ops on the same weights


def test_a_model_without_dense_layers_is_refused_in_one_line():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.5)])
    with pytest.raises(ValueError, match="ManualDense layers with a bias, received Dropout"):
        ManualGradients(model)


def test_make_source_gives_the_tape_source_its_optimizer_and_learning_rate(synthetic_data):
    """SGD at 0.5 through Keras (tape) and by hand (manual): one step, the same weights."""
    tape = make_source("tape", seed=1, optimizer="sgd", learning_rate=0.5)
    manual = make_source("manual", seed=1, optimizer="sgd", learning_rate=0.5)
    assert isinstance(tape.optimizer, keras.optimizers.SGD)
    assert float(tape.optimizer.learning_rate.numpy()) == 0.5 == manual.optimizer.learning_rate
    x, y = _batch(synthetic_data)
    initial = [v.numpy() for v in tape.variables]
    for source in (tape, manual):
        gradients.train_step(source, x, y)
    for a, b, w in zip(tape.variables, manual.variables, initial, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)
        assert np.max(np.abs(a.numpy() - w)) > 1e-4  # each tensor moved beyond the tolerance


def test_options_that_would_be_ignored_are_refused():
    keras.utils.set_random_seed(0)
    model = build_model(compile=False)
    sgd = optimizers.SGD(0.1)
    with pytest.raises(ValueError, match="apply to an optimizer given by name only"):
        ManualGradients(model, sgd, fused=True)
    with pytest.raises(ValueError, match="apply to an optimizer given by name only"):
        ManualGradients(model, sgd, learning_rate=0.5)
    with pytest.raises(ValueError, match="need compile=True"):
        build_model(compile=False, optimizer="sgd")
    no_bias = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, "softmax", use_bias=False)]
    )
    with pytest.raises(ValueError, match="layers with a bias, received Dense"):
        ManualGradients(no_bias)


def test_make_source_refuses_what_it_cannot_honour():
    with pytest.raises(ValueError, match="unknown gradient source 'jax'"):
        make_source("jax", seed=0)
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        make_source("tape", seed=0, optimizer="adam")
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        make_source("manual", seed=0, optimizer="adam")


def test_the_tape_source_trains_the_model_it_was_given(synthetic_data):
    model = build_model()
    before = weights_digest(model)
    source = TapeGradients(model)
    gradients.train_step(source, *_batch(synthetic_data))
    assert source.export_model() is model
    assert weights_digest(model) == weights_digest(source.variables) != before


def test_both_sources_score_with_the_logits_so_no_step_computes_a_softmax_it_never_uses(
    synthetic_data,
):
    # The loss is computed from the logits under the softmax in both; scoring with them too
    # leaves the tape step's softmax unread, so TensorFlow prunes it from the compiled step.
    (x, y), _ = synthetic_data
    x, y = x[:32], y[:32]
    for kind in ["tape", "manual"]:
        source = make_source(kind, seed=4)
        _, scores, _ = source.loss_and_gradients(x, y)
        probabilities = source.export_model()(x).numpy()
        assert scores.shape == probabilities.shape == (32, 10)
        np.testing.assert_allclose(
            keras.ops.softmax(scores).numpy(), probabilities, rtol=0, atol=1e-6, err_msg=kind
        )
        assert not np.allclose(scores.numpy().sum(axis=1), 1.0, atol=1e-3)  # not probabilities
