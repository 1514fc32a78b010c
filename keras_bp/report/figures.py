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
from matplotlib.legend_handler import HandlerTuple
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
    """Loss and accuracy per epoch, one column per trainer: the mean over seeds as a line, the
    min–max band around it.

    Trainers that agree would hide one another's lines in a single panel, so each trainer gets
    its own column; the axes are shared, so the columns compare at a glance.

    Args:
        histories: `{trainer_label: [history, ...]}`, one history per seed; a history holds
            per-epoch lists "loss", "accuracy" (train) and "test_loss", "test_accuracy".
    """
    n = len(histories)
    grid = {"nrows": 2, "ncols": n, "sharex": True, "sharey": "row", "squeeze": False}
    with _figure(path, figsize=(2.8 * n + 1.4, 6.0), **grid) as (fig, axes):
        rows = [
            ("loss", "cross-entropy loss\n(nats per image)"),
            ("accuracy", "accuracy\n(fraction of images correct)"),
        ]
        drawn = {}
        for col, (label, runs) in enumerate(histories.items()):
            c = color(label)
            for (metric, ylabel), ax in zip(rows, axes[:, col], strict=True):
                for prefix, style in [("", "-"), ("test_", "--")]:
                    curves = np.array([h[prefix + metric] for h in runs], float)  # (seeds, epochs)
                    epochs = np.arange(1, curves.shape[1] + 1)
                    ax.fill_between(epochs, curves.min(0), curves.max(0), color=c, alpha=0.2, lw=0)
                    ax.plot(epochs, curves.mean(0), style, marker="o", ms=3, color=c, lw=1.8)
                ax.grid(alpha=0.3)
                ax.xaxis.get_major_locator().set_params(integer=True)
                if col == 0:
                    ax.set_ylabel(ylabel)
            axes[1, col].set_xlabel("epoch")
            metrics = [
                [h[k] for k in ("loss", "accuracy", "test_loss", "test_accuracy")] for h in runs
            ]
            same = _same_as(label, metrics, drawn, rtol=1e-3)  # columns a reader cannot tell apart
            title = f"{label} ({_seeds(len(runs))})" + (f"\nsame curves as {same}" if same else "")
            axes[0, col].set_title(title, color=c, fontsize=10)
        several = any(len(runs) > 1 for runs in histories.values())
        title = "Learning curves, one trainer per column"
        fig.suptitle(title + (": mean over seeds" if several else ""))
        # The band's key shows every trainer's colour, as the bands are drawn.
        bands = tuple(Patch(color=color(label), alpha=0.2, lw=0) for label in histories)
        key = {
            "train: running mean over the epoch's batches (epoch 1 above test)": Line2D(
                [], [], color="0.2", ls="-", marker="o", ms=3
            ),
            "test: the weights at the epoch's end": Line2D(
                [], [], color="0.2", ls="--", marker="o", ms=3
            ),
            "min–max over seeds": bands,
        }
        if not several:  # one seed each: no band to explain
            del key["min–max over seeds"]
        fig.legend(
            list(key.values()),
            list(key),
            loc="outside lower center",
            ncol=2,
            fontsize=9,
            handler_map={tuple: HandlerTuple(ndivide=None, pad=0)},
        )
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


# One marker per seed, the same in every column, so a reader can follow a seed across trainers.
SEED_MARKERS = "osD^vP*Xph"


