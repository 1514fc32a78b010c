"""The wheel installs a working `keras-bp` command: no repository needed to train."""

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import ROOT


def run(*args, cwd, timeout=600):
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow  # builds a wheel and a virtual environment: about 15 s
def test_the_wheel_trains_from_another_directory(tmp_path):
    wheels = tmp_path / "wheels"
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        wheels,
        ROOT,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("keras_bp-*.whl")

    # A fresh environment outside the repository. Its dependencies (TensorFlow, Keras) come
    # from this interpreter's site-packages through a .pth file; keras_bp only from the wheel.
    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", venv, cwd=tmp_path).returncode == 0
    python = venv / "bin" / "python"
    site = run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
    ).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = run(python, "-m", "pip", "install", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]

    where = run(python, "-c", "import keras_bp; print(keras_bp.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr

    keras_bp = venv / "bin" / "keras-bp"
    listed = run(keras_bp, "--help", cwd=tmp_path)
    assert listed.returncode == 0
    for name in ["train", "custom-loop", "manual", "parity", "gradient-check", "bench"]:
        assert f"\n  {name} " in listed.stdout

    out = tmp_path / "run"
    trained = run(
        keras_bp, "train", "--epochs", "1", "--train-samples", "2000", "--out", out, cwd=tmp_path
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "test accuracy: " in trained.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_samples"] == 2000 and metrics["trainer"] == "fit"
    assert (out / "model.keras").stat().st_size > 0

    same = run(python, "-m", "keras_bp", "train", "--epochs", "0", cwd=tmp_path)
    assert same.returncode == 2
    assert same.stderr.strip().endswith(
        "keras-bp train: error: argument --epochs: expected a positive integer, received 0"
    )
