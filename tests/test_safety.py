"""Real processes: two runs into one directory, Ctrl-C and SIGTERM, and validation first."""

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import LOOP_RUN, ROOT, run_main, run_script

from keras_bp.runtime.runlock import LOCK_NAME
from keras_bp.training.runlog import resume_dir


def start(script, *args):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / script), *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, proc, what, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {what}: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def holder(out):
    try:
        return (out / LOCK_NAME).read_text().strip()
    except OSError:
        return ""


# Slow: two processes that train. Fast: test_interrupts.py's held directory, in process.
@pytest.mark.slow
@pytest.mark.parametrize(
    "script, args",
    [
        ("manual_backprop.py", ["--epochs", "3", "--train-samples", "1536"]),
        ("train.py", ["--epochs", "3", "--train-samples", "20000"]),
    ],
)
def test_a_second_run_into_a_busy_directory_is_refused_and_the_first_is_unaffected(
    script, args, tmp_path
):
    """The first run is paused (SIGSTOP) while the second tries, so it is surely still running
    however short it is; the lock is the kernel's, held by the paused process all the same."""
    first = start(script, *args, "--out", tmp_path)
    wait_for(lambda: holder(tmp_path) == str(first.pid), first, "the first run took the lock")
    first.send_signal(signal.SIGSTOP)
    try:
        second = run_script(f"scripts/{script}", *args, "--out", tmp_path, timeout=60)
        still_running = first.poll() is None
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"{script}: error: --out {tmp_path} is in use by another run (PID {first.pid}); "
        "wait for it to finish, or choose another --out"
    ]
    assert still_running, "the first run ended before the second tried: the test proves nothing"
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["resumed_at"] is None and metrics["epochs"] == 3


def stop_at_first_checkpoint(script, args, out, signum):
    """Start a loop run, send `signum` once it has checkpointed; return its stderr."""
    proc = start(script, *args, "--out", out)
    index = resume_dir(out) / "checkpoints" / "checkpoint"
    wait_for(index.exists, proc, "the first checkpoint")
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr[-2000:]
    return stderr


# Slow: a process that trains. Fast: test_interrupts.py's stop at a safe point, in process.
@pytest.mark.slow
def test_ctrl_c_stops_the_loop_with_130_saying_what_it_saved_on_a_line_of_its_own(tmp_path):
    stderr = stop_at_first_checkpoint("manual_backprop.py", LOOP_RUN, tmp_path, signal.SIGINT)
    lines = stderr.splitlines()
    assert lines[-2] == ""  # a new line after the progress bar
    assert lines[-1].startswith("manual_backprop.py: interrupted by SIGINT: saved a checkpoint ")
    position = lines[-1].split("at epoch ")[1].split(",")[:2]  # ["1 of 3", " step 75"]
    checkpoints = resume_dir(tmp_path) / "checkpoints"
    assert lines[-1].endswith(f"in {checkpoints}; rerun the same command to resume")
    assert int(position[1].split()[-1]) > 0
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow  # two full runs each: about 20 s
@pytest.mark.parametrize(
    "script, signum", [("manual_backprop.py", signal.SIGINT), ("custom_loop.py", signal.SIGTERM)]
)
def test_the_loop_stops_on_a_signal_saves_and_resumes_bit_identical(script, signum, tmp_path):
    clean = run_script(f"scripts/{script}", *LOOP_RUN, "--out", tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr[-2000:]

    out = tmp_path / "stopped"
    stderr = stop_at_first_checkpoint(script, LOOP_RUN, out, signum)
    name = signal.Signals(signum).name
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"{script}: interrupted by {name}: saved a checkpoint at epoch ")
    assert last.endswith("; rerun the same command to resume")
    assert not (out / "metrics.json").exists()

    rerun = run_script(f"scripts/{script}", *LOOP_RUN, "--out", out)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert rerun.stdout.startswith("resuming: epoch ")  # said before training starts
    digests = [json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "clean", out)]
    assert digests[0]["weights_sha256"] == digests[1]["weights_sha256"]


@pytest.mark.slow  # two full runs: about 17 s
def test_fit_stops_on_ctrl_c_keeps_its_backup_and_resumes_bit_identical(tmp_path):
    args = ["--deterministic", "--train-samples", "6000", "--epochs", "3"]
    clean = run_script("scripts/train.py", *args, "--out", tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr[-2000:]

    out = tmp_path / "stopped"
    proc = start("train.py", *args, "--out", out)
    wait_for((resume_dir(out) / "keras.sha256.json").exists, proc, "epoch 1's backup")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: interrupted by SIGINT: kept the backup of epoch ")
    assert "rerun the same command to resume at epoch" in last

    rerun = run_script("scripts/train.py", *args, "--out", out)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert rerun.stdout.startswith("resuming: epoch ")
    digests = [json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "clean", out)]
    assert digests[0]["weights_sha256"] == digests[1]["weights_sha256"]


@pytest.mark.slow  # about 13 s
def test_a_second_ctrl_c_exits_at_once_without_saving(tmp_path):
    """Both signals land inside one compiled call of 469 steps: no safe point in between."""
    args = ["--epochs", "3", "--steps-per-call", "469", "--checkpoint-every", "0"]
    for attempt in range(3):  # a call boundary can fall between the signals: try again
        out = tmp_path / str(attempt)
        proc = start("manual_backprop.py", *args, "--out", out)
        wait_for((resume_dir(out) / "checkpoints" / "checkpoint").exists, proc, "epoch 1's end")
        proc.send_signal(signal.SIGINT)
        time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        if "saved a checkpoint" not in stderr:
            break
    assert proc.returncode == 130
    assert stderr.strip().splitlines()[-1] == (
        "interrupted again by SIGINT: exiting now, without saving"
    )
    # The checkpoint of epoch 1's end is what a rerun resumes from.
    rerun = run_script("scripts/manual_backprop.py", *args, "--out", out)
    assert rerun.returncode == 0 and rerun.stdout.startswith("resuming: epoch 2 of 3, step 0")


def test_bad_input_is_refused_before_anything_is_created(tmp_path):
    out = tmp_path / "new"
    # In process: the refusal needs the data's size, and the real process's exit code and line
    # are test_an_out_that_is_a_file_is_named_as_one's.
    proc = run_main("train.py", "--batch-size", "100000", "--out", out)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith("--batch-size 100000 is larger than the training set (60000 samples)")
    )
    assert not out.exists()


def test_an_out_that_is_a_file_is_named_as_one(tmp_path):
    (tmp_path / "taken").write_text("")
    proc = run_script("scripts/custom_loop.py", "--out", tmp_path / "taken")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"custom_loop.py: error: --out {tmp_path / 'taken'} is a file, not a directory"
    )
