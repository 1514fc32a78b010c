"""The tutorial's model: 784 → Dense(512, relu) → Dense(10, softmax), compiled as published."""

import hashlib

import keras
import numpy as np

from keras_bp.config import Speed
from keras_bp.fused import FusedRMSprop

INPUT_DIM = 784
HIDDEN_UNITS = 512
NUM_CLASSES = 10


def build_model(
    dense=keras.layers.Dense, compile=True, optimizer="rmsprop", learning_rate=None, speed=None
) -> keras.Sequential:
    """Build (and by default compile) the tutorial's two-layer network.

    With the defaults this is the recipe exactly: `compile(optimizer="rmsprop",
    loss="categorical_crossentropy", metrics=["accuracy"])`.

    Args:
        dense: the layer class for both layers, `keras.layers.Dense` or a drop-in
            replacement such as `keras_bp.layers.ManualDense`.
        compile: compile with the optimizer, `categorical_crossentropy` and `accuracy`.
        optimizer, learning_rate: `keras_optimizer`'s arguments.
        speed: a `keras_bp.config.Speed`: steps per execution, XLA, the fused RMSprop kernel;
            `None` for Keras's defaults.
    """
    model = keras.Sequential(
        [
            keras.Input(shape=(INPUT_DIM,)),
            dense(HIDDEN_UNITS, activation="relu"),
            dense(NUM_CLASSES, activation="softmax"),
        ]
    )
    if compile:
        speed = speed or Speed()
        model.compile(
            optimizer=keras_optimizer(optimizer, learning_rate, speed.fused),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
            steps_per_execution=speed.steps_per_call,
            # Only XLA is asked for: otherwise Keras's default ("auto") decides, as published.
            **({"jit_compile": True} if speed.xla else {}),
        )
    elif speed is not None or optimizer != "rmsprop" or learning_rate is not None:
        raise ValueError("optimizer, learning_rate and speed need compile=True")
    return model


def keras_optimizer(name="rmsprop", learning_rate=None, fused=False):
    """Keras's optimizer called `name` (`"rmsprop"` or `"sgd"`) with Keras's defaults.

    The recipe's bare `"rmsprop"` stays a string, as the tutorial passes it to `compile`.

    Args:
        learning_rate: a float or a `LearningRateSchedule`; `None` for Keras's default.
        fused: `keras_bp.fused.FusedRMSprop`, RMSprop's update as one kernel; rmsprop only.
    """
    kwargs = {} if learning_rate is None else {"learning_rate": learning_rate}
    if name == "rmsprop" and fused:
        return FusedRMSprop(**kwargs)
    if fused:
        raise ValueError(f"fused applies to 'rmsprop' only, received {name!r}")
    if name == "rmsprop":
        return keras.optimizers.RMSprop(**kwargs) if kwargs else "rmsprop"
    if name == "sgd":
        return keras.optimizers.SGD(**kwargs)
    raise ValueError(f"unknown optimizer {name!r}; supported: ['rmsprop', 'sgd']")


def weights_digest(weights) -> str:
    """SHA-256 over the weights in order (dtype, shape and C-ordered bytes of each).

    Accepts a model or a list of arrays/variables; equal digests mean bit-identical weights.
    """
    if isinstance(weights, keras.Model):
        weights = weights.get_weights()
    h = hashlib.sha256()
    for w in weights:
        a = np.ascontiguousarray(keras.ops.convert_to_numpy(w))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
