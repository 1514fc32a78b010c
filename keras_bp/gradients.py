"""The training loop's two gradient sources: autodiff, or backprop written out by hand.

The loop is written once against `GradientSource`: the readable `keras_bp.reference` and the
compiled `keras_bp.training.loop`. The sources differ only in where ∂L/∂w comes from and which
optimizer applies it: the tape and Keras's optimizer, or `keras_bp.backprop` and
`keras_bp.optimizers`.

On JAX and PyTorch (`KERAS_BACKEND`) the autodiff source is that backend's own mechanism, as
the keras-io guides "Writing a training loop from scratch" write it: `jax.value_and_grad` over
the model's `stateless_call` and the optimizer's `stateless_apply` (`JaxGradients`), or
`loss.backward()` (`TorchGradients`). The hand-written source runs on every backend as it is.
"""

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import keras
import numpy as np
import tensorflow as tf

from keras_bp import backprop, optimizers
from keras_bp.config import GRADIENT_SOURCES, Speed
from keras_bp.model import build_model, keras_optimizer


@runtime_checkable
class GradientSource(Protocol):
    """What the training loop needs from a gradient source."""

    name: str
    """`"tape"` or `"manual"`: the trainer's name in `metrics.json`."""

    variables: Sequence[tf.Variable]
    """The trainable weights in `model.get_weights()` order: `[W1, b1, W2, b2]`."""

    weight_paths: Sequence[str]
    """The Keras model's names of `variables` (`sequential/dense/kernel`, …)."""

    optimizer_variables: Sequence[tf.Variable]
    """The optimizer's state: with `variables`, everything a resume needs."""

    def loss_and_gradients(self, x, y) -> tuple[tf.Tensor, tf.Tensor, list]:
        """Forward and backward on one batch, `x: (B, 784)`, `y: (B, 10)` one-hot.

        Returns `(loss, scores, grads)`: the batch's mean loss, `(B, 10)` scores whose argmax is
        the prediction, and ∂L/∂w for each of `variables`, in order.
        """

    def forward(self, x, y) -> tuple[tf.Tensor, tf.Tensor]:
        """The forward pass alone, to evaluate: `(loss, scores)` as `loss_and_gradients`."""

    def apply_gradients(self, grads) -> None:
        """One optimizer step on `variables`, e.g. `w ← w − η·∂L/∂w` for SGD."""

    def export_model(self) -> keras.Model:
        """A compiled Keras model holding the current weights, for `evaluate` and `save`."""


def train_step(source: GradientSource, x, y):
    """One step of training: forward, backward, update. Returns `(loss, correct)`."""
    loss, scores, grads = source.loss_and_gradients(x, y)
    source.apply_gradients(grads)
    return loss, count_correct(y, scores)


def count_correct(y, scores):
    """How many rows of `scores` have their argmax at the one-hot label's."""
    return tf.reduce_sum(tf.cast(tf.argmax(scores, axis=-1) == tf.argmax(y, axis=-1), tf.int32))


class TapeGradients:
    """Gradients from `tf.GradientTape` over a Keras model, applied by a Keras optimizer.

    Args:
        model: a compiled Keras model (`build_model()`). It is the model trained, in place,
            and `export_model()` returns it.
        optimizer: a Keras optimizer; by default the model's compiled one, as `fit` uses.
    """

    name = "tape"

    def __init__(self, model: keras.Model, optimizer=None):
        self.model = model
        self.optimizer = optimizer or model.optimizer
        # Build outside the compiled step: a tf.function must not create variables.
        self.optimizer.build(model.trainable_variables)
        self.loss_fn = keras.losses.CategoricalCrossentropy()
        self.variables = [v.value for v in model.weights]
        self.weight_paths = [v.path for v in model.weights]
        self.optimizer_variables = [v.value for v in self.optimizer.variables]

    def loss_and_gradients(self, x, y):
        with tf.GradientTape() as tape:
            p = self.model(x, training=True)
            # p is a softmax output, so Keras computes the loss from its logits, as fit does.
            loss = self.loss_fn(y, p)
        # The scores are those logits too: their argmax is the prediction, and then nothing
        # reads the softmax, so the compiled step leaves it out (it cost about 8% of a step).
        scores = getattr(p, "_keras_logits", p)
        return loss, scores, tape.gradient(loss, self.model.trainable_variables)

    def forward(self, x, y):
        p = self.model(x, training=False)
        return self.loss_fn(y, p), p

    def apply_gradients(self, grads):
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables, strict=True))

    def export_model(self):
        return self.model


