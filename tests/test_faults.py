"""Fault injection: damaged resume state, refused writes, kills during a save, bad input.

Every case ends in one line on stderr naming the path or value and what to do, the documented
exit code (2: bad input or state; 1: a save the machine refused; 128 + the signal), no
traceback, and nothing lost: what keras_bp did not write is never deleted, and once the cause is
removed the same command finishes with the weights of an uninterrupted `--deterministic` run.

The default suite runs the trainers in this process on synthetic data, or real commands that
stop before TensorFlow starts; real processes that train on MNIST are marked slow.
"""

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import pytest
import tensorflow as tf
from conftest import ROOT, Killed, die_after, run_main

from keras_bp import saving
from keras_bp.config import FitConfig, LoopConfig, Speed
from keras_bp.runtime import cluster, resume_files
from keras_bp.runtime.errors import SaveFailed, UsageError, write_failure
from keras_bp.training.checkpoints import RunCheckpoint
from keras_bp.training.fit_backup import BackupDigests
from keras_bp.training.loop import train_loop
from keras_bp.training.recipe import train_fit
from keras_bp.training.runlog import resume_dir, start_run

# Synthetic runs: 256 images, batch 64, 4 steps an epoch. The loop saves at (0, 2), (1, 0),
# (1, 2), (2, 0); fit backs up at each epoch's end.
CONFIGS = {
    "fit": lambda out: FitConfig(epochs=2, batch_size=64, seed=3, deterministic=True, out=out),
    "tape": lambda out: LoopConfig(
        gradients="tape",
        epochs=2,
        batch_size=64,
        seed=3,
        checkpoint_every=2,
        speed=Speed(2),
        deterministic=True,
        out=out,
    ),
    "manual": lambda out: LoopConfig(
        gradients="manual",
        epochs=2,
        batch_size=64,
        seed=3,
        checkpoint_every=2,
        speed=Speed(2),
        deterministic=True,
        out=out,
    ),
}
SCRIPTS = {"fit": "train.py", "tape": "custom_loop.py", "manual": "manual_backprop.py"}


def train(trainer, out, data):
    run = train_fit if trainer == "fit" else train_loop
    return run(CONFIGS[trainer](out), data, verbose=0)[1]


