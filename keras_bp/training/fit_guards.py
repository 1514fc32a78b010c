"""Guards for `model.fit` (`keras_bp.training.recipe`): resume after a kill, stop on NaN or Inf.

Neither changes a number the recipe computes.

Resuming after a kill. `keras.callbacks.BackupAndRestore` backs up the weights, the optimizer's
state and the epoch count into `OUT/resume/keras/` at the end of every epoch; rerunning the same
command restores them and continues with the next epoch. Keras backs up at epoch ends only, so
an epoch that was interrupted is redone from its start. `EpochLog` keeps the run's identity and
every finished epoch's metrics in `OUT/resume/run.json` (`keras_bp.training.runlog`, shared with the
loop), so another run's backup is refused and a resumed run's history is whole. Keras writes its
backup in place; with `double_checkpoint=True` it keeps the previous epoch's copy and falls back
to it if a kill left the new weights file unreadable.

By default Keras deletes its backup as soon as `fit` completes (`delete_checkpoint=True`). Here
it is kept until `model.keras` and `metrics.json` are written, then deleted, so a kill during
evaluation or saving costs no training.

Under `--deterministic` a resumed run ends with weights bit-identical to an uninterrupted one
(`tests/test_fit_resume.py` kills a real run mid-epoch to check). It holds because each epoch's
order is a function of `(seed, epoch)` (`keras_bp.training.fit_input`), so a restarted process sees
the order an uninterrupted run would have seen. With `--keras-shuffle` it holds too: seeded, Keras's
TensorFlow backend shuffles every epoch in the same order.

Non-finite loss. `StopOnNonFinite` raises `keras_bp.runtime.errors.NonFiniteLoss`, naming the epoch
and step, at the first NaN or Inf loss. Raising, rather than `keras.callbacks.TerminateOnNaN`'s
default `stop_training = True`, skips the epoch end, so `BackupAndRestore` never backs up the
diverged weights over the last good epoch, and `model.keras` and `metrics.json` are not written.
"""

import math
from time import perf_counter

import keras
import numpy as np

from keras_bp.runtime.errors import Interrupted, NonFiniteLoss
from keras_bp.training.runlog import resume_message, resumed_at


class StopOnSignal(keras.callbacks.Callback):
    """Raise `Interrupted` after the batch during which SIGINT or SIGTERM arrived.

    Keras backs up at epoch ends only, so the last finished epoch's backup is what a resume
    starts from; the epoch in progress is redone.

    Args:
        request: the `keras_bp.runtime.interrupts.StopRequest` of the run.
        backup: the backup directory, for the message.
    """

    def __init__(self, request, backup):
        super().__init__()
        self.request, self.backup = request, backup
        self.epoch = 0

    def on_train_begin(self, logs=None):
        self.request.phase = "training"  # a signal now stops after the batch in progress

    def on_train_end(self, logs=None):
        self.request.phase = "finishing"  # evaluating and saving: quicker to finish than to stop

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.request.requested is None:
            return
        if self.epoch:
            kept = (
                f"kept the backup of epoch {self.epoch} in {self.backup}; rerun the same "
                f"command to resume at epoch {self.epoch + 1}"
            )
        else:
            kept = "no epoch had finished, so there is no backup; rerun the command to start over"
        raise Interrupted(self.request.requested, kept)


class StopOnNonFinite(keras.callbacks.Callback):
    """Raise `NonFiniteLoss` at the first NaN or Inf loss, before anything is saved.

    At each epoch end it also checks the weights and the optimizer's state, before the backup is
    written: an epoch's last update can make them non-finite while the loss, computed before
    that update, was still finite. Place it before `BackupAndRestore` in the callback list.
    """

    def __init__(self, backup):
        super().__init__()
        self.backup = backup
        self.epoch = self.step = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.step = epoch, 0

    def on_train_batch_end(self, batch, logs=None):
        self.step = batch + 1
        # Keras logs the epoch's running mean: it turns NaN with the first NaN batch.
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self._stop(f"loss became {loss}")

    def on_epoch_end(self, epoch, logs=None):
        state = self.model.get_weights() + [v.numpy() for v in self.model.optimizer.variables]
        if not all(np.isfinite(w).all() for w in state):
            self._stop("weights became non-finite")

    def _stop(self, what):
        where = f"at epoch {self.epoch + 1}, step {self.step}"
        kept = (
            f"the backup of epoch {self.epoch} is kept in {self.backup}"
            if self.epoch
            else "no epoch had finished, so there is no backup"
        )
        raise NonFiniteLoss(f"{what} {where}; stopped without saving, {kept}")


class EpochLog(keras.callbacks.Callback):
    """Logs each finished epoch's metrics and seconds into the run's `RunLog`, with the test
    set's loss and accuracy evaluated then; says where a resumed run continues, before it trains.

    Place it before `BackupAndRestore`: an epoch logged but not backed up before a kill is
    redone on resume, and its entry overwritten.

    Args:
        log: the run's `keras_bp.training.runlog.RunLog`.
        epochs: the run's epoch count.
        steps_per_epoch: `fit`'s batches per epoch.
        test: `(x_test, y_test)`, evaluated after each epoch (outside its seconds; `evaluate`
            changes no weight and draws no random number).
        summaries: a `keras_bp.training.summaries.EpochSummaries` for the test run, or `None`.
        verbose: print the resume line (as `fit`'s own `verbose`).
    """

    def __init__(self, log, epochs, steps_per_epoch, test, summaries=None, verbose=1):
        super().__init__()
        self.log, self.epochs, self.verbose = log, epochs, verbose
        self.steps_per_epoch = steps_per_epoch
        self.test, self.summaries = test, summaries
        self.first_epoch = None
        self._tick = None

    @property
    def resumed_at(self):
        """`metrics.json`'s `resumed_at` (`keras_bp.training.runlog.resumed_at`)."""
        return resumed_at(self.first_epoch or 0, 0, self.epochs, self.steps_per_epoch)

    def on_epoch_begin(self, epoch, logs=None):
        self._tick = perf_counter()
        if self.first_epoch is None:
            self.first_epoch = epoch
            if epoch and self.verbose:
                print(resume_message(epoch, 0, self.epochs, self.log.directory))

    def on_epoch_end(self, epoch, logs=None):
        seconds = perf_counter() - self._tick  # training, and validation if any
        test_loss, test_accuracy = self.model.evaluate(*self.test, verbose=0)
        metrics = {**(logs or {}), "test_loss": test_loss, "test_accuracy": test_accuracy}
        self.log.record_epoch(epoch, metrics, seconds)
        if self.summaries:
            self.summaries.write(epoch, metrics)

    def on_train_end(self, logs=None):
        if self.first_epoch is None:  # every epoch was backed up before the kill
            self.first_epoch = self.epochs
            if self.verbose:
                print(resume_message(self.epochs, 0, self.epochs, self.log.directory))
