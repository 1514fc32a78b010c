"""Early stopping on the validation loss: Keras's rule, for `fit` and the loop, across kills.

Training the recipe longer overfits: the training loss keeps falling while the loss on images
it never sees turns up. Early stopping watches that held-out loss after every epoch, stops once
it has not improved for `patience` epochs, and ends with the weights of its lowest point.

`fit` uses Keras's own `keras.callbacks.EarlyStopping(monitor="val_loss", patience=P,
restore_best_weights=True)`. The loop uses `Rule`, the same rule written out (Keras 3.15's
`EarlyStopping.on_epoch_end`, with `min_delta=0` and no baseline); a test feeds both the same
sequences of losses. Keras keeps its best weights in memory only, so a resumed run would forget
them: both trainers save them in `OUT/resume/best/` (`BestWeights`), and a resumed run replays
the logged validation losses (`replay`) to rebuild the rule's state.
"""

from pathlib import Path

import keras
import numpy as np

from keras_bp.runtime import atomic


class Rule:
    """Keras's early-stopping rule on a loss (lower is better).

    Args:
        patience: epochs without improvement before stopping.
    """

    def __init__(self, patience: int):
        self.patience = patience
        self.best = None  # the lowest loss so far; `None` before the first epoch
        self.best_epoch = 0  # 0-based
        self.wait = 0  # epochs since the last improvement
        self.stopped_epoch = None  # the epoch (0-based) after which training stops

    def update(self, epoch: int, loss: float) -> bool:
        """Take `epoch`'s validation loss; return whether its weights are the new best."""
        self.wait += 1
        if self.best is None or loss < self.best:  # False for NaN, as Keras's np.less
            self.best, self.best_epoch, self.wait = loss, epoch, 0
            return True
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
        return False

    @property
    def stopped(self) -> bool:
        return self.stopped_epoch is not None

    def summary(self) -> dict:
        """`metrics.json`'s `early_stopping`: 1-based epochs; `stopped_epoch` is `None` when
        training ran all its epochs."""
        stopped = None if self.stopped_epoch is None else self.stopped_epoch + 1
        return {
            "patience": self.patience,
            "best_epoch": self.best_epoch + 1,
            "stopped_epoch": stopped,
        }


def replay(patience: int, losses) -> Rule:
    """The rule's state after the logged validation `losses` of the epochs already trained."""
    rule = Rule(patience)
    for epoch, loss in enumerate(losses):
        if rule.stopped:
            break
        rule.update(epoch, loss)
    return rule


class BestWeights:
    """The best epoch's weights on disk, one file per epoch: `directory/epoch-K.npz`.

    A new best is saved before the epoch's checkpoint; older files are deleted only after it
    (`keep_only`), so whichever checkpoint a kill leaves, the file its replay names exists.
    """

    def __init__(self, directory):
        self.directory = Path(directory)

    def path(self, epoch: int) -> Path:
        return self.directory / f"epoch-{epoch}.npz"

    def save(self, epoch: int, weights):
        self.directory.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(self.path(epoch)) as tmp, open(tmp, "wb") as f:
            np.savez(f, *weights)

    def load(self, epoch: int) -> list:
        with np.load(self.path(epoch)) as saved:
            return [saved[f"arr_{i}"] for i in range(len(saved.files))]

    def keep_only(self, epoch: int):
        for p in self.directory.glob("epoch-*.npz"):
            if p != self.path(epoch):
                p.unlink()


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's `EarlyStopping(restore_best_weights=True)` on `val_loss`, for `fit`, which also
    saves its best weights and, on a resumed run, rebuilds its state from the run's log.

    Place it after `keras_bp.training.fit_guards.EpochLog` (which logs `val_loss`) and before
    `BackupAndRestore`.

    Args:
        patience: as Keras's.
        log: the run's `keras_bp.training.runlog.RunLog`.
    """

    def __init__(self, patience: int, log):
        super().__init__(monitor="val_loss", patience=patience, restore_best_weights=True)
        self.log = log
        self.store = BestWeights(log.directory / "best")
        self._first_epoch = True

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if not self._first_epoch:  # the last epoch's backup is written: older bests can go
            self.store.keep_only(self.best_epoch)
            return
        self._first_epoch = False
        if epoch and self._rebuild(epoch).stopped:
            # It had stopped the run; a kill came before the model was saved.
            raise AlreadyStopped(self.best_weights)

    def on_train_end(self, logs=None):
        if self._first_epoch:  # every epoch had been backed up before a kill: none ran
            self._rebuild(self.params["epochs"])
        super().on_train_end(logs)

    def _rebuild(self, epochs) -> Rule:
        """Take the state of the rule after the first `epochs` epochs, from the run's log."""
        rule = replay(self.patience, self.log.history(epochs)["val_loss"])
        self.best, self.best_epoch, self.wait = rule.best, rule.best_epoch, rule.wait
        self.best_weights = self.store.load(rule.best_epoch)
        if rule.stopped:
            self.stopped_epoch = rule.stopped_epoch
        return rule

    def on_epoch_end(self, epoch, logs=None):
        before = self.best_epoch if self.best_weights is not None else None
        super().on_epoch_end(epoch, logs)
        if self.best_weights is not None and self.best_epoch != before:
            self.store.save(self.best_epoch, self.best_weights)

    def summary(self) -> dict:
        """As `Rule.summary`; Keras's `stopped_epoch` is 0 unless it stopped (never at 0)."""
        stopped = self.stopped_epoch + 1 if self.stopped_epoch else None
        return {
            "patience": self.patience,
            "best_epoch": self.best_epoch + 1,
            "stopped_epoch": stopped,
        }


class AlreadyStopped(Exception):
    """A resumed `fit` found that early stopping had already ended the run."""

    def __init__(self, best_weights):
        super().__init__("early stopping had already ended this run")
        self.best_weights = best_weights
