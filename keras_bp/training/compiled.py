"""The compiled form of the training loop's inner `for batch` loop: many steps per graph call.

`keras_bp.reference` runs one Python iteration per batch, `x_train[batch]`. Here a chunk of
batches runs as one `tf.while_loop` in one `tf.function` call, and `keras_bp.training.loop`
drives the chunks. Each epoch the loop puts the training set into that epoch's order once
(`epoch_input`: one streaming pass over the data), so every batch is a run of consecutive rows of
that copy, which a step reads as a slice, without copying it. Given any other indices, each step
gathers its batch. Either way a step sees the same rows: a test holds the two to the same weights,
and another the compiled loop to the reference.
"""

import numpy as np
import tensorflow as tf

from keras_bp.data.batches import first_row
from keras_bp.gradients import GradientSource, count_correct, train_step


def epoch_input(x, y, perm, copy=True):
    """`(x, y, order)` for an epoch in the order `perm`: batch i is `x[order[i·B:(i+1)·B]]`.

    By default the epoch's copy `x[perm]`, `y[perm]`, gathered once, and `order = 0, 1, …, n−1`:
    every batch of it is a slice. `copy=False`: `x` and `y` as they are and `order = perm`, so
    each step gathers its batch from rows scattered over the whole training set (what the loop did
    before the copy; `make bench` times both). The same rows in the same order either way.
    """
    if not copy:
        return x, y, perm
    return tf.gather(x, perm), tf.gather(y, perm), np.arange(len(perm), dtype=np.int32)


def step_signature(num_features, num_classes):
    """The gathering steps' arguments `(x, y, indices, steps)`, every shape open but the widths:
    full and partial chunks share one graph."""
    return [
        tf.TensorSpec([None, num_features], tf.float32),
        tf.TensorSpec([None, num_classes], tf.float32),
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([], tf.int32),
    ]


def rows_signature(num_features, num_classes):
    """The slicing steps' arguments `(x, y, first, batch, steps)`: step i reads rows
    `[first + i·batch, first + (i+1)·batch)`."""
    scalar = tf.TensorSpec([], tf.int32)
    return [*step_signature(num_features, num_classes)[:2], scalar, scalar, scalar]


def batch_rows(x, y, first, batch):
    """Rows `[first, first + batch)` of `x` and `y`. TensorFlow's Slice returns a view of the
    buffer, not a copy, when the rows start and end on its alignment (a 784-float row always
    does; a one-hot row of 10 floats when `first` and `batch` divide by 8)."""
    return tf.slice(x, [first, 0], [batch, -1]), tf.slice(y, [first, 0], [batch, -1])


def while_steps(step, steps, size):
    """`(losses, correct)`: `step(i) -> (loss, hits)` for `i < steps` in one `tf.while_loop`,
    into arrays of `size` (at least `steps`; a constant under XLA).

    One iteration at a time: each step reads the weights the step before updated, so nothing
    in one can start early, and TensorFlow's default of 10 iterations in flight only costs the
    executor bookkeeping: 2–5% of the tape loop's time in interleaved A/Bs on 2 cores, nothing
    measurable for the manual loop's. The same ops in the same order: the same weights.
    """

    def body(i, losses, correct):
        loss, hits = step(i)
        return (
            i + 1,
            losses.write(i, tf.cast(loss, tf.float32)),
            correct.write(i, tf.cast(hits, tf.int32)),
        )

    _, losses, correct = tf.while_loop(
        lambda i, *_: i < steps,
        body,
        (0, tf.TensorArray(tf.float32, size=size), tf.TensorArray(tf.int32, size=size)),
        parallel_iterations=1,
    )
    return losses.stack(), correct.stack()


class CompiledSteps:
    """`run(x, y, indices)`: `train_step` over the batches `x[indices[i]]`, in-graph.

    Indices that number consecutive rows, as the loop's over `epoch_input`'s copy do, run in
    `rows_graph`: each step slices its batch. Any others run in `graph`: each step gathers it.

    Without XLA, each graph is traced once: every shape is left open in the signature, so full
    and partial chunks share one graph. `traces` counts the Python traces. The loop is an
    explicit `tf.while_loop` and autograph is off: the hand-written backprop has no Python
    control flow on tensors, so converting it would only add tracing time.

    With `xla`, XLA compiles once per input shape. So chunks of full batches run by one XLA graph
    with the step count as an argument, into arrays of `chunk_shape[0] = steps_per_call` (a
    gathering chunk's indices padded to `chunk_shape = (steps_per_call, batch_size)`), and any
    other chunk (the epoch's final partial batch, one step) runs in the graph without XLA: one
    compile per run, two traces.
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
        rows = rows_signature(num_features, num_classes)
        self.graph = tf.function(self._gathered, input_signature=signature, autograph=False)
        self.rows_graph = tf.function(self._sliced, input_signature=rows, autograph=False)
        self.evaluate_graph = tf.function(
            self._evaluate, input_signature=signature[:2], autograph=False
        )
        self.xla_graph = self.xla_rows_graph = None
        if xla:
            self.xla_graph = tf.function(
                self._gathered, input_signature=signature, jit_compile=True, autograph=False
            )
            # The batch and the arrays' length fixed: XLA compiles once per shape.
            self.xla_rows_graph = tf.function(
                lambda x, y, first, steps: self._sliced(
                    x, y, first, self.chunk_shape[1], steps, size=self.chunk_shape[0]
                ),
                input_signature=[*rows[:3], rows[4]],
                jit_compile=True,
                autograph=False,
            )

    def run(self, x, y, indices):
        """`(losses, correct)` of each step, for `indices` of shape `(steps, batch)`."""
        indices = np.asarray(indices, np.int32)
        steps, batch = indices.shape
        xla = self.xla_graph is not None and batch == self.chunk_shape[1]
        if xla and steps > self.chunk_shape[0]:
            raise ValueError(f"a chunk of {steps} steps exceeds chunk_shape {self.chunk_shape}")
        first = first_row(indices)  # None: the rows are not consecutive, so gather them
        if not xla and first is None:
            return self.graph(x, y, indices, steps)
        if not xla:
            return self.rows_graph(x, y, first, batch, steps)
        if first is None:
            padded = np.zeros(self.chunk_shape, np.int32)
            padded[:steps] = indices
            losses, correct = self.xla_graph(x, y, padded, steps)
        else:
            losses, correct = self.xla_rows_graph(x, y, first, steps)
        return losses[:steps], correct[:steps]

    def evaluate(self, x, y):
        """`(loss, accuracy)` of the current weights on all of `x`, `y`, in one forward pass."""
        loss, correct = self.evaluate_graph(x, y)
        return float(loss), int(correct) / len(x)

    def _evaluate(self, x, y):
        loss, scores = self.source.forward(x, y)
        return loss, count_correct(y, scores)

    def _gathered(self, x, y, indices, steps):
        self.traces += 1

        def step(i):
            return train_step(self.source, tf.gather(x, indices[i]), tf.gather(y, indices[i]))

        # Static under XLA: the padded chunk's row count.
        return while_steps(step, steps, size=tf.shape(indices)[0])

    def _sliced(self, x, y, first, batch, steps, size=None):
        self.traces += 1

        def step(i):
            return train_step(self.source, *batch_rows(x, y, first + i * batch, batch))

        return while_steps(step, steps, size=steps if size is None else size)
