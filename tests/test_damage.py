"""Damaged resume state: the newest intact checkpoint or backup is used, with a warning naming
each damaged file; when none is intact, one line says so and that --fresh starts over."""

import pytest
from conftest import Killed, die_after, make_synthetic_data

from keras_bp.config import FitConfig, LoopConfig, Speed
from keras_bp.runtime.errors import UsageError
from keras_bp.training.checkpoints import RunCheckpoint
from keras_bp.training.fit_backup import BackupDigests
from keras_bp.training.loop import train_loop
from keras_bp.training.recipe import train_fit
from keras_bp.training.runlog import resume_dir

# 256 samples, batch 24: 11 steps an epoch. The loop saves at (0, 6), (0, 10), (1, 0), ...
LOOP = dict(gradients="manual", epochs=2, batch_size=24, seed=5, checkpoint_every=4, speed=Speed(3))
FIT = dict(epochs=3, batch_size=32, seed=0)


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def delete(path):
    path.unlink()


DAMAGE = {"truncated": truncate, "bit-flipped": flip_a_byte, "deleted": delete}


def damages(fast):
    """DAMAGE's names as parameters, all but `fast` marked slow: each trainer meets one kind of
    damage in the fast suite (the same check of the newest save finds every kind)."""
    return [name if name == fast else pytest.param(name, marks=pytest.mark.slow) for name in DAMAGE]


def _loop_killed_after_two_saves(out, data):
    with pytest.MonkeyPatch.context() as patch:
        die_after(patch, RunCheckpoint, "save", when=lambda saves: len(saves) == 2)
        with pytest.raises(Killed):
            train_loop(LoopConfig(**LOOP, out=out), data, verbose=0)
    return resume_dir(out) / "checkpoints"


@pytest.fixture(scope="module")
def whole_loop(tmp_path_factory):
    """The uninterrupted LOOP run's metrics, trained once for every kind of damage."""
    out = tmp_path_factory.mktemp("whole_loop")
    return train_loop(LoopConfig(**LOOP, out=out), make_synthetic_data(), verbose=0)[1]


@pytest.fixture(scope="module")
def whole_fit(tmp_path_factory):
    """The uninterrupted FIT run's metrics, trained once for every kind of damage."""
    out = tmp_path_factory.mktemp("whole_fit")
    return train_fit(FitConfig(**FIT, out=out), make_synthetic_data(), verbose=0)[1]


@pytest.mark.parametrize("damage", damages(fast="bit-flipped"))
def test_a_damaged_latest_checkpoint_resumes_from_the_one_before(
    damage, whole_loop, tmp_path, synthetic_data, capsys
):
    whole = whole_loop
    checkpoints = _loop_killed_after_two_saves(tmp_path / "run", synthetic_data)
    DAMAGE[damage](checkpoints / "ckpt-2.data-00000-of-00001")

    capsys.readouterr()
    _, resumed = train_loop(LoopConfig(**LOOP, out=tmp_path / "run"), synthetic_data, verbose=0)
    assert capsys.readouterr().err.splitlines() == [
        f"warning: skipping damaged checkpoint {checkpoints / 'ckpt-2'}"
    ]
    assert resumed["resumed_at"] == {"epoch": 1, "step": 6}  # ckpt-1's position
    assert resumed["weights_sha256"] == whole["weights_sha256"]
    assert resumed["history"] == whole["history"]


def test_a_deleted_checkpoint_index_does_not_hide_the_checkpoints(tmp_path, synthetic_data):
    checkpoints = _loop_killed_after_two_saves(tmp_path, synthetic_data)
    (checkpoints / "checkpoint").unlink()
    _, resumed = train_loop(LoopConfig(**LOOP, out=tmp_path), synthetic_data, verbose=0)
    assert resumed["resumed_at"] == {"epoch": 1, "step": 10}  # ckpt-2, the newest


def test_no_intact_checkpoint_is_one_line_naming_them(tmp_path, synthetic_data):
    checkpoints = _loop_killed_after_two_saves(tmp_path, synthetic_data)
    for n in (1, 2):
        flip_a_byte(checkpoints / f"ckpt-{n}.data-00000-of-00001")
    with pytest.raises(UsageError) as refused:
        train_loop(LoopConfig(**LOOP, out=tmp_path), synthetic_data, verbose=0)
    assert str(refused.value) == (
        f"no intact checkpoint in {checkpoints} (ckpt-2, ckpt-1 damaged); "
        "pass --fresh to start over"
    )


