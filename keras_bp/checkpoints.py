"""Checkpoints of the custom loop: resume after a kill exactly where the last save left off.

A checkpoint holds the weights, the optimizer's state, the position `(epoch, step)`, the running
sums of the epoch in progress and the finished epochs' metrics. The shuffle order needs nothing
more: it is a function of `(seed, epoch)`, and the seed is part of the run's identity, kept in
`checkpoints/run.json` and checked before anything is restored.

Files are written by `tf.train.CheckpointManager`, which updates its index only after the data
files are complete, so `latest_checkpoint` never names a half-written checkpoint.
"""

import json
import math
import shutil

import numpy as np
import tensorflow as tf

from keras_bp import atomic
from keras_bp.errors import UsageError


class RunCheckpoint:
    """Checkpointing and the per-epoch bookkeeping that must survive a resume.

    Args:
        config: a `LoopConfig` (out, epochs, batch_size, seed, checkpoint_every).
        source: the gradient source; its `variables` and `state` are saved.
        identity: what else must match for a checkpoint to be resumed (trainer, samples).
    """

    def __init__(self, config, source, identity):
        self.directory = config.out / "checkpoints"
        self.every = config.checkpoint_every
        self.identity = {
            **identity,
            "seed": config.seed,
            "batch_size": config.batch_size,
            "epochs": config.epochs,
        }
        self.steps_per_epoch = math.ceil(identity["samples"] / config.batch_size)
        self.position = tf.Variable([0, 0], dtype=tf.int64)  # (epoch, step)
        self.running = tf.Variable(tf.zeros(3, tf.float64))  # Σ loss·batch, Σ correct, Σ batch
        self.epochs = tf.Variable(tf.zeros((config.epochs, 2), tf.float64))  # (loss, accuracy)
        self.checkpoint = tf.train.Checkpoint(
            variables=list(source.variables),
            state=list(source.state),
            position=self.position,
            running=self.running,
            epochs=self.epochs,
        )
        self.manager = None
        self._saved_at = 0

    def restore_or_start(self, fresh=False):
        """Resume from the latest checkpoint of the same run; return `(epoch, step)`."""
        identity_file = self.directory / "run.json"
        if fresh and self.directory.exists():
            shutil.rmtree(self.directory)
        if identity_file.exists():
            saved = json.loads(identity_file.read_text())
            if saved != self.identity:
                diff = ", ".join(
                    f"{k} {saved.get(k)} vs {v}"
                    for k, v in self.identity.items()
                    if saved.get(k) != v
                )
                raise UsageError(
                    f"{self.directory} holds checkpoints of another run ({diff}); "
                    "pass --fresh to start over, or choose another --out"
                )
        else:
            atomic.write_json(identity_file, self.identity)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=2)
        if self.manager.latest_checkpoint:
            try:
                self.checkpoint.restore(self.manager.latest_checkpoint).assert_consumed()
            except (AssertionError, ValueError, tf.errors.OpError) as e:
                raise UsageError(
                    f"cannot resume from {self.manager.latest_checkpoint} "
                    f"({str(e).strip().splitlines()[0][:160]}); pass --fresh to start over"
                ) from None
        epoch, step = (int(v) for v in self.position.numpy())
        self._saved_at = epoch * self.steps_per_epoch + step
        return epoch, step

    def due(self, epoch, step):
        position = epoch * self.steps_per_epoch + step
        return self.every > 0 and position - self._saved_at >= self.every

    def finish(self):
        """The run is saved: drop its checkpoints, so the same command trains anew."""
        shutil.rmtree(self.directory, ignore_errors=True)

    def save(self, epoch, step):
        self.position.assign([epoch, step])
        self.manager.save()
        self._saved_at = epoch * self.steps_per_epoch + step

    def accumulate(self, losses, correct, batch_size):
        """Add a chunk's per-step losses and hit counts; return the epoch's running means."""
        sums = self.running.numpy() + [
            float(np.sum(losses, dtype=np.float64)) * batch_size,
            float(np.sum(correct)),
            len(losses) * batch_size,
        ]
        self.running.assign(sums)
        return sums[0] / sums[2], sums[1] / sums[2]

    def end_epoch(self, epoch):
        loss_sum, correct, seen = self.running.numpy()
        self.epochs[epoch].assign([loss_sum / seen, correct / seen])
        self.running.assign(tf.zeros(3, tf.float64))

    def history(self):
        done = self.epochs.numpy()[: int(self.position.numpy()[0])]
        return {"loss": done[:, 0].tolist(), "accuracy": done[:, 1].tolist()}
