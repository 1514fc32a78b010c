"""One run identity and one epoch log for both resume paths: `fit`'s backup, the loop's checkpoints.

A run keeps what a resume needs in `OUT/resume/`: `run.json` (this module) beside the trainer's own
state (`keras/`, Keras's `BackupAndRestore`, for `fit`; `checkpoints/` for the loop). `run.json`
holds the run's identity, every setting that changes the result, and each finished epoch's
metrics and seconds. A rerun with any other setting is refused in one line before anything is
restored; `--fresh` deletes the state first, and a finished run deletes it. Only what keras_bp wrote
is ever deleted: a `resume/` that holds anything else is refused (`keras_bp.runtime.resume_files`).

Both trainers log an epoch before they save the state that follows it. A kill between the two
leaves a log one epoch ahead of the state; the resumed run redoes that epoch and overwrites its
entry, so the history always describes the weights that were saved.
"""

import contextlib
import dataclasses
import json
import numbers
import os
import sys
from pathlib import Path

from keras_bp.config import replica_shortfall, validation_samples
from keras_bp.data import check_training_data, data_fingerprint, data_for_run, hold_out
from keras_bp.runtime import atomic, cluster, resume_files
from keras_bp.runtime.errors import InputError, SaveFailed, UsageError, write_failure
from keras_bp.runtime.interrupts import stop_requests
from keras_bp.runtime.runlock import RunLock


def resume_dir(out) -> Path:
    """Where a run in `out` keeps what a resume needs; deleted once the run is saved."""
    return Path(out) / "resume"


@contextlib.contextmanager
def start_run(config, data=None):
    """What every trainer does before it trains, in this order; yields `(data, log, stop)`.

    It resolves the data, holds out early stopping's validation images (`data` is a
    `keras_bp.data.RunData`) and checks it (so bad input creates nothing), takes `config.out`
    for this process (`keras_bp.runtime.runlock`), turns Ctrl-C and SIGTERM into stop requests
    (`keras_bp.runtime.interrupts`), and opens the run's `RunLog`, which refuses another run's state
    before TensorFlow starts its devices.
    """
    data = data_for_run(data, config.train_samples)
    (x_train, y_train), _ = data
    identity = run_identity(config, data_fingerprint(x_train, y_train), len(x_train))
    held_out = validation_samples(len(x_train), config.early_stopping)
    if config.early_stopping and not held_out:
        raise InputError(
            f"--early-stopping holds out a sixth of the training images: {len(x_train)} leave "
            "none; train on at least 6"
        )
    data = hold_out(data, held_out)
    check_training_data(data, config.batch_size)
    check_replicas(config, len(data.train[0]))
    check_writable(config)
    with RunLock(config.out), stop_requests() as stop:
        say_if_replacing(config.out)
        stop.phase = "setup"  # until the trainer's first step: a signal exits at once
        try:
            yield data, RunLog(config.out, identity, config.fresh), stop
        except Exception as e:  # a full disk, a read-only directory: one line, and what survives
            reason = write_failure(e)
            if reason is None or isinstance(e, (SaveFailed, UsageError, InputError)):
                raise
            raise SaveFailed(_cannot_save(config, reason, e)) from None


def check_replicas(config, samples: int):
    """Refuse replicas that some batch of an epoch cannot feed, the partial last one included."""
    short = replica_shortfall(cluster.planned(config)["replicas"], samples, config.batch_size)
    if short:
        raise InputError(short)


def check_writable(config):
    """Refuse, before training, a resume state or TensorBoard directory that cannot be
    written: a save mid-run would fail."""
    directory = resume_dir(config.out)
    resume_files.check(directory)
    if config.tensorboard is not None and config.tensorboard.exists():
        if not config.tensorboard.is_dir():
            raise UsageError(f"--tensorboard {config.tensorboard} is a file, not a directory")
    parts = [directory, *(directory / name for name in ("checkpoints", "keras", "best"))]
    for path in [config.out, *parts, config.tensorboard]:
        if path is not None and path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(
                f"{path} is read-only: keras_bp could not save its state there; make it "
                "writable, or choose another --out"
            )


def _cannot_save(config, reason, error):
    """What a failed save says: where, why, and what a rerun resumes from."""
    where = getattr(error, "filename", None)
    directory = resume_dir(config.out)
    if config.trainer == "fit":
        saved = (directory / "keras" / "latest.weights.h5").exists()
        kept = f"the backup of the last finished epoch is kept in {directory / 'keras'}"
    else:
        saved = any((directory / "checkpoints").glob("ckpt-*.index"))
        kept = f"the last good checkpoint is kept in {directory / 'checkpoints'}"
    if not saved:
        kept = "nothing had been saved to resume from yet"
    return (
        f"cannot save{f' {where}' if where else ''} ({reason}); stopped: {kept}, and no "
        f"metrics.json or model.keras was written; {_remedy(reason)} and rerun the same command "
        "to resume"
    )


