"""The seed's recipe: the exact model, its run files, divergence, CLI errors, the accuracy bar."""

import json

import keras
import numpy as np
import pytest
from conftest import run_main, run_script

from keras_bp import saving
from keras_bp.config import FitConfig, Speed
from keras_bp.model import build_model, weights_digest
from keras_bp.runtime.errors import InputError, NonFiniteLoss
from keras_bp.runtime.runlock import LOCK_NAME
from keras_bp.training.recipe import train_fit
from keras_bp.training.runlog import resume_dir
from keras_bp.training.runs import RUN_KEYS


def test_model_is_the_seeds_exactly():
    model = build_model()
    assert model.input_shape == (None, 784)
    dense1, dense2 = model.layers
    assert type(dense1) is keras.layers.Dense and type(dense2) is keras.layers.Dense
    assert (dense1.units, dense1.activation.__name__) == (512, "relu")
    assert (dense2.units, dense2.activation.__name__) == (10, "softmax")
    assert dense1.use_bias and dense2.use_bias
    assert model.count_params() == 784 * 512 + 512 + 512 * 10 + 10
    # compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    opt = model.optimizer
    assert type(opt) is keras.optimizers.RMSprop
    cfg = opt.get_config()
    assert (cfg["learning_rate"], cfg["rho"], cfg["epsilon"]) == pytest.approx((1e-3, 0.9, 1e-7))
    assert cfg["momentum"] == 0 and cfg["centered"] is False
    assert model.loss == "categorical_crossentropy"
    assert model._compile_config.config["metrics"] == ["accuracy"]


def test_weights_digest_changes_with_any_bit():
    weights = [np.ones((2, 3), np.float32), np.zeros(3, np.float32)]
    flipped = [weights[0].copy(), weights[1]]
    flipped[0][1, 2] = np.nextafter(np.float32(1), np.float32(2))
    assert weights_digest(weights) == weights_digest([w.copy() for w in weights])
    assert weights_digest(weights) != weights_digest(flipped)
    assert weights_digest(weights) != weights_digest(weights[::-1])


def test_train_fit_writes_metrics_and_a_safe_loadable_model(tmp_path, synthetic_data):
    out = tmp_path / "run"
    model, metrics = train_fit(
        FitConfig(epochs=2, batch_size=32, seed=3, out=out), synthetic_data, verbose=0
    )
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == metrics
    assert set(on_disk) == {*RUN_KEYS, "wall_seconds"}
    assert (on_disk["epochs"], on_disk["batch_size"], on_disk["seed"]) == (2, 32, 3)
    assert on_disk["trainer"] == "fit"
    assert set(on_disk["versions"]) == {"python", "tensorflow", "keras", "numpy"}
    assert on_disk["versions"]["keras"] == keras.__version__
    assert 0 <= on_disk["test_accuracy"] <= 1 and np.isfinite(on_disk["test_loss"])
    assert len(on_disk["history"]["loss"]) == 2

    assert on_disk["resumed_at"] is None and on_disk["train_seconds"] > 0
    assert on_disk["speed"] == {"steps_per_call": 1, "xla": False, "fused": False}
    assert (on_disk["optimizer"], on_disk["learning_rate"]) == ("rmsprop", 1e-3)
    assert not resume_dir(out).exists(), "the backup outlived a saved run"

    loaded = saving.load_model(out / "model.keras")
    assert weights_digest(loaded) == on_disk["weights_sha256"] == weights_digest(model)
    x_test = synthetic_data[1][0]
    np.testing.assert_array_equal(
        loaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0)
    )
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert hidden == [LOCK_NAME], "temporary files left behind"  # the lock file stays, unlocked


def test_train_fit_rejects_nan_input_naming_the_array_and_the_count(tmp_path, synthetic_data):
    (x_train, y_train), test = synthetic_data
    x_train = x_train.copy()
    x_train[[3, 7, 7], [0, 5, 9]] = np.nan
    with pytest.raises(InputError, match=r"x_train contains 3 non-finite values"):
        train_fit(FitConfig(epochs=1, batch_size=32, out=tmp_path), ((x_train, y_train), test))
    assert not any(tmp_path.iterdir())


