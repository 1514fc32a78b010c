"""Speed of the three trainers against the machine's own matmul floor, measured side by side.

The floor is the exact matrix products of training and nothing else: per step the forward
products `(128×784)·(784×512)` and `(128×512)·(512×10)`, and the backward products for `dW2`,
`dH` and `dW1`, looped for as many steps as 5 epochs take, in one compiled graph with no data
movement. Every trainer's time is a ratio to that floor measured in the same process, so the
ratios hold on a noisy, shared machine even when the seconds do not.
"""

import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import tensorflow as tf

from keras_bp.config import FIT_SPEED, LOOP_SPEED, FitConfig, LoopConfig, Speed
from keras_bp.loop import train_loop
from keras_bp.model import HIDDEN_UNITS, INPUT_DIM, NUM_CLASSES
from keras_bp.recipe import train_fit

LAYER_SIZES = (INPUT_DIM, HIDDEN_UNITS, NUM_CLASSES)  # the seed's network
BATCH_SIZE = FitConfig().batch_size  # the recipe's


def cpu_description() -> str:
    """The CPU's model and widest vector extensions, so figures from two machines can be told
    apart: "Intel(R) Xeon(R) Processor, AVX-512 (F, BW, VNNI, BF16), AMX"."""
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(
                line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line
            )
    except OSError:
        return platform.processor() or platform.machine()
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = set(info.get("flags", "").split())
    avx512 = [
        name
        for name, flag in [
            ("F", "avx512f"),
            ("BW", "avx512bw"),
            ("VNNI", "avx512_vnni"),
            ("BF16", "avx512_bf16"),
        ]
        if flag in flags
    ]
    vector = (
        f"AVX-512 ({', '.join(avx512)})" if avx512 else ("AVX2" if "avx2" in flags else "no AVX2")
    )
    extras = ", AMX" if "amx_tile" in flags else ""
    return f"{info.get('model name', platform.machine())}, {vector}{extras}"


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


def time_loop(kind, data, epochs, speed=LOOP_SPEED):
    """Training seconds of the custom loop (`kind`: "tape" or "manual"), compile included."""
    with tempfile.TemporaryDirectory() as out:
        config = LoopConfig(
            gradients=kind, epochs=epochs, out=Path(out), checkpoint_every=0, speed=speed
        )
        _, metrics = train_loop(config, data, verbose=0)
    return metrics["train_seconds"], metrics["test_accuracy"]


def time_fit(data, epochs, speed=FIT_SPEED):
    """Training seconds of the seed's recipe through `model.fit`, with `speed` options."""
    with tempfile.TemporaryDirectory() as out:
        _, metrics = train_fit(FitConfig(epochs=epochs, out=Path(out), speed=speed), data, 0)
    return metrics["train_seconds"], metrics["test_accuracy"]


def trainers(data, epochs):
    """`{name: run}` for each trainer; `run()` returns `(training seconds, test accuracy)`.

    Each trainer as it ships, then with `--fused` (the fastest settings that keep its updates),
    then with XLA, which was tried and is slower for fit.
    """
    fused, xla = replace(LOOP_SPEED, fused=True), replace(LOOP_SPEED, xla=True)
    return {
        "fit: make train (the recipe as is)": lambda: time_fit(data, epochs),
        "tape loop: make custom-loop": lambda: time_loop("tape", data, epochs),
        "manual loop: make manual": lambda: time_loop("manual", data, epochs),
        "fit: --steps-per-execution 32 --fused": lambda: time_fit(
            data, epochs, Speed(steps_per_call=32, fused=True)
        ),
        "tape loop: --fused": lambda: time_loop("tape", data, epochs, fused),
        "manual loop: --fused": lambda: time_loop("manual", data, epochs, fused),
        "fit: --steps-per-execution 32 --xla": lambda: time_fit(
            data, epochs, Speed(steps_per_call=32, xla=True)
        ),
        "tape loop: --xla": lambda: time_loop("tape", data, epochs, xla),
        "manual loop: --xla": lambda: time_loop("manual", data, epochs, xla),
    }
