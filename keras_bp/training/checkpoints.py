"""The custom loop's checkpoints: resume after a kill exactly where the last save left off.

A checkpoint holds what the loop hands it (the weights, the optimizer's state, the running totals
of the epoch in progress) and the position `(epoch, step)` it belongs to. The shuffle order needs
nothing more: it is a function of `(seed, epoch)`, and the run's identity
(`keras_bp.training.runlog`) is checked before anything is restored.

Files are written by `tf.train.CheckpointManager`, which updates its index only after the data
files are complete, so `latest_checkpoint` never names a half-written checkpoint. A save the
machine refuses (a full disk, a read-only directory) removes what it had half-written and stops
the run in one line naming the last good checkpoint, which a rerun resumes from.
"""

import re
import shutil
import sys
from pathlib import Path

import tensorflow as tf

from keras_bp.runtime.errors import SaveFailed, UsageError, write_failure


class RunCheckpoint:
    """Saves and restores `state` with the loop's position.

    Args:
        directory: where the checkpoints go.
        state: `{name: variable or list of variables}`, everything a resume needs.
        steps_per_epoch: steps in one epoch, to count positions across epochs.
        every: `due` after at least this many steps since the last save; 0: never mid-epoch.
        restore_from: where `restore` reads; `directory` by default.
    """

    def __init__(self, directory, state: dict, steps_per_epoch: int, every: int, restore_from=None):
        self.directory = directory
        self.restore_from = Path(restore_from or directory)
        self.steps_per_epoch = steps_per_epoch
        self.every = every
        self.position = tf.Variable([0, 0], dtype=tf.int64)  # (epoch, step)
        self.checkpoint = tf.train.Checkpoint(position=self.position, **state)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=2)
        self.restored = None  # the checkpoint `restore` resumed from
        self._saved_at = 0
        self.last_saved = None  # `(epoch, step)` of the newest checkpoint on disk

    def restore(self):
        """Restore the newest intact checkpoint; return its `(epoch, step)`, `(0, 0)` if none.

        A checkpoint whose files are missing, cut short or fail TensorFlow's checksums is
        skipped with a one-line warning naming it, and the one before it is tried.

        Raises:
            UsageError: there are checkpoints, and none of them is intact.
        """
        damaged = []
        for path in self._candidates():
            try:
                _read_every_tensor(path)  # before any variable is touched
                self.checkpoint.restore(str(path)).assert_consumed()
            except (AssertionError, ValueError, IndexError, OSError, tf.errors.OpError):
                damaged.append(path.name)
                print(f"warning: skipping damaged checkpoint {path}", file=sys.stderr)
                continue
            self.restored = path
            epoch, step = (int(v) for v in self.position.numpy())
            self._saved_at = epoch * self.steps_per_epoch + step
            self.last_saved = epoch, step
            return epoch, step
        if damaged:
            raise UsageError(
                f"no intact checkpoint in {self.restore_from} ({', '.join(damaged)} damaged); "
                "pass --fresh to start over"
            )
        return 0, 0

    def _candidates(self):
        """Every checkpoint in the directory, newest first: the index file `checkpoint` names
        the newest, but a damaged or deleted index must not hide the others."""
        numbered = {}
        for index in self.restore_from.glob("ckpt-*.index"):
            number = index.name[len("ckpt-") : -len(".index")]
            if number.isdigit():
                numbered[int(number)] = index.with_suffix("")
        return [numbered[n] for n in sorted(numbered, reverse=True)]

    def due(self, epoch, step):
        position = epoch * self.steps_per_epoch + step
        return self.every > 0 and position - self._saved_at >= self.every

    def save(self, epoch, step):
        """Save the state at `(epoch, step)` (0-based epoch, steps done in it).

        Raises:
            SaveFailed: the machine refused the write; the newest earlier checkpoint is kept.
        """
        self.position.assign([epoch, step])
        try:
            self.manager.save()
        except (tf.errors.OpError, OSError) as e:
            reason = write_failure(e)
            if reason is None:
                raise
            self._remove_unfinished()
            remedy = (
                "free some space" if "space" in reason or "quota" in reason else "make it writable"
            )
            raise SaveFailed(
                f"cannot save a checkpoint at {describe(epoch, step)} in {self.directory} "
                f"({reason}); stopped: {self.kept()}; {remedy} and rerun the same command to "
                "resume"
            ) from None
        self._saved_at = epoch * self.steps_per_epoch + step
        self.last_saved = epoch, step

    def kept(self):
        """What a stop leaves to resume from, for its message."""
        if self.last_saved is None:
            return "no checkpoint had been saved yet"
        return (
            f"the last good checkpoint ({describe(*self.last_saved)}) is kept in {self.directory}"
        )

    def _remove_unfinished(self):
        """Delete the files of a checkpoint the manager never finished (it lists the others)."""
        finished = {Path(p).name for p in self.manager.checkpoints}
        for path in Path(self.directory).glob("ckpt-*"):
            prefix = re.match(r"ckpt-\d+", path.name)[0]
            if prefix in finished:
                continue
            if path.is_dir() and path.name.endswith("_temp"):
                shutil.rmtree(path, ignore_errors=True)
            elif path.is_file():
                path.unlink(missing_ok=True)


def describe(epoch, step):
    """`(1, 0)` is "the end of epoch 1"; `(1, 40)` is "epoch 2, step 40"."""
    return f"the end of epoch {epoch}" if step == 0 and epoch else f"epoch {epoch + 1}, step {step}"


def _read_every_tensor(path):
    """Read every tensor of the checkpoint at `path`: TensorFlow checks each one's CRC32C as
    it reads, so a damaged file fails here, before the live variables are restored from it."""
    reader = tf.train.load_checkpoint(str(path))
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)