def test_train_fit_starts_where_make_source_starts(tmp_path, synthetic_data):
    from keras_bp.gradients import make_source

    # With a zero learning rate the weights fit ends with are the ones it started from.
    config = FitConfig(epochs=1, batch_size=128, seed=5, out=tmp_path, learning_rate=0.0)
    model, _ = train_fit(config, synthetic_data, verbose=0)
    for kind in ["tape", "manual"]:
        assert weights_digest(model) == weights_digest(make_source(kind, 5).variables)
        assert weights_digest(model) != weights_digest(make_source(kind, 6).variables)


class AbsurdFrom(keras.optimizers.schedules.LearningRateSchedule):
    """rmsprop's 1e-3 before step `step` (0-based), `learning_rate` from it on."""

    def __init__(self, step, learning_rate):
        self.step, self.learning_rate = step, learning_rate

    def __call__(self, step):
        return keras.ops.where(step < self.step, 1e-3, self.learning_rate)


@pytest.mark.parametrize(
    "learning_rate, error",
    [
        # 256 samples / 32 = 8 steps an epoch; 1e20 from epoch 2, step 3 makes the loss NaN.
        (AbsurdFrom(10, 1e20), r"loss became nan at epoch 2, step [3-8]; "),
        # Infinite on epoch 2's last step: its loss is still finite, the weights are not.
        (AbsurdFrom(15, np.inf), r"weights became non-finite at epoch 2, step 8; "),
    ],
    ids=["nan-loss", "non-finite-weights-at-epoch-end"],
)
def test_divergence_stops_naming_epoch_and_step_and_keeps_the_last_good_backup(
    learning_rate, error, tmp_path, synthetic_data
):
    out = tmp_path / "diverged"
    config = FitConfig(epochs=3, batch_size=32, seed=0, out=out, learning_rate=learning_rate)
    with pytest.raises(NonFiniteLoss, match=error) as stop:
        train_fit(config, synthetic_data, verbose=0)
    assert f"the backup of epoch 1 is kept in {resume_dir(out)}" in str(stop.value)
    assert not (out / "model.keras").exists() and not (out / "metrics.json").exists()

    # The backup is still epoch 1's state, the same as a run that stopped there.
    one_epoch, _ = train_fit(
        FitConfig(epochs=1, batch_size=32, seed=0, out=tmp_path / "one"), synthetic_data, 0
    )
    keras_backup = resume_dir(out) / "keras"
    assert json.loads((keras_backup / "training_metadata.json").read_text())["epoch"] == 1
    restored = build_model()
    restored.optimizer.learning_rate = learning_rate  # the same optimizer variables
    restored.optimizer.build(restored.trainable_variables)
    restored.load_weights(keras_backup / "latest.weights.h5")
    for got, want in zip(restored.get_weights(), one_epoch.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_same_seed_same_initial_weights_different_seed_different():
    keras.utils.set_random_seed(7)
    a = weights_digest(build_model(compile=False))
    keras.utils.set_random_seed(7)
    b = weights_digest(build_model(compile=False))
    keras.utils.set_random_seed(8)
    c = weights_digest(build_model(compile=False))
    assert a == b != c


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "--epochs: expected a positive integer, received 0"),
        (["--batch-size", "-5"], "--batch-size: expected a positive integer, received -5"),
        (["--epochs", "five"], "expected a positive integer, received 'five'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--batch-size", "60001"], "--batch-size 60001 is larger than the training set (60000"),
        (
            ["--out", "/proc/keras_bp_cannot_write"],
            "--out /proc/keras_bp_cannot_write: cannot write",
        ),
        (
            # "--stale-backup" is no option: the test leaves a 5-epoch run's backup in --out.
            ["--epochs", "2", "--stale-backup"],
            "holds the resume state of another run (epochs 5 vs 2",
        ),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    """`main()` in this process: the checks, not TensorFlow's start. The real process's exit
    code and line: test_safety.py::test_bad_input_is_refused_before_anything_is_created."""
    if "--out" not in args:
        args = [*args, "--out", tmp_path / "run"]
    if "--stale-backup" in args:
        args.remove("--stale-backup")
        write_backup_identity(tmp_path / "run", epochs=5)
    proc = run_main("train.py", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert not (tmp_path / "run" / "metrics.json").exists()


def write_backup_identity(out, epochs):
    """Leave in `out` what a killed `make train` run of `epochs` epochs leaves: its identity,
    and a backup (a stand-in: it is refused or deleted before Keras reads it)."""
    from keras_bp.data import data_fingerprint, mnist_arrays
    from keras_bp.training.runlog import RunLog, run_identity

    (x, y), _ = mnist_arrays()
    config = FitConfig(epochs=epochs, out=out)
    log = RunLog(out, run_identity(config, data_fingerprint(x, y), len(x)))
    (log.directory / "keras").mkdir()
    (log.directory / "keras" / "training_metadata.json").write_text('{"epoch": 1}')


@pytest.mark.heavy(4)
def test_make_train_smoke_on_real_mnist(tmp_path):
    """A fraction of an epoch on real MNIST through the same script `make train` runs.

    With `--deterministic`, and `--fresh` over the backup of another run, which it deletes.
    """
    out = tmp_path / "fit"
    write_backup_identity(out, epochs=5)
    proc = run_script(
        "scripts/train.py",
        *["--epochs", "1", "--train-samples", "4096", "--out", out, "--deterministic", "--fresh"],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    accuracy = float(proc.stdout.split("test accuracy: ")[1].split()[0])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(accuracy, abs=5e-5)
    assert metrics["train_samples"] == 4096
    assert metrics["deterministic"] is True and metrics["resumed_at"] is None
    assert not resume_dir(out).exists()
    # 32 steps of the seed's recipe on real digits already beat chance by far.
    assert accuracy > 0.80
    assert (out / "model.keras").stat().st_size > 0
    phases = metrics["wall_seconds"]
    assert set(phases) == {"start", "data", "setup", "training", "evaluation", "saving"}
    assert proc.stdout.strip().splitlines()[-1].startswith("wall time ")


@pytest.mark.slow
def test_seed_recipe_reaches_published_accuracy(tmp_path):
    _, metrics = train_fit(FitConfig(out=tmp_path / "fit"), verbose=2)
    print(f"fit recipe test accuracy: {metrics['test_accuracy']:.4f}")
    assert metrics["test_accuracy"] >= 0.975


# XLA's compilation is most of the time: the fused RMSprop alone in the fast suite.
@pytest.mark.parametrize("faster", ["fused", pytest.param("xla", marks=pytest.mark.slow)])
def test_fit_speed_settings_keep_the_recipes_updates(faster, tmp_path, synthetic_data):
    """steps_per_execution, XLA and the fused RMSprop change how fit runs, not what it computes."""
    settings = {
        "stock": Speed(),
        "xla": Speed(steps_per_call=4, xla=True),
        "fused": Speed(steps_per_call=4, fused=True),
    }
    settings = {name: settings[name] for name in ["stock", faster]}
    weights = {
        name: train_fit(
            FitConfig(epochs=1, batch_size=32, out=tmp_path / name, speed=speed),
            synthetic_data,
            verbose=0,
        )[0].get_weights()
        for name, speed in settings.items()
    }
    keras.utils.set_random_seed(0)
    initial = build_model().get_weights()
    fast_model = build_model(speed=settings[faster])
    assert fast_model.jit_compile is (faster == "xla") and fast_model.steps_per_execution == 4
    moved = max(np.max(np.abs(a - b)) for a, b in zip(weights["stock"], initial, strict=True))
    assert moved > 1e-3  # 8 RMSprop steps really moved the weights
    for a, b in zip(weights["stock"], weights[faster], strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=faster)