def _remedy(reason):
    return "free some space" if "space" in reason or "quota" in reason else "make it writable"


def say_if_replacing(out):
    """One line when this run is about to replace a finished run in `out`: a run started from
    Python with the default `out` (`keras_bp.config.DEFAULT_OUT`) never silently replaces the
    run of the `make` target that writes there."""
    out = Path(out)
    if (out / "metrics.json").exists() and not resume_dir(out).exists():
        print(
            f"{out} holds a finished run: this run replaces its metrics.json and model.keras "
            "(another --out, or out= from Python, keeps it)",
            flush=True,
        )


def run_identity(config, data_fingerprint: str, samples: int) -> dict:
    """Every setting of `config` that changes the trained weights, plus the data it trains on."""
    return {
        "trainer": config.trainer,
        "samples": samples,
        "data": data_fingerprint,
        "seed": config.seed,
        "batch_size": config.batch_size,
        "epochs": config.epochs,
        "optimizer": config.optimizer,
        "learning_rate": _describe(config.resolved_learning_rate),
        # Op determinism picks other kernels for some ops: other last bits.
        "deterministic": config.deterministic,
        "speed": dataclasses.asdict(config.speed),
        "early_stopping": config.early_stopping,
        "shuffle": shuffle(config),
        # Replicas sum their gradients in another order than one device: other last bits.
        "distribution": cluster.planned(config),
        # Each backend has its own kernels: the same run, other last bits.
        "backend": config.backend,
    }


def shuffle(config) -> str:
    """`"per-epoch"`: a new order each epoch from `(seed, epoch)`, every trainer's default;
    `"keras"`: `fit`'s own shuffle, one order repeated every epoch (`FitConfig.keras_shuffle`)."""
    return "keras" if getattr(config, "keras_shuffle", False) else "per-epoch"


