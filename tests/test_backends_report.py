"""The report over Keras's backends (`keras_bp.report.backend_runs`): `fit` on JAX and PyTorch, a
process per run. What the report refuses, and how it waits for a run (its signals, its
failures), run in the default suite on small stand-in processes; the pipeline itself trains on
JAX and PyTorch and is marked `backends`.
"""

import json
import signal
import sys
from dataclasses import replace

import pytest
from conftest import run_main

from keras_bp.report import backend_runs, seeds
from keras_bp.runtime import backend_start
from keras_bp.runtime.errors import Interrupted, UsageError

INSTALLED = [b for b in backend_start.BACKENDS if backend_start.installed(b)]


def stand_in(code):
    """A process that runs `code` (Python), for `run_command`'s waiting and its errors."""
    return [sys.executable, "-c", "import os, signal, sys, time\n" + code]


def test_a_backend_that_is_not_installed_is_one_line_naming_its_extra(monkeypatch, tmp_path):
    monkeypatch.setattr(backend_start, "installed", lambda backend: backend != "jax")
    result = run_main("report.py", "--out", tmp_path / "r")  # the default: all three backends
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "report.py: error: --backends jax: jax is not installed; install the extra with "
        "pip install 'keras_bp[jax]' (or make backends), or leave it out: "
        "--backends tensorflow,torch"
    )
    assert not (tmp_path / "r").exists()


def test_a_run_elsewhere_is_the_users_command(tmp_path):
    config = backend_runs.fit_configs(["tensorflow", "torch"])["fit --backend torch"]
    command = backend_runs.train_command(
        replace(config, seed=3, epochs=2, train_samples=1500, out=tmp_path, fresh=True)
    )
    assert command[:4] == [sys.executable, "-m", "keras_bp", "train"]
    options = " ".join(command[4:])
    assert (
        options
        == f"--backend torch --seed 3 --epochs 2 --out {tmp_path} --train-samples 1500 --fresh"
    )
    assert backend_runs.label("tensorflow") == "fit"
    assert backend_runs.fit_configs(["tensorflow"]) == {}


def test_a_signal_is_passed_on_once_and_the_report_stops_with_the_runs_line():
    """The stand-in sends SIGTERM to the report (its parent), as `kill` would, then waits for
    the one signal the report passes on, and stops as `keras-bp train` does at a safe point."""
    child = stand_in(
        "got = []\n"
        "signal.signal(signal.SIGTERM, lambda s, f: got.append(s))\n"
        "os.kill(os.getppid(), signal.SIGTERM)\n"
        "deadline = time.monotonic() + 20\n"
        "while not got and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "time.sleep(0.5)  # a second signal, if one came, would be counted now\n"
        "print(f'keras-bp train: interrupted by SIGTERM: {len(got)} signal(s); resumable',"
        " file=sys.stderr)\n"
        "sys.exit(128 + signal.SIGTERM if got else 0)\n"
    )
    with pytest.raises(Interrupted) as stopped:
        backend_runs.run_command(child, "fit --backend jax, seed 3")
    assert stopped.value.signum == signal.SIGTERM
    assert str(stopped.value) == "fit --backend jax, seed 3: 1 signal(s); resumable"


def test_a_run_that_finishes_after_the_signal_still_stops_the_report():
    """As `keras-bp train` in its final evaluation and save: it lets the run finish."""
    finishing = "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    child = stand_in(finishing + "os.kill(os.getppid(), signal.SIGINT)\ntime.sleep(0.5)\n")
    with pytest.raises(Interrupted, match="seed 0 finished; stopped before the next run"):
        backend_runs.run_command(child, "fit --backend torch, seed 0")


def test_a_refused_run_is_its_one_line_and_a_failed_one_its_stderr():
    refused = stand_in(
        "print('keras-bp train: error: --out x is a file', file=sys.stderr)\nsys.exit(2)"
    )
    with pytest.raises(UsageError) as error:
        backend_runs.run_command(refused, "fit --backend jax, seed 0")
    assert str(error.value) == "fit --backend jax, seed 0: keras-bp train: error: --out x is a file"
    failed = stand_in(
        "print('Traceback (most recent call last):\\nBoom', file=sys.stderr)\nsys.exit(1)"
    )
    with pytest.raises(
        RuntimeError, match=r"exited with 1:\nTraceback \(most recent call last\):\nBoom"
    ):
        backend_runs.run_command(failed, "fit --backend jax, seed 0")
    killed = stand_in("os.kill(os.getpid(), signal.SIGKILL)")
    with pytest.raises(RuntimeError, match="was killed by SIGKILL"):
        backend_runs.run_command(killed, "fit --backend jax, seed 0")


@pytest.mark.backends
@pytest.mark.heavy(60)
@pytest.mark.skipif(len(INSTALLED) < 3, reason="jax or torch is not installed (make backends)")
def test_the_report_over_backends_on_a_small_real_subset(tmp_path):
    """One seed, one epoch of 1,500 images on each backend, and 4 steps of parity across them;
    then the same command reuses every run. Measured: the three backends' test accuracies
    equal to 4 decimals, and `fit` within 3e-8 across backends after 4 steps."""
    out = tmp_path / "report"
    args = ["--seeds", "1", "--epochs", "1", "--train-samples", "1500", "--overfit-epochs", "0"]
    args += ["--bench", tmp_path / "no-bench.json", "--out", out]
    result = run_main("report.py", *args, "--parity-steps", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[6/6] fit --backend torch, seed 0: training" in result.stdout

    numbers = json.loads((out / "report.json").read_text())
    trainers = numbers["trainers"]
    assert set(trainers) == {*seeds.TRAINERS, "fit --backend jax", "fit --backend torch"}
    for backend in ("jax", "torch"):
        label = f"fit --backend {backend}"
        metrics = json.loads((seeds.run_dir(out, label, 0) / "metrics.json").read_text())
        assert (metrics["backend"], metrics["trainer"], metrics["seed"]) == (backend, "fit", 0)
        assert backend in metrics["versions"]  # the engine that ran it
        assert trainers[label]["runs"][0]["test_accuracy"] == metrics["test_accuracy"]
        # The same weights and batches: after one short epoch, the same accuracy to float32's
        # last bits of the weights (measured equal).
        fit = trainers["fit"]["test_accuracy"]["mean"]
        assert metrics["test_accuracy"] == pytest.approx(fit, abs=2e-3)
    across = numbers["backend_parity"]
    assert across["steps"] == [1, 2, 3, 4]
    assert set(across["curves"]) == {"tensorflow vs jax", "tensorflow vs torch", "jax vs torch"}
    for pair, curve in across["curves"].items():
        assert 0 < max(curve) <= 1e-6, (pair, curve)
    text = (out / "report.md").read_text()
    assert "## Parity across backends" in text and "| `fit --backend torch` | torch | 1 |" in text

    again = run_main("report.py", *args, "--parity-steps", "0")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "fit --backend jax, seed 0: test accuracy" in again.stdout
    assert "training" not in again.stdout  # every run reused
