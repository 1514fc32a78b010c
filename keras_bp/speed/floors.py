"""The floors every trainer is measured against, timed in one compiled graph with no data movement.

The matmul floor is the exact matrix products of training and nothing else: per step the
forward products `(128×784)·(784×512)` and `(128×512)·(512×10)`, and the backward products for
`dW2`, `dH` and `dW1`. The training floor adds what every RMSprop trainer must also do each step:
the bias gradients and one fused RMSprop update (`keras_bp.fused`) of every weight, which reads
and writes each weight, its gradient and its moving average once.
"""

import time

import tensorflow as tf

from keras_bp.config import FitConfig
from keras_bp.fused import apply_rmsprop, scratch_like
from keras_bp.model import HIDDEN_UNITS, INPUT_DIM, NUM_CLASSES

LAYER_SIZES = (INPUT_DIM, HIDDEN_UNITS, NUM_CLASSES)  # the tutorial's network
BATCH_SIZE = FitConfig().batch_size  # the recipe's


def matmul_flops(batch=BATCH_SIZE, sizes=LAYER_SIZES):
    """Floating-point operations of the five matrix products of one training step."""
    d, h, c = sizes
    forward = batch * d * h + batch * h * c
    backward = batch * h * c + batch * c * h + d * batch * h  # dW2, dH, dW1
    return 2 * (forward + backward)


def floor_seconds(steps, batch=BATCH_SIZE, sizes=LAYER_SIZES, xla=False):
    """Seconds for `steps` repetitions of the five products in one compiled loop."""
    d, h, c = sizes
    rng = tf.random.Generator.from_seed(0)
    x, w1, w2 = rng.normal((batch, d)), rng.normal((d, h)) * 0.05, rng.normal((h, c)) * 0.05
    products = _FLOOR_GRAPHS[xla]
    products(x, w1, w2, tf.constant(2)).numpy()  # trace and compile outside the timing
    start = time.perf_counter()
    products(x, w1, w2, tf.constant(steps)).numpy()
    return time.perf_counter() - start


def _products_graph(xla):
    @tf.function(jit_compile=xla)
    def products(x, w1, w2, steps):
        carry = tf.constant(0.0)
        for _ in tf.range(steps):
            # The carry makes every step depend on the last, so no product can be hoisted
            # out of the loop or skipped; adding a scalar to x is the only non-matmul work.
            xs = x + carry
            hidden = tf.matmul(xs, w1)
            out = tf.matmul(hidden, w2)
            dw2 = tf.matmul(hidden, out, transpose_a=True)
            dh = tf.matmul(out, w2, transpose_b=True)
            dw1 = tf.matmul(xs, dh, transpose_a=True)
            carry = (dw1[0, 0] + dw2[0, 0]) * 1e-30
        return carry

    return products


# One graph each, built once: repeats reuse the trace instead of retracing.
_FLOOR_GRAPHS = {xla: _products_graph(xla) for xla in (False, True)}


def training_floor_seconds(steps, xla=False):
    """Seconds for `steps` of the five products, the bias gradients and one fused RMSprop update
    of W1, b1, W2 and b2, in one compiled loop (at the recipe's batch and layer sizes)."""
    if xla not in _TRAINING_FLOORS:  # built once per process: repeats reuse its trace
        _TRAINING_FLOORS[xla] = _TrainingFloor(xla)
    train = _TRAINING_FLOORS[xla]
    train(tf.constant(2)).numpy()  # trace and compile outside the timing
    start = time.perf_counter()
    train(tf.constant(steps)).numpy()
    return time.perf_counter() - start


class _TrainingFloor:
    """The training floor's variables and its graph, built once per process and XLA setting."""

    def __init__(self, xla, batch=BATCH_SIZE, sizes=LAYER_SIZES):
        d, h, c = sizes
        rng = tf.random.Generator.from_seed(0)
        self.x = rng.normal((batch, d))
        self.weights = [
            tf.Variable(rng.normal((d, h)) * 0.05),
            tf.Variable(tf.zeros(h)),
            tf.Variable(rng.normal((h, c)) * 0.05),
            tf.Variable(tf.zeros(c)),
        ]
        self.velocities = [tf.Variable(tf.zeros_like(w)) for w in self.weights]
        self.scratch = scratch_like(self.weights)
        self.train = tf.function(self._train, jit_compile=xla)

    def __call__(self, steps):
        return self.train(steps)

    def _train(self, steps):
        x = self.x
        for _ in tf.range(steps):
            w1, b1, w2, b2 = self.weights
            hidden = tf.matmul(x, w1) + b1
            out = tf.matmul(hidden, w2) + b2
            grads = [
                tf.matmul(x, tf.matmul(out, w2, transpose_b=True), transpose_a=True),  # dW1
                tf.reduce_sum(hidden, axis=0),  # db1's reduction
                tf.matmul(hidden, out, transpose_a=True),  # dW2
                tf.reduce_sum(out, axis=0),  # db2's reduction
            ]
            for w, v, s, g in zip(self.weights, self.velocities, self.scratch, grads, strict=True):
                apply_rmsprop(w, v, s, g, 1e-3, 0.9, 0.0, 1e-7)
        return self.weights[3][0]


_TRAINING_FLOORS = {}
