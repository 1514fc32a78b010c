"""The figures of the reproduction report, drawn with matplotlib's Agg backend (no display).

Each function takes plain Python or numpy data and a `path`, writes one PNG atomically (a kill
never leaves half a file), closes its figure and returns the path. A trainer keeps one colour in
every figure: `color("fit")` is always tab10's blue, so a reader learns the key once.
"""

import contextlib
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from keras_bp.runtime import atomic

matplotlib.use("Agg")  # before pyplot: a report runs on machines without a display
import matplotlib.pyplot as plt  # noqa: E402

DPI = 120
TRAINERS = ("fit", "tape", "manual")
_TAB10 = plt.get_cmap("tab10").colors
_TRAINER_COLORS = _TAB10[:3]
# Grey (tab10's 8th) is kept for reference lines; other labels cycle through what is left, so
# they never take a trainer's colour, in the order first seen in this process.
_OTHER_COLORS = _TAB10[3:7] + _TAB10[8:]
_others: list[str] = []

# Zeros cannot sit on a log axis. They are drawn at a floor a decade below the smallest nonzero
# value (at most 1e-10), so a real error is never drawn below the floor; the figure says so.
MAX_FLOOR = 1e-10


def color(label: str):
    """The colour of `label`: fit, tape, manual are tab10's first three; others take the next."""
    if label in TRAINERS:
        return _TRAINER_COLORS[TRAINERS.index(label)]
    if label not in _others:
        _others.append(label)
    return _OTHER_COLORS[_others.index(label) % len(_OTHER_COLORS)]


@contextlib.contextmanager
def _figure(path, **subplots):
    """Yield `(fig, axes)`; on leaving, write `path` atomically. The figure is closed either way,
    so a failed draw leaves neither a file nor an open figure behind."""
    fig, axes = plt.subplots(layout="constrained", **subplots)
    try:
        yield fig, axes
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
    finally:
        plt.close(fig)


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _log_floor(arrays) -> float:
    """A power of ten a decade below the smallest positive value, and at most `MAX_FLOOR`."""
    values = np.concatenate([np.ravel(np.asarray(a, dtype=float)) for a in arrays])
    positive = values[values > 0]
    if not positive.size:
        return MAX_FLOOR
    return float(min(MAX_FLOOR, 10.0 ** (np.floor(np.log10(positive.min())) - 1)))


def learning_curves(histories, path) -> Path:
    """Loss and accuracy per epoch: the mean over seeds as a line, the min–max band around it.

    Args:
        histories: `{trainer_label: [history, ...]}`, one history per seed; a history holds
            per-epoch lists "loss", "accuracy" (train) and "test_loss", "test_accuracy".
    """
    with _figure(path, ncols=2, figsize=(10, 4.4)) as (fig, axes):
        panels = [
            (axes[0], "loss", "cross-entropy loss (nats per image)"),
            (axes[1], "accuracy", "accuracy (fraction of images correct)"),
        ]
        handles, drawn = [], {}
        # Trainers that agree draw on top of each other: the first drawn is the widest, so the
        # ones beneath still show at the edges.
        for rank, (label, runs) in enumerate(histories.items()):
            c, width = color(label), max(3.5 - rank, 1.0)
            for prefix, style in [("", "-"), ("test_", "--")]:
                for ax, metric, _ in panels:
                    curves = np.array([h[prefix + metric] for h in runs], float)  # (seeds, epochs)
                    epochs = np.arange(1, curves.shape[1] + 1)
                    ax.fill_between(epochs, curves.min(0), curves.max(0), color=c, alpha=0.2, lw=0)
                    ax.plot(epochs, curves.mean(0), style, marker="o", ms=3, color=c, lw=width)
            metrics = [
                [h[k] for k in ("loss", "accuracy", "test_loss", "test_accuracy")] for h in runs
            ]
            same = _same_as(label, metrics, drawn, rtol=1e-3)  # lines a reader cannot tell apart
            name = f"{label} ({_seeds(len(runs))})" + (f", on {same}'s lines" if same else "")
            handles.append(Line2D([], [], color=c, lw=width, label=name))
        handles += [
            Line2D([], [], color="0.3", ls="-", label="train"),
            Line2D([], [], color="0.3", ls="--", label="test"),
            Patch(color="grey", alpha=0.2, label="min–max over seeds"),
        ]
        for ax, metric, ylabel in panels:
            ax.set(xlabel="epoch", ylabel=ylabel, title=metric.capitalize())
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
        fig.suptitle("Learning curves: train (solid) and test (dashed), mean over seeds")
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4))
    return Path(path)


