"""The custom training loop, written once for both gradient sources (`keras_bp.gradients`).

Read `keras_bp.reference` first: it is this loop in the keras-io guide's shape, one batch per
Python iteration. This is the same loop made fast and safe: the batches of an epoch run in
compiled chunks (`keras_bp.training.compiled`); between chunks it updates the progress bar, stops on
a non-finite loss, and checkpoints (`keras_bp.training.checkpoints`), so a kill loses nothing.
"""

import contextlib
import dataclasses
from time import perf_counter

import keras
import numpy as np
import tensorflow as tf

from keras_bp.config import LoopConfig, steps_per_epoch
from keras_bp.data.batches import epoch_chunks, epoch_permutation
from keras_bp.gradients import make_source
from keras_bp.runtime import cluster
from keras_bp.runtime.errors import Interrupted, NonFiniteLoss
from keras_bp.runtime.walltime import PhaseTimes, WallClock, startup_seconds
from keras_bp.training import distribute, runs
from keras_bp.training.checkpoints import RunCheckpoint
from keras_bp.training.compiled import CompiledSteps, epoch_input
from keras_bp.training.distribute import DistributedSteps
from keras_bp.training.early_stopping import BestWeights, replay
from keras_bp.training.runlog import resume_dir, resume_message, resumed_at, start_run
from keras_bp.training.summaries import EpochSummaries


def train_loop(
    config: LoopConfig, data=None, verbose=1, extra_metrics=None, clock=None, epoch_copy=True
):
    """Train with `config.gradients`' gradients; save the run into `config.out`.

    Resumes from the checkpoints in `config.out` if a run with the same identity was killed.

    Args:
        config: every setting of the run (`keras_bp.config.LoopConfig`).
        data: preprocessed `((x_train, y_train), (x_test, y_test))`; MNIST by default.
        verbose: 1 for a progress bar, 2 for a line per epoch, 0 for silence.
        extra_metrics: more entries for `metrics.json`, such as the thread counts.
        clock: a `keras_bp.runtime.walltime.WallClock` to add this run's phases to (setup, trace,
            training, evaluation, checkpoints, saving); `metrics.json` gets its `wall_seconds`.
        epoch_copy: each epoch, put the training set in the epoch's order once and slice each
            batch from that copy; `False`: gather each step's batch (`compiled.epoch_input`).
            The same batches either way; `make bench` times both.

    Returns:
        `(model, metrics)`: the trained Keras model and what was written to `metrics.json`.

    Raises:
        UsageError: `config.out` holds the resume state of another run, or another process
            is training into it.
        Interrupted: SIGINT or SIGTERM arrived; a checkpoint of the step it stopped at was saved.
        NonFiniteLoss: the loss or the weights became NaN or Inf; the last good checkpoint is kept.
    """
    chief_out = config.out
    config = dataclasses.replace(config, out=cluster.process_out(config))
    clock = clock or WallClock()
    with start_run(config, data) as (data, log, stop):
        return _train_loop(
            config, data, log, stop, verbose, extra_metrics, chief_out, clock, epoch_copy
        )


