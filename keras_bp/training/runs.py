"""What every trainer writes into its output directory: `metrics.json` and `model.keras`.

`run_metrics` builds the metrics of every trainer from one list of keys, `RUN_KEYS`. Both files
are written atomically, so a kill mid-write never leaves a file a rerun would trust.
"""

import platform
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_bp.config import validation_samples
from keras_bp.model import weights_digest
from keras_bp.runtime import atomic
from keras_bp.training.runlog import RunLog

# The metrics.json keys every trainer writes; a trainer adds its own beside them (the loop's
# `traces`, the thread counts of `--deterministic`). `distribution` comes from the trainer, which
# holds the strategy (`keras_bp.training.distribute.describe`).
RUN_KEYS = (
    "trainer",
    "backend",
    "test_accuracy",
    "test_loss",
    "epochs",
    "batch_size",
    "seed",
    "train_samples",
    "optimizer",
    "learning_rate",
    "deterministic",
    "speed",
    "distribution",
    "shuffle",
    "validation_samples",
    "early_stopping",
    "history",
    "train_seconds",
    "epoch_seconds",
    "resumed_at",
    "weights_sha256",
    "versions",
)


def run_metrics(
    config, log: RunLog, test_loss, test_accuracy, resumed_at=None, early_stopping=None, extra=None
):
    """The metrics of a finished run, before `save_run` adds the digest and the versions.

    Args:
        config: the run's `FitConfig` or `LoopConfig`.
        log: the run's `RunLog`: its identity, history and seconds across resumes.
        resumed_at: `None` for a run that was never interrupted, else `{"epoch": e, "step": s}`
            where the last resume continued: epoch `e` (1-based) after its first `s` steps.
        early_stopping: `{"patience", "best_epoch", "stopped_epoch"}` (1-based epochs;
            `stopped_epoch` is `None` when all epochs ran), or `None` without early stopping.
        extra: trainer-specific entries (the loop's `traces`, the thread counts).
    """
    identity = log.identity
    return {
        "trainer": identity["trainer"],
        "backend": identity["backend"],
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "train_samples": identity["samples"],
        "optimizer": identity["optimizer"],
        "learning_rate": identity["learning_rate"],
        "deterministic": identity["deterministic"],
        "speed": identity["speed"],
        "shuffle": identity["shuffle"],
        "validation_samples": validation_samples(identity["samples"], config.early_stopping),
        "early_stopping": early_stopping,
        "history": log.history(config.epochs),
        "train_seconds": round(log.train_seconds(config.epochs), 3),
        "epoch_seconds": [round(s, 3) for s in log.epoch_seconds(config.epochs)],
        "resumed_at": resumed_at,
        **(extra or {}),
    }


def versions() -> dict:
    found = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }
    backend = keras.backend.backend()
    if backend != "tensorflow":  # the engine that ran the run
        found[backend] = sys.modules[backend].__version__
    return found


def save_run(out: Path, model: keras.Model, metrics: dict, clock=None) -> dict:
    """Save `model.keras` and `metrics.json` (with `weights_sha256` and versions) into `out`.

    With a `keras_bp.runtime.walltime.WallClock`, the model's saving is its `saving` lap, and
    `metrics.json` gets the clock's phases as `wall_seconds`.
    """
    out = Path(out)
    metrics = {**metrics, "weights_sha256": weights_digest(model), "versions": versions()}
    with atomic.atomic_path(out / "model.keras") as tmp:
        model.save(tmp)
    if clock is not None:
        clock.lap("saving")
        metrics["wall_seconds"] = clock.rounded()
    atomic.write_json(out / "metrics.json", metrics)
    return metrics


def markdown_table(headers, rows) -> str:
    """A GitHub-flavoured markdown table; cells are formatted with `str`."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