class JaxGradients(TapeGradients):
    """Gradients from `jax.value_and_grad` over the model's `stateless_call`, applied by the
    Keras optimizer's `stateless_apply`: JAX's autodiff source, the model's arguments as
    `TapeGradients`'s. The softmax output carries no logits on JAX (a JAX array takes no new
    attribute), so Keras's loss is its clipped cross-entropy of the probabilities."""

    def __init__(self, model: keras.Model, optimizer=None):
        import jax

        super().__init__(model, optimizer)
        # A JAX array never changes: keep the variables, which `apply_gradients` assigns.
        self.variables = list(model.weights)
        self.optimizer_variables = list(self.optimizer.variables)
        self._value_and_grad = jax.jit(jax.value_and_grad(self._loss, has_aux=True))

    def _loss(self, trainable, non_trainable, x, y):
        p, _ = self.model.stateless_call(trainable, non_trainable, x, training=True)
        return self.loss_fn(y, p), p

    def loss_and_gradients(self, x, y):
        trainable = [v.value for v in self.model.trainable_variables]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        (loss, p), grads = self._value_and_grad(trainable, non_trainable, x, y)
        return loss, p, grads

    def apply_gradients(self, grads):
        trainable = [v.value for v in self.model.trainable_variables]
        state = [v.value for v in self.optimizer.variables]
        trainable, state = self.optimizer.stateless_apply(state, grads, trainable)
        for variable, value in zip(self.model.trainable_variables, trainable, strict=True):
            variable.assign(value)
        for variable, value in zip(self.optimizer.variables, state, strict=True):
            variable.assign(value)


class TorchGradients(TapeGradients):
    """Gradients from `torch.autograd` (`loss.backward()`), applied by the Keras optimizer under
    `torch.no_grad()`: PyTorch's autodiff source, the arguments as `TapeGradients`'s."""

    def loss_and_gradients(self, x, y):
        self.model.zero_grad()
        p = self.model(x, training=True)
        loss = self.loss_fn(y, p)  # from the softmax's logits, as on TensorFlow
        loss.backward()
        scores = getattr(p, "_keras_logits", p)
        return loss.detach(), scores.detach(), [v.value.grad for v in self.model.trainable_weights]

    def apply_gradients(self, grads):
        import torch

        with torch.no_grad():
            self.optimizer.apply(grads, self.model.trainable_weights)


# Each backend's autodiff source: what `make_source("tape")` builds there.
AUTODIFF_SOURCES = {"tensorflow": TapeGradients, "jax": JaxGradients, "torch": TorchGradients}


class ManualGradients:
    """Gradients from the hand-written backward passes, applied by a hand-written optimizer.

    No autodiff anywhere: the forward is `keras_bp.backprop.dense_forward` per layer, the loss
    is softmax + cross-entropy fused, and the backward walks the layers in reverse.

    Args:
        model: a model of `Dense` or `ManualDense` layers with biases, ending in softmax. Its
            weights are copied into plain variables; the model itself is left alone.
        optimizer: `"rmsprop"` or `"sgd"` (Keras's defaults), or a `keras_bp.optimizers` object.
        learning_rate: overrides the named optimizer's default learning rate.
        fused: RMSprop's update as one fused kernel (`keras_bp.fused`); rmsprop only.
    """

    name = "manual"

    def __init__(self, model: keras.Model, optimizer="rmsprop", learning_rate=None, fused=False):
        self.activations = [_activation_name(layer) for layer in model.layers]
        if self.activations[-1] != "softmax":
            raise ValueError(f"expected a softmax output layer, received {self.activations[-1]!r}")
        self._architecture = model
        self.variables = [
            optimizers.state_variable(w, f"w{i}", trainable=True)
            for i, w in enumerate(model.get_weights())
        ]
        self.weight_paths = [v.path for v in model.weights]
        if isinstance(optimizer, str):
            if fused and optimizer != "rmsprop":
                raise ValueError(f"fused applies to 'rmsprop' only, received {optimizer!r}")
            kwargs = {} if learning_rate is None else {"learning_rate": learning_rate}
            optimizer = optimizers.get(optimizer, **kwargs, **({"fused": True} if fused else {}))
        elif fused or learning_rate is not None:
            raise ValueError("fused and learning_rate apply to an optimizer given by name only")
        self.optimizer = optimizer.build(self.variables)
        self.optimizer_variables = list(self.optimizer.variables)

    def loss_and_gradients(self, x, y):
        # The output layer stays linear here: its softmax is fused with the loss below.
        activations = [*self.activations[:-1], "linear"]
        logits, caches = backprop.network_forward(x, self.variables, activations)
        loss, dz = backprop.softmax_crossentropy(y, logits)  # dz = (softmax(logits) − y) / N
        _, grads = backprop.network_backward(dz, caches, input_grad=False)
        return loss, logits, grads  # argmax of the logits is argmax of softmax

    def forward(self, x, y):
        logits, _ = backprop.network_forward(x, self.variables, [*self.activations[:-1], "linear"])
        loss, _ = backprop.softmax_crossentropy(y, logits)
        return loss, logits

    def apply_gradients(self, grads):
        self.optimizer.apply(grads, self.variables)

    def export_model(self):
        """A new model of the given architecture with these weights, compiled with Keras's
        counterpart of the hand-written optimizer, holding its state: RMSprop's velocities are
        Keras's, so `fit` can go on from the saved model. (Keras's step counter stays 0: the
        hand-written optimizers keep none, and neither rule reads it.) The model given to
        `__init__` is untouched."""
        model = keras.models.clone_model(self._architecture)
        model.set_weights([v.numpy() for v in self.variables])
        name = type(self.optimizer).__name__.lower()
        optimizer = keras_optimizer(name, self.optimizer.learning_rate)
        model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
        optimizer.build(model.trainable_variables)  # saved with its variables, loads cleanly
        for keras_velocity, velocity in zip(
            getattr(optimizer, "_velocities", []), self.optimizer.variables, strict=True
        ):
            keras_velocity.assign(velocity)
        return model


