"""Speed of the three trainers against this machine's own floors, measured side by side.

Each trainer's time is a ratio to the floors (`keras_bp.speed.floors`) measured in the same process,
so the ratios hold on a noisy, shared machine even when the seconds do not. Beside the ratios:
the seconds the first epoch spends tracing and compiling (its time above a later epoch's), the
fixed cost per step above the training floor once running, and the peak memory of each run.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from keras_bp.config import FIT_FASTEST, FIT_SPEED, LOOP_SPEED, FitConfig, LoopConfig
from keras_bp.runtime.walltime import startup_seconds
from keras_bp.speed import floors
from keras_bp.training import runs
from keras_bp.training.loop import train_loop
from keras_bp.training.recipe import train_fit


def cpu_description() -> str:
    """The CPU's model and widest vector extensions, so figures from two machines can be told
    apart: "Intel(R) Xeon(R) Processor, AVX-512 (F, BW, VNNI, BF16), AMX"."""
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(
                line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line
            )
    except OSError:
        return platform.processor() or platform.machine()
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = set(info.get("flags", "").split())
    avx512 = [
        name
        for name, flag in [
            ("F", "avx512f"),
            ("BW", "avx512bw"),
            ("VNNI", "avx512_vnni"),
            ("BF16", "avx512_bf16"),
        ]
        if flag in flags
    ]
    vector = (
        f"AVX-512 ({', '.join(avx512)})" if avx512 else ("AVX2" if "avx2" in flags else "no AVX2")
    )
    extras = ", AMX" if "amx_tile" in flags else ""
    return f"{info.get('model name', platform.machine())}, {vector}{extras}"


def time_loop(kind, data, epochs, speed=LOOP_SPEED, epoch_copy=True):
    """Run the custom loop (`kind`: "tape" or "manual"); return its `run_figures`. `epoch_copy`:
    as `keras_bp.training.loop.train_loop`'s (False: each step gathers its batch)."""
    with tempfile.TemporaryDirectory() as out:
        config = LoopConfig(
            gradients=kind, epochs=epochs, out=Path(out), checkpoint_every=0, speed=speed
        )
        _, metrics = train_loop(config, data, verbose=0, epoch_copy=epoch_copy)
    return run_figures(metrics)


def time_fit(data, epochs, speed=FIT_SPEED):
    """Run the recipe through `model.fit` with `speed`; return its `run_figures`."""
    with tempfile.TemporaryDirectory() as out:
        _, metrics = train_fit(FitConfig(epochs=epochs, out=Path(out), speed=speed), data, 0)
    return run_figures(metrics)


