"""Seeding, and the switches that make reruns bit-identical on one machine."""

import keras
import tensorflow as tf


def configure(seed: int, deterministic: bool = False):
    """Seed Python, numpy and TensorFlow; with `deterministic`, also pin what varies run to run.

    Call it before any TensorFlow op runs: thread counts can only be set before the runtime
    starts.
    """
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
