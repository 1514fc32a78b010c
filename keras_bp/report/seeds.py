"""The reproduction report: every trainer over many seeds, with statistics and figures.

`scripts/report.py` (`make report`) calls these for the runs and measurements, then
`keras_bp.report.document` for `report.json` and `report.md`, and `keras_bp.report.figures`. Each
run keeps its own directory, `OUT/runs/TRAINER-seedS/`, with its `metrics.json`; a rerun reuses the
finished ones, so a killed report resumes where it stopped. `fit` on JAX and PyTorch runs in a
process of its own (`keras_bp.report.backend_runs`).
"""

import itertools
import json
from dataclasses import asdict, replace
from pathlib import Path

import keras
import numpy as np

from keras_bp.config import LOOP_SPEED, FitConfig, LoopConfig
from keras_bp.report import backend_runs
from keras_bp.runtime.errors import UsageError
from keras_bp.training.early_stopping import replay
from keras_bp.training.runlog import shuffle

# The recipe's update for the loops: Keras's op-by-op RMSprop, as `make train` runs it, so that
# the three trainers of a report do the same computation (`make compare` does the same).
RECIPE_UPDATE = replace(LOOP_SPEED, fused=False)
# The trainers a report compares, by label: the three of `make compare`, and `fit` fed the
# arrays themselves, so Keras repeats one order every epoch (`FitConfig.keras_shuffle`).
TRAINERS = {
    "fit": FitConfig(),
    "tape": LoopConfig(gradients="tape", speed=RECIPE_UPDATE),
    "manual": LoopConfig(gradients="manual", speed=RECIPE_UPDATE),
    "fit --keras-shuffle": FitConfig(keras_shuffle=True),
}
# The parity figure's configurations, each for all three trainers: RMSprop fused as the loops
# ship, Keras's op-by-op RMSprop as `make train` runs, and under XLA.
PARITY_BATCH = 128  # the recipe's batch, `keras_bp.checks.parity.trajectories`'s default
PARITY_SPEEDS = {
    "--fused (shipped)": LOOP_SPEED,
    "--no-fused": RECIPE_UPDATE,
    "--xla": replace(LOOP_SPEED, xla=True),
}


def run_dir(out, label: str, seed: int) -> Path:
    """`OUT/runs/fit-keras-shuffle-seed0` for `("fit --keras-shuffle", 0)`."""
    return Path(out) / "runs" / f"{label.replace(' --', '-').replace(' ', '-')}-seed{seed}"


