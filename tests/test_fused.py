"""The fused RMSprop kernel against the update it replaces: Keras's, and the hand-written one.

The kernel computes the same rule with the `ms` update grouped differently, so every comparison
here is to float rounding, with the tolerance stated, never bit for bit.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import run_script

from keras_bp import gradients, optimizers
from keras_bp.checks import parity
from keras_bp.config import Speed
from keras_bp.fused import FusedRMSprop
from keras_bp.model import build_model

SHAPES = [(7, 5), (5,)]


def _gradient_stream(steps=100, seed=0):
    """Gradients spanning 1e-6 to 10 in scale, where ε's placement and rounding show."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        scale = 10.0 ** rng.integers(-6, 2)
        yield [tf.constant((scale * rng.normal(size=s)).astype(np.float32)) for s in SHAPES]


def _initial(seed=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(np.float32) for s in SHAPES]


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_fused_keras_rmsprop_matches_kerass_for_100_steps(momentum):
    initial = _initial()
    fused_vars = [keras.Variable(w) for w in initial]
    keras_vars = [keras.Variable(w) for w in initial]
    fused, reference = FusedRMSprop(momentum=momentum), keras.optimizers.RMSprop(momentum=momentum)
    for grads in _gradient_stream():
        fused.apply(grads, fused_vars)
        reference.apply(grads, keras_vars)
    for a, b, w in zip(fused_vars, keras_vars, initial, strict=True):
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
        assert np.max(np.abs(a - w)) > 1e-2  # the weights moved far beyond the tolerance

    # The optimizer state is Keras's too: same variables, same values to rounding.
    def kinds(opt):  # velocity, momentum, ... with shapes (names carry per-variable counters)
        return [(v.name.rsplit("_", 1)[-1], tuple(v.shape)) for v in opt.variables]

    assert kinds(fused) == kinds(reference)
    for a, b in zip(fused.variables, reference.variables, strict=True):
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        # The momentum buffer sums increments of both signs, and cancellation leaves a relative
        # rounding error above float32's 6e-8 (measured 1.6e-5 at the worst element).
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-9)


def test_hand_written_fused_rmsprop_matches_its_two_op_reference():
    initial = _initial()
    fused_vars, plain_vars = [tf.Variable(w) for w in initial], [tf.Variable(w) for w in initial]
    fused = optimizers.RMSprop(fused=True).build(fused_vars)
    plain = optimizers.RMSprop().build(plain_vars)
    for grads in _gradient_stream():
        fused.apply(grads, fused_vars)
        plain.apply(grads, plain_vars)
    for a, b in zip(fused_vars, plain_vars, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)
    assert len(fused.variables) == len(plain.variables)  # the scratch buffer is not state


def test_fused_rmsprop_keeps_kerass_config_and_refuses_centered():
    config = FusedRMSprop(learning_rate=0.01, momentum=0.5, name="opt").get_config()
    assert (
        config
        == keras.optimizers.RMSprop(learning_rate=0.01, momentum=0.5, name="opt").get_config()
    )
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(FusedRMSprop()))
    assert type(restored) is FusedRMSprop
    with pytest.raises(ValueError, match="does not support centered=True"):
        FusedRMSprop(centered=True)
    assert type(build_model(speed=Speed(fused=True)).optimizer) is FusedRMSprop


def test_fused_trainers_keep_step_by_step_parity_with_each_other(synthetic_data):
    (x, y), _ = synthetic_data
    speed = Speed(steps_per_call=4, fused=True)
    weights = parity.train_in_lockstep(x, y, steps=12, batch_size=16, seed=2, speed=speed)
    rows, moved = parity.parity_table(weights)
    assert max(diff for _, diff in rows) <= 1e-6  # measured: fit = tape, manual 6e-8 away
    assert moved > 1e-3  # training really moved the weights


def test_fused_and_unfused_trainers_agree_to_rounding_after_one_step(synthetic_data):
    # One step isolates the kernel. Over many steps the two drift apart like XLA and non-XLA
    # do: a last-bit difference can flip a ReLU at its kink, and RMSprop's g/√(v + ε) turns a
    # changed small gradient into a full-size update (about 1e-3 here after 12 steps).
    (x, y), _ = synthetic_data
    fused = parity.train_in_lockstep(x, y, 1, batch_size=16, seed=2, speed=Speed(fused=True))
    plain = parity.train_in_lockstep(x, y, 1, batch_size=16, seed=2, speed=Speed())
    for trainer in ["fit", "tape", "manual"]:
        assert parity.max_abs_difference(fused[trainer], plain[trainer]) <= 1e-8
    assert parity.max_abs_difference(plain["initial"], plain["fit"]) > 1e-3


def test_fused_needs_rmsprop(tmp_path):
    proc = run_script(
        "scripts/manual_backprop.py", "--optimizer", "sgd", "--fused", "--out", str(tmp_path)
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.endswith("error: --fused applies to rmsprop only, received --optimizer sgd")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["tape", "manual"])
def test_fused_is_refused_for_sgd_by_the_library_too(kind):
    # A config drops it for SGD (tests/test_config.py); a gradient source asked directly refuses.
    with pytest.raises(ValueError, match="fused applies to 'rmsprop' only, received 'sgd'"):
        gradients.make_source(kind, seed=0, optimizer="sgd", fused=True)
