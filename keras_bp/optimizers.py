"""Hand-written optimizers: the update rule after backprop has produced `∂L/∂w`.

Each optimizer owns its state as variables (`state_variable`: `tf.Variable`s on TensorFlow, so a
checkpoint can hold them) and updates variables in place with `keras.ops`, so `apply` runs on
every Keras backend and inside a compiled training step.
"""

import math

import keras
from keras import ops

from keras_bp.fused import apply_rmsprop, scratch_like


def state_variable(value, name, trainable=False):
    """A variable on this Keras backend: a `tf.Variable` on TensorFlow (keras_bp's checkpoints
    and the fused kernel take those), a `keras.Variable` on JAX and PyTorch."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.Variable(value, trainable=trainable, name=name)
    return keras.Variable(value, trainable=trainable, name=name)


class SGD:
    """Plain gradient descent, as the tutorial states it: `w ← w − η·∂L/∂w`.

    Args:
        learning_rate: the step size η.
    """

    def __init__(self, learning_rate=0.01):
        self.learning_rate = _checked_learning_rate(learning_rate)
        self.variables = []

    def build(self, variables):
        return self

    def apply(self, grads, variables):
        for dw, w in zip(grads, variables, strict=True):
            w.assign_sub(self.learning_rate * dw)


class RMSprop:
    """RMSprop with `keras.optimizers.RMSprop`'s defaults and update, term for term.

    `v ← ρ·v + (1 − ρ)·g²;  w ← w − lr·g / √(v + ε)`

    Args:
        learning_rate: lr, default 1e-3 as in Keras.
        rho: decay of the moving average of squared gradients, default 0.9.
        epsilon: default 1e-7; added *inside* the square root, as Keras does.
        fused: run the update as one fused kernel (`keras_bp.fused`): the same rule, equal
            to float rounding. The two ops above are the reference it is tested against.
            TensorFlow only.
    """

    def __init__(self, learning_rate=1e-3, rho=0.9, epsilon=1e-7, fused=False):
        if not 0 <= rho < 1:
            raise ValueError(f"rho: expected a number in [0, 1), received {rho}")
        if not epsilon > 0:
            raise ValueError(f"epsilon: expected a positive number, received {epsilon}")
        if fused and keras.backend.backend() != "tensorflow":
            raise ValueError(
                f"fused: the fused kernel is TensorFlow's; Keras runs on {keras.backend.backend()}"
            )
        self.learning_rate = _checked_learning_rate(learning_rate)
        self.rho = rho
        self.epsilon = epsilon
        self.fused = fused
        self.variables = []

    def build(self, variables):
        """Create one velocity per variable, zero-initialised as in Keras."""
        self.variables = [
            state_variable(ops.zeros(w.shape, w.dtype), f"velocity_{i}")
            for i, w in enumerate(variables)
        ]
        # The fused kernel writes lr·g/√(v + ε) to a buffer: scratch, not state to save.
        self._scratch = scratch_like(variables) if self.fused else []
        return self

    def apply(self, grads, variables):
        if self.fused:
            for g, w, v, s in zip(grads, variables, self.variables, self._scratch, strict=True):
                apply_rmsprop(w, v, s, g, self.learning_rate, self.rho, 0.0, self.epsilon)
            return
        for g, w, v in zip(grads, variables, self.variables, strict=True):
            v.assign(self.rho * v + (1 - self.rho) * ops.square(g))
            # epsilon inside the square root, as keras.optimizers.RMSprop does
            w.assign_sub(self.learning_rate * g / ops.sqrt(v + self.epsilon))


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop}


def _checked_learning_rate(learning_rate):
    if not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise ValueError(
            f"learning_rate: expected a positive finite number, received {learning_rate}"
        )
    return learning_rate


def get(name, **kwargs):
    """A hand-written optimizer by name: `"sgd"` or `"rmsprop"`."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; supported: {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](**kwargs)