def _train_loop(config, data, log, stop, verbose, extra_metrics, chief_out, clock, epoch_copy):
    x_train, y_train = data.train
    n = len(x_train)
    strategy = distribute.strategy_for(config)  # None: one device
    with strategy.scope() if strategy else contextlib.nullcontext():
        source = make_source(
            config.gradients,
            seed=config.seed,
            optimizer=config.optimizer,
            learning_rate=config.learning_rate,
            fused=config.speed.fused,
        )
    x, y = tf.constant(x_train), tf.constant(y_train)
    if strategy:
        steps = DistributedSteps(source, strategy, x.shape[1], y.shape[1], config.batch_size)
    else:
        steps = CompiledSteps(
            source,
            x.shape[1],
            y.shape[1],
            xla=config.speed.xla,
            chunk_shape=(config.speed.steps_per_call, config.batch_size),
        )
    per_epoch = steps_per_epoch(n, config.batch_size)
    totals = EpochTotals()
    ckpt = RunCheckpoint(
        log.directory / "checkpoints",
        {
            "variables": source.variables,
            "optimizer": source.optimizer_variables,
            "epoch_totals": totals.variable,
        },
        per_epoch,
        config.checkpoint_every,
        # Under multi-worker, every worker restores what the chief saved (TensorFlow's pattern:
        # the chief writes the real checkpoint, the others write their own and never read it).
        restore_from=resume_dir(chief_out) / "checkpoints",
    )
    epoch, step = (0, 0) if config.fresh else ckpt.restore()  # a worker: not the chief's old one
    if epoch > len(log.epochs):  # a worker killed after the chief saved, before it logged
        log.adopt(resume_dir(chief_out) / "run.json", epoch)
    resumed = resumed_at(epoch, step, config.epochs, per_epoch)
    if resumed and verbose:
        print(resume_message(epoch, step, config.epochs, ckpt.restored))
    patience = config.early_stopping
    rule = replay(patience, log.history(epoch).get("val_loss", [])) if patience else None
    best = BestWeights(log.directory / "best")
    is_chief = config.out == chief_out  # under multi-worker, only the chief writes events
    summaries = None
    if config.tensorboard and is_chief:
        runs_written = ["train", "test"] + (["validation"] if data.validation is not None else [])
        summaries = EpochSummaries(config.tensorboard, runs_written)
    clock.lap("setup")

    timed = PhaseTimes()  # evaluation and checkpoints, inside the epochs' wall time
    trained, this_epoch = [], 0.0  # the seconds of each epoch this process trained (not resumed)
    tick = perf_counter()
    stop.phase = "training"  # a signal now stops at the next safe point, with a checkpoint
    while epoch < config.epochs and not (rule and rule.stopped):
        perm = epoch_permutation(config.seed, epoch, n)
        xs = ys = None  # the last epoch's copy goes before this one's is made
        xs, ys, order = epoch_input(x, y, perm, copy=epoch_copy)  # a function of (seed, epoch)
        bar = keras.utils.Progbar(per_epoch, verbose=verbose, stateful_metrics=["loss", "accuracy"])
        if verbose:
            print(f"Epoch {epoch + 1}/{config.epochs}")
        for first, indices in epoch_chunks(
            order, config.batch_size, step, config.speed.steps_per_call
        ):
            losses, correct = (t.numpy() for t in steps.run(xs, ys, indices))
            _check_finite_losses(losses, epoch, first, ckpt)
            step = first + len(losses)
            now = perf_counter()
            loss, accuracy = totals.add(losses, correct, indices.shape[1], seconds=now - tick)
            this_epoch += now - tick
            tick = now
            bar.update(step, values=[("loss", loss), ("accuracy", accuracy)])
            if step == per_epoch:
                break  # the epoch's end below saves this step
            if stop.requested or ckpt.due(epoch, step):
                _check_finite_state(source, epoch, step, ckpt)
                with timed("checkpoints"):
                    ckpt.save(epoch, step)
                _stop_if_requested(stop, f"epoch {epoch + 1} of {config.epochs}, step {step}", ckpt)
        _check_finite_state(source, epoch, step, ckpt)
        trained.append(this_epoch)
        this_epoch = 0.0
        with timed("evaluation"):
            metrics = _epoch_metrics(totals, steps, data)
        log.record_epoch(epoch, metrics, totals.seconds())
        with timed("checkpoints"):
            if rule and rule.update(epoch, metrics["val_loss"]):
                best.save(epoch, [v.numpy() for v in source.variables])
        if summaries:
            summaries.write(
                epoch,
                metrics,
                _weights_by_path(source),
                config.resolved_learning_rate,
                iterations=(epoch + 1) * per_epoch,
            )
        totals.reset()
        epoch, step = epoch + 1, 0
        with timed("checkpoints"):
            ckpt.save(epoch, step)
            if rule:
                best.keep_only(rule.best_epoch)
        if verbose == 1:
            held_out = {k: v for k, v in metrics.items() if k.startswith(("val_", "test_"))}
            print(" - ".join(f"{k}: {v:.4f}" for k, v in held_out.items()))
        if epoch < config.epochs:  # after the last epoch, finishing is quicker than stopping
            _stop_if_requested(stop, f"the end of epoch {epoch} of {config.epochs}", ckpt)
        tick = perf_counter()

    stop.phase = "finishing"  # evaluating and saving: quicker to finish than to stop
    if rule:  # as Keras's restore_best_weights: end with the best epoch's weights
        for v, w in zip(source.variables, best.load(rule.best_epoch), strict=True):
            v.assign(w)
        if verbose and rule.stopped:
            print(f"Early stopping after epoch {rule.stopped_epoch + 1}; ", end="")
        if verbose:
            print(f"kept the weights of epoch {rule.best_epoch + 1}, the lowest val_loss")
    clock.lap("training")
    clock.move("training", "trace", startup_seconds(trained))
    for phase, seconds in timed.seconds.items():
        clock.move("training", phase, seconds)
    # The test set by the compiled forward pass each epoch used: no second graph to trace for
    # Keras's evaluate (about 1 s), which also fails under MultiWorkerMirroredStrategy
    # (keras-team/keras#20585).
    test_loss, test_accuracy = steps.evaluate(*data.test)
    clock.lap("evaluation")
    model = source.export_model()
    extra = {
        "traces": steps.traces,
        "distribution": distribute.describe(strategy),
        **(extra_metrics or {}),
    }
    metrics = runs.run_metrics(
        config, log, test_loss, test_accuracy, resumed, rule and rule.summary(), extra
    )
    metrics = runs.save_run(config.out, model, metrics, clock)
    if summaries:
        summaries.close()
    log.finish()
    clock.lap("saving")
    return model, metrics


