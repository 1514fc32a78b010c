"""The custom loop's checkpoints: resume after a kill exactly where the last save left off.

A checkpoint holds what the loop hands it (the weights, the optimizer's state, the running totals
of the epoch in progress) and the position `(epoch, step)` it belongs to. The shuffle order needs
nothing more: it is a function of `(seed, epoch)`, and the run's identity (`keras_bp.runlog`) is
checked before anything is restored.

Files are written by `tf.train.CheckpointManager`, which updates its index only after the data
files are complete, so `latest_checkpoint` never names a half-written checkpoint.
"""

import tensorflow as tf

from keras_bp.errors import UsageError


class RunCheckpoint:
    """Saves and restores `state` with the loop's position.

    Args:
        directory: where the checkpoints go.
        state: `{name: variable or list of variables}`, everything a resume needs.
        steps_per_epoch: steps in one epoch, to count positions across epochs.
        every: `due` after at least this many steps since the last save; 0: never mid-epoch.
    """

    def __init__(self, directory, state: dict, steps_per_epoch: int, every: int):
        self.directory = directory
        self.steps_per_epoch = steps_per_epoch
        self.every = every
        self.position = tf.Variable([0, 0], dtype=tf.int64)  # (epoch, step)
        self.checkpoint = tf.train.Checkpoint(position=self.position, **state)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=2)
        self._saved_at = 0

    def restore(self):
        """Restore the latest checkpoint, if any; return its `(epoch, step)`, `(0, 0)` if none."""
        latest = self.manager.latest_checkpoint
        if latest:
            try:
                self.checkpoint.restore(latest).assert_consumed()
            except (AssertionError, ValueError, tf.errors.OpError) as e:
                raise UsageError(
                    f"cannot resume from {latest} ({str(e).strip().splitlines()[0][:160]}); "
                    "pass --fresh to start over"
                ) from None
        epoch, step = (int(v) for v in self.position.numpy())
        self._saved_at = epoch * self.steps_per_epoch + step
        return epoch, step

    def due(self, epoch, step):
        position = epoch * self.steps_per_epoch + step
        return self.every > 0 and position - self._saved_at >= self.every

    def save(self, epoch, step):
        self.position.assign([epoch, step])
        self.manager.save()
        self._saved_at = epoch * self.steps_per_epoch + step