def _same_as(label, value, drawn: dict, rtol=0.0):
    """The first label drawn before `label` whose `value` equals this one (within `rtol`), else
    `None`; records it. Trainers that agree draw one line over another; the legend says so."""
    value = np.asarray(value, dtype=float)
    same = next(
        (k for k, v in drawn.items() if v.shape == value.shape and np.allclose(v, value, rtol, 0)),
        None,
    )
    drawn[label] = value
    return same


def accuracy_per_seed(values, published, path, published_label="published") -> Path:
    """Final test accuracy of every seed, one column per trainer, against the published number.

    Args:
        values: `{trainer_label: {seed: test_accuracy}}`.
        published: the accuracy the original example reports, drawn as a horizontal line.
    """
    with _figure(path, figsize=(6.4, 4.6)) as (fig, ax):
        for x, (label, by_seed) in enumerate(values.items()):
            accuracies = np.array(list(by_seed.values()), dtype=float)
            # Hollow markers, so seeds with the same accuracy still show as one ring drawn twice.
            ax.scatter(
                np.full(accuracies.size, x), accuracies, s=40, fc="none", ec=color(label), lw=1.5
            )
            mean = accuracies.mean()
            ax.hlines(mean, x - 0.22, x + 0.22, colors=color(label), lw=2.5)
            below = {"xytext": (0, -4), "textcoords": "offset points", "ha": "center"}
            ax.annotate(f"mean {mean:.4f}", (x, mean), va="top", fontsize=9, **below)
        ax.axhline(published, color="0.3", ls="--", lw=1)
        ax.set_xticks(
            range(len(values)),
            [f"{label}\n({_seeds(len(seeds))})" for label, seeds in values.items()],
        )
        ax.set_xlim(-0.5, len(values) - 0.5)
        ax.set(ylabel="test accuracy (fraction of 10,000 images)", title="Test accuracy per seed")
        ax.grid(axis="y", alpha=0.3)
        key = [
            Line2D([], [], ls="none", marker="o", mfc="none", mec="0.3", label="one seed"),
            Line2D([], [], color="0.3", lw=2.5, label="mean over seeds"),
            Line2D([], [], color="0.3", ls="--", lw=1, label=f"{published_label} {published:.4f}"),
        ]
        fig.legend(handles=key, loc="outside lower center", ncol=3)
    return Path(path)


def parity_over_steps(curves, path) -> Path:
    """How far the trainers' weights drift apart, step by step, one panel per configuration.

    Args:
        curves: `{config_label: {pair_label: array}}`; `array[i]` is the largest absolute weight
            difference between the pair after step `i + 1`.
    """
    floor = _log_floor([a for pairs in curves.values() for a in pairs.values()])
    size = (3.6 * len(curves) + 1, 4.2)
    with _figure(path, ncols=len(curves), figsize=size, sharey=True, squeeze=False) as (fig, axes):
        for ax, (config, pairs) in zip(axes[0], curves.items(), strict=True):
            drawn = {}
            for pair, diffs in pairs.items():
                same = _same_as(pair, diffs, drawn)
                diffs = np.asarray(diffs, dtype=float)
                steps = np.arange(1, diffs.size + 1)
                # A curve equal to one drawn before goes dashed on top of it: both stay visible.
                label, style = (f"{pair} (= {same})", "--") if same else (pair, "-")
                ax.plot(
                    steps, np.maximum(diffs, floor), style, color=color(pair), lw=1.5, label=label
                )
            ax.set(yscale="log", xlabel="training step", title=config)
            ax.grid(alpha=0.3, which="major")
        axes[0, 0].set_ylabel("max |Δw| (weights)")
        axes[0, 0].set_ylim(bottom=floor / 3)
        fig.suptitle("Weight difference between trainers, after each step")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=len(labels))
        fig.text(0.99, 0.01, f"identical weights (0) drawn at {floor:.0e}", ha="right", fontsize=9)
    return Path(path)


