"""The project's load path: every model keras_bp saves loads back; Python code is refused."""

import zipfile

import keras
import numpy as np
import pytest

from keras_bp import saving
from keras_bp.config import FitConfig, LoopConfig, Speed
from keras_bp.layers import ManualDense
from keras_bp.model import build_model, weights_digest
from keras_bp.training import loop
from keras_bp.training.recipe import train_fit


def saved_by_train_fit(tmp_path, data):
    model, _ = train_fit(FitConfig(epochs=1, batch_size=64, seed=1, out=tmp_path), data, 0)
    return model


def saved_manual_dense(tmp_path, data):
    keras.utils.set_random_seed(1)
    model = build_model(dense=ManualDense)
    model.fit(*data[0], epochs=1, batch_size=64, verbose=0)
    model.save(tmp_path / "model.keras")
    return model


def saved_by_train_loop(kind, fused=False):
    def save(tmp_path, data):
        speed = Speed(steps_per_call=52, fused=fused)
        config = LoopConfig(
            gradients=kind, epochs=1, batch_size=64, seed=1, out=tmp_path, speed=speed
        )
        return loop.train_loop(config, data, verbose=0)[0]

    return save


@pytest.mark.parametrize(
    "save",
    [
        saved_by_train_fit,
        saved_manual_dense,
        saved_by_train_loop("tape"),
        saved_by_train_loop("manual"),
        saved_by_train_loop("tape", fused=True),  # compiled with keras_bp's FusedRMSprop
    ],
    ids=[
        "train_fit",
        "ManualDense",
        "train_loop-tape",
        "train_loop-manual",
        "train_loop-tape-fused",
    ],
)
def test_every_saved_model_loads_back_with_identical_predictions(save, tmp_path, synthetic_data):
    model = save(tmp_path, synthetic_data)
    loaded = saving.load_model(tmp_path / "model.keras")
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert weights_digest(loaded) == weights_digest(model)
    x_test = synthetic_data[1][0]
    # Same weights, same ops: exactly the same outputs.
    np.testing.assert_array_equal(
        loaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0)
    )


def test_a_lambda_layer_is_refused_naming_the_file_and_the_layer(tmp_path):
    model = keras.Sequential(
        [keras.Input((784,)), keras.layers.Lambda(lambda x: x * 2, name="double")]
    )
    path = tmp_path / "model.keras"
    model.save(path)
    with pytest.raises(ValueError) as refusal:
        saving.load_model(path)
    message = str(refusal.value)
    assert message.startswith(f"refusing to load {path}: ")
    assert "Python code (a lambda) in Lambda layer 'double'" in message
    assert "\n" not in message
    # The file itself is sound: only safe mode stands in the way.
    x = np.ones((1, 784), np.float32)
    unsafe = keras.saving.load_model(path, safe_mode=False)
    np.testing.assert_array_equal(unsafe.predict(x, verbose=0), 2 * x)


def test_a_lambda_activation_is_refused_naming_the_layer(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation=lambda x: x)])
    path = tmp_path / "model.keras"
    with pytest.warns(UserWarning, match="lambda"):
        model.save(path)
    with pytest.raises(ValueError, match=r"refusing to load .*: it contains Python code \(a "):
        saving.load_model(path)


def test_missing_or_foreign_files_are_refused_with_a_reason(tmp_path):
    (tmp_path / "text.keras").write_text("not a zip")
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as archive:
        archive.writestr("notes.txt", "no config.json here")
    (tmp_path / "dir.keras").mkdir()
    (tmp_path / "model.h5").write_bytes(b"")
    cases = {
        "missing.keras": "no such file",
        "dir.keras": "not a file",
        "model.h5": "expected a .keras file, received '.h5'",
        "text.keras": "not a .keras archive (not a zip file)",
        "empty.keras": "no item named 'config.json'",
    }
    for name, reason in cases.items():
        with pytest.raises(ValueError) as error:
            saving.load_model(tmp_path / name)
        assert str(error.value).startswith(f"cannot load {tmp_path / name}: "), name
        assert reason in str(error.value), name


def test_the_manual_trainers_model_loads_cleanly_with_its_rmsprop_state(tmp_path, synthetic_data):
    import warnings

    config = LoopConfig(gradients="manual", epochs=1, batch_size=64, seed=1, out=tmp_path)
    model, _ = loop.train_loop(config, synthetic_data, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = saving.load_model(tmp_path / "model.keras")
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    velocities = [keras.ops.convert_to_numpy(v) for v in loaded.optimizer._velocities]
    assert [v.shape for v in velocities] == [tuple(w.shape) for w in model.weights]
    assert all(np.max(v) > 0 for v in velocities)  # the trained state, not fresh zeros
    for a, b in zip(velocities, model.optimizer._velocities, strict=True):
        np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(b))