def make_source(kind, seed=0, optimizer="rmsprop", learning_rate=None, fused=False):
    """The tutorial's model initialised under `seed`, wrapped in a gradient source.

    The same seed gives the same initial weights to `make train`, the tape loop and the
    manual loop, so the three start from one point, and on every Keras backend
    (`tensorflow_initial_weights`). Every argument applies to both kinds.

    Args:
        kind: `"tape"`: the backend's autodiff and Keras's optimizer (`AUTODIFF_SOURCES`), or
            `"manual"`: the hand-written backward and optimizer.
        optimizer: `"rmsprop"` or `"sgd"`.
        learning_rate: `None` for the optimizer's default.
        fused: RMSprop's update as one fused kernel (`keras_bp.fused`).
    """
    if kind not in GRADIENT_SOURCES:
        raise ValueError(f"unknown gradient source {kind!r}; supported: {list(GRADIENT_SOURCES)}")
    keras.utils.set_random_seed(seed)
    if kind == "tape":
        model = build_model(
            optimizer=optimizer, learning_rate=learning_rate, speed=Speed(fused=fused)
        )
    else:
        model = build_model(compile=False)
    # TensorFlow's float32 draw on every backend and in every floatx: one starting point (on
    # TensorFlow in float32 these are the very weights the model drew).
    model.set_weights(tensorflow_initial_weights(model))
    backend = keras.backend.backend()
    if kind == "tape":
        return AUTODIFF_SOURCES[backend](model)
    return ManualGradients(model, optimizer, learning_rate, fused)


def tensorflow_initial_weights(model: keras.Model) -> list:
    """The weights Keras's TensorFlow backend draws for `model`, on any backend.

    Each backend draws its own random numbers from the same seed, so the same `--seed` would
    start JAX and PyTorch elsewhere. Keras seeds each initializer from Python's generator (the
    same on every backend); the TensorFlow backend then draws Glorot's uniform kernel as
    `tf.random.stateless_uniform(shape, seed=[s, 0], ±√(6 / (fan_in + fan_out)))` and zero
    biases. This draws the same with TensorFlow (installed with keras_bp) for any backend;
    `set_weights` of the result starts every backend from TensorFlow's initial point.
    """
    weights = []
    for layer in model.layers:
        kernel_init, bias_init = layer.kernel_initializer, layer.bias_initializer
        if not (
            isinstance(kernel_init, keras.initializers.GlorotUniform)
            and isinstance(kernel_init.seed, int)
            and isinstance(bias_init, keras.initializers.Zeros)
        ):
            raise ValueError(
                f"{layer.name}: expected a Glorot-uniform kernel and zero bias, received "
                f"{type(kernel_init).__name__} and {type(bias_init).__name__}"
            )
        fan_in, fan_out = layer.kernel.shape
        limit = (6.0 / (fan_in + fan_out)) ** 0.5
        kernel = tf.random.stateless_uniform(
            (fan_in, fan_out), seed=[kernel_init.seed, 0], minval=-limit, maxval=limit
        )
        weights += [kernel.numpy(), np.zeros(fan_out, "float32")]
    return weights


def _activation_name(layer):
    """`"relu"` for `Dense(..., activation="relu")` (a function) or `ManualDense` (a name)."""
    activation = getattr(layer, "activation", None)
    if activation is None or getattr(layer, "bias", None) is None:
        raise ValueError(
            f"expected Dense or ManualDense layers with a bias, received {type(layer).__name__}"
        )
    return activation if isinstance(activation, str) else activation.__name__
