"""The recipe: `model.fit(x_train, y_train, epochs=5, batch_size=128)`, then `evaluate`.

`fit` gets the batches the arrays would give, in a new order each epoch fixed by `(seed,
epoch)` (`keras_bp.training.fit_input`), as the unseeded published recipe shuffles; `keras_shuffle`
hands it the arrays themselves. Guards ride along as callbacks (`keras_bp.training.fit_guards`);
none changes a number the recipe computes: resume after a kill via
`keras.callbacks.BackupAndRestore`, a stop with a clear error, before anything is saved, when the
loss or the weights become NaN or Inf, and a log of every epoch with the test set evaluated after
it. Options add Keras's `EarlyStopping` (`keras_bp.training.early_stopping`) and `TensorBoard`
(`keras_bp.training.summaries`).
"""

import contextlib
import dataclasses

import keras

from keras_bp.config import FitConfig, steps_per_epoch
from keras_bp.gradients import tensorflow_initial_weights
from keras_bp.model import build_model
from keras_bp.runtime.errors import UsageError
from keras_bp.runtime.walltime import WallClock
from keras_bp.training import distribute, runs
from keras_bp.training.early_stopping import AlreadyStopped, ResumableEarlyStopping
from keras_bp.training.fit_backup import BackupDigests, verify_backup
from keras_bp.training.fit_guards import EpochLog, StopOnNonFinite, StopOnSignal
from keras_bp.training.fit_input import EpochOrder
from keras_bp.training.runlog import start_run
from keras_bp.training.summaries import EpochSummaries


def train_fit(config: FitConfig, data=None, verbose=1, extra_metrics=None, clock=None):
    """Train the tutorial's model with `model.fit`; save the run into `config.out`.

    Resumes from the backup in `config.out` if a run with the same identity was killed.

    Args:
        config: every setting of the run (`keras_bp.config.FitConfig`); its defaults are the
            recipe as published.
        data: preprocessed `((x_train, y_train), (x_test, y_test))`; MNIST by default.
        verbose: Keras's progress display (1: progress bar, 2: a line per epoch, 0: silent).
        extra_metrics: more entries for `metrics.json`, such as the thread counts.
        clock: a `keras_bp.runtime.walltime.WallClock` to add this run's phases to (setup, training
            with its per-epoch evaluation and backups, evaluation, saving); `metrics.json` gets
            its `wall_seconds`.

    Returns:
        `(model, metrics)`: the trained Keras model and what was written to `metrics.json`.

    Raises:
        UsageError: `config.out` holds the resume state of another run, or another process
            is training into it.
        Interrupted: SIGINT or SIGTERM arrived; the last finished epoch's backup is kept.
        NonFiniteLoss: the loss or the weights became NaN or Inf; nothing was saved.
    """
    clock = clock or WallClock()
    if keras.backend.backend() != config.backend:  # KERAS_BACKEND is read at Keras's import
        raise UsageError(
            f"backend {config.backend!r}: this process runs Keras on {keras.backend.backend()!r}"
        )
    with start_run(config, data) as (data, log, stop):
        return _train_fit(config, data, log, stop, verbose, extra_metrics, clock)


def _train_fit(config, data, log, stop, verbose, extra_metrics, clock):
    x_train, y_train = data.train

    # The same seed gives the same initial weights as `keras_bp.gradients.make_source`.
    keras.utils.set_random_seed(config.seed)
    strategy = distribute.strategy_for(config)  # None: one device
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = build_model(
            optimizer=config.optimizer,
            learning_rate=config.learning_rate,
            speed=_capped(config.speed, steps_per_epoch(len(x_train), config.batch_size)),
        )
    if config.backend != "tensorflow":  # each backend draws its own numbers from one seed
        model.set_weights(tensorflow_initial_weights(model))
    backup, manifest = log.directory / "keras", log.directory / "keras.sha256.json"
    verify_backup(backup, manifest)  # before BackupAndRestore reads it
    summaries = None
    callbacks = [StopOnSignal(stop, log.directory), StopOnNonFinite(log.directory)]
    if config.tensorboard:
        tensorboard = str(config.tensorboard)
        callbacks.append(
            keras.callbacks.TensorBoard(tensorboard, histogram_freq=1, write_graph=False)
        )
        summaries = EpochSummaries(config.tensorboard, runs=["test"])
    epoch_log = EpochLog(
        log,
        config.epochs,
        steps_per_epoch(len(x_train), config.batch_size),
        data.test,
        summaries,
        verbose,
    )
    callbacks.append(epoch_log)
    early_stopping = None
    if config.early_stopping:
        early_stopping = ResumableEarlyStopping(config.early_stopping, log)
        callbacks.append(early_stopping)
    callbacks += [
        keras.callbacks.BackupAndRestore(backup, double_checkpoint=True, delete_checkpoint=False),
        BackupDigests(backup, manifest),
    ]

    # The recipe's `fit(x_train, y_train, epochs=5, batch_size=128)`, in a new order each epoch.
    if config.keras_shuffle:  # Keras's own shuffle: seeded, one order repeated every epoch
        inputs = {"x": x_train, "y": y_train, "batch_size": config.batch_size}
    else:
        order = EpochOrder(x_train, y_train, config.batch_size, config.seed)
        inputs = {"x": order.dataset, "shuffle": False}  # shuffled already
        callbacks.insert(0, order)
    clock.lap("setup")
    try:
        model.fit(
            **inputs,
            epochs=config.epochs,
            validation_data=data.validation,
            verbose=verbose,
            callbacks=callbacks,
        )
    except AlreadyStopped as stopped:  # resumed after early stopping had ended the run
        model.set_weights(stopped.best_weights)
    clock.lap("training")

    test_loss, test_accuracy = model.evaluate(*data.test, verbose=0)
    clock.lap("evaluation")
    metrics = runs.run_metrics(
        config,
        log,
        test_loss,
        test_accuracy,
        epoch_log.resumed_at,
        early_stopping and early_stopping.summary(),
        {"distribution": distribute.describe(strategy), **(extra_metrics or {})},
    )
    metrics = runs.save_run(config.out, model, metrics, clock)
    if summaries:
        summaries.close()
    log.finish()
    clock.lap("saving")
    return model, metrics


def _capped(speed, steps):
    """`speed` with `steps_per_execution` at most an epoch's `steps`: beyond them Keras counts,
    and prints, `--steps-per-execution` steps an epoch. The updates are the same."""
    return dataclasses.replace(speed, steps_per_call=min(speed.steps_per_call, steps))
