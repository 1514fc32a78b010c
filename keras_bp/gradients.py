"""The two gradient sources of the training loop: `tf.GradientTape`, or backprop by hand.

Both expose the same small interface, so `keras_bp.loop` is written once:

- `variables`: the trainable weights, in `model.get_weights()` order;
- `state`: every other variable a resume needs (the optimizer's);
- `settings`: what a checkpoint must have been made with to be resumed (optimizer, learning
  rate, `fused`);
- `train_step(x, y) -> (loss, correct)`: one update on a batch, `x: (B, 784)`, `y: (B, 10)`;
- `model()`: a Keras model holding the current weights, for evaluation and saving.
"""

import keras
import tensorflow as tf

from keras_bp import backprop, optimizers
from keras_bp.fused import FusedRMSprop
from keras_bp.model import build_model


def _correct(y, p):
    return tf.reduce_sum(tf.cast(tf.argmax(p, axis=-1) == tf.argmax(y, axis=-1), tf.int32))


class TapeGradients:
    """Gradients from `tf.GradientTape` over the Keras model, applied by Keras's optimizer.

    Args:
        model: a compiled Keras model (`build_model()`); trained in place.
        optimizer: a Keras optimizer; by default the model's compiled one.
    """

    name = "tape"

    def __init__(self, model: keras.Model, optimizer=None):
        self._model = model
        # The compiled model's own optimizer: `rmsprop` with Keras's defaults, as fit uses.
        self.optimizer = optimizer or model.optimizer
        # Build outside the compiled step: a tf.function must not create variables.
        self.optimizer.build(model.trainable_variables)
        self.loss_fn = keras.losses.CategoricalCrossentropy()
        self.variables = [v.value for v in model.weights]
        self.state = [v.value for v in self.optimizer.variables]
        # What a checkpoint must have been made with to be resumed.
        self.settings = {
            "optimizer": type(self.optimizer).__name__,
            "learning_rate": float(self.optimizer.learning_rate.numpy()),
            "fused": isinstance(self.optimizer, FusedRMSprop),
        }

    def train_step(self, x, y):
        with tf.GradientTape() as tape:
            p = self._model(x, training=True)
            # p is a softmax output, so Keras computes the loss from its logits, as fit does.
            loss = self.loss_fn(y, p)
        grads = tape.gradient(loss, self._model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self._model.trainable_variables, strict=True))
        return loss, _correct(y, p)

    def model(self):
        return self._model


class ManualGradients:
    """Gradients from the hand-written backward passes, applied by a hand-written optimizer.

    No autodiff anywhere: the forward is `keras_bp.backprop.dense_forward` per layer, the loss
    is softmax + cross-entropy fused, and the backward walks the layers in reverse.

    Args:
        model: a Keras model of Dense layers whose weights initialise this trainer (copied).
        optimizer: `"rmsprop"` (Keras's defaults) or `"sgd"`, or an optimizer object.
        learning_rate: overrides the optimizer's default learning rate.
        fused: RMSprop's update as one fused kernel (`keras_bp.fused`); rmsprop only.
    """

    name = "manual"

    def __init__(self, model: keras.Model, optimizer="rmsprop", learning_rate=None, fused=False):
        self._model = model
        self.activations = [layer.activation.__name__ for layer in model.layers]
        if self.activations[-1] != "softmax":
            raise ValueError(f"expected a softmax output layer, received {self.activations[-1]!r}")
        self.variables = [tf.Variable(w, name=f"w{i}") for i, w in enumerate(model.get_weights())]
        if fused and optimizer != "rmsprop":
            raise ValueError(f"fused applies to 'rmsprop' only, received {optimizer!r}")
        if isinstance(optimizer, str):
            kwargs = {} if learning_rate is None else {"learning_rate": learning_rate}
            if fused:
                kwargs["fused"] = True
            optimizer = optimizers.get(optimizer, **kwargs)
        self.optimizer = optimizer.build(self.variables)
        self.state = list(self.optimizer.variables)
        self.settings = {
            "optimizer": type(self.optimizer).__name__,
            "learning_rate": self.optimizer.learning_rate,
            "fused": getattr(self.optimizer, "fused", False),
        }

    def forward_backward(self, x, y):
        """Return `(loss, logits, grads)`, grads being ∂L/∂(each variable) in order."""
        # The output layer stays linear here: its softmax is fused with the loss below.
        activations = [*self.activations[:-1], "linear"]
        logits, caches = backprop.network_forward(x, self.variables, activations)
        loss, dz = backprop.softmax_crossentropy(y, logits)  # dz = (softmax(logits) − y) / N
        _, grads = backprop.network_backward(dz, caches, input_grad=False)
        return loss, logits, grads

    def train_step(self, x, y):
        loss, logits, grads = self.forward_backward(x, y)
        self.optimizer.apply(grads, self.variables)
        return loss, _correct(y, logits)  # argmax of the logits is argmax of softmax

    def model(self):
        self._model.set_weights([v.numpy() for v in self.variables])
        return self._model


def make_source(kind, seed, optimizer="rmsprop", learning_rate=None, fused=False):
    """The seed's model initialised under `seed`, wrapped in a gradient source.

    The same seed gives the same initial weights to `make train`, the tape loop and the
    manual loop, so the three start from one point.

    Args:
        kind: `"tape"` or `"manual"`.
        optimizer, learning_rate: the manual trainer's hand-written optimizer.
        fused: RMSprop's update as one fused kernel (`keras_bp.fused`), for either kind.
    """
    if kind not in ("tape", "manual"):
        raise ValueError(f"unknown gradient source {kind!r}; supported: ['manual', 'tape']")
    keras.utils.set_random_seed(seed)
    model = build_model(fused=fused and kind == "tape")
    if kind == "tape":
        return TapeGradients(model)
    return ManualGradients(model, optimizer, learning_rate, fused)
