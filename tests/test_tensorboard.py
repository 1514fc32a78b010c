"""TensorBoard event files: what `--tensorboard DIR` writes, read back with TensorBoard's reader.

`fit` writes with Keras's `TensorBoard` callback (train, validation) and `EpochSummaries`
(test); the loop writes all three runs with `EpochSummaries`. Both hold metrics.json's history.
"""

import fcntl
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import make_synthetic_data
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from keras_bp.config import FitConfig, LoopConfig, Speed
from keras_bp.training.loop import train_loop
from keras_bp.training.recipe import train_fit
from keras_bp.training.summaries import RUNS

EPOCHS = 2
# Patience beyond the epochs: validation is held out, and every epoch runs.
SETTINGS = {"epochs": EPOCHS, "batch_size": 32, "seed": 3, "early_stopping": 5}
# `{weight.path}/histogram` in a process whose first model it is, in the order of `model.weights`.
HISTOGRAMS = [
    "sequential/dense/kernel/histogram",
    "sequential/dense/bias/histogram",
    "sequential/dense_1/kernel/histogram",
    "sequential/dense_1/bias/histogram",
]


def _read(run_dir):
    """`{tag: [(step, value as an array)]}` of one TensorBoard run, every event kept."""
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    events.Reload()
    return {
        tag: [(e.step, tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]
        for tag in events.Tags()["tensors"]
    }


def _train(trainer, out):
    # Each script trains in its own process, where Keras's first model is `sequential`:
    # start each run with the layer names a fresh process gives. Names only: the garbage
    # collection `clear_session` runs by default takes 3-10 s in a worker that has run
    # hundreds of tests.
    keras.utils.clear_session(free_memory=False)
    settings = {"out": out, "tensorboard": out / "tensorboard", **SETTINGS}
    if trainer == "fit":
        train_fit(FitConfig(**settings), make_synthetic_data(), verbose=0)
    else:
        train_loop(LoopConfig(speed=Speed(3), **settings), make_synthetic_data(), verbose=0)


@pytest.fixture(scope="session")
def written(tmp_path_factory, worker_id):
    """`written(trainer)`: `(metrics, model, {run: {tag: events}})` of a `fit` or tape-loop run.

    Each trainer's run is trained once per session, not once per xdist worker, and only when a
    test first asks for it: the workers share the runs through their common temporary
    directory, a lock making a second worker wait for a run in progress (the recipe in
    pytest-xdist's documentation for session fixtures). The tests below alternate the trainers,
    so the two workers start by training one each.
    """
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent
    root = shared / "tensorboard_runs"
    root.mkdir(exist_ok=True)
    cache = {}

    def run(trainer):
        if trainer not in cache:
            out = root / trainer
            with open(root / f"{trainer}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not (out / "metrics.json").exists():
                    _train(trainer, out)
            logdir = out / "tensorboard"
            assert sorted(p.name for p in logdir.iterdir()) == sorted(RUNS)
            cache[trainer] = (
                json.loads((out / "metrics.json").read_text()),
                keras.saving.load_model(out / "model.keras"),
                {run: _read(logdir / run) for run in RUNS},
            )
        return cache[trainer]

    return run


@pytest.mark.parametrize("trainer", ["fit", "tape"])  # the first decorator varies fastest
@pytest.mark.parametrize("run", RUNS)
def test_each_run_holds_the_history_of_metrics_json(trainer, run, written):
    metrics, _, events = written(trainer)
    for name in ("loss", "accuracy"):
        steps, values = zip(*events[run][f"epoch_{name}"], strict=True)
        assert steps == tuple(range(EPOCHS))  # the 0-based epoch, as Keras writes it
        expected = metrics["history"][RUNS[run] + name]
        np.testing.assert_allclose(np.array(values, np.float64), expected, rtol=1e-6)


@pytest.mark.parametrize("trainer", ["fit", "tape"])
def test_train_holds_the_learning_rate_and_a_histogram_of_every_weight(trainer, written):
    metrics, model, events = written(trainer)
    train = events["train"]
    rates = [float(v) for _, v in train["epoch_learning_rate"]]
    np.testing.assert_allclose(rates, [metrics["learning_rate"]] * EPOCHS, rtol=1e-6)
    # The model ends with the best epoch's weights: its histograms describe them.
    best = metrics["early_stopping"]["best_epoch"] - 1
    assert {t for t in train if t.endswith("/histogram")} == set(HISTOGRAMS)
    for tag, weight in zip(HISTOGRAMS, model.weights, strict=True):
        histograms = dict(train[tag])
        assert sorted(histograms) == list(range(EPOCHS))
        buckets = histograms[best]  # (k, 3): left edge, right edge, count
        w = weight.numpy()
        assert buckets[:, 2].sum() == pytest.approx(w.size, abs=1e-3)
        np.testing.assert_allclose(buckets[0, 0], w.min(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(buckets[-1, 1], w.max(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "run",
    [
        "train",
        "validation",
        "test",
    ],
)
def test_fit_and_the_loop_write_the_same_tags(run, written):
    fit, loop = (set(written(trainer)[2][run]) for trainer in ["fit", "tape"])
    assert fit == loop
    assert {"epoch_loss", "epoch_accuracy"} <= fit