def accuracy_per_seed(values, published, path, published_label="published") -> Path:
    """Final test accuracy of every seed, one column per trainer, against the published number.

    Each seed keeps one marker and one horizontal place in every column, so seeds with equal
    accuracy sit side by side instead of on top of one another, and the key says which is which.

    Args:
        values: `{trainer_label: {seed: test_accuracy}}`.
        published: the accuracy the original example reports, drawn as a horizontal line.
    """
    seeds = sorted({seed for by_seed in values.values() for seed in by_seed})
    offsets = {
        s: (i - (len(seeds) - 1) / 2) * min(0.09, 0.6 / len(seeds)) for i, s in enumerate(seeds)
    }
    markers = {s: SEED_MARKERS[i % len(SEED_MARKERS)] for i, s in enumerate(seeds)}
    with _figure(path, figsize=(max(7.2, 1.4 * len(values) + 1.2), 5.0)) as (fig, ax):
        for x, (label, by_seed) in enumerate(values.items()):
            for seed, accuracy in by_seed.items():
                # Hollow, so a marker drawn over another still shows both outlines.
                c = color(label)
                ax.plot(x + offsets[seed], accuracy, ls="none", marker=markers[seed], ms=7, color=c)
                ax.lines[-1].set(mfc="none", mew=1.5)
            mean = float(np.mean(list(by_seed.values())))
            ax.hlines(mean, x - 0.3, x + 0.3, colors=color(label), lw=2.5)
            below = {"xytext": (0, -6), "textcoords": "offset points", "ha": "center"}
            ax.annotate(f"mean {mean:.4f}", (x, mean), va="top", fontsize=9, **below)
        ax.axhline(published, color="0.3", ls="--", lw=1)
        # A label's options go on a line of their own: "fit\n--backend torch", not one long line.
        ticks = [label.replace(" --", "\n--") for label in values]
        counts = [_seeds(len(by_seed)) for by_seed in values.values()]
        ax.set_xticks(
            range(len(values)), [f"{t}\n({n})" for t, n in zip(ticks, counts, strict=True)]
        )
        ax.set_xlim(-0.5, len(values) - 0.5)
        ax.set(ylabel="test accuracy (fraction of 10,000 images)", title="Test accuracy per seed")
        ax.grid(axis="y", alpha=0.3)
        key = [
            Line2D([], [], ls="none", marker=markers[s], mfc="none", mec="0.3", label=f"seed {s}")
            for s in seeds
        ]
        key += [
            Line2D([], [], color="0.3", lw=2.5, label="mean over seeds"),
            Line2D([], [], color="0.3", ls="--", lw=1, label=f"{published_label} {published:.4f}"),
        ]
        fig.legend(handles=key, loc="outside lower center", ncol=min(len(key), 4), fontsize=9)
    return Path(path)