def _epoch_metrics(totals, steps, data):
    """The epoch's training loss and accuracy, then the validation and test sets' evaluated
    after it (outside its seconds; no weight changes)."""
    metrics = dict(zip(("loss", "accuracy"), totals.means(), strict=True))
    for prefix, part in (("val_", data.validation), ("test_", data.test)):
        if part is not None:
            loss, accuracy = steps.evaluate(*part)
            metrics.update({prefix + "loss": loss, prefix + "accuracy": accuracy})
    return metrics


def _weights_by_path(source):
    """`{path: weight}` with the paths of the Keras model's weights, as Keras's TensorBoard names
    its histograms (`sequential/dense/kernel`)."""
    return dict(zip(source.weight_paths, (v.numpy() for v in source.variables), strict=True))


class EpochTotals:
    """Running sums of the epoch in progress, checkpointed with the weights, so an epoch that
    was resumed reports the loss and accuracy of all its steps and all its seconds."""

    def __init__(self):
        # Σ loss·batch, Σ correct, Σ batch, seconds
        self.variable = tf.Variable(tf.zeros(4, tf.float64))

    def add(self, losses, correct, batch_size, seconds):
        """Add a chunk's per-step losses and hit counts; return the epoch's running means."""
        sums = self.variable.numpy() + [
            float(np.sum(losses, dtype=np.float64)) * batch_size,
            float(np.sum(correct)),
            len(losses) * batch_size,
            seconds,
        ]
        self.variable.assign(sums)
        return sums[0] / sums[2], sums[1] / sums[2]

    def means(self):
        """The epoch's mean loss and accuracy so far."""
        loss_sum, correct, seen, _ = self.variable.numpy()
        return loss_sum / seen, correct / seen

    def seconds(self):
        return float(self.variable.numpy()[3])

    def reset(self):
        self.variable.assign(tf.zeros(4, tf.float64))


def _stop_if_requested(stop, where, ckpt):
    """After a save: stop here if Ctrl-C or SIGTERM has come."""
    if stop.requested:
        raise Interrupted(
            stop.requested,
            f"saved a checkpoint at {where}, in {ckpt.directory}; rerun the same command to resume",
        )


def _check_finite_losses(losses, epoch, first, ckpt):
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise NonFiniteLoss(
            f"loss became {losses[bad[0]]} at epoch {epoch + 1}, step {first + bad[0] + 1}; "
            f"stopped without saving, {_kept(ckpt)}"
        )


def _check_finite_state(source, epoch, step, ckpt):
    """Refuse to checkpoint NaN or Inf: a step's update can break the weights after its loss
    (computed before the update) was still finite."""
    for v in [*source.variables, *source.optimizer_variables]:
        if not np.isfinite(v.numpy()).all():
            raise NonFiniteLoss(
                f"weights became non-finite by epoch {epoch + 1}, step {step}; stopped without "
                f"saving, {_kept(ckpt)}"
            )


def _kept(ckpt):
    if ckpt.manager.latest_checkpoint is None:
        return "and no checkpoint had been saved yet"
    return f"last good checkpoint kept in {ckpt.directory}"
