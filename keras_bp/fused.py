"""RMSprop's update as one fused TensorFlow kernel: the same rule, one kernel instead of ten.

Written with elementwise ops, as `keras.optimizers.RMSprop` and `keras_bp.optimizers.RMSprop`
are, the update of the 784×512 first-layer kernel is about ten separate kernels, each reading
and writing the whole array. `tf.raw_ops.ResourceApplyRMSProp` does the whole update in one
kernel (the README's Speed section measures what that saves):

    ms  ← ρ·ms + (1 − ρ)·g²
    mom ← momentum·mom + lr·g / √(ms + ε)
    w   ← w − mom

With momentum 0 this is Keras's update term for term, ε inside the square root included. The
kernel groups the `ms` update as `ms + (g² − ms)·(1 − ρ)`, so results agree with Keras's to
float rounding, not bit for bit; `tests/test_fused.py` bounds the difference.
"""

import keras
import tensorflow as tf


def scratch_like(variables):
    """Zeroed buffers for the kernel's `mom` output when there is no momentum to keep."""
    return [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in variables]


def apply_rmsprop(variable, velocity, momentum_buffer, grad, lr, rho, momentum, epsilon):
    """One fused RMSprop update of `variable` in place (all three are `tf.Variable`s)."""
    dtype = variable.dtype
    tf.raw_ops.ResourceApplyRMSProp(
        var=variable.handle,
        ms=velocity.handle,
        mom=momentum_buffer.handle,
        lr=tf.cast(lr, dtype),
        rho=tf.constant(rho, dtype),
        momentum=tf.constant(momentum, dtype),
        epsilon=tf.constant(epsilon, dtype),
        grad=tf.cast(grad, dtype),
    )


@keras.saving.register_keras_serializable(package="keras_bp")
class FusedRMSprop(keras.optimizers.RMSprop):
    """`keras.optimizers.RMSprop` with its update done by one fused kernel (TensorFlow only).

    A drop-in for `fit` and the tape loop: the same arguments, variables and config as
    Keras's RMSprop, so checkpoints and saved models carry the same optimizer state. Without
    momentum the kernel still needs a buffer for `lr·g/√(ms + ε)`; it is scratch, rewritten
    every step, and not among the optimizer's `variables`, so neither Keras's saved model nor
    keras_bp's checkpoints carry it.
    """

    def __init__(self, *args, centered=False, **kwargs):
        if centered:
            raise ValueError("FusedRMSprop does not support centered=True")
        super().__init__(*args, centered=False, **kwargs)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        if self.momentum > 0:
            self._buffers = [m.value for m in self._momentums]
        else:
            self._buffers = scratch_like(var_list)

    def update_step(self, gradient, variable, learning_rate):
        # On TensorFlow, Keras passes the underlying `tf.Variable` here.
        i = self._get_variable_index(variable)
        apply_rmsprop(
            variable,
            self._velocities[i].value,
            self._buffers[i],
            gradient,
            learning_rate,
            self.rho,
            self.momentum,
            self.epsilon,
        )
