"""Reproducibility and resume of the custom loop: same seed, same bits; a kill loses nothing."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import LOOP_RUN, ROOT, Killed, die_after

from keras_bp.config import FitConfig, LoopConfig, Speed
from keras_bp.runtime.errors import NonFiniteLoss
from keras_bp.training import loop
from keras_bp.training.checkpoints import RunCheckpoint
from keras_bp.training.loop import train_loop
from keras_bp.training.recipe import train_fit
from keras_bp.training.runlog import RunLog, resume_dir


def _config(out, kind="manual", **kwargs):
    settings = {
        "gradients": kind,
        "epochs": 2,
        "batch_size": 24,
        "seed": 5,
        "out": out,
        "checkpoint_every": 4,
        "speed": Speed(steps_per_call=3),
        **kwargs,
    }
    return LoopConfig(**settings)


def _run(kind, data, out, **kwargs):
    return train_loop(_config(out, kind, **kwargs), data, verbose=0)[1]


@pytest.mark.parametrize("kind", ["tape", "manual"])
def test_same_seed_gives_bit_identical_weights(kind, tmp_path, synthetic_data):
    a = _run(kind, synthetic_data, tmp_path / "a", epochs=1)
    b = _run(kind, synthetic_data, tmp_path / "b", epochs=1)
    assert a["weights_sha256"] == b["weights_sha256"]


def test_fit_same_seed_gives_bit_identical_weights(tmp_path, synthetic_data):
    digests = [
        train_fit(
            FitConfig(epochs=2, batch_size=32, seed=4, out=tmp_path / name), synthetic_data, 0
        )[1]["weights_sha256"]
        for name in ["a", "b"]
    ]
    assert digests[0] == digests[1]


def _kill_at_save(monkeypatch, saves_before_kill):
    """Make the `saves_before_kill`-th checkpoint save the last thing the process does.

    Returns the list the arguments `(epoch, step)` of the saves are appended to.
    """
    return die_after(monkeypatch, RunCheckpoint, "save", lambda s: len(s) == saves_before_kill)


def _fake_clock(monkeypatch):
    """The loop's clock advances one second per reading: seconds then count chunk intervals."""
    ticks = iter(range(10**6))
    monkeypatch.setattr(loop, "perf_counter", lambda: float(next(ticks)))


# 11 steps an epoch; without XLA, saves at steps 6 and 10, then at the epoch end: save 1 is
# mid-epoch 1, save 4 mid-epoch 2. With XLA (chunks of 5), save 2 is at step 10 of epoch 1.
@pytest.mark.parametrize(
    "kind, saves_before_kill, xla, fused",
    [
        ("tape", 4, False, False),
        ("manual", 1, False, False),
        # Slow: XLA compiles for seconds. Fast, the same resume with chunks of 3 (above), and
        # XLA's padded chunks train as unpadded ones (test_loop.py).
        pytest.param("manual", 2, True, False, marks=pytest.mark.slow),
        ("tape", 1, False, True),  # the fused kernel's scratch buffer is not state to save
        ("manual", 1, False, True),
    ],
)
def test_resume_after_interruption_is_bit_identical(
    kind, saves_before_kill, xla, fused, tmp_path, synthetic_data, monkeypatch
):
    # With XLA, chunks of 5 divide the 10 full steps: one XLA shape (5, 24); the partial
    # batch (1, 16) runs on the graph without XLA.
    speed = Speed(steps_per_call=5 if xla else 3, xla=xla, fused=fused)
    options = {"speed": speed, "checkpoint_every": 5 if xla else 4}
    uninterrupted = _run(kind, synthetic_data, tmp_path / "whole", **options)
    assert uninterrupted["speed"] == {
        "steps_per_call": speed.steps_per_call,
        "xla": xla,
        "fused": fused,
    }

    with monkeypatch.context() as patch:
        saves = _kill_at_save(patch, saves_before_kill)
        with pytest.raises(Killed):
            _run(kind, synthetic_data, tmp_path / "killed", **options)
    assert not (tmp_path / "killed" / "metrics.json").exists()

    resumed = _run(kind, synthetic_data, tmp_path / "killed", **options)
    assert resumed["weights_sha256"] == uninterrupted["weights_sha256"]
    assert resumed["history"] == uninterrupted["history"]
    epoch, step = saves[-1]
    assert resumed["resumed_at"] == {"epoch": epoch + 1, "step": step}
    assert uninterrupted["resumed_at"] is None