def parity_over_steps(curves, path, steps=None, title=None) -> Path:
    """How far the trainers' weights drift apart, step by step, one panel per configuration.

    A log axis has no 0, so identical weights sit on a row of their own at the bottom, below a
    break in the axis, and its tick reads "0 (identical)".

    Args:
        curves: `{panel_label: {pair_label: array}}`; `array[i]` is the largest absolute weight
            difference between the pair after step `i + 1`, or after `steps[panel_label][i]`.
        steps: `{panel_label: [step, ...]}` for the panels compared after some steps only.
        title: the figure's title; by default it names the trainers.
    """
    steps = steps or {}
    floor = _log_floor([a for pairs in curves.values() for a in pairs.values()])
    size = (3.6 * len(curves) + 1, 4.6)
    with _figure(path, ncols=len(curves), figsize=size, sharey=True, squeeze=False) as (fig, axes):
        for ax, (config, pairs) in zip(axes[0], curves.items(), strict=True):
            drawn = {}
            for i, (pair, diffs) in enumerate(pairs.items()):
                same = _same_as(pair, diffs, drawn)
                diffs = np.asarray(diffs, dtype=float)
                at = np.asarray(steps.get(config, np.arange(1, diffs.size + 1)))
                # A curve equal to one drawn before goes dashed on top of it: both stay visible.
                # Curves that only nearly agree would hide one another too, so each is drawn
                # narrower than the one before it: the first shows as an edge around the next.
                label, style = (f"{pair} (= {same})", "--") if same else (pair, "-")
                ax.plot(
                    at,
                    np.where(diffs > 0, diffs, floor),
                    style,
                    color=color(pair),
                    lw=1.5 + 1.0 * (len(pairs) - 1 - i),
                    label=label,
                )
            ax.set(yscale="log", xlabel="training step", title=config)
            ax.grid(alpha=0.3, which="major")
            # The break between the zero row and the real values.
            ax.axhspan(floor * 3, floor * 10, color="white", zorder=1.5)
            ax.axhline(floor * 3, color="0.5", lw=0.8, ls=(0, (2, 2)), zorder=1.6)
        ax0 = axes[0, 0]
        ax0.set_ylabel("max |Δw| (weights)")
        ax0.set_ylim(bottom=floor / 3)
        ticks = [t for t in ax0.get_yticks() if floor * 10 <= t <= ax0.get_ylim()[1]]
        ax0.set_yticks(
            [floor, *ticks], ["0 (identical)", *[f"$10^{{{np.log10(t):.0f}}}$" for t in ticks]]
        )
        ax0.set_ylim(bottom=floor / 3)
        fig.suptitle(title or "Weight difference between trainers, after each step")
        # One key for every panel: a pair drawn in several panels is listed once, a row for
        # the first panel's pairs and rows for the pairs only later panels draw.
        key = {}
        for ax in axes[0]:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                key.setdefault(label, handle)
        ncol = min(len(key), len(ax0.get_legend_handles_labels()[1]))
        rows = -(-len(key) // ncol)
        labels = list(key)
        by_column = [
            i + r * ncol for i in range(ncol) for r in range(rows) if i + r * ncol < len(key)
        ]
        fig.legend(
            [key[labels[i]] for i in by_column],
            [labels[i] for i in by_column],
            loc="outside lower center",
            ncol=ncol,
        )
    return Path(path)


def gradcheck_errors(errors, tolerances, path) -> Path:
    """Histograms of each gradient entry's scaled error, one panel per reference, with the
    tolerance the tests hold it to.

    The scaled error is `|m − r| / (atol/rtol + |r|)`, for hand-written `m` and reference `r`:
    at most `rtol` exactly when `assert_allclose(m, r, rtol, atol)` passes. Exact zeros have no
    logarithm: each panel counts them in its title instead of piling them on one bar.

    Args:
        errors: `{label: array of scaled errors}`, e.g. "float64 vs numerical".
        tolerances: `{label: float}`, the rtol the tests hold that label to.
    """
    arrays = {k: np.ravel(np.asarray(v, float)) for k, v in errors.items()}
    logs = {k: np.log10(v[v > 0]) for k, v in arrays.items()}
    everything = np.concatenate([*logs.values(), np.log10([*tolerances.values()])])
    bins = np.arange(np.floor(everything.min()) - 0.5, np.ceil(everything.max()) + 0.75, 0.25)
    n = len(arrays)
    grid = {"nrows": n, "sharex": True, "squeeze": False}
    with _figure(path, figsize=(8, 1.5 + 1.9 * n), **grid) as (fig, axes):
        for ax, (label, values) in zip(axes[:, 0], arrays.items(), strict=True):
            c = color(label)
            ax.hist(logs[label], bins=bins, color=c, alpha=0.35)
            ax.hist(logs[label], bins=bins, color=c, histtype="step", lw=1.5)
            zeros = int(np.sum(values == 0))
            title = f"{label}: {values.size} entries, {zeros} exactly equal (not drawn)"
            ax.set_title(title, fontsize=10, loc="left")
            if label in tolerances:
                tolerance = tolerances[label]
                ax.axvline(np.log10(tolerance), color="black", ls="--", lw=1.2)
                ax.annotate(
                    f" tolerance rtol = {tolerance:.0e}",
                    (np.log10(tolerance), 1),
                    xycoords=("data", "axes fraction"),
                    va="top",
                    fontsize=9,
                )
            ax.set_ylabel("entries")
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel(
            "log10 of the scaled error |m − r| / (atol/rtol + |r|)  (passes ≤ rtol)"
        )
        fig.suptitle("Gradient check: hand-written gradients against each reference, per entry")
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


def overfitting(history, best_epoch, path, stopped_epoch=None, patience=None, run=None) -> Path:
    """Train and validation loss per epoch, with the epoch of the lowest validation loss marked.

    Args:
        history: per-epoch lists "loss" (train), "val_loss" and optionally "test_loss".
        best_epoch: the 1-based epoch of the lowest validation loss.
        stopped_epoch: the 1-based epoch training stopped at (early stopping), if any.
        patience: the early-stopping patience that stops at `stopped_epoch`, for its label.
        run: what was trained, for the title: trainer, seed and validation split, as
            "tape loop, seed 0, validation: the last 10,000 of 60,000 training images".
    """
    with _figure(path, figsize=(8, 4.8)) as (fig, ax):
        splits = [
            ("loss", "train", " (running mean over the epoch)", "-"),
            ("val_loss", "validation", "", "--"),
            ("test_loss", "test", "", ":"),
        ]
        epochs = None
        for key, name, note, style in splits:
            if key in history:
                losses = np.asarray(history[key], dtype=float)
                epochs = np.arange(1, losses.size + 1)
                c = color(name)
                ax.plot(epochs, losses, style, marker="o", ms=3, color=c, label=name + note)
        best = f"best epoch {best_epoch} (lowest validation loss)"
        ax.axvline(best_epoch, color="black", lw=1, label=best)
        if stopped_epoch is not None:
            stopped = f"stopped at epoch {stopped_epoch}"
            if patience is not None:
                stopped = f"early stopping, patience {patience}: stops after epoch {stopped_epoch}"
            ax.axvline(stopped_epoch, color="0.5", ls="-.", lw=1, label=stopped)
        ax.set(xlabel="epoch", ylabel="cross-entropy loss (nats per image)")
        if epochs is not None:
            ax.set_xlim(0.5, epochs[-1] + 0.5)  # epochs count from 1
        title = "Loss per epoch: where validation loss turns"
        ax.set_title(title + (f"\n{run}" if run else ""), fontsize=11)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        fig.legend(loc="outside lower center", ncol=2, fontsize=9)  # losses left, markers right
    return Path(path)


def neuron_convergence(losses, tolerance, path) -> Path:
    """One neuron's loss at every step of gradient descent, to the step the stopping rule ended.

    Args:
        losses: the loss before each update, `losses[0]` at the start; the last is where the
            rule stopped: it fell by less than `tolerance` from the one before.
        tolerance: the stopping rule's smallest improvement per step.
    """
    losses = np.asarray(losses, dtype=float)
    steps = np.arange(losses.size)
    with _figure(path, figsize=(7, 4.2)) as (fig, ax):
        ax.plot(steps, losses, color=color("manual"), lw=1.8, label="loss L = (y − target)²")
        ax.plot(steps[-1], losses[-1], "o", color="black", ms=5)
        stop = f"stops at step {steps[-1]}: L fell by < {tolerance:.0e} in one step"
        ax.annotate(
            stop,
            (steps[-1], losses[-1]),
            xytext=(-8, 14),
            textcoords="offset points",
            ha="right",
            fontsize=9,
        )
        ax.set(
            yscale="log",
            xlabel="step (one forward, backward and update)",
            ylabel="squared error (log scale)",
            title="One neuron, trained until the loss converges",
        )
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="upper right", fontsize=9)
    return Path(path)


