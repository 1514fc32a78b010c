"""The seed's model: 784 → Dense(512, relu) → Dense(10, softmax), compiled as the tutorial does."""

import hashlib

import keras
import numpy as np

INPUT_DIM = 784
HIDDEN_UNITS = 512
NUM_CLASSES = 10


def build_model(dense=keras.layers.Dense, compile=True, fused=False, **speed) -> keras.Sequential:
    """Build (and by default compile) the seed's two-layer network.

    Args:
        dense: the layer class for both layers, `keras.layers.Dense` or a drop-in
            replacement such as `keras_bp.layers.ManualDense`.
        compile: compile with the seed's `rmsprop` / `categorical_crossentropy` / `accuracy`.
        fused: compile with `keras_bp.fused.FusedRMSprop`, Keras's RMSprop as one kernel.
        **speed: how `fit` executes, not what it computes: `steps_per_execution`,
            `jit_compile`.
    """
    model = keras.Sequential(
        [
            keras.Input(shape=(INPUT_DIM,)),
            dense(HIDDEN_UNITS, activation="relu"),
            dense(NUM_CLASSES, activation="softmax"),
        ]
    )
    if (speed or fused) and not compile:
        raise ValueError(f"speed options {sorted(speed) + ['fused'] * fused} need compile=True")
    if compile:
        from keras_bp.fused import FusedRMSprop

        optimizer = FusedRMSprop() if fused else "rmsprop"
        model.compile(
            optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"], **speed
        )
    return model


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
