"""`model.fit` resumes after a kill: from `--out`'s backup, with the whole history, same weights."""

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, Killed, die_after, run_script

from keras_bp.config import FitConfig
from keras_bp.training import fit_guards
from keras_bp.training.fit_backup import BackupDigests
from keras_bp.training.recipe import train_fit
from keras_bp.training.runlog import resume_dir


def train_fit_killed_after_epoch(config, data, monkeypatch, epochs_done):
    """Run `train_fit` until epoch `epochs_done` is backed up, then stop as a kill would."""
    with monkeypatch.context() as patch:
        die_after(patch, BackupDigests, "on_epoch_end", lambda c: c[-1][0] + 1 == epochs_done)
        with pytest.raises(Killed):
            train_fit(config, data, verbose=0)


def test_a_rerun_resumes_after_the_last_backed_up_epoch(
    tmp_path, synthetic_data, monkeypatch, capsys
):
    # The guards' clock advances one second per reading: one reading per epoch end, one at
    # the start of each fit call.
    ticks = iter(range(10**6))
    monkeypatch.setattr(fit_guards, "perf_counter", lambda: float(next(ticks)))
    config = FitConfig(epochs=3, batch_size=32, seed=0, out=tmp_path / "run")
    train_fit_killed_after_epoch(config, synthetic_data, monkeypatch, epochs_done=2)
    assert not (config.out / "metrics.json").exists()
    killed = json.loads((resume_dir(config.out) / "run.json").read_text())["epochs"]
    assert [e["seconds"] for e in killed] == [1.0, 1.0]

    _, metrics = train_fit(config, synthetic_data, verbose=1)
    assert "resuming: epoch 3 of 3, step 0" in capsys.readouterr().out
    assert metrics["resumed_at"] == {"epoch": 3, "step": 0}
    assert metrics["history"]["loss"][:2] == [e["loss"] for e in killed]
    # The two killed epochs' seconds count, as the third's does.
    assert metrics["train_seconds"] == 3.0
    assert len(metrics["history"]["loss"]) == len(metrics["history"]["accuracy"]) == 3
    assert not resume_dir(config.out).exists(), "the backup outlived a saved run"


@pytest.mark.slow  # fast: test_damage.py's truncated fit backup, the same case
def test_a_backup_cut_short_by_a_kill_falls_back_to_the_epoch_before(
    tmp_path, synthetic_data, monkeypatch
):
    config = FitConfig(epochs=3, batch_size=32, seed=0, out=tmp_path / "run")
    train_fit_killed_after_epoch(config, synthetic_data, monkeypatch, epochs_done=2)
    weights = resume_dir(config.out) / "keras" / "latest.weights.h5"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # killed mid-write

    _, metrics = train_fit(config, synthetic_data, verbose=0)
    assert metrics["resumed_at"]["epoch"] == 2  # epoch 2's backup was unreadable: redone
    assert len(metrics["history"]["loss"]) == 3


@pytest.mark.slow  # three processes on real MNIST: about 35 s on two cores
def test_killed_mid_epoch_and_rerun_ends_bit_identical_under_deterministic(tmp_path):
    """SIGKILL during epoch 2 of a real run, rerun the same command: the same weights.

    Measured (Keras 3.15, TensorFlow 2.21, CPU): bit-identical, the same `weights_sha256` as
    the uninterrupted run. With a seed set, Keras shuffles every epoch in the same order, so the
    restarted process replays the order the uninterrupted one used (see
    `keras_bp.training.fit_guards`).
    """
    args = ["scripts/train.py", "--train-samples", "6000", "--epochs", "3", "--deterministic"]

    def start(out):
        return subprocess.Popen(
            [sys.executable, *args, "--out", str(out)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    # Both at once, to halve the wall time; the two cores are shared, the results are not.
    uninterrupted, killed = start(tmp_path / "whole"), start(tmp_path / "killed")
    metadata = resume_dir(tmp_path / "killed") / "keras" / "training_metadata.json"
    # An epoch is backed up once keras_bp has recorded the digests of Keras's files.
    digests = resume_dir(tmp_path / "killed") / "keras.sha256.json"
    deadline = time.monotonic() + 300
    while not (digests.exists() and _backed_up_epochs(metadata)):
        assert killed.poll() is None, killed.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "epoch 1 never finished"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert _backed_up_epochs(metadata) == 1, "the kill came after epoch 2 had finished"
    assert not (tmp_path / "killed" / "metrics.json").exists()
    assert uninterrupted.wait(timeout=300) == 0, uninterrupted.stderr.read()[-2000:]

    proc = run_script(*args, "--out", tmp_path / "killed")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming: epoch 2 of 3, step 0" in proc.stdout
    whole, resumed = (
        json.loads((tmp_path / name / "metrics.json").read_text()) for name in ["whole", "killed"]
    )
    assert resumed["resumed_at"] == {"epoch": 2, "step": 0} and whole["resumed_at"] is None
    assert resumed["weights_sha256"] == whole["weights_sha256"]
    assert resumed["history"] == whole["history"]
    assert resumed["test_accuracy"] > 0.85


def _backed_up_epochs(metadata):
    try:
        return json.loads(metadata.read_text())["epoch"]
    except (OSError, ValueError, KeyError):  # not there yet, or caught mid-write
        return 0
