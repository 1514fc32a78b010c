"""The seed's recipe, exactly: `model.fit(epochs=5, batch_size=128)`, then `evaluate`.

Two guards ride along as callbacks (`keras_bp.fit_guards`); neither changes a number the recipe
computes: resume after a kill via `keras.callbacks.BackupAndRestore`, and a stop with a clear
error, before anything is saved, when the loss or the weights become NaN or Inf.
"""

import shutil
import time
from pathlib import Path

import keras

from keras_bp import runs
from keras_bp.cli import TrainConfig
from keras_bp.data import check_training_data, load_mnist, preprocess
from keras_bp.fit_guards import EpochLog, StopOnNonFinite
from keras_bp.model import build_model


def mnist_arrays(train_samples=None):
    """MNIST after the seed's preprocessing: `((x_train, y_train), (x_test, y_test))`."""
    (x_train, y_train), (x_test, y_test) = load_mnist()
    if train_samples is not None:
        x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    return preprocess(x_train, y_train), preprocess(x_test, y_test)


def backup_dir(out) -> Path:
    """Where `train_fit` keeps what a resume needs; deleted once the run is saved."""
    return Path(out) / "fit_backup"


def train_fit(
    config: TrainConfig,
    data=None,
    verbose=1,
    fresh=False,
    extra_metrics=None,
    learning_rate=None,
    speed=None,
):
    """Train the seed's model with `model.fit`; save and return `(model, metrics)`.

    Resumes from the backup in `config.out` if a previous run with the same settings was killed.

    Args:
        config: epochs, batch size, seed and output directory.
        data: preprocessed `((x_train, y_train), (x_test, y_test))`; MNIST by default.
        verbose: Keras's progress display (1: progress bar, 0: silent).
        fresh: delete the backup in `config.out` and start over.
        extra_metrics: more entries for `metrics.json`, such as `{"deterministic": True}`.
        learning_rate: replaces rmsprop's default 1e-3 (a float or a schedule); the seed's
            recipe leaves it alone.
        speed: options that change how fit executes, not what it computes
            (`steps_per_execution`, `jit_compile`, `fused`); by default Keras's own.

    Raises:
        NonFiniteLoss: the loss or the weights became NaN or Inf; nothing was saved.
    """
    (x_train, y_train), (x_test, y_test) = data if data is not None else mnist_arrays()
    check_training_data(((x_train, y_train), (x_test, y_test)), config.batch_size)
    backup = backup_dir(config.out)
    if fresh:
        shutil.rmtree(backup, ignore_errors=True)
    identity = {
        "trainer": "fit",
        "samples": len(x_train),
        "seed": config.seed,
        "batch_size": config.batch_size,
        "epochs": config.epochs,
        # XLA and the fused kernel change the last bits: resuming across them would not end
        # bit-identical, so a backup made with other speed options is refused.
        "speed": speed or {},
    }
    log = EpochLog(backup / "run.json", identity)  # refuses another run's backup

    # The same seed gives the same initial weights as `keras_bp.gradients.make_source`.
    keras.utils.set_random_seed(config.seed)
    model = build_model(**(speed or {}))
    if learning_rate is not None:
        model.optimizer.learning_rate = learning_rate
    callbacks = [
        StopOnNonFinite(backup),
        log,
        keras.callbacks.BackupAndRestore(
            backup / "keras", double_checkpoint=True, delete_checkpoint=False
        ),
    ]

    start = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        verbose=verbose,
        callbacks=callbacks,
    )
    train_seconds = time.perf_counter() - start

    test_loss, test_accuracy = model.evaluate(x_test, y_test, verbose=0)
    metrics = {
        "trainer": "fit",
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "train_samples": len(x_train),
        "train_seconds": round(train_seconds, 3),
        # 0 for a run from scratch; k when the first k epochs came from a backup.
        "resumed_from_epoch": config.epochs if log.first_epoch is None else log.first_epoch,
        "history": log.history(config.epochs),
        "speed": speed or {},
        **(extra_metrics or {}),
    }
    metrics = runs.save_run(config.out, model, metrics)
    shutil.rmtree(backup, ignore_errors=True)
    return model, metrics
