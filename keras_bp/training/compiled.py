"""The compiled form of the training loop's inner `for batch` loop: many steps per graph call.

`keras_bp.reference` runs one Python iteration per batch. Here a chunk of batches runs as one
`tf.while_loop` in one `tf.function` call, each step gathering its batch from the dataset held
as tensors, and `keras_bp.training.loop` drives the chunks. A test holds the two to the same
weights.
"""

import numpy as np
import tensorflow as tf

from keras_bp.gradients import GradientSource, count_correct, train_step


def step_signature(num_features, num_classes):
    """The compiled steps' arguments `(x, y, indices, steps)`, every shape open but the widths:
    full and partial chunks share one graph."""
    return [
        tf.TensorSpec([None, num_features], tf.float32),
        tf.TensorSpec([None, num_classes], tf.float32),
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([], tf.int32),
    ]


class CompiledSteps:
    """`run(x, y, indices)`: `train_step` over the batches `x[indices[i]]`, in-graph.

    Without XLA, traced once: every shape is left open in the signature, so full and partial
    chunks share one graph. `traces` counts the Python traces. The loop is an explicit
    `tf.while_loop` and autograph is off: the hand-written backprop has no Python control flow
    on tensors, so converting it would only add tracing time.

    With `xla`, XLA compiles once per input shape. So chunks of full batches are padded to
    `chunk_shape = (steps_per_call, batch_size)` and run by one XLA graph with the step count as
    an argument, and any other chunk (the epoch's final partial batch, one step) runs in the
    graph without XLA: one compile per run, two traces.
    """

    def __init__(
        self, source: GradientSource, num_features, num_classes, xla=False, chunk_shape=None
    ):
        if xla and chunk_shape is None:
            raise ValueError("xla needs chunk_shape=(steps_per_call, batch_size)")
        self.source = source
        self.traces = 0
        self.chunk_shape = tuple(chunk_shape) if xla else None
        signature = step_signature(num_features, num_classes)
        self.graph = tf.function(self._run, input_signature=signature, autograph=False)
        self.evaluate_graph = tf.function(
            self._evaluate, input_signature=signature[:2], autograph=False
        )
        self.xla_graph = None
        if xla:
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

    def evaluate(self, x, y):
        """`(loss, accuracy)` of the current weights on all of `x`, `y`, in one forward pass."""
        loss, correct = self.evaluate_graph(x, y)
        return float(loss), int(correct) / len(x)

    def _evaluate(self, x, y):
        loss, scores = self.source.forward(x, y)
        return loss, count_correct(y, scores)

    def _run(self, x, y, indices, steps):
        self.traces += 1
        size = tf.shape(indices)[0]  # static under XLA: the padded chunk's row count

        def step(i, losses, correct):
            loss, hits = train_step(self.source, tf.gather(x, indices[i]), tf.gather(y, indices[i]))
            return i + 1, losses.write(i, tf.cast(loss, tf.float32)), correct.write(i, hits)

        _, losses, correct = tf.while_loop(
            lambda i, *_: i < steps,
            step,
            (0, tf.TensorArray(tf.float32, size=size), tf.TensorArray(tf.int32, size=size)),
        )
        return losses.stack(), correct.stack()
