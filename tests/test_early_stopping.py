"""Early stopping: Keras's rule written out, the same stop in every trainer, and across kills."""

import fcntl
import json

import keras
import numpy as np
import pytest
from conftest import Killed, die_after

from keras_bp.config import FitConfig, LoopConfig, Speed, validation_samples
from keras_bp.data import hold_out, preprocess
from keras_bp.training import runs
from keras_bp.training.checkpoints import RunCheckpoint
from keras_bp.training.compiled import CompiledSteps
from keras_bp.training.early_stopping import Rule, replay
from keras_bp.training.fit_guards import StopOnNonFinite
from keras_bp.training.loop import train_loop
from keras_bp.training.recipe import train_fit
from keras_bp.training.runlog import RunLog, resume_dir

NAN = float("nan")
# Validation losses, one per epoch.
SEQUENCES = {
    "improving": [5.0, 4.0, 3.0, 2.5, 2.0, 1.0],
    "flat": [1.0] * 7,
    "noisy": [3.0, 2.5, 2.7, 2.4, 2.6, 2.65, 2.3, 2.8, 2.9, 3.1, 2.2],
    "nan first": [NAN, 2.0, 1.0, 0.5, 0.4],
    "nan in the middle": [3.0, 2.0, NAN, 1.5, 1.8, 1.9, 2.0, 2.1],
    "increase from the start": [1.0, 2.0, 3.0, 4.0, 5.0],
}