def _fit_killed_after_epoch_2(out, data):
    with pytest.MonkeyPatch.context() as patch:
        die_after(patch, BackupDigests, "on_epoch_end", when=lambda calls: calls[-1][0] == 1)
        with pytest.raises(Killed):
            train_fit(FitConfig(**FIT, out=out), data, verbose=0)
    return resume_dir(out) / "keras"


@pytest.mark.parametrize("damage", damages(fast="truncated"))
def test_a_damaged_fit_backup_resumes_from_the_epoch_before(
    damage, whole_fit, tmp_path, synthetic_data, capsys
):
    whole = whole_fit
    backup = _fit_killed_after_epoch_2(tmp_path / "run", synthetic_data)
    DAMAGE[damage](backup / "latest.weights.h5")

    _, resumed = train_fit(FitConfig(**FIT, out=tmp_path / "run"), synthetic_data, verbose=0)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"warning: skipping backup file {backup / 'latest.weights.h5'}")
    assert resumed["resumed_at"] == {"epoch": 2, "step": 0}  # epoch 1's backup: epoch 2 redone
    assert resumed["weights_sha256"] == whole["weights_sha256"]
    assert resumed["history"] == whole["history"]


def test_a_fit_backup_written_without_digests_falls_back_to_the_epoch_before(
    tmp_path, synthetic_data, capsys
):
    """Killed after Keras wrote epoch 2's backup but before its digests: epoch 2 is redone."""
    record = BackupDigests.on_epoch_end

    def die_before_recording_epoch_2(self, epoch, logs=None):
        if epoch == 1:
            raise Killed
        record(self, epoch, logs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BackupDigests, "on_epoch_end", die_before_recording_epoch_2)
        with pytest.raises(Killed):
            train_fit(FitConfig(**FIT, out=tmp_path), synthetic_data, verbose=0)
    _, resumed = train_fit(FitConfig(**FIT, out=tmp_path), synthetic_data, verbose=0)
    assert "warning: skipping backup file" in capsys.readouterr().err
    assert resumed["resumed_at"] == {"epoch": 2, "step": 0}


def test_no_intact_fit_backup_is_one_line(tmp_path, synthetic_data):
    backup = _fit_killed_after_epoch_2(tmp_path, synthetic_data)
    flip_a_byte(backup / "latest.weights.h5")
    flip_a_byte(backup / "latest.weights.h5.bkp")
    with pytest.raises(UsageError, match=r"no intact backup in .*; pass --fresh to start over"):
        train_fit(FitConfig(**FIT, out=tmp_path), synthetic_data, verbose=0)


@pytest.mark.slow  # fast: a backup without digests after a good one, above
def test_a_first_backup_without_digests_is_discarded_and_training_starts_over(
    tmp_path, synthetic_data, capsys
):
    """Killed after Keras wrote epoch 1's backup but before its digests: nothing to verify it by."""

    def die(self, epoch, logs=None):
        raise Killed

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BackupDigests, "on_epoch_end", die)
        with pytest.raises(Killed):
            train_fit(FitConfig(**FIT, out=tmp_path), synthetic_data, verbose=0)
    _, resumed = train_fit(FitConfig(**FIT, out=tmp_path), synthetic_data, verbose=0)
    backup = resume_dir(tmp_path) / "keras"
    assert f"warning: discarding the unverified backup in {backup}; starting over" in (
        capsys.readouterr().err
    )
    assert resumed["resumed_at"] is None and len(resumed["history"]["loss"]) == 3


def test_deleted_checkpoints_beside_a_log_of_finished_epochs_are_said_to_start_over(
    tmp_path, synthetic_data, capsys
):
    import shutil

    checkpoints = _loop_killed_after_two_saves(tmp_path, synthetic_data)
    # Epoch 1 logged (as after a kill at its end), then every checkpoint deleted.
    log = (resume_dir(tmp_path) / "run.json").read_text()
    shutil.rmtree(checkpoints)
    (resume_dir(tmp_path) / "run.json").write_text(
        log.replace('"epochs": []', '"epochs": [{"loss": 1.0, "accuracy": 0.5, "seconds": 1.0}]')
    )
    capsys.readouterr()
    _, metrics = train_loop(LoopConfig(**LOOP, out=tmp_path), synthetic_data, verbose=0)
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {resume_dir(tmp_path)} logs 1 finished epoch but holds nothing to resume "
        "from; starting over"
    ]
    assert metrics["resumed_at"] is None
