"""Data-parallel training through the scripts: mirrored replicas, multi-worker through the launcher,
bad input, and (slow) the accuracy of two workers and their resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, run_script

from keras_bp.saving import load_model

SMALL = ["--epochs", "1", "--train-samples", "1500"]


def metrics(out):
    return json.loads((out / "metrics.json").read_text())


def weights(out):
    return load_model(out / "model.keras").get_weights()


@pytest.mark.slow  # four processes; the same trainers and bounds in one process, fast:
# test_distribute.py::test_two_mirrored_replicas_train_as_one_device
def test_mirrored_replicas_train_as_one_device_does(tmp_path):
    """2 replicas split each batch of 128; the tape loop, the manual loop and fit each end where
    the tape loop on one device ends, to float rounding; fit and the tape loop, both mirrored and
    with the loops' fused RMSprop, bit for bit."""
    mirrored = ["--strategy", "mirrored", "--replicas", "2"]
    runs = {
        "one device": ("scripts/custom_loop.py", []),
        "tape": ("scripts/custom_loop.py", mirrored),
        "manual": ("scripts/manual_backprop.py", mirrored),
        "fit": ("scripts/train.py", [*mirrored, "--fused"]),
    }
    for name, (script, args) in runs.items():
        result = run_script(script, *SMALL, *args, "--out", tmp_path / name)
        assert result.returncode == 0, (name, result.stderr[-3000:])
    one = weights(tmp_path / "one device")
    for name in ["tape", "manual", "fit"]:
        assert metrics(tmp_path / name)["distribution"] == {
            "strategy": "mirrored",
            "replicas": 2,
            "workers": 1,
        }
        for a, b in zip(weights(tmp_path / name), one, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=name)
    assert (
        metrics(tmp_path / "fit")["weights_sha256"] == metrics(tmp_path / "tape")["weights_sha256"]
    )
    assert metrics(tmp_path / "one device")["distribution"]["replicas"] == 1


GOOD_CLUSTER = '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}'


@pytest.mark.parametrize(
    "script, args, tf_config, message",
    [
        ("custom_loop", ["--strategy", "mirrored", "--replicas", "0"], None, "positive integer"),
        ("custom_loop", ["--strategy", "mirrored", "--replicas", "3"], None, "do not divide"),
        ("custom_loop", ["--replicas", "2"], None, "mirrored strategy only"),
        ("manual_backprop", ["--strategy", "multi-worker"], None, "TF_CONFIG is not set"),
        ("manual_backprop", ["--strategy", "multi-worker"], "{bad", "not valid JSON"),
        ("custom_loop", ["--strategy", "multi-worker"], '{"task": {}}', "no cluster.worker"),
        (
            "custom_loop",
            ["--strategy", "multi-worker"],
            GOOD_CLUSTER.replace('"index": 0', '"index": 2'),
            "out of range",
        ),
        ("train", ["--strategy", "multi-worker"], GOOD_CLUSTER, "keras-team/keras#20585"),
    ],
)
def test_bad_distribution_input_is_one_line_and_exit_code_2(
    script, args, tf_config, message, tmp_path
):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    result = subprocess.run(
        [sys.executable, f"scripts/{script}.py", *args, "--out", tmp_path / "out"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def launch(out, *trainer_args, workers=2):
    """`scripts/run_workers.py` running the manual loop as `workers` workers into `out`."""
    command = [sys.executable, "scripts/manual_backprop.py", "--strategy", "multi-worker"]
    return subprocess.Popen(
        [
            sys.executable,
            "scripts/run_workers.py",
            "--workers",
            str(workers),
            "--",
            *command,
            *trainer_args,
            "--out",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc, timeout=900):
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, stdout, stderr


@pytest.mark.slow
def test_two_workers_reach_the_recipes_accuracy_with_identical_weights(tmp_path):
    out = tmp_path / "workers"
    code, _, stderr = finish(launch(out))
    assert code == 0, stderr[-3000:]
    chief, other = metrics(out), metrics(out / "workers" / "worker-1")
    assert chief["distribution"] == {"strategy": "multi-worker", "replicas": 2, "workers": 2}
    assert chief["test_accuracy"] >= 0.975
    assert chief["weights_sha256"] == other["weights_sha256"]


@pytest.mark.slow
def test_a_killed_worker_stops_the_launcher_and_the_same_command_resumes(tmp_path):
    """SIGKILL worker 1 mid-run: the launcher stops; rerun, it resumes from the chief's last
    checkpoint and ends bit-identical to an uninterrupted run (`--deterministic`)."""
    args = ["--epochs", "2", "--train-samples", "12000", "--deterministic"]
    code, _, stderr = finish(launch(tmp_path / "whole", *args))
    assert code == 0, stderr[-3000:]

    out = tmp_path / "killed"
    proc = launch(out, *args)
    checkpoint = out / "resume" / "checkpoints" / "ckpt-1.index"
    lock = out / "workers" / "worker-1" / ".keras_bp.lock"
    deadline = time.monotonic() + 600
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), "no checkpoint was saved"
    os.kill(int(lock.read_text().split()[0]), signal.SIGKILL)
    code, _, stderr = finish(proc)
    assert code != 0 and "worker 1" in stderr and "SIGKILL" in stderr, stderr[-2000:]
    assert not (out / "metrics.json").exists()

    code, stdout, stderr = finish(launch(out, *args))
    assert code == 0, stderr[-3000:]
    assert "resuming" in stdout
    resumed, whole = metrics(out), metrics(tmp_path / "whole")
    assert resumed["resumed_at"] is not None
    assert resumed["weights_sha256"] == whole["weights_sha256"]
    assert metrics(out / "workers" / "worker-1")["weights_sha256"] == whole["weights_sha256"]


# `make parity --replicas 2`'s table (each trainer on 2 replicas against one device, within 1e-6
# after one step): test_loop.py::test_parity_with_replicas_tabulates_each_trainer_against_one_device
# runs it (slow).


@pytest.mark.slow  # three processes; fast: the mirrored replicas of test_distribute.py and the
# launcher's own checks in test_run_workers.py
def test_two_workers_of_the_tape_loop_through_the_launcher(tmp_path):
    """The launcher's cluster, the tape source: both workers end with the same weights; the
    chief's run and model load as one process's; only the chief writes TensorBoard events."""
    out, events = tmp_path / "workers", tmp_path / "events"
    result = run_script(
        "scripts/run_workers.py",
        *("--workers", "2", "--", sys.executable, "scripts/custom_loop.py"),
        *("--strategy", "multi-worker", *SMALL, "--out", out, "--tensorboard", events),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    chief, other = metrics(out), metrics(out / "workers" / "worker-1")
    assert chief["distribution"] == {"strategy": "multi-worker", "replicas": 2, "workers": 2}
    assert chief["weights_sha256"] == other["weights_sha256"]
    assert len(weights(out)) == 4
    assert sorted(p.name for p in events.iterdir()) == ["test", "train"]  # no validation run
    assert all(len(list(run.iterdir())) == 1 for run in events.iterdir())  # one writer each
