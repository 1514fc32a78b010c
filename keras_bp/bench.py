"""Speed of the three trainers against the machine's own matmul floor, measured side by side.

The floor is the exact matrix products of training and nothing else: per step the forward
products `(128×784)·(784×512)` and `(128×512)·(512×10)`, and the backward products for `dW2`,
`dH` and `dW1`, looped for as many steps as 5 epochs take, in one compiled graph with no data
movement. Every trainer's time is a ratio to that floor measured in the same process, so the
ratios hold on a noisy, shared machine even when the seconds do not.
"""

import math
import tempfile
import time
from pathlib import Path

import tensorflow as tf


def matmul_flops(batch=128, sizes=(784, 512, 10)):
    """Floating-point operations of the five matrix products of one training step."""
    d, h, c = sizes
    forward = batch * d * h + batch * h * c
    backward = batch * h * c + batch * c * h + d * batch * h  # dW2, dH, dW1
    return 2 * (forward + backward)


def floor_seconds(steps, batch=128, sizes=(784, 512, 10), jit_compile=False):
    """Seconds for `steps` repetitions of the five products in one compiled loop."""
    d, h, c = sizes
    rng = tf.random.Generator.from_seed(0)
    x, w1, w2 = rng.normal((batch, d)), rng.normal((d, h)) * 0.05, rng.normal((h, c)) * 0.05
    products = _FLOOR_GRAPHS[jit_compile]
    products(x, w1, w2, tf.constant(2)).numpy()  # trace and compile outside the timing
    start = time.perf_counter()
    products(x, w1, w2, tf.constant(steps)).numpy()
    return time.perf_counter() - start


def _products_graph(jit_compile):
    @tf.function(jit_compile=jit_compile)
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
_FLOOR_GRAPHS = {jit: _products_graph(jit) for jit in (False, True)}


def steps_for(epochs, samples, batch_size):
    return epochs * math.ceil(samples / batch_size)


def time_loop(kind, data, epochs, batch_size, jit_compile=False, fused=False, steps_per_call=52):
    """Training seconds of the custom loop (`kind`: "tape" or "manual"), compile included."""
    from keras_bp.gradients import make_source
    from keras_bp.loop import LoopConfig, train_loop

    with tempfile.TemporaryDirectory() as out:
        config = LoopConfig(
            epochs=epochs,
            batch_size=batch_size,
            out=Path(out),
            steps_per_call=steps_per_call,
            checkpoint_every=0,
            jit_compile=jit_compile,
        )
        source = make_source(kind, seed=0, fused=fused)
        metrics = train_loop(source, data, config, verbose=0)
    return metrics["train_seconds"], metrics["test_accuracy"]


def time_fit(data, epochs, speed=None):
    """Training seconds of the seed's recipe through `model.fit`, with `speed` options."""
    from keras_bp.cli import TrainConfig
    from keras_bp.recipe import train_fit

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(epochs=epochs, batch_size=128, seed=0, out=Path(out))
        _, metrics = train_fit(config, data, verbose=0, speed=speed)
    return metrics["train_seconds"], metrics["test_accuracy"]


def trainers(data, epochs):
    """`{name: run}` for each trainer; `run()` returns `(training seconds, test accuracy)`.

    Each trainer as it ships, then with `--fused` (the fastest settings that keep its updates),
    then with XLA, which was tried and is slower for fit.
    """
    return {
        "fit: make train (the recipe as is)": lambda: time_fit(data, epochs),
        "tape loop: make custom-loop": lambda: time_loop("tape", data, epochs, 128),
        "manual loop: make manual": lambda: time_loop("manual", data, epochs, 128),
        "fit: --steps-per-execution 32 --fused": lambda: time_fit(
            data, epochs, {"steps_per_execution": 32, "fused": True}
        ),
        "tape loop: --fused": lambda: time_loop("tape", data, epochs, 128, fused=True),
        "manual loop: --fused": lambda: time_loop("manual", data, epochs, 128, fused=True),
        "fit: --steps-per-execution 32 --xla": lambda: time_fit(
            data, epochs, {"steps_per_execution": 32, "jit_compile": True}
        ),
        "tape loop: --xla": lambda: time_loop("tape", data, epochs, 128, jit_compile=True),
        "manual loop: --xla": lambda: time_loop("manual", data, epochs, 128, jit_compile=True),
    }
