"""ManualDense: a Keras layer whose backward pass is the hand-written one."""

import keras
import tensorflow as tf

from keras_bp import backprop


@keras.saving.register_keras_serializable(package="keras_bp")
class ManualDense(keras.layers.Layer):
    """Densely-connected layer with a hand-written gradient.

    `ManualDense` computes `output = activation(dot(input, kernel) + bias)`, exactly as
    `keras.layers.Dense` does, with the same weights (`kernel` `(D, M)`, `bias` `(M,)`)
    initialised the same way. Its gradient is not autodiff: `tf.custom_gradient` returns
    `keras_bp.backprop.dense_backward`, so `model.fit` trains it with the hand-written
    `dx`, `dw` and `db`.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: One of `"linear"`, `"relu"`, `"sigmoid"`, `"tanh"`, `"softmax"`.
            `None` means `"linear"`.
        kernel_initializer: Initializer for the `kernel` weights matrix.
        bias_initializer: Initializer for the bias vector.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        2D tensor with shape: `(batch_size, input_dim)`.

    Output shape:
        2D tensor with shape: `(batch_size, units)`.
    """

    def __init__(
        self,
        units,
        activation=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f"units: expected a positive integer, received {units!r}")
        activation = "linear" if activation is None else activation
        if activation not in backprop.ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {sorted(backprop.ACTIVATIONS)} or None, "
                f"received {activation!r}"
            )
        self.units = units
        self.activation = activation
        # Created here, in this order, as Dense does, so one seed gives both the same weights.
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = keras.layers.InputSpec(ndim=2)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], self.units), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.units,), initializer=self.bias_initializer
        )
        self.input_spec = keras.layers.InputSpec(ndim=2, axes={-1: input_shape[-1]})

    def call(self, inputs):
        # The underlying tf.Variables: tf.custom_gradient sees them being read and asks
        # grad_fn for their gradients through `variables`.
        kernel, bias = self.kernel.value, self.bias.value

        @tf.custom_gradient
        def dense(x):
            y, cache = backprop.dense_forward(x, kernel, bias, self.activation)

            def grad_fn(dy, variables):
                dx, dw, db = backprop.dense_backward(dy, cache)
                # `variables` comes from a set, so its order is not fixed: match by identity.
                by_ref = {kernel.ref(): dw, bias.ref(): db}
                return dx, [by_ref[v.ref()] for v in variables]

            return y, grad_fn

        # The output carries no `_keras_logits`, so Keras's categorical_crossentropy takes its
        # probability path (renormalise, clip); the tape hands its ∂L/∂y to grad_fn above.
        return dense(inputs)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": self.activation,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
