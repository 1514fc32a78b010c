"""The seed's recipe, exactly: `model.fit(epochs=5, batch_size=128)`, then `evaluate`."""

import time

import keras

from keras_bp import runs
from keras_bp.cli import TrainConfig
from keras_bp.data import check_training_data, load_mnist, preprocess
from keras_bp.model import build_model


def mnist_arrays(train_samples=None):
    """MNIST after the seed's preprocessing: `((x_train, y_train), (x_test, y_test))`."""
    (x_train, y_train), (x_test, y_test) = load_mnist()
    if train_samples is not None:
        x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    return preprocess(x_train, y_train), preprocess(x_test, y_test)


def train_fit(config: TrainConfig, data=None, verbose=1):
    """Train the seed's model with `model.fit`; save and return `(model, metrics)`.

    Args:
        config: epochs, batch size, seed and output directory.
        data: preprocessed `((x_train, y_train), (x_test, y_test))`; MNIST by default.
        verbose: Keras's progress display (1: progress bar, 0: silent).
    """
    (x_train, y_train), (x_test, y_test) = data if data is not None else mnist_arrays()
    check_training_data(((x_train, y_train), (x_test, y_test)), config.batch_size)
    keras.utils.set_random_seed(config.seed)
    model = build_model()

    start = time.perf_counter()
    history = model.fit(
        x_train, y_train, epochs=config.epochs, batch_size=config.batch_size, verbose=verbose
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
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
    }
    return model, runs.save_run(config.out, model, metrics)
