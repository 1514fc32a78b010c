"""TensorBoard event files, with the tags Keras's `TensorBoard` callback writes.

`fit` writes with `keras.callbacks.TensorBoard`: into `DIR/train` the epoch's `epoch_loss`,
`epoch_accuracy`, `epoch_learning_rate` and a histogram of every weight (`{weight.path}/histogram`),
into `DIR/validation` the validation loss and accuracy, twice: as `epoch_loss` per epoch and
as `evaluation_loss_vs_iterations` at the optimizer's step count. `EpochSummaries` writes the
same tags for the loop, and the test set's loss and accuracy into `DIR/test` for all three
trainers. `epoch_*` values take the 0-based epoch as their step, as Keras writes them.

    tensorboard --logdir runs/custom_loop/tensorboard
"""

import tensorflow as tf

# metrics.json's history keys by TensorBoard run: the prefix each has in the history
RUNS = {"train": "", "validation": "val_", "test": "test_"}


class EpochSummaries:
    """One writer per TensorBoard run under `logdir`.

    Args:
        logdir: the directory given to `tensorboard --logdir`.
        runs: the runs to write: `"train"`, `"validation"`, `"test"`.
    """

    def __init__(self, logdir, runs=tuple(RUNS)):
        self.writers = {run: tf.summary.create_file_writer(str(logdir / run)) for run in runs}

    def write(self, epoch: int, metrics: dict, weights=None, learning_rate=None, iterations=None):
        """Write epoch `epoch`'s metrics (`loss`, `val_loss`, `test_accuracy`, …) into their
        runs; with `weights` (`{path: array}`), a histogram of each, the learning rate, and
        with `iterations` (training steps so far) the validation metrics against it."""
        for run, writer in self.writers.items():
            prefix = RUNS[run]
            with writer.as_default():
                for name in ("loss", "accuracy"):
                    if prefix + name in metrics:
                        tf.summary.scalar(f"epoch_{name}", metrics[prefix + name], step=epoch)
                if run == "validation" and iterations is not None and prefix + "loss" in metrics:
                    for name in ("loss", "accuracy"):
                        value = metrics[prefix + name]
                        tf.summary.scalar(f"evaluation_{name}_vs_iterations", value, iterations)
                if run == "train" and learning_rate is not None:
                    tf.summary.scalar("epoch_learning_rate", learning_rate, step=epoch)
                if run == "train" and weights:
                    for path, w in weights.items():
                        tf.summary.histogram(f"{path}/histogram", w, step=epoch)
            writer.flush()

    def close(self):
        for writer in self.writers.values():
            writer.close()
