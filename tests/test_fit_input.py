"""`fit`'s input: the loops' batches, in a new order each epoch fixed by `(seed, epoch)`."""

import numpy as np
import pytest
from conftest import make_synthetic_data

from keras_bp.config import FitConfig, LoopConfig, Speed
from keras_bp.data.batches import epoch_batches, epoch_permutation
from keras_bp.training import recipe
from keras_bp.training.fit_input import EpochOrder
from keras_bp.training.loop import train_loop
from keras_bp.training.recipe import train_fit

SEED, BATCH = 5, 24  # 256 training images: 10 full batches and one of 16


def _numbered_data():
    """The synthetic problem with each training image's first pixel set to its index / 256, so
    a batch says which images it holds."""
    (x, y), test = make_synthetic_data()
    x = x.copy()
    x[:, 0] = np.arange(len(x)) / len(x)
    return (x, y), test


def _indices(x_batch, samples):
    return np.rint(np.asarray(x_batch)[:, 0] * samples).astype(int)


def _expected(epoch, samples):
    return [list(b) for b in epoch_batches(epoch_permutation(SEED, epoch, samples), BATCH)]


def test_epoch_order_yields_each_epochs_permutation_in_batches():
    (x, y), _ = _numbered_data()
    order = EpochOrder(x, y, BATCH, SEED)
    epochs = []
    for epoch in range(3):
        order.on_epoch_begin(epoch)
        batches = list(order.dataset)
        seen = [list(_indices(xb, len(x))) for xb, _ in batches]
        assert seen == _expected(epoch, len(x))
        for (xb, yb), indices in zip(batches, seen, strict=True):
            np.testing.assert_array_equal(xb, x[indices])
            np.testing.assert_array_equal(yb, y[indices])
        assert [len(b) for b in seen] == [BATCH] * 10 + [16]  # the last batch is partial
        epochs.append(seen)
    assert epochs[0] != epochs[1] != epochs[2] != epochs[0]


@pytest.fixture
def fit_batches(monkeypatch):
    """Train `fit` eagerly and record the image indices of every batch it trains on, per epoch:
    `run(config)` returns `(metrics, [[indices of each batch] per epoch])`."""
    seen = []

    def recording_model(**kwargs):
        model = build_model(**kwargs)
        train_step = model.train_step

        def recorded_step(data):
            x, _ = data
            seen.append(list(_indices(x, 256)))
            return train_step(data)

        model.run_eagerly = True  # the step is Python: it sees each batch's values
        model.train_step = recorded_step
        return model

    build_model = recipe.build_model
    monkeypatch.setattr(recipe, "build_model", recording_model)

    def run(config):
        seen.clear()
        _, metrics = train_fit(config, _numbered_data(), verbose=0)
        per_epoch = len(seen) // config.epochs
        return metrics, [seen[e * per_epoch : (e + 1) * per_epoch] for e in range(config.epochs)]

    return run


def test_fit_trains_on_each_epochs_permutation(fit_batches, tmp_path):
    metrics, epochs = fit_batches(FitConfig(epochs=2, batch_size=BATCH, seed=SEED, out=tmp_path))
    assert metrics["shuffle"] == "per-epoch"
    assert epochs == [_expected(0, 256), _expected(1, 256)]


def test_keras_shuffle_repeats_one_order_every_epoch(fit_batches, tmp_path):
    config = FitConfig(epochs=2, batch_size=BATCH, seed=SEED, keras_shuffle=True, out=tmp_path)
    metrics, (first, second) = fit_batches(config)
    assert metrics["shuffle"] == "keras"
    assert sorted(i for batch in first for i in batch) == list(range(256))
    assert first != sorted(first)  # shuffled, but
    assert first == second  # in the same order in both epochs


def _trained_weights(config):
    train = train_fit if config.trainer == "fit" else train_loop
    model, _ = train(config, make_synthetic_data(), verbose=0)
    return model.get_weights()


def test_fit_and_the_tape_loop_end_with_the_same_weights(tmp_path):
    settings = {"epochs": 2, "batch_size": BATCH, "seed": SEED}
    configs = {
        "fit": FitConfig(out=tmp_path / "fit", **settings),
        "tape": LoopConfig(gradients="tape", speed=Speed(1), out=tmp_path / "tape", **settings),
        "keras order": FitConfig(out=tmp_path / "keras", keras_shuffle=True, **settings),
    }
    weights = {name: _trained_weights(config) for name, config in configs.items()}
    for fit, tape in zip(weights["fit"], weights["tape"], strict=True):
        np.testing.assert_allclose(fit, tape, rtol=0, atol=1e-5)
    # Keras's own order is another, and so are its weights.
    pairs = zip(weights["fit"], weights["keras order"], strict=True)
    assert max(np.abs(fit - keras).max() for fit, keras in pairs) > 1e-3
