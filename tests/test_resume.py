"""Reproducibility and resume of the custom loop: same seed, same bits; a kill loses nothing."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT

from keras_bp import gradients
from keras_bp.checkpoints import RunCheckpoint
from keras_bp.cli import TrainConfig, UsageError
from keras_bp.loop import LoopConfig, NonFiniteLoss, train_loop
from keras_bp.recipe import train_fit


def _config(out, **kwargs):
    return LoopConfig(
        **{
            "epochs": 2,
            "batch_size": 24,
            "seed": 5,
            "out": out,
            "steps_per_call": 3,
            "checkpoint_every": 4,
            **kwargs,
        }
    )


def _run(kind, data, out, fused=False, **kwargs):
    source = gradients.make_source(kind, seed=5, fused=fused)
    return train_loop(source, data, _config(out, **kwargs), verbose=0)


@pytest.mark.parametrize("kind", ["tape", "manual"])
def test_same_seed_gives_bit_identical_weights(kind, tmp_path, synthetic_data):
    a = _run(kind, synthetic_data, tmp_path / "a", epochs=1)
    b = _run(kind, synthetic_data, tmp_path / "b", epochs=1)
    assert a["weights_sha256"] == b["weights_sha256"]


def test_fit_same_seed_gives_bit_identical_weights(tmp_path, synthetic_data):
    digests = [
        train_fit(TrainConfig(2, 32, 4, tmp_path / name), synthetic_data, verbose=0)[1][
            "weights_sha256"
        ]
        for name in ["a", "b"]
    ]
    assert digests[0] == digests[1]


class _Killed(BaseException):
    """Stands in for SIGKILL in-process: not an Exception, so nothing catches it."""


# 11 steps an epoch; without XLA, saves at steps 6 and 10, then at the epoch end: save 1 is
# mid-epoch 1, save 4 mid-epoch 2. With XLA (chunks of 5), save 2 is at step 10 of epoch 1.
@pytest.mark.parametrize(
    "kind, saves_before_kill, xla, fused",
    [
        ("tape", 4, False, False),
        ("manual", 1, False, False),
        ("manual", 2, True, False),
        ("tape", 1, False, True),  # the fused kernel's scratch buffer is not state to save
        ("manual", 1, False, True),
    ],
)
def test_resume_after_interruption_is_bit_identical(
    kind, saves_before_kill, xla, fused, tmp_path, synthetic_data, monkeypatch
):
    # With XLA, chunks of 5 divide the 10 full steps: one XLA shape (5, 24); the partial
    # batch (1, 16) runs on the graph without XLA.
    options = {"jit_compile": True, "steps_per_call": 5, "checkpoint_every": 5} if xla else {}
    options["fused"] = fused
    uninterrupted = _run(kind, synthetic_data, tmp_path / "whole", **options)
    assert uninterrupted["speed"]["fused"] is fused and uninterrupted["speed"]["jit_compile"] is xla

    real_save, saves = RunCheckpoint.save, []

    def save_then_die(self, epoch, step):
        real_save(self, epoch, step)
        saves.append((epoch, step))
        if len(saves) == saves_before_kill:
            raise _Killed

    monkeypatch.setattr(RunCheckpoint, "save", save_then_die)
    with pytest.raises(_Killed):
        _run(kind, synthetic_data, tmp_path / "killed", **options)
    assert not (tmp_path / "killed" / "metrics.json").exists()
    monkeypatch.setattr(RunCheckpoint, "save", real_save)

    resumed = _run(kind, synthetic_data, tmp_path / "killed", **options)
    assert resumed["weights_sha256"] == uninterrupted["weights_sha256"]
    assert resumed["history"] == uninterrupted["history"]


def _interrupted(kind, data, out, monkeypatch, **kwargs):
    """Run until the first checkpoint, then stop as a kill would."""
    real_save = RunCheckpoint.save

    def save_then_die(self, epoch, step):
        real_save(self, epoch, step)
        raise _Killed

    monkeypatch.setattr(RunCheckpoint, "save", save_then_die)
    with pytest.raises(_Killed):
        train_loop(gradients.make_source(kind, seed=5, **kwargs), data, _config(out), verbose=0)
    monkeypatch.setattr(RunCheckpoint, "save", real_save)


def test_checkpoints_of_another_run_are_refused_and_fresh_starts_over(
    tmp_path, synthetic_data, monkeypatch
):
    _interrupted("manual", synthetic_data, tmp_path, monkeypatch)
    with pytest.raises(UsageError, match="holds checkpoints of another run.*seed 5 vs 9"):
        train_loop(
            gradients.make_source("manual", seed=9),
            synthetic_data,
            _config(tmp_path, seed=9, epochs=1),
            verbose=0,
        )
    other_optimizer = gradients.make_source("manual", seed=5, optimizer="sgd")
    with pytest.raises(UsageError, match="optimizer RMSprop vs SGD"):
        train_loop(other_optimizer, synthetic_data, _config(tmp_path), verbose=0)
    fresh = train_loop(
        gradients.make_source("manual", seed=9),
        synthetic_data,
        _config(tmp_path, seed=9, epochs=1, fresh=True),
        verbose=0,
    )
    assert fresh["seed"] == 9


def test_a_finished_run_leaves_no_checkpoints_so_a_rerun_trains_anew(tmp_path, synthetic_data):
    first = _run("manual", synthetic_data, tmp_path, epochs=1)
    assert not (tmp_path / "checkpoints").exists()
    again = _run("manual", synthetic_data, tmp_path, epochs=1)
    assert again["weights_sha256"] == first["weights_sha256"]
    assert again["train_seconds"] > 0


def test_weights_that_break_after_a_finite_loss_are_never_checkpointed(tmp_path, synthetic_data):
    # One full-batch step: its loss is finite (computed before the update), but an update
    # of 1e39 overflows float32, so the weights are Inf when the epoch ends.
    (x, y), test = synthetic_data
    source = gradients.make_source("manual", seed=5, optimizer="sgd", learning_rate=1e39)
    config = _config(tmp_path, epochs=1, batch_size=len(x))
    with pytest.raises(NonFiniteLoss, match="weights became non-finite by epoch 1, step 1"):
        train_loop(source, ((x, y), test), config, verbose=0)
    assert not (tmp_path / "metrics.json").exists()
    assert tf.train.latest_checkpoint(tmp_path / "checkpoints") is None


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, synthetic_data):
    source = gradients.make_source("manual", seed=5, optimizer="sgd", learning_rate=1e30)
    with pytest.raises(NonFiniteLoss, match=r"loss became (nan|inf) at epoch 1, step \d+"):
        train_loop(
            source,
            synthetic_data,
            _config(tmp_path, checkpoint_every=1, steps_per_call=1),
            verbose=0,
        )
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "model.keras").exists()
    # The checkpoint a rerun would trust holds finite weights only.
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(tmp_path / "checkpoints"))
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
    assert not (tmp_path / "checkpoints").exists()


def _command(script, out):
    return [
        sys.executable,
        str(ROOT / "scripts" / script),
        "--deterministic",
        "--train-samples",
        "9600",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--checkpoint-every",
        "25",
        "--steps-per-call",
        "25",
        "--out",
        str(out),
    ]


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
    index = out / "checkpoints" / "checkpoint"
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
    assert "Resuming from" in rerun.stdout
    hashes = [
        json.loads((d / "metrics.json").read_text())["weights_sha256"]
        for d in (tmp_path / "clean", out)
    ]
    assert hashes[0] == hashes[1]
