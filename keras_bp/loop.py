"""The custom training loop, written once for both gradient sources (`keras_bp.gradients`).

Per epoch: a permutation of the training set fixed by `(seed, epoch)`, batches of `batch_size`
(the last one partial: 60000 mod 128 = 96), and compiled calls that each run up to
`steps_per_call` steps in-graph, gathering their batches from the dataset held as tensors.
Between calls the loop updates the progress bar, stops on a non-finite loss, and checkpoints.
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_bp import runs
from keras_bp.checkpoints import RunCheckpoint
from keras_bp.cli import TrainConfig
from keras_bp.data import check_training_data
from keras_bp.errors import NonFiniteLoss


@dataclass
class LoopConfig(TrainConfig):
    """`TrainConfig` plus the custom loop's own settings; the defaults are the seed's recipe.

    `--fused` is not here: it picks the gradient source's optimizer (`make_source(fused=...)`).
    """

    out: Path = Path("runs/custom_loop")
    steps_per_call: int = 52  # 468 full batches of MNIST = 9 calls of 52
    checkpoint_every: int = 100
    fresh: bool = False
    # XLA fuses the elementwise work around the matmuls (faster), but its kernels round
    # differently from fit's, so step-by-step parity with fit holds only without it.
    jit_compile: bool = False

    @classmethod
    def from_args(cls, args, out):
        """The config a loop script's parsed `cli.loop_parser` options describe."""
        return cls(
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            out=out,
            steps_per_call=args.steps_per_call,
            checkpoint_every=args.checkpoint_every,
            fresh=args.fresh,
            jit_compile=args.xla,
        )


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the training samples in `epoch`: a function of `(seed, epoch)` only."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)


def epoch_chunks(perm: np.ndarray, batch_size: int, start_step: int, steps_per_call: int):
    """Yield `(first_step, indices)` with indices `(steps, batch)`, from `start_step` on.

    Full batches come in chunks of up to `steps_per_call` steps; a final partial batch
    comes alone, as a `(1, n mod batch_size)` chunk.
    """
    full_steps, remainder = divmod(len(perm), batch_size)
    step = start_step
    while step < full_steps:
        stop = min(step + steps_per_call, full_steps)
        yield step, perm[step * batch_size : stop * batch_size].reshape(stop - step, batch_size)
        step = stop
    if remainder and step == full_steps:
        yield step, perm[full_steps * batch_size :].reshape(1, remainder)


class CompiledSteps:
    """`run(x, y, indices)`: steps `source.train_step` over the batches `x[indices[i]]`, in-graph.

    Without XLA, traced once: every shape is left open in the signature, so full and partial
    chunks share one graph. `traces` counts the Python traces. The loop is an explicit
    `tf.while_loop` and autograph is off: converting the hand-written backprop functions would
    cost more than a second of tracing and buys nothing, as they have no Python control flow
    on tensors.

    With `jit_compile`, XLA compiles once per input shape, about a second each. So chunks of
    full batches are padded to `chunk_shape = (steps_per_call, batch_size)` and run by one XLA
    graph with the step count as an argument, and any other chunk (the epoch's final partial
    batch, one step) runs in the graph without XLA: one compile per run, two traces.
    """

    def __init__(self, source, num_features, num_classes, jit_compile=False, chunk_shape=None):
        if jit_compile and chunk_shape is None:
            raise ValueError("jit_compile needs chunk_shape=(steps_per_call, batch_size)")
        self.source = source
        self.traces = 0
        self.chunk_shape = tuple(chunk_shape) if jit_compile else None
        signature = [
            tf.TensorSpec([None, num_features], tf.float32),
            tf.TensorSpec([None, num_classes], tf.float32),
            tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([], tf.int32),
        ]
        self.graph = tf.function(self._run, input_signature=signature, autograph=False)
        self.xla_graph = None
        if jit_compile:
            self.xla_graph = tf.function(
                self._run, input_signature=signature, jit_compile=True, autograph=False
            )

    def run(self, x, y, indices):
        """`(losses, correct)` of each step, for `indices` of shape `(steps, batch)`."""
        indices = np.asarray(indices, np.int32)
        steps, batch = indices.shape
        if self.xla_graph is None or batch != self.chunk_shape[1]:
            return self.graph(x, y, indices, steps)
        if steps > self.chunk_shape[0]:
            raise ValueError(f"a chunk of {steps} steps exceeds chunk_shape {self.chunk_shape}")
        padded = np.zeros(self.chunk_shape, np.int32)
        padded[:steps] = indices
        losses, correct = self.xla_graph(x, y, padded, steps)
        return losses[:steps], correct[:steps]

    def _run(self, x, y, indices, steps):
        self.traces += 1
        size = tf.shape(indices)[0]  # static under XLA: the padded chunk's row count

        def step(i, losses, correct):
            loss, hits = self.source.train_step(tf.gather(x, indices[i]), tf.gather(y, indices[i]))
            return i + 1, losses.write(i, tf.cast(loss, tf.float32)), correct.write(i, hits)

        _, losses, correct = tf.while_loop(
            lambda i, *_: i < steps,
            step,
            (0, tf.TensorArray(tf.float32, size=size), tf.TensorArray(tf.int32, size=size)),
        )
        return losses.stack(), correct.stack()