class RunLog:
    """The identity of a run and its finished epochs, in `resume_dir(out)/run.json`.

    Args:
        out: the run's output directory.
        identity: `run_identity(...)` of the run about to start.
        fresh: delete any earlier resume state in `out` first.

    Raises:
        UsageError: `out` holds the resume state of a run with another identity.
    """

    def __init__(self, out, identity: dict, fresh=False):
        self.directory = resume_dir(out)
        self.path = self.directory / "run.json"
        # As it will read back from run.json: tuples become lists, odd values strings.
        self.identity = json.loads(json.dumps(identity, default=str))
        resume_files.check(self.directory)  # never resume from, or delete, what it did not write
        if fresh:
            resume_files.remove(self.directory)
        self.epochs = []
        if self.path.exists() and self._state_exists():
            saved = self._read()
            if saved["identity"] != self.identity:
                raise UsageError(
                    f"{self.directory} holds the resume state of another run "
                    f"({_differences(saved['identity'], self.identity)}); rerun with its settings "
                    "to resume it, pass --fresh to start over, or choose another --out"
                )
            self.epochs = saved["epochs"]
        else:  # written before any state, so no state is ever without its identity
            self._warn_if_state_was_lost(fresh)
            self._write()

    def _state_exists(self):
        """Whether the trainer saved anything to resume from beside `run.json`. A run that
        stopped before its first save (a divergence in epoch 1, say) leaves nothing to protect."""
        return any(p != self.path for p in self.directory.iterdir())

    def _warn_if_state_was_lost(self, fresh):
        """A log of finished epochs with no state beside it: the state was deleted."""
        if fresh or not self.path.exists():
            return
        try:
            logged = len(json.loads(self.path.read_text())["epochs"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if logged:
            print(
                f"warning: {self.directory} logs {logged} finished epoch{'s' * (logged > 1)} but "
                "holds nothing to resume from; starting over",
                file=sys.stderr,
            )

    def _read(self):
        try:
            saved = json.loads(self.path.read_text())
            if not isinstance(saved.get("identity"), dict) or not isinstance(saved["epochs"], list):
                raise ValueError("not a run log")
            _check_epochs(saved["epochs"])
            return saved
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise UsageError(
                f"{self.path} is unreadable ({e}); pass --fresh to start over"
            ) from None

    def record_epoch(self, epoch: int, metrics: dict, seconds: float):
        """Log finished `epoch` (0-based): its metrics and training seconds; drops later entries."""
        if epoch > len(self.epochs):
            raise ValueError(f"epoch {epoch} logged before epoch {len(self.epochs)}")
        entry = {**{k: float(v) for k, v in metrics.items()}, "seconds": float(seconds)}
        self.epochs = [*self.epochs[:epoch], entry]
        self._write()

    def adopt(self, path, epochs: int):
        """Take the first `epochs` finished epochs from another log of the same run (a worker's
        from the chief's `run.json`, whose checkpoint it resumes from)."""
        saved = json.loads(Path(path).read_text())
        _check_epochs(saved["epochs"])
        if saved["identity"] != self.identity or len(saved["epochs"]) < epochs:
            raise UsageError(f"{path} does not log the {epochs} epochs its checkpoint holds")
        self.epochs = saved["epochs"][:epochs]
        self._write()

    def history(self, epochs: int) -> dict:
        """`{metric: [value per epoch]}` for the first `epochs` epochs."""
        done = self.epochs[:epochs]
        keys = [k for k in (done[0] if done else {}) if k != "seconds"]
        return {k: [e[k] for e in done] for k in keys}

    def train_seconds(self, epochs: int) -> float:
        """Training seconds of the first `epochs` epochs, summed over every resumed segment.

        An epoch redone after a kill counts once: its entry holds the run that finished it.
        """
        return sum(self.epoch_seconds(epochs))

    def epoch_seconds(self, epochs: int) -> list:
        """Each of the first `epochs` epochs' training seconds; the first includes tracing and
        compiling."""
        return [e["seconds"] for e in self.epochs[:epochs]]

    def _write(self):
        atomic.write_json(self.path, {"identity": self.identity, "epochs": self.epochs})

    def finish(self):
        """The run is saved: drop its resume state, so the same command trains anew. Only what
        keras_bp wrote is deleted (`keras_bp.runtime.resume_files`)."""
        resume_files.remove(self.directory)


def _check_epochs(epochs: list):
    """The epoch log's schema: each entry `{metric: number, ..., "seconds": number}`, every
    entry with the same metrics. A ValueError names the first entry that is not."""
    keys = None
    for i, entry in enumerate(epochs):
        numbers_only = isinstance(entry, dict) and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in entry.values()
        )
        if not numbers_only or "seconds" not in entry or (keys is not None and set(entry) != keys):
            raise ValueError(
                f"epoch {i + 1} of its log is {json.dumps(entry)[:80]}, expected "
                '{"loss": number, ..., "seconds": number} with the metrics of every other epoch'
            )
        keys = set(entry)


def resumed_at(epoch: int, step: int, epochs: int, steps_per_epoch: int):
    """`metrics.json`'s `resumed_at` for a run restored at 0-based `(epoch, step)`: `None` for a
    run from scratch, else the 1-based epoch and the steps of it already done. A run killed
    after its last epoch, before it was saved, resumed after every step of its last epoch."""
    if (epoch, step) == (0, 0):
        return None
    if epoch >= epochs:
        return {"epoch": epochs, "step": steps_per_epoch}
    return {"epoch": epoch + 1, "step": step}


def resume_message(epoch: int, step: int, epochs: int, where) -> str:
    """What a resumed run prints before it trains: `epoch` is 0-based, `step` within it."""
    if epoch >= epochs:  # killed after the last epoch, before the run was saved
        return f"resuming: all {epochs} epochs trained, evaluating and saving (from {where})"
    return f"resuming: epoch {epoch + 1} of {epochs}, step {step} (from {where})"


def _describe(learning_rate):
    """A JSON value for a learning rate: the number, or a schedule's class and config (a
    schedule without `get_config` is known by its class alone)."""
    if isinstance(learning_rate, numbers.Real):
        return float(learning_rate)
    get_config = getattr(learning_rate, "get_config", None)
    try:
        config = get_config() if get_config else None
    except NotImplementedError:
        config = None
    return {"schedule": type(learning_rate).__qualname__, "config": config}


def _differences(saved: dict, current: dict) -> str:
    """`seed 5 vs 9, speed.xla False vs True`: each setting that differs, saved value first."""
    parts = []
    for key in [*current, *(k for k in saved if k not in current)]:
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            parts += [
                f"{key}.{k} {old.get(k)} vs {new.get(k)}"
                for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)
            ]
        elif old != new:
            parts.append(f"{key} {old} vs {new}")
    return ", ".join(parts)