def tree(root):
    """`{relative path: bytes, or "dir"/"link -> target"}` of everything under `root`."""
    found = {}
    for path in sorted(Path(root).rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = f"link -> {os.readlink(path)}"
        elif path.is_dir():
            found[key] = "dir"
        else:
            found[key] = path.read_bytes()
    return found


# TensorFlow's own C++ log lines (`E0000 00:00:… node_def_util.cc:682] NodeDef mentions …`,
# which fit's input pipeline prints in any run of two epochs or more): not keras_bp's output.
TENSORFLOW_LOG = re.compile(r"^[EWIF]\d{4} \d\d:\d\d:\d")


def one_line(stderr, prog):
    """The one line a command printed: no traceback, nothing else of keras_bp's."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not TENSORFLOW_LOG.match(line)]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: "), stderr
    return lines[0]


def command(name, *args, real):
    """The script's result: a real process (`real`), or its `main()` in this process, which
    stops in milliseconds at a refusal made before TensorFlow starts."""
    return script(name, *args) if real else run_main(name, *args)


def script(name, *args, cwd=ROOT, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Damaged or odd resume state: `{case: (path inside resume/, what is there instead)}`. None of
# it is keras_bp's to resume from or to delete.
DAMAGED = {
    "user files in resume/": ("cv.txt", "user file"),
    "resume/ is a file": ("", "file"),
    "resume/checkpoints is a file": ("checkpoints", "file"),
    "a checkpoint's data is a directory": ("checkpoints/ckpt-2.data-00000-of-00001", "directory"),
    "a checkpoint's index is a directory": ("checkpoints/ckpt-2.index", "directory"),
    "resume/keras is a file": ("keras", "file"),
    "latest.weights.h5 is a directory": ("keras/latest.weights.h5", "directory"),
    "run.json is a symlink": ("run.json", "symlink"),
}
SAYS = {
    "user file": "which keras_bp did not write",
    "file": "is a file, where keras_bp keeps a directory",
    "directory": "is a directory, where keras_bp keeps a file",
    "symlink": "is a symlink, where keras_bp keeps a file",
}


def _damage(out, case, aside=None):
    """Put case's odd thing in `out`'s resume state (what was there goes to `aside`); return
    its path and what the refusal says."""
    relative, kind = DAMAGED[case]
    path = resume_dir(out) / relative if relative else resume_dir(out)
    if os.path.lexists(path):
        path.rename(aside)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "directory":
        path.mkdir()
        (path / "kept.txt").write_text("kept\n")
    elif kind == "symlink":
        (out / "elsewhere.json").write_text("{}\n")
        path.symlink_to(out / "elsewhere.json")
    else:
        path.write_text("my CV\n" if kind == "user file" else "notes\n")
    return path, SAYS[kind]


@pytest.mark.parametrize("case", DAMAGED)
@pytest.mark.parametrize("trainer", CONFIGS)
def test_odd_resume_state_is_refused_before_anything_is_written(
    trainer, case, tmp_path, synthetic_data
):
    out = tmp_path / "run"
    named, says = _damage(out, case)
    before = tree(tmp_path)
    with pytest.raises(UsageError) as refused:
        with start_run(CONFIGS[trainer](out), synthetic_data):
            pytest.fail("started")
    assert str(named) in str(refused.value) or f"holds {named.name}," in str(refused.value)
    assert says in str(refused.value)
    assert tree(tmp_path) == before  # nothing deleted, nothing written (not even the lock)


@pytest.mark.parametrize("case", DAMAGED)
def test_the_commands_refuse_odd_state_in_one_line_before_tensorflow_starts(case, tmp_path):
    position = list(DAMAGED).index(case)
    trainer = list(SCRIPTS)[position % 3]  # each script in turn, the first three as processes
    out = tmp_path / "run"
    _damage(out, case)
    before = tree(tmp_path)
    result = command(SCRIPTS[trainer], "--out", out, real=position < 3)
    assert result.returncode == 2
    assert "error: " in one_line(result.stderr, SCRIPTS[trainer])
    assert tree(tmp_path) == before


def test_a_users_files_survive_every_way_of_pointing_a_run_at_them(tmp_path):
    """The data-loss case: real files in OUT/resume/, by --out and by --out "" (this
    directory); the manual trainer the issue ran, and from Python."""
    for out, cwd in [(tmp_path / "u", tmp_path), ("", tmp_path / "here")]:
        resume = (cwd / out if out else cwd) / "resume"
        resume.mkdir(parents=True)
        (resume / "cv.txt").write_text("my CV\n")
        result = script(
            "manual_backprop.py", "--epochs", "1", "--train-samples", "600", "--out", out, cwd=cwd
        )
        assert result.returncode == 2
        assert "holds cv.txt, which keras_bp did not write" in one_line(
            result.stderr, "manual_backprop.py"
        )
        assert (resume / "cv.txt").read_text() == "my CV\n"


def test_a_finished_run_deletes_only_what_keras_bp_wrote(tmp_path):
    resume = tmp_path / "resume"
    ours = [
        "run.json", ".run.a1b2.tmp.json", "keras.sha256.json",
        "checkpoints/checkpoint", "checkpoints/checkpoint.tmp" + "0" * 32,
        "checkpoints/ckpt-3.index", "checkpoints/ckpt-3.data-00000-of-00001",
        "checkpoints/ckpt-4.data-00000-of-00001.tempstate123",
        "checkpoints/ckpt-4_temp/part-00000-of-00001.data-00000-of-00001",
        "keras/latest.weights.h5", "keras/training_metadata.json.bkp", "best/epoch-2.npz",
    ]  # fmt: skip
    for name in ours:
        (resume / name).parent.mkdir(parents=True, exist_ok=True)
        (resume / name).write_bytes(b"x")
    resume_files.check(resume)  # all of it is keras_bp's
    resume_files.remove(resume)
    assert not resume.exists()

    # Written beside keras_bp's state after the run started: it stays, with its directory.
    for name in ours:
        (resume / name).parent.mkdir(parents=True, exist_ok=True)
        (resume / name).write_bytes(b"x")
    (resume / "checkpoints" / "mine.txt").write_text("mine\n")
    resume_files.remove(resume)
    assert tree(resume) == {"checkpoints": "dir", "checkpoints/mine.txt": b"mine\n"}


MALFORMED_LOGS = {
    "an epoch is a number": [1],
    "an epoch is null": [None],
    "an epoch without seconds": [{"loss": 0.5}],
    "epochs with other metrics": [{"loss": 0.5, "seconds": 1.0}, {"acc": 0.5, "seconds": 1.0}],
}


@pytest.mark.parametrize("log", MALFORMED_LOGS)
@pytest.mark.parametrize("trainer", CONFIGS)
def test_a_malformed_epoch_log_is_refused_before_training(trainer, log, tmp_path, synthetic_data):
    resume = resume_dir(tmp_path)
    (resume / "checkpoints").mkdir(parents=True)
    (resume / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    (resume / "run.json").write_text(json.dumps({"identity": {}, "epochs": MALFORMED_LOGS[log]}))
    before = tree(resume)
    with pytest.raises(UsageError, match=r"run\.json is unreadable \(epoch \d of its log is "):
        with start_run(CONFIGS[trainer](tmp_path), synthetic_data):
            pytest.fail("started")
    assert tree(resume) == before  # refused, not discarded


@pytest.fixture
def read_only(tmp_path):
    """`make(path)`: mount `path` read-only onto itself (we are root in CI: permissions alone
    would not stop root); unmounted after the test."""
    mounted = []

    def make(path):
        path.mkdir(parents=True, exist_ok=True)
        for command in (["--bind", path, path], ["-o", "remount,ro,bind", path]):
            result = subprocess.run(["mount", *map(str, command)], capture_output=True, text=True)
            if result.returncode:
                pytest.skip(f"cannot mount read-only here: {result.stderr.strip()}")
            if command[0] == "--bind":
                mounted.append(path)

    yield make
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], capture_output=True)  # the test may have already


@pytest.mark.parametrize("trainer", CONFIGS)
def test_read_only_resume_state_is_refused_before_training(
    trainer, tmp_path, synthetic_data, read_only
):
    kept = resume_dir(tmp_path) / ("keras" if trainer == "fit" else "checkpoints")
    read_only(kept)
    with pytest.raises(UsageError, match=rf"^{kept} is read-only: .* make it writable"):
        with start_run(CONFIGS[trainer](tmp_path), synthetic_data):
            pytest.fail("started")


# Refused writes during training, injected where the machine refuses them: TensorFlow's
# checkpoint writer for the loop, Keras's backup for fit. Each stops in one line, keeps the last
# good state, and the same run resumes once the cause is gone.
def _refuse_checkpoint(patch, reason):
    real, calls = tf.train.CheckpointManager.save, []

    def save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # at (1, 2): TensorFlow had begun the checkpoint's files
            temp = Path(self.directory) / "ckpt-3_temp"
            temp.mkdir()
            (temp / "part-00000-of-00001.data-00000-of-00001.tempstate9").write_bytes(b"x")
            raise tf.errors.ResourceExhaustedError(None, None, f"{temp}/part-00000; {reason}")
        return real(self, *args, **kwargs)

    patch.setattr(tf.train.CheckpointManager, "save", save)


def _refuse_backup(patch, reason):
    real, calls = keras.Model.save_weights, []

    def save_weights(self, filepath, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the backup of epoch 2
            code = errno.ENOSPC if "space" in reason else errno.EROFS
            raise OSError(code, os.strerror(code), str(filepath))
        return real(self, filepath, *args, **kwargs)

    patch.setattr(keras.Model, "save_weights", save_weights)


REFUSED = {
    "manual": (_refuse_checkpoint, "No space left on device", "the end of epoch 1) is kept in"),
    "fit": (_refuse_backup, "No space left on device", "the backup of the last finished epoch"),
}
WHOLE = {}  # {trainer: weights_sha256 of an uninterrupted run}, one run per test process


def whole_run(trainer, tmp_path_factory, data):
    if trainer not in WHOLE:
        WHOLE[trainer] = train(trainer, tmp_path_factory.mktemp("whole"), data)["weights_sha256"]
    return WHOLE[trainer]


# The tape loop saves as the manual one does; fit's backup (a whole run, a killed one and its
# rerun: about 4 s) is slow here and on a real full disk below.
@pytest.mark.parametrize(
    "trainer",
    [
        "manual",
        pytest.param("fit", marks=pytest.mark.slow),
        pytest.param("tape", marks=pytest.mark.slow),
    ],
)
def test_a_full_disk_stops_in_one_line_keeps_the_last_good_state_and_the_rerun_resumes(
    trainer, tmp_path, tmp_path_factory, synthetic_data
):
    inject, reason, kept = REFUSED.get(trainer, REFUSED["manual"])
    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        inject(patch, reason)
        with pytest.raises(SaveFailed) as stopped:
            train(trainer, out, synthetic_data)
    message = str(stopped.value)
    assert "\n" not in message and "(no space left on device)" in message and kept in message
    assert "free some space and rerun the same command to resume" in message
    assert not (out / "metrics.json").exists() and not (out / "model.keras").exists()
    assert not list((resume_dir(out) / "checkpoints").glob("ckpt-3*"))  # half-written: removed

    resumed = train(trainer, out, synthetic_data)
    assert resumed["resumed_at"] is not None
    assert resumed["weights_sha256"] == whole_run(trainer, tmp_path_factory, synthetic_data)
    assert not resume_dir(out).exists()


def test_write_failures_are_told_from_other_errors():
    assert write_failure(OSError(errno.ENOSPC, "No space left on device")) == (
        "no space left on device"
    )
    assert write_failure(OSError(errno.EROFS, "x")) == "read-only file system"
    h5py_style = OSError("Unable to synchronously create file (errno = 28, error message = '')")
    assert write_failure(h5py_style) == "no space left on device"
    assert write_failure(ValueError("shapes do not match")) is None
    assert write_failure(OSError(errno.ENOENT, "No such file or directory")) is None


# Bad input: one line, exit 2, before TensorFlow starts, nothing created.
def _long_component(tmp_path):
    return tmp_path / ("a" * 256)


def _long_path(tmp_path):
    return tmp_path.joinpath(*["b" * 200] * 21)


def _dangling(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    return tmp_path / "link"


BAD_INPUT = {
    "seed 2**32": (["--seed", 2**32], "seed: expected at most 2**32 - 1"),
    "seed 2**64": (["--seed", 2**64], "seed: expected at most 2**32 - 1"),
    "a --tensorboard file": (["--tensorboard", "{file}"], "is a file, not a directory"),
    "a 256-byte name": (["--out", _long_component], "past this filesystem's limit of 255"),
    "a path past PATH_MAX": (["--out", _long_path], "leaves no room under this system's limit"),
    "a dangling symlink": (["--out", _dangling], "which does not exist; create that directory"),
    "128 replicas, 112 rows last": (
        ["--strategy", "mirrored", "--replicas", 128, "--train-samples", 6000],
        "the last batch of each epoch holds 112 of the 6000 training images",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_before_anything_is_written(case, tmp_path):
    position = list(BAD_INPUT).index(case)
    trainer = list(SCRIPTS)[position % 3]  # each script in turn, the first three as processes
    args, says = BAD_INPUT[case]
    (tmp_path / "file").write_text("x\n")
    args = [a(tmp_path) if callable(a) else str(a).format(file=tmp_path / "file") for a in args]
    if "--out" not in args:
        args += ["--out", tmp_path / "run"]
    before = tree(tmp_path)
    result = command(SCRIPTS[trainer], *args, real=position < 3)
    assert result.returncode == 2
    assert says in one_line(result.stderr, SCRIPTS[trainer])
    assert tree(tmp_path) == before


def _tf_config(addresses, index=0):
    return json.dumps(
        {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
    )


@pytest.mark.parametrize(
    "addresses, says",
    [
        (["127.0.0.1", "127.0.0.1:2"], "cluster.worker[0] '127.0.0.1' has no host and port"),
        ([12345], "cluster.worker[0] 12345 is not a string"),
        (["127.0.0.1:99999"], "has no host and port"),
    ],
)
def test_bad_cluster_addresses_are_refused_before_tensorflow_starts(addresses, says):
    with pytest.raises(UsageError, match=says.replace("[", r"\[").replace("]", r"\]")):
        cluster.read(_tf_config(addresses))


def test_a_busy_port_is_the_launchers_one_line(tmp_path, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("TF_CONFIG", _tf_config([f"127.0.0.1:{port}"]))
        result = run_main("custom_loop.py", "--strategy", "multi-worker", "--out", tmp_path / "r")
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is not free (Address already in use)" in one_line(
        result.stderr, "custom_loop.py"
    )


def test_parity_steps_follow_the_training_set():
    from keras_bp.report.seeds import parity_steps

    assert parity_steps(None, 60000) == 468
    assert parity_steps(None, 6000) == 46
    assert parity_steps(10, 6000) == 10
    with pytest.raises(UsageError, match="--parity-steps 468: 6000 training images hold 46 full"):
        parity_steps(468, 6000)


def test_fit_runs_at_most_an_epochs_steps_per_execution():
    from keras_bp.training.recipe import _capped

    assert _capped(Speed(steps_per_call=10**9), 47).steps_per_call == 47
    assert _capped(Speed(steps_per_call=32), 47).steps_per_call == 32


def test_a_signal_before_training_ends_the_command_at_once_in_one_line(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, ROOT / "scripts" / "custom_loop.py", "--out", tmp_path / "run"],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)  # past the script's first imports (0.2 s), inside TensorFlow's (3 s or more)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM before training started: nothing to save" in one_line(
        stderr, "custom_loop.py"
    )


def test_a_decompression_bomb_is_refused_from_the_archives_directory(tmp_path):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"\0" * 1000)
    data = bytearray(path.read_bytes())
    entry = data.rindex(b"PK\x01\x02")  # the central directory's entry of model.weights.h5
    data[entry + 24 : entry + 28] = (4_250_000_000).to_bytes(4, "little")  # declared size
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"refusing to load .*bomb\.keras: model\.weights\.h5 "):
        saving.load_model(path)


def test_a_fifo_in_the_cache_is_skipped_not_waited_on(tmp_path, monkeypatch):
    from keras_bp import data

    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path))
    os.mkfifo(tmp_path / "mnist.npz")
    with pytest.raises(ValueError, match="is not a regular file"), pytest.warns(data.CacheWarning):
        data.SOURCES["keras_bp cache"]()


def test_an_unwritable_cache_is_not_said_to_be_cached(tmp_path, monkeypatch, mnist):
    from keras_bp import data

    (tmp_path / "file").write_text("x\n")
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "file"))
    (x, y), (xt, yt) = mnist
    arrays = dict(x_train=x, y_train=y, x_test=xt, y_test=yt)
    monkeypatch.setitem(data.SOURCES, "Keras cache", lambda: arrays)
    lines = []
    data.load_mnist(["Keras cache"], report=lines.append)
    assert lines == [
        "MNIST verified (sha256 of all four arrays), from Keras cache; not cached: cannot "
        f"write {tmp_path / 'file'} (File exists)"
    ]


# Slow: real processes on MNIST, and every damaged case repaired and resumed in each trainer.
@pytest.mark.slow
@pytest.mark.parametrize("case", DAMAGED)
@pytest.mark.parametrize("trainer", CONFIGS)
def test_after_repair_a_refused_run_resumes_to_the_uninterrupted_weights(
    trainer, case, tmp_path, tmp_path_factory, synthetic_data
):
    out = tmp_path / "run"
    owner, method = (BackupDigests, "on_epoch_end") if trainer == "fit" else (RunCheckpoint, "save")
    with pytest.MonkeyPatch.context() as patch:
        die_after(patch, owner, method, when=lambda calls: len(calls) == 2)
        with pytest.raises(Killed):
            train(trainer, out, synthetic_data)
    state = tree(resume_dir(out))
    named, _ = _damage(out, case, aside=tmp_path / "state")
    with pytest.raises(UsageError):
        train(trainer, out, synthetic_data)

    # Repair as the message says: move the odd thing away (and what it displaced back).
    named.rename(tmp_path / "odd")
    if os.path.lexists(tmp_path / "state"):
        (tmp_path / "state").rename(named)
    for parent in named.relative_to(resume_dir(out)).parents:  # made for the odd thing only
        made = resume_dir(out) / parent
        if parent != Path(".") and str(parent) not in state and made.exists():
            made.rmdir()
    assert tree(resume_dir(out)) == state
    resumed = train(trainer, out, synthetic_data)
    assert resumed["weights_sha256"] == whole_run(trainer, tmp_path_factory, synthetic_data)
    assert os.path.lexists(tmp_path / "odd")


REAL = ["--deterministic", "--train-samples", "3000", "--epochs", "2", "--batch-size", "64"]
LOOP_EVERY = ["--steps-per-call", "8", "--checkpoint-every", "8"]


def real_args(trainer):
    return REAL + ([] if trainer == "fit" else LOOP_EVERY)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """`{trainer: weights_sha256}` of real uninterrupted --deterministic runs, run once."""
    digests = {}

    def digest(trainer):
        if trainer not in digests:
            out = tmp_path_factory.mktemp(f"whole-{trainer}")
            result = script(SCRIPTS[trainer], *real_args(trainer), "--out", out)
            assert result.returncode == 0, result.stderr
            digests[trainer] = json.loads((out / "metrics.json").read_text())["weights_sha256"]
        return digests[trainer]

    return digest


@pytest.fixture
def small_disk(tmp_path):
    """`make(megabytes)`: a tmpfs of that size at tmp_path/disk; `grow(megabytes)` frees space."""
    disk = tmp_path / "disk"
    disk.mkdir()

    def mount(megabytes, remount=False):
        options = f"{'remount,' if remount else ''}size={megabytes}m"
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)],
            capture_output=True,
            text=True,
        )
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        return disk

    yield mount
    subprocess.run(["umount", str(disk)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("trainer", CONFIGS)
def test_a_real_full_disk_stops_in_one_line_and_the_rerun_resumes(
    trainer, small_disk, uninterrupted
):
    # 5 MB: the first checkpoint or backup fits (about 3.3 MB with the optimizer's state),
    # the next does not.
    out = small_disk(5) / "run"
    result = script(SCRIPTS[trainer], *real_args(trainer), "--out", out)
    assert result.returncode == 1, result.stderr
    line = one_line(result.stderr, SCRIPTS[trainer])
    assert "(no space left on device); stopped: " in line and "rerun the same command" in line
    assert not (out / "metrics.json").exists()

    small_disk(64, remount=True)  # space freed
    result = script(SCRIPTS[trainer], *real_args(trainer), "--out", out)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "metrics.json").read_text())["weights_sha256"] == uninterrupted(
        trainer
    )


@pytest.mark.slow
@pytest.mark.parametrize("trainer", CONFIGS)
def test_a_kill_during_a_save_loses_nothing(trainer, tmp_path, uninterrupted):
    """SIGKILL the moment a save is under way (a TensorFlow temporary file, or Keras's backup
    being rewritten), then rerun: the same weights as an uninterrupted run."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, ROOT / "scripts" / SCRIPTS[trainer], *real_args(trainer), "--out", out],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    watched = resume_dir(out) / ("keras" if trainer == "fit" else "checkpoints")
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        names = os.listdir(watched) if watched.is_dir() else []
        saving_now = [n for n in names if "_temp" in n or "tempstate" in n or n.endswith(".bkp")]
        if saving_now:
            proc.kill()
            break
        time.sleep(0.001)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before a save was seen"
    result = script(SCRIPTS[trainer], *real_args(trainer), "--out", out)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "metrics.json").read_text())["weights_sha256"] == uninterrupted(
        trainer
    )