def train_loop(source, data, config: LoopConfig, verbose=1, extra_metrics=None):
    """Train with `source`'s gradients; save the run into `config.out` and return its metrics."""
    check_training_data(data, config.batch_size)
    (x_train, y_train), (x_test, y_test) = data
    n = len(x_train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    x, y = tf.constant(x_train), tf.constant(y_train)
    steps = CompiledSteps(
        source,
        x.shape[1],
        y.shape[1],
        config.jit_compile,
        chunk_shape=(config.steps_per_call, config.batch_size),
    )
    identity = {"trainer": source.name, "samples": n, **source.settings}
    ckpt = RunCheckpoint(config, source, identity=identity)
    epoch, step = ckpt.restore_or_start(fresh=config.fresh)
    if (epoch, step) != (0, 0) and verbose:
        print(f"Resuming from {ckpt.manager.latest_checkpoint}: epoch {epoch + 1}, step {step}")

    train_seconds = 0.0
    while epoch < config.epochs:
        perm = epoch_permutation(config.seed, epoch, n)
        bar = keras.utils.Progbar(
            steps_per_epoch, verbose=verbose, stateful_metrics=["loss", "accuracy"]
        )
        if verbose:
            print(f"Epoch {epoch + 1}/{config.epochs}")
        start = time.perf_counter()
        for first, indices in epoch_chunks(perm, config.batch_size, step, config.steps_per_call):
            losses, correct = (t.numpy() for t in steps.run(x, y, indices))
            bad = np.flatnonzero(~np.isfinite(losses))
            if bad.size:
                raise NonFiniteLoss(
                    f"loss became {losses[bad[0]]} at epoch {epoch + 1}, step {first + bad[0] + 1}"
                    f"; stopped without saving, last good checkpoint kept in {ckpt.directory}"
                )
            step = first + len(losses)
            loss_mean, accuracy = ckpt.accumulate(losses, correct, indices.shape[1])
            bar.update(step, values=[("loss", loss_mean), ("accuracy", accuracy)])
            if step < steps_per_epoch and ckpt.due(epoch, step):
                _check_finite_state(source, epoch, step, ckpt.directory)
                ckpt.save(epoch, step)
        train_seconds += time.perf_counter() - start
        _check_finite_state(source, epoch, step, ckpt.directory)
        ckpt.end_epoch(epoch)
        epoch, step = epoch + 1, 0
        ckpt.save(epoch, step)

    model = source.model()
    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    metrics = {
        "trainer": source.name,
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "train_samples": n,
        "train_seconds": round(train_seconds, 3),
        "history": ckpt.history(),
        "traces": steps.traces,
        "speed": {
            "steps_per_call": config.steps_per_call,
            "jit_compile": config.jit_compile,
            "fused": source.settings.get("fused", False),
        },
        **(extra_metrics or {}),
    }
    metrics = runs.save_run(config.out, model, metrics)
    ckpt.finish()
    return metrics


def _check_finite_state(source, epoch, step, directory):
    """Refuse to checkpoint NaN or Inf: a step's update can break the weights after its loss
    (computed before the update) was still finite."""
    for v in [*source.variables, *source.state]:
        if not np.isfinite(v.numpy()).all():
            raise NonFiniteLoss(
                f"weights became non-finite by epoch {epoch + 1}, step {step}; stopped without "
                f"saving, last good checkpoint kept in {directory}"
            )