# 11 steps an epoch in chunks of 3: the loop saves at (epoch, step) (0, 6), (0, 10), (1, 0),
# (1, 6), (1, 10) and (2, 0). With the fake clock each epoch takes 5 s, one per chunk.
@pytest.mark.parametrize(
    "kill, resumed_at, message",
    [
        ("at save 4", {"epoch": 2, "step": 6}, "resuming: epoch 2 of 2, step 6 (from "),
        ("after epoch 1 was logged", {"epoch": 1, "step": 10}, "resuming: epoch 1 of 2, step 10"),
        ("at the last save", {"epoch": 2, "step": 11}, "resuming: all 2 epochs trained, evalu"),
    ],
)
def test_a_resumed_run_says_where_and_counts_every_epoch_once(
    kill, resumed_at, message, tmp_path, synthetic_data, monkeypatch, capsys
):
    _fake_clock(monkeypatch)
    whole = _run("manual", synthetic_data, tmp_path / "whole")
    assert whole["train_seconds"] == 10.0  # 2 epochs × 5 chunks × 1 s

    with monkeypatch.context() as patch:
        if kill == "after epoch 1 was logged":  # before the epoch-end checkpoint: redone
            die_after(patch, RunLog, "record_epoch")
        else:
            _kill_at_save(patch, 4 if kill == "at save 4" else 6)
        with pytest.raises(Killed):
            _run("manual", synthetic_data, tmp_path / "killed")

    capsys.readouterr()
    _, resumed = train_loop(_config(tmp_path / "killed"), synthetic_data, verbose=1)
    assert message in capsys.readouterr().out
    assert resumed["resumed_at"] == resumed_at
    assert resumed["weights_sha256"] == whole["weights_sha256"]
    assert resumed["history"] == whole["history"]
    # Each epoch counts the chunks of its final pass, wherever they ran: an epoch redone after
    # the kill counts once, and a resumed one adds the seconds saved before the kill.
    assert resumed["train_seconds"] == whole["train_seconds"]
    assert not resume_dir(tmp_path / "killed").exists()


def test_a_finished_run_leaves_no_checkpoints_so_a_rerun_trains_anew(tmp_path, synthetic_data):
    first = _run("manual", synthetic_data, tmp_path, epochs=1)
    assert not resume_dir(tmp_path).exists()
    again = _run("manual", synthetic_data, tmp_path, epochs=1)
    assert again["weights_sha256"] == first["weights_sha256"]
    assert again["train_seconds"] > 0


def test_weights_that_break_after_a_finite_loss_are_never_checkpointed(tmp_path, synthetic_data):
    # One full-batch step: its loss is finite (computed before the update), but an update
    # of 1e39 overflows float32, so the weights are Inf when the epoch ends.
    (x, y), test = synthetic_data
    config = _config(tmp_path, epochs=1, batch_size=len(x), optimizer="sgd", learning_rate=1e39)
    with pytest.raises(NonFiniteLoss, match="weights became non-finite by epoch 1, step 1"):
        train_loop(config, ((x, y), test), verbose=0)
    assert not (tmp_path / "metrics.json").exists()
    assert tf.train.latest_checkpoint(resume_dir(tmp_path) / "checkpoints") is None


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, synthetic_data):
    config = _config(
        tmp_path, optimizer="sgd", learning_rate=1e30, checkpoint_every=1, speed=Speed(1)
    )
    with pytest.raises(NonFiniteLoss, match=r"loss became (nan|inf) at epoch 1, step \d+"):
        train_loop(config, synthetic_data, verbose=0)
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "model.keras").exists()
    # The checkpoint a rerun would trust holds finite weights only.
    checkpoints = resume_dir(tmp_path) / "checkpoints"
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(checkpoints))
    names = [n for n in reader.get_variable_to_shape_map() if n.startswith("variables/")]
    assert names
    for name in names:
        assert np.isfinite(reader.get_tensor(name)).all(), name


def test_non_finite_input_is_rejected_before_training(tmp_path, synthetic_data):
    (x, y), test = synthetic_data
    x = x.copy()
    x[3, 7] = np.nan
    x[5, 1] = np.inf
    with pytest.raises(ValueError, match="x_train contains 2 non-finite values"):
        _run("tape", ((x, y), test), tmp_path)
    assert not resume_dir(tmp_path).exists()


def _command(script, out):
    return [sys.executable, str(ROOT / "scripts" / script), *LOOP_RUN, "--out", str(out)]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["custom_loop.py", "manual_backprop.py"])
def test_sigkill_and_rerun_finishes_bit_identical(script, tmp_path):
    """A real SIGKILL mid-run, then the same command again: same weights as a clean run."""
    clean = subprocess.run(_command(script, tmp_path / "clean"), capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr[-2000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _command(script, out), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    index = resume_dir(out) / "checkpoints" / "checkpoint"
    deadline = time.monotonic() + 300
    while not (index.exists() and "ckpt-2" in index.read_text()) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "metrics.json").exists()

    rerun = subprocess.run(_command(script, out), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming: epoch " in rerun.stdout
    hashes = [
        json.loads((d / "metrics.json").read_text())["weights_sha256"]
        for d in (tmp_path / "clean", out)
    ]
    assert hashes[0] == hashes[1]
