"""One run identity for both resume paths: any setting that changes the result is refused.

`fit` and the loop each leave the resume state of a killed run; a rerun that changes one
setting is refused in one line naming it, before anything is restored or trained.
"""

from dataclasses import replace

import pytest
from conftest import Killed, die_after, make_synthetic_data

from keras_bp.config import FitConfig, LoopConfig, Speed
from keras_bp.runtime.errors import UsageError
from keras_bp.training.checkpoints import RunCheckpoint
from keras_bp.training.fit_backup import BackupDigests
from keras_bp.training.loop import train_loop
from keras_bp.training.recipe import train_fit
from keras_bp.training.runlog import resume_dir

FIT = FitConfig(epochs=2, batch_size=24, seed=5, speed=Speed(steps_per_call=3))
LOOP = LoopConfig(gradients="manual", epochs=2, batch_size=24, seed=5, speed=Speed(3))

# Each setting that changes the trained weights, and what the refusal says about it.
CHANGES = {
    "seed": ({"seed": 9}, "seed 5 vs 9"),
    "batch size": ({"batch_size": 16}, "batch_size 24 vs 16"),
    "epochs": ({"epochs": 3}, "epochs 2 vs 3"),
    "data": ({"train_samples": 200}, "samples 256 vs 200, data "),
    "optimizer": ({"optimizer": "sgd"}, "optimizer rmsprop vs sgd"),
    "learning rate": ({"learning_rate": 0.01}, "learning_rate 0.001 vs 0.01"),
    "deterministic": ({"deterministic": True}, "deterministic False vs True"),
    "fused": ({"speed": Speed(3, fused=True)}, "speed.fused False vs True"),
    "xla": ({"speed": Speed(3, xla=True)}, "speed.xla False vs True"),
    "steps per call": ({"speed": Speed(4)}, "speed.steps_per_call 3 vs 4"),
    "early stopping": ({"early_stopping": 2}, "early_stopping None vs 2"),
}


def _fit_killed_after_epoch_1(config):
    with pytest.MonkeyPatch.context() as patch:
        die_after(patch, BackupDigests, "on_epoch_end")
        with pytest.raises(Killed):
            train_fit(config, make_synthetic_data(), verbose=0)


def _loop_killed_at_first_checkpoint(config):
    with pytest.MonkeyPatch.context() as patch:
        die_after(patch, RunCheckpoint, "save")
        with pytest.raises(Killed):
            train_loop(config, make_synthetic_data(), verbose=0)


def _contents(directory):
    return {p: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory):
    """`{trainer: (config, train)}`: a killed run's config in its own `out`, and its trainer."""
    fit = replace(FIT, out=tmp_path_factory.mktemp("fit"))
    loop = replace(LOOP, out=tmp_path_factory.mktemp("loop"))
    _fit_killed_after_epoch_1(fit)
    _loop_killed_at_first_checkpoint(loop)
    return {"fit": (fit, train_fit), "loop": (loop, train_loop)}


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("trainer", ["fit", "loop"])
def test_a_changed_setting_is_refused_on_resume_naming_it(trainer, change, killed_runs):
    config, train = killed_runs[trainer]
    settings, message = CHANGES[change]
    state = _contents(resume_dir(config.out))
    with pytest.raises(UsageError, match="holds the resume state of another run") as refused:
        train(replace(config, **settings), make_synthetic_data(), verbose=0)
    assert message in str(refused.value)
    assert str(refused.value).endswith("pass --fresh to start over, or choose another --out")
    assert "\n" not in str(refused.value)
    assert _contents(resume_dir(config.out)) == state  # untouched


def test_fits_shuffle_is_refused_on_resume_naming_it(killed_runs):
    """`keras_shuffle` is `fit`'s alone: Keras's order instead of the loops' `(seed, epoch)`."""
    config, _ = killed_runs["fit"]
    state = _contents(resume_dir(config.out))
    with pytest.raises(UsageError, match="holds the resume state of another run") as refused:
        train_fit(replace(config, keras_shuffle=True), make_synthetic_data(), verbose=0)
    assert "shuffle per-epoch vs keras" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert _contents(resume_dir(config.out)) == state


@pytest.mark.parametrize("trainer", ["fit", "loop"])
def test_tensorboard_changes_no_number_so_a_resume_may_add_it(trainer, killed_runs, tmp_path):
    import shutil

    config, train = killed_runs[trainer]
    copy = replace(config, out=tmp_path / "copy", tensorboard=tmp_path / "tensorboard")
    shutil.copytree(config.out, copy.out)
    _, metrics = train(copy, make_synthetic_data(), verbose=0)
    assert metrics["resumed_at"] is not None
    assert (tmp_path / "tensorboard" / "train").is_dir()


@pytest.mark.parametrize("trainer", ["fit", "loop"])
def test_fresh_starts_over_with_the_changed_setting(trainer, tmp_path):
    config = replace(FIT if trainer == "fit" else LOOP, out=tmp_path)
    kill, train = (
        (_fit_killed_after_epoch_1, train_fit)
        if trainer == "fit"
        else (_loop_killed_at_first_checkpoint, train_loop)
    )
    kill(config)
    _, metrics = train(replace(config, seed=9, fresh=True), make_synthetic_data(), verbose=0)
    assert metrics["seed"] == 9 and metrics["resumed_at"] is None
    assert not resume_dir(tmp_path).exists()


def test_a_run_that_saved_nothing_does_not_block_the_next(tmp_path):
    """A loop that diverges before its first checkpoint leaves only `run.json`: the rerun with
    a smaller learning rate trains, rather than being refused as another run."""
    from keras_bp.runtime.errors import NonFiniteLoss

    config = replace(LOOP, out=tmp_path, optimizer="sgd", learning_rate=1e30)
    with pytest.raises(NonFiniteLoss, match="no checkpoint had been saved yet"):
        train_loop(config, make_synthetic_data(), verbose=0)
    assert [p.name for p in resume_dir(tmp_path).iterdir()] == ["run.json"]
    _, metrics = train_loop(replace(config, learning_rate=0.01), make_synthetic_data(), verbose=0)
    assert metrics["learning_rate"] == 0.01 and metrics["resumed_at"] is None


def test_an_unreadable_run_log_beside_saved_state_is_one_line(killed_runs, tmp_path):
    import shutil

    config, train = killed_runs["loop"]
    copy = replace(config, out=tmp_path / "copy")
    shutil.copytree(config.out, copy.out)
    (resume_dir(copy.out) / "run.json").write_text("{not json")
    with pytest.raises(UsageError, match=r"run.json is unreadable \(.*\); pass --fresh"):
        train(copy, make_synthetic_data(), verbose=0)