def gradcheck_errors(errors, tolerances, path) -> Path:
    """Histograms of log10(relative gradient error), with each label's tolerance as a line.

    Args:
        errors: `{label: array of relative errors}`, e.g. "float64 vs numerical".
        tolerances: `{label: float}`, the tolerance the tests hold that label to.
    """
    floor = _log_floor(errors.values())
    logs = {
        k: np.log10(np.maximum(np.ravel(np.asarray(v, float)), floor)) for k, v in errors.items()
    }
    everything = np.concatenate([*logs.values(), np.log10([*tolerances.values()])])
    bins = np.linspace(np.floor(everything.min()) - 0.5, np.ceil(everything.max()) + 0.5, 50)
    with _figure(path, figsize=(8, 4.6)) as (fig, ax):
        for label, values in logs.items():
            ax.hist(values, bins=bins, color=color(label), alpha=0.25)
            ax.hist(values, bins=bins, color=color(label), histtype="step", lw=1.5, label=label)
        for label, tolerance in tolerances.items():
            name = f"tolerance {label}: {tolerance:.0e}"
            ax.axvline(np.log10(tolerance), color=color(label), ls="--", lw=1.5, label=name)
        zeros = sum(int(np.sum(np.asarray(v) == 0)) for v in errors.values())
        note = f"; {zeros} exact zeros drawn at {np.log10(floor):.0f}" if zeros else ""
        ax.set(
            xlabel=f"log10(relative error) (dimensionless{note})",
            ylabel="number of gradient entries",
            title="Gradient check: relative error per gradient entry",
        )
        ax.grid(alpha=0.3)
        # Column-major with two columns: each row pairs a histogram with its tolerance line.
        fig.legend(loc="outside lower center", ncol=2, fontsize=9)
    return Path(path)


def speed(rows, cpu, path) -> Path:
    """Training time of each run as a multiple of this machine's training floor (the matrix
    products and one fused RMSprop update per step, `keras_bp.speed.floors`).

    Args:
        rows: `[(label, ratio), ...]`, drawn top to bottom in the order given.
        cpu: the machine's CPU, from `bench.cpu_description()`.
    """
    labels = [label for label, _ in rows]
    ratios = np.array([ratio for _, ratio in rows], dtype=float)
    # A run is coloured by its trainer ("tape loop: --xla" is tape's colour); anything else grey.
    trainers = [label.split()[0].rstrip(":") for label in labels]
    colors = [color(t) if t in TRAINERS else "0.6" for t in trainers]
    with _figure(path, figsize=(8, 1.4 + 0.45 * len(rows))) as (fig, ax):
        y = np.arange(len(rows))
        ax.barh(y, ratios, color=colors, height=0.6)
        for yi, ratio in zip(y, ratios, strict=True):
            beyond_the_bar = {"xytext": (4, 0), "textcoords": "offset points", "va": "center"}
            ax.annotate(f"{ratio:.2f}×", (ratio, yi), fontsize=9, **beyond_the_bar)
        ax.axvline(1.0, color="black", ls="--", lw=1)
        ax.set_yticks(y, labels)
        # The first row on top, as in the table beside it, with an empty band above it for "floor".
        ax.set_ylim(len(rows) - 0.5, -1.1)
        ax.annotate("floor", (1.0, -0.8), xytext=(4, 0), textcoords="offset points", va="center")
        ax.set_xlim(0, max(1.0, ratios.max(initial=0)) * 1.15)  # room for the printed values
        ax.set(xlabel="training time ÷ training floor (×; lower is faster)")
        ax.grid(axis="x", alpha=0.3)
        fig.suptitle("Training time over this machine's training floor")
        ax.set_title(textwrap.fill(cpu, 60), fontsize=9, color="0.3")
    return Path(path)


def overfitting(history, best_epoch, path, stopped_epoch=None, patience=None) -> Path:
    """Train and validation loss per epoch, with the epoch of the lowest validation loss marked.

    Args:
        history: per-epoch lists "loss" (train), "val_loss" and optionally "test_loss".
        best_epoch: the 1-based epoch of the lowest validation loss.
        stopped_epoch: the 1-based epoch training stopped at (early stopping), if any.
        patience: the early-stopping patience that stops at `stopped_epoch`, for its label.
    """
    with _figure(path, figsize=(8, 4.6)) as (fig, ax):
        splits = [
            ("loss", "train", "-"),
            ("val_loss", "validation", "--"),
            ("test_loss", "test", ":"),
        ]
        for key, name, style in splits:
            if key in history:
                losses = np.asarray(history[key], dtype=float)
                epochs = np.arange(1, losses.size + 1)
                ax.plot(epochs, losses, style, marker="o", ms=3, color=color(name), label=name)
        best = f"best epoch {best_epoch} (lowest validation loss)"
        ax.axvline(best_epoch, color="black", lw=1, label=best)
        if stopped_epoch is not None:
            stopped = f"stopped at epoch {stopped_epoch}"
            if patience is not None:
                stopped = f"early stopping, patience {patience}: stops after epoch {stopped_epoch}"
            ax.axvline(stopped_epoch, color="0.5", ls="-.", lw=1, label=stopped)
        ax.set(xlabel="epoch", ylabel="cross-entropy loss (nats per image)")
        ax.set_title("Loss per epoch: where validation loss turns")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        fig.legend(loc="outside lower center", ncol=2, fontsize=9)  # losses left, markers right
    return Path(path)