def finished(directory: Path, config, samples: int) -> dict | None:
    """The metrics of a finished run in `directory` with `config`'s settings on `samples`
    training images, else `None`."""
    try:
        metrics = json.loads((directory / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    wanted = {
        "trainer": config.trainer,
        "backend": config.backend,
        "epochs": config.epochs,
        "seed": config.seed,
        "train_samples": samples,
        "shuffle": shuffle(config),
        "speed": asdict(config.speed),
    }
    # metrics.json records early stopping as {patience, best_epoch, stopped_epoch}, or null.
    patience = (metrics.get("early_stopping") or {}).get("patience")
    same = all(metrics.get(k) == v for k, v in wanted.items())
    return metrics if same and patience == config.early_stopping else None


def train_all(
    data, out, seeds, epochs, train_samples=None, fresh=False, progress=print, backends=()
):
    """Train every trainer of `TRAINERS`, and `fit` on each of `backends` other than TensorFlow
    (`keras_bp.report.backend_runs`), once per seed, or reuse its finished run. A run on another
    backend loads `train_samples` of MNIST itself: `data` must be `mnist_arrays(train_samples)`.

    Returns `({label: [metrics per seed]}, how many finished runs were reused)`.
    """
    from keras_bp.training.loop import train_loop
    from keras_bp.training.recipe import train_fit

    trainers = {**TRAINERS, **backend_runs.fit_configs(backends)}
    jobs = [(label, seed) for label in trainers for seed in seeds]
    results = {label: [] for label in trainers}
    reused = 0
    for i, (label, seed) in enumerate(jobs, 1):
        directory = run_dir(out, label, seed)
        config = replace(
            trainers[label],
            epochs=epochs,
            seed=seed,
            train_samples=train_samples,
            out=directory,
            fresh=fresh,
        )
        metrics = None if fresh else finished(directory, config, len(data[0][0]))
        where = f"[{i}/{len(jobs)}] {label}, seed {seed}:"
        if metrics is None:
            (directory / "metrics.json").unlink(missing_ok=True)
            progress(f"{where} training ({len(jobs) - i} more after this)")
            if config.backend != backend_runs.TENSORFLOW:
                metrics = backend_runs.train_elsewhere(config)
                if finished(directory, config, len(data[0][0])) is None:  # the command's defaults
                    raise RuntimeError(f"{where} keras-bp train ran other settings than these")
            else:
                keras.backend.clear_session()
                train = train_fit if isinstance(config, FitConfig) else train_loop
                _, metrics = train(config, data, verbose=0)
            done = f"{metrics['train_seconds']:.1f} s"
        else:
            done, reused = "reused", reused + 1
        progress(f"{where} test accuracy {metrics['test_accuracy']:.4f} ({done})")
        results[label].append(metrics)
    return results, reused


def overfitting_run(data, out, epochs, seed=0, patience=3, fresh=False, progress=print):
    """One long tape-loop run with validation: its history, its best epoch, and where early
    stopping with `patience` would have stopped it. Patience `epochs` lets every epoch run."""
    from keras_bp.training.loop import train_loop

    directory = Path(out) / "runs" / f"overfitting-seed{seed}"
    config = LoopConfig(
        epochs=epochs,
        seed=seed,
        early_stopping=epochs,
        out=directory,
        fresh=fresh,
        speed=RECIPE_UPDATE,
    )
    metrics = None if fresh else finished(directory, config, len(data[0][0]))
    if metrics is None:
        progress(f"overfitting: {epochs} epochs of the tape loop, seed {seed}, validation held out")
        keras.backend.clear_session()
        _, metrics = train_loop(config, data, verbose=0)
    rule = replay(patience, metrics["history"]["val_loss"])
    return {
        "trainer": "tape",
        "seed": seed,
        "epochs": epochs,
        "history": metrics["history"],
        "best_epoch": metrics["early_stopping"]["best_epoch"],
        "patience": patience,
        "stopped_epoch": None if rule.stopped_epoch is None else rule.stopped_epoch + 1,
        "stopped_best_epoch": rule.best_epoch + 1,
    }


def parity_steps(asked, samples, batch_size=PARITY_BATCH) -> int:
    """The parity figure's steps: `asked`, or by default (`None`) one epoch's full batches of
    `samples` training images; more than those is a one-line `UsageError`."""
    epoch = samples // batch_size
    if asked is None:
        return epoch
    if asked > epoch:
        raise UsageError(
            f"--parity-steps {asked}: {samples} training images hold {epoch} full batches of "
            f"{batch_size}; use at most {epoch}, or 0 to skip the parity figure"
        )
    return asked


def parity_curves(x, y, steps, progress=print):
    """`{config: {pair: [max |Δw| after each step]}}` for `PARITY_SPEEDS`."""
    from keras_bp.checks.parity import trajectories

    curves = {}
    for name, speed in PARITY_SPEEDS.items():
        progress(f"parity: {steps} steps in lockstep, {name}")
        keras.backend.clear_session()
        curves[name] = {k: v.tolist() for k, v in trajectories(x, y, steps, speed=speed).items()}
    return curves


def backend_parity_curves(x, y, backends, steps, progress=print):
    """`fit` on each pair of `backends`, from the same weights on the same first `steps`
    batches (`keras_bp.checks.backend_parity`, a process per backend): `{"trainer": "fit",
    "steps": [...], "curves": {"tensorflow vs jax": [max |Δw| after each of those steps]}}`.

    The weights are kept after steps 1 to 10, then after every 5th step and the last: a
    trajectory of every step would hold 1.6 MB per step and backend."""
    from keras_bp.checks import backend_parity

    record = sorted({*range(1, min(10, steps) + 1), *range(5, steps + 1, 5), steps})
    weights = {}
    for backend in backends:
        progress(f"parity across backends: fit on {backend}, {steps} steps, in its own process")
        trained = backend_parity.train_on(
            backend, x, y, steps, PARITY_BATCH, record=record, trainers=("fit",)
        )
        weights[backend] = trained["fit"]
    curves = {
        f"{a} vs {b}": [
            backend_parity.max_abs_difference(weights[a][s], weights[b][s]) for s in record
        ]
        for a, b in itertools.combinations(backends, 2)
    }
    return {"trainer": "fit", "steps": record, "curves": curves}


def gradient_errors():
    """The hand-written gradients' elementwise errors (`keras_bp.checks.gradcheck.error_samples`):
    the arrays for the figure, and their counts, medians, maxima and tolerances."""
    from keras_bp.checks.gradcheck import error_samples

    samples = error_samples()
    summary = {
        label: {
            "n": int(e.size),
            "zeros": int(np.count_nonzero(e == 0)),
            "median": float(np.median(e)),
            "max": float(e.max()),
            "rtol": samples.rtol[label],
        }
        for label, e in samples.errors.items()
    }
    return samples, summary


def speed_rows(bench_path):
    """`make bench`'s rows from `bench_path` (`runs/bench.json`): each one's median time over
    the matmul floor and over the training floor, and the machine; `None` without a bench run."""
    try:
        bench = json.loads(Path(bench_path).read_text())
        rows = [
            [name, row["x_matmul_floor"], row["x_training_floor"]]
            for name, row in sorted(bench["rows"].items(), key=lambda item: _rank(item[0]))
            if not name.startswith("matmul floor")
        ]
        machine = bench["machine"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return {"machine": machine, "rows": rows, "source": str(bench_path)}


def _rank(name):
    """The training floors first, then fit's, the tape loop's and the manual loop's rows, each
    trainer's shipped row (`make …`) first."""
    trainer = name.split()[0].rstrip(":")
    group = {"training": 0, "fit": 1, "tape": 2, "manual": 3}.get(trainer, 4)
    return group, "make " not in name, name