@pytest.mark.slow
def test_a_read_only_checkpoint_directory_is_refused_and_the_run_resumes_once_writable(
    tmp_path, read_only, uninterrupted
):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, ROOT / "scripts" / "manual_backprop.py", *real_args("manual"), "--out",
         out],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    checkpoints = resume_dir(out) / "checkpoints"
    while proc.poll() is None and not list(checkpoints.glob("ckpt-*.index")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait() == 128 + signal.SIGTERM
    read_only(checkpoints)
    result = script("manual_backprop.py", *real_args("manual"), "--out", out)
    assert result.returncode == 2
    assert f"{checkpoints} is read-only" in one_line(result.stderr, "manual_backprop.py")
    subprocess.run(["umount", str(checkpoints)], check=True)  # writable again
    result = script("manual_backprop.py", *real_args("manual"), "--out", out)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "metrics.json").read_text())["weights_sha256"] == uninterrupted(
        "manual"
    )


@pytest.mark.slow
def test_a_peer_that_never_joins_is_named_within_the_bound(tmp_path):
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    addresses = [f"127.0.0.1:{p}" for p in ports]
    started = time.monotonic()
    result = script(
        "custom_loop.py", "--strategy", "multi-worker", "--out", tmp_path / "run",
        env={"TF_CONFIG": _tf_config(addresses), cluster.JOIN_SECONDS_ENV: "5"},
    )  # fmt: skip
    assert result.returncode == 1
    assert f"worker 1 at {addresses[1]} did not join within 5 s" in one_line(
        result.stderr, "custom_loop.py"
    )
    assert time.monotonic() - started < 120


def test_a_signal_during_the_final_evaluation_says_the_run_finishes(capfd):
    from keras_bp.runtime.interrupts import stop_requests

    with stop_requests() as request:
        request.phase = "finishing"
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(200):
            if request.requested:
                break
            time.sleep(0.01)  # the watcher thread records it
    assert request.requested == signal.SIGINT
    assert capfd.readouterr().err.strip() == (
        "SIGINT: training is done; evaluating and saving the run take a few seconds more; "
        "send it again to exit now"
    )


def test_ctrl_c_while_a_script_imports_is_one_line(capsys, monkeypatch):
    from keras_bp import cli

    monkeypatch.setattr(sys, "argv", ["train.py"])
    cli._one_line_on_ctrl_c(KeyboardInterrupt, KeyboardInterrupt(), None)
    assert capsys.readouterr().err.strip() == "train.py: interrupted while starting"
    assert sys.excepthook is cli._one_line_on_ctrl_c
