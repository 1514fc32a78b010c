"""Seeding, and the switches that make reruns bit-identical on one machine.

What `--deterministic` pins, and why:

- `keras.utils.set_random_seed(seed)`: Python's, numpy's and TensorFlow's generators, so the
  initial weights are a function of the seed. (The loop's shuffle is a function of
  `(seed, epoch)` by construction; `fit`'s shuffle comes from the seeded generators.)
- `tf.config.experimental.enable_op_determinism()`: TensorFlow refuses (raises) rather than
  silently running any op that has no deterministic kernel.
- Thread counts: Eigen and oneDNN split matmuls and reductions by the number of intra-op
  threads, and the split fixes the order of float additions. `intra_op` is pinned to the
  machine's CPU count and recorded; `inter_op` to 1, so independent ops never race.

Not covered: another TensorFlow, Keras or numpy version, another CPU model or core count, or
a GPU. Each may change kernels or summation order, and with them the last bits of the weights.
"""

import os

import keras
import tensorflow as tf


def configure(seed: int, deterministic: bool = False) -> dict:
    """Seed everything; with `deterministic`, also pin ops and threads. Returns the settings.

    Call it before any TensorFlow op runs: thread counts can only be set before the runtime
    starts.
    """
    settings = {"seed": seed, "deterministic": deterministic}
    if deterministic:
        intra = os.cpu_count() or 1
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.experimental.enable_op_determinism()
        settings.update(intra_op_threads=intra, inter_op_threads=1)
    keras.utils.set_random_seed(seed)
    return settings