def _keras_early_stopping(patience):
    """Keras's callback on a one-weight model whose weight will name the epoch it was set in."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    callback = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )
    model.stop_training = False  # as `fit` sets it before it trains
    callback.set_model(model)
    callback.on_train_begin()
    return model, callback


def _keras_run(patience, losses):
    """`(stopped epoch or None, epoch whose weights Keras ends with)`, 0-based, as `fit` would."""
    model, callback = _keras_early_stopping(patience)
    stopped = None
    for epoch, loss in enumerate(losses):
        model.set_weights([np.full((1, 1), epoch, "float32")])
        callback.on_epoch_end(epoch, {"val_loss": loss})
        if model.stop_training:
            stopped = epoch
            break
    callback.on_train_end()
    return stopped, int(model.get_weights()[0][0, 0])


def _rule_run(patience, losses):
    """As `_keras_run`, with `Rule`: the kept epoch is the last one `update` called a new best."""
    rule, kept = Rule(patience), None
    for epoch, loss in enumerate(losses):
        if rule.update(epoch, loss):
            kept = epoch
        if rule.stopped:
            break
    assert kept == rule.best_epoch
    return rule


@pytest.mark.parametrize("patience", [1, 2, 3])
@pytest.mark.parametrize("sequence", SEQUENCES)
def test_the_rule_stops_and_keeps_the_epoch_keras_does(sequence, patience):
    losses = SEQUENCES[sequence]
    stopped, kept = _keras_run(patience, losses)
    rule = _rule_run(patience, losses)
    assert (rule.stopped_epoch, rule.best_epoch) == (stopped, kept)
    assert rule.summary() == {
        "patience": patience,
        "best_epoch": kept + 1,
        "stopped_epoch": None if stopped is None else stopped + 1,
    }


def test_the_sequences_cover_a_stop_a_full_run_and_nan():
    """The comparison above is worth something only if Keras stops in some cases and not others."""
    outcomes = {name: _keras_run(2, losses) for name, losses in SEQUENCES.items()}
    assert outcomes["improving"] == (None, 5)
    assert outcomes["flat"] == (2, 0)  # equal is no improvement
    assert outcomes["noisy"] == (5, 3)
    assert outcomes["nan first"] == (2, 0)  # nothing is less than NaN: stuck at epoch 0
    assert outcomes["nan in the middle"] == (5, 3)
    assert outcomes["increase from the start"] == (2, 0)


@pytest.mark.parametrize("patience", [1, 2, 3])
@pytest.mark.parametrize("sequence", SEQUENCES)
def test_replay_rebuilds_the_state_keras_has_after_each_epoch(sequence, patience):
    """What a resumed run copies into Keras's callback (`best`, `best_epoch`, `wait`) is what
    the callback held when the run was killed, after any number of epochs."""
    losses = SEQUENCES[sequence]
    _, callback = _keras_early_stopping(patience)
    for epoch, loss in enumerate(losses):
        callback.on_epoch_end(epoch, {"val_loss": loss})
        rule = replay(patience, losses[: epoch + 1])
        np.testing.assert_equal(
            (rule.best, rule.best_epoch, rule.wait),
            (float(callback.best), callback.best_epoch, callback.wait),
        )
        assert rule.stopped == (callback.model.stop_training is True)
        if rule.stopped:
            break


@pytest.mark.parametrize("patience", [1, 2, 3])
@pytest.mark.parametrize("sequence", SEQUENCES)
def test_a_replayed_rule_continues_as_the_uninterrupted_one(sequence, patience):
    losses = SEQUENCES[sequence]
    whole = _rule_run(patience, losses)
    for cut in range(len(losses) + 1):
        rule = replay(patience, losses[:cut])
        for epoch in range(cut, len(losses)):
            if rule.stopped:
                break
            rule.update(epoch, losses[epoch])
        np.testing.assert_equal(vars(rule), vars(whole))


def test_replay_ignores_the_epochs_after_the_stop():
    rule = replay(2, [1.0, 2.0, 3.0, 0.5, 0.1])  # stopped after epoch 3; 0.5 was never seen
    assert (rule.stopped_epoch, rule.best_epoch, rule.best) == (2, 0, 1.0)


# End to end ----------------------------------------------------------------------------------

PATIENCE = 2
SETTINGS = {
    "epochs": 8,
    "batch_size": 32,
    "seed": 3,
    "learning_rate": 1e-3,
    "early_stopping": PATIENCE,
    "deterministic": True,
}
# 500 training images in batches of 32: 16 steps an epoch, the last one partial. The loop saves
# mid-epoch at steps 4, 8 and 12, and at every epoch end.
LOOP_SETTINGS = {"speed": Speed(4), "checkpoint_every": 4}


def overfitting_data():
    """A problem the recipe overfits within a few epochs: each class a sparse pattern of pixels,
    images a random part of their class's pattern plus random pixels, and half the training
    labels redrawn at random. Measured, for every trainer: the validation loss falls for three
    epochs (2.106, 1.970, 1.910), then rises (1.932, 1.969), so patience 2 stops after epoch 5.
    """
    rng = np.random.default_rng(1)
    n = 600 + 64  # 600 training images (100 of them held out as validation), 64 test images
    patterns = rng.random((10, 28, 28)) < 0.1
    labels = rng.integers(0, 10, size=n)
    on = patterns[labels] & (rng.random((n, 28, 28)) < 0.2) | (rng.random((n, 28, 28)) < 0.05)
    images = (on * rng.integers(128, 256, size=on.shape)).astype(np.uint8)
    noisy = labels.copy()
    redrawn = rng.random(n) < 0.5
    noisy[redrawn] = rng.integers(0, 10, size=redrawn.sum())
    return preprocess(images[:600], noisy[:600]), preprocess(images[600:], labels[600:])


DATA = overfitting_data()
VALIDATION = hold_out(DATA, validation_samples(600, PATIENCE)).validation


def _config(trainer, out, **changes):
    if trainer == "fit":
        return FitConfig(out=out, **{**SETTINGS, **changes})
    return LoopConfig(gradients=trainer, out=out, **{**SETTINGS, **LOOP_SETTINGS, **changes})


def _train(config):
    train = train_fit if config.trainer == "fit" else train_loop
    return train(config, DATA, verbose=0)[1]


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory, worker_id):
    """`uninterrupted(trainer)`: the metrics of a whole run of `SETTINGS`, saved into
    `uninterrupted.out(trainer)`.

    Each trainer's run is trained once per session, not once per xdist worker: the workers
    share it through their common temporary directory, a lock making the second one wait (the
    recipe in pytest-xdist's documentation for session fixtures).
    """
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent
    root = shared / "early_stopping_uninterrupted"
    root.mkdir(exist_ok=True)

    def run(trainer):
        out = run.out(trainer)
        with open(root / f"{trainer}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (out / "metrics.json").exists():
                _train(_config(trainer, out))
        return json.loads((out / "metrics.json").read_text())

    run.out = lambda trainer: root / trainer
    return run


def _loss_of_the_saved_model(out):
    model = keras.saving.load_model(out / "model.keras")
    return model.evaluate(*VALIDATION, verbose=0)[0]


@pytest.mark.parametrize("trainer", ["fit", "tape", "manual"])
def test_stops_after_patience_epochs_and_keeps_the_best_epochs_weights(trainer, uninterrupted):
    metrics = uninterrupted(trainer)
    val_loss = metrics["history"]["val_loss"]
    best = int(np.argmin(val_loss)) + 1
    assert metrics["early_stopping"] == {
        "patience": PATIENCE,
        "best_epoch": best,
        "stopped_epoch": best + PATIENCE,
    }
    assert 1 < best and best + PATIENCE < SETTINGS["epochs"]  # fell, then rose, then stopped
    assert len(val_loss) == len(metrics["history"]["test_loss"]) == best + PATIENCE
    assert metrics["validation_samples"] == len(VALIDATION[0]) == 100
    # The saved weights are the best epoch's, not the last's (their losses differ by > 0.01).
    assert abs(val_loss[-1] - val_loss[best - 1]) > 0.01
    saved = _loss_of_the_saved_model(uninterrupted.out(trainer))
    np.testing.assert_allclose(saved, val_loss[best - 1], rtol=1e-5)
    np.testing.assert_allclose(
        metrics["test_loss"], metrics["history"]["test_loss"][best - 1], rtol=1e-5
    )


@pytest.mark.parametrize("trainer", ["tape", "manual"])
def test_fit_and_the_loops_stop_alike_as_they_see_the_same_batches(trainer, uninterrupted):
    fit, loop = uninterrupted("fit"), uninterrupted(trainer)
    assert loop["early_stopping"] == fit["early_stopping"]
    for key in ("val_loss", "test_loss"):
        np.testing.assert_allclose(loop["history"][key], fit["history"][key], rtol=1e-5)


# Resumed -------------------------------------------------------------------------------------


def _assert_same_run(resumed, whole):
    assert resumed["early_stopping"] == whole["early_stopping"]
    assert resumed["history"] == whole["history"]
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    assert resumed["weights_sha256"] == whole["weights_sha256"]


def test_a_loop_killed_after_its_best_epoch_stops_as_the_uninterrupted_run(
    uninterrupted, tmp_path, monkeypatch
):
    config = _config("tape", tmp_path)
    with monkeypatch.context() as patch:
        saves = die_after(patch, RunCheckpoint, "save", lambda s: s[-1] == (3, 8))
        with pytest.raises(Killed):
            _train(config)
    assert saves[-1] == (3, 8)  # in epoch 4, after the best epoch 3
    assert sorted(p.name for p in (resume_dir(tmp_path) / "best").iterdir()) == ["epoch-2.npz"]

    resumed = _train(config)
    assert resumed["resumed_at"] == {"epoch": 4, "step": 8}
    _assert_same_run(resumed, uninterrupted("tape"))


@pytest.mark.slow  # fast: the loop's case above, and fit's kill before saving below
def test_fit_killed_after_its_best_epoch_stops_as_the_uninterrupted_run(
    uninterrupted, tmp_path, monkeypatch
):
    config = _config("fit", tmp_path)
    with monkeypatch.context() as patch:  # killed after 3 epochs of 16 steps and 5 steps more
        batches = die_after(patch, StopOnNonFinite, "on_train_batch_end", lambda b: len(b) == 53)
        with pytest.raises(Killed):
            _train(config)
    assert batches[-1][0] == 4  # step 5 of epoch 4, after the best epoch 3

    resumed = _train(config)
    assert resumed["resumed_at"] == {"epoch": 4, "step": 0}  # fit redoes the epoch
    _assert_same_run(resumed, uninterrupted("fit"))


def _kill_before_saving(config):
    """Run to the end, then stop as a kill would before `model.keras` is written."""

    def killed(*args, **kwargs):
        raise Killed

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runs, "save_run", killed)
        with pytest.raises(Killed):
            _train(config)
    assert not (config.out / "model.keras").exists()


@pytest.mark.parametrize(
    "trainer, epochs, stopped_epoch",
    [
        # Each trainer meets one case in the fast suite, the other in the slow one.
        ("tape", 8, 5),  # early stopping had stopped the run
        pytest.param("fit", 8, 5, marks=pytest.mark.slow),
        pytest.param("tape", 4, None, marks=pytest.mark.slow),  # every epoch ran, the last not best
        ("fit", 4, None),
    ],
)
def test_a_run_killed_after_training_before_saving_ends_with_the_best_epoch(
    trainer, epochs, stopped_epoch, uninterrupted, tmp_path, monkeypatch
):
    # Trained before the counters below are in place; with other epochs, the run is another.
    whole = uninterrupted(trainer) if epochs == SETTINGS["epochs"] else None
    config = _config(trainer, tmp_path, epochs=epochs)
    _kill_before_saving(config)
    epochs_trained = die_after(monkeypatch, RunLog, "record_epoch", lambda _: False)
    steps = die_after(monkeypatch, CompiledSteps, "run", lambda _: False)
    resumed = _train(config)
    assert epochs_trained == [] and steps == []  # nothing trained again
    val_loss = resumed["history"]["val_loss"]
    assert len(val_loss) == (stopped_epoch or epochs)
    assert resumed["early_stopping"] == {
        "patience": PATIENCE,
        "best_epoch": int(np.argmin(val_loss)) + 1,
        "stopped_epoch": stopped_epoch,
    }
    assert resumed["early_stopping"]["best_epoch"] == 3
    np.testing.assert_allclose(_loss_of_the_saved_model(tmp_path), val_loss[2], rtol=1e-5)
    if whole:
        _assert_same_run(resumed, whole)