def loss_activation_grid(results, path) -> Path:
    """Training curves of the same network under each hidden activation and each loss.

    Args:
        results: `{(activation, loss): {"seen": images seen, "loss": [...], "accuracy": [...]}}`;
            the curves are Keras's running means over the epoch, one point per batch.
    """
    activations = list(dict.fromkeys(a for a, _ in results))
    losses = list(dict.fromkeys(loss for _, loss in results))
    styles = ["-", "--", ":", "-."]
    with _figure(path, ncols=len(losses) + 1, figsize=(4.2 * (len(losses) + 1), 4.4)) as (
        fig,
        axes,
    ):
        for (activation, loss), curve in results.items():
            c = color(activation)
            style = styles[losses.index(loss) % len(styles)]
            seen = np.asarray(curve["seen"])
            axes[losses.index(loss)].plot(seen, curve["loss"], style, color=c, lw=1.6)
            axes[-1].plot(seen, curve["accuracy"], style, color=c, lw=1.6)
        for ax, loss in zip(axes, losses, strict=False):
            ax.set(title=f"training loss: {loss}", ylabel=f"{loss} (running mean)")
        axes[-1].set(title="training accuracy, both losses", ylabel="accuracy (running mean)")
        for ax in axes:
            ax.set_xlabel("training images seen")
            ax.grid(alpha=0.3)
        key = [Line2D([], [], color=color(a), lw=2, label=f"hidden {a}") for a in activations]
        key += [
            Line2D([], [], color="0.3", ls=styles[i % len(styles)], label=loss)
            for i, loss in enumerate(losses)
        ]
        fig.suptitle("Choosing the loss and the activation: same network, same data, same steps")
        fig.legend(handles=key, loc="outside lower center", ncol=len(key), fontsize=9)
    return Path(path)