def time_process(command, epochs, workers=None, env=None):
    """Run `keras-bp COMMAND` as its own process, or as `workers` processes through
    `scripts/run_workers.py`: a strategy fixes its devices when the process starts, and Keras
    its backend. `env` adds to the environment. Returns the chief's `run_figures`; the child's
    memory is not measured (`peak_rss_mb` None)."""
    with tempfile.TemporaryDirectory() as out:
        trainer = [*command, "--epochs", str(epochs), "--out", out]
        launcher = ["run-workers", "--workers", str(workers), "--"] if workers else []
        if workers:
            trainer = [sys.executable, "-m", "keras_bp", *trainer]
        subprocess.run(
            [sys.executable, "-m", "keras_bp", *launcher, *trainer],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    return {**run_figures(metrics), "peak_rss_mb": None}


def run_figures(metrics):
    """`seconds` of training, the `startup` seconds (tracing and compiling: the first epoch's
    time above the median later epoch's; 0 for a one-epoch run) and the `test_accuracy`."""
    return {
        "seconds": metrics["train_seconds"],
        "startup": startup_seconds(metrics["epoch_seconds"]),
        "test_accuracy": metrics["test_accuracy"],
    }


def reset_peak_memory():
    """Start a new peak-RSS measurement (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_mb():
    """The process's peak resident memory since `reset_peak_memory`, in MB; None if unknown."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def trainers(data, epochs):
    """`{name: run}` for each trainer; `run()` returns its `run_figures`.

    Each trainer as it ships (the loops with RMSprop fused, each epoch's batches sliced from its
    permuted copy), the shipped loops gathering each step's batch instead (as before that copy),
    then `fit` with the fastest settings that keep its updates and the loops with Keras's op-by-op
    RMSprop, then all with XLA.
    """
    unfused, xla = replace(LOOP_SPEED, fused=False), replace(LOOP_SPEED, xla=True)
    return {
        "fit: make train (the recipe as is)": lambda: time_fit(data, epochs),
        "tape loop: make custom-loop": lambda: time_loop("tape", data, epochs),
        "manual loop: make manual": lambda: time_loop("manual", data, epochs),
        "tape loop: a gather per step, no epoch copy": lambda: time_loop(
            "tape", data, epochs, epoch_copy=False
        ),
        "manual loop: a gather per step, no epoch copy": lambda: time_loop(
            "manual", data, epochs, epoch_copy=False
        ),
        "fit: --steps-per-execution 32 --fused": lambda: time_fit(data, epochs, FIT_FASTEST),
        "tape loop: --no-fused": lambda: time_loop("tape", data, epochs, unfused),
        "manual loop: --no-fused": lambda: time_loop("manual", data, epochs, unfused),
        "fit: --steps-per-execution 32 --fused --xla": lambda: time_fit(
            data, epochs, replace(FIT_FASTEST, xla=True)
        ),
        "tape loop: --xla": lambda: time_loop("tape", data, epochs, xla),
        "manual loop: --xla": lambda: time_loop("manual", data, epochs, xla),
        **distributed(epochs),
    }


def select(runs, words):
    """The entries of `runs` whose name contains one of `words`; a word that names none is a
    ValueError, so a typo never silently drops a row."""
    words = [w.strip() for w in words if w.strip()]
    unmatched = [w for w in words if not any(w in name for name in runs)]
    if not words or unmatched:
        raise ValueError(f"no row's name contains {unmatched or words}; the rows: {list(runs)}")
    return {name: run for name, run in runs.items() if any(w in name for w in words)}


def distributed(epochs):
    """`{name: run}` for data parallelism on this machine: 2 mirrored replicas in one process,
    and 2 worker processes, each its own process (`time_process`)."""
    mirrored = ["--strategy", "mirrored", "--replicas", "2", "--checkpoint-every", "0"]
    return {
        "tape loop: --strategy mirrored --replicas 2": lambda: time_process(
            ["custom-loop", *mirrored], epochs
        ),
        "manual loop: --strategy mirrored --replicas 2": lambda: time_process(
            ["manual", *mirrored], epochs
        ),
        "manual loop: 2 workers (run_workers.py)": lambda: time_process(
            ["manual", "--strategy", "multi-worker", "--checkpoint-every", "0"], epochs, workers=2
        ),
    }


def floor_runs(steps):
    """`{name: run}` for the two floors, each with TensorFlow's kernels and with XLA."""
    return {
        f"{kind} floor, {'XLA' if xla else 'tf.function'}": (
            lambda time_it=time_it, xla=xla: {"seconds": time_it(steps, xla=xla)}
        )
        for kind, time_it in [
            ("matmul", floors.floor_seconds),
            ("training", floors.training_floor_seconds),
        ]
        for xla in (False, True)
    }


def summarize(results, steps):
    """Each row's medians over repeats, as ratios to the faster of each floor of the same run.

    Args:
        results: `{name: [figures of each repeat]}`, floors first, as `floor_runs` and
            `trainers` name them, with `peak_rss_mb` added.
        steps: training steps per run, for the fixed cost per step.
    """
    medians = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0] if runs[0][k] is not None}
        for name, runs in results.items()
    }
    matmul = min(m["seconds"] for n, m in medians.items() if n.startswith("matmul floor"))
    training = min(m["seconds"] for n, m in medians.items() if n.startswith("training floor"))
    rows = {}
    for name, m in medians.items():
        row = {
            **m,
            "x_matmul_floor": m["seconds"] / matmul,
            "x_training_floor": m["seconds"] / training,
        }
        if "startup" in m:
            steady = m["seconds"] - m["startup"]
            row["steady_x_training_floor"] = steady / training
            row["fixed_us_per_step"] = (steady - training) / steps * 1e6
        if name.startswith("matmul floor"):
            row["gflops"] = floors.matmul_flops() * steps / m["seconds"] / 1e9
        rows[name] = row
    return {"matmul_floor_seconds": matmul, "training_floor_seconds": training, "rows": rows}


def table(summary):
    """The summary as a markdown table, one row per contestant."""
    columns = [
        ("seconds", "seconds", "{:.2f}"),
        ("x_matmul_floor", "× matmul floor", "{:.2f}×"),
        ("x_training_floor", "× training floor", "{:.2f}×"),
        ("startup", "trace + compile s", "{:.2f}"),
        ("steady_x_training_floor", "steady × training floor", "{:.2f}×"),
        ("fixed_us_per_step", "fixed µs/step over training floor", "{:.0f}"),
        ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
        ("gflops", "GFLOP/s", "{:.0f}"),
        ("test_accuracy", "test accuracy", "{:.4f}"),
    ]
    rows = [
        [name] + [fmt.format(row[key]) if key in row else "" for key, _, fmt in columns]
        for name, row in summary["rows"].items()
    ]
    return runs.markdown_table(["what"] + [title for _, title, _ in columns], rows)
