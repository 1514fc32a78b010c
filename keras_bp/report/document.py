"""The reproduction report's numbers (`report.json`) and its text (`report.md`).

`build` computes every number from the runs of `keras_bp.report.seeds`; `markdown` only formats what
`build` returned, so the text never shows a number `report.json` lacks.
"""

import itertools

import numpy as np

from keras_bp.report import backend_runs, stats
from keras_bp.report.published import PUBLISHED
from keras_bp.runtime.backend_start import BACKENDS
from keras_bp.training.runs import markdown_table

METRICS = ("test_accuracy", "test_loss")
# The comparisons the report makes: the three trainers pairwise, the seeded recipe's order
# (a new one each epoch) against Keras's own (one order repeated), and `fit` on each pair of
# Keras backends (TensorFlow's `fit` against JAX's and PyTorch's, then JAX's against PyTorch's).
PAIRS = (
    ("fit", "tape"),
    ("fit", "manual"),
    ("tape", "manual"),
    ("fit", "fit --keras-shuffle"),
    *itertools.combinations(map(backend_runs.label, BACKENDS), 2),
)
PARITY_MARKS = (1, 10, 100)  # the steps report.md tabulates, with the last
FIGURES = {
    "learning_curves.png": "Learning curves: mean over seeds, min–max band",
    "accuracy_per_seed.png": "Final test accuracy per seed",
    "parity_over_steps.png": "Parity over steps: largest weight difference between trainers, "
    "and between backends",
    "gradcheck_errors.png": "Hand-written gradients against the tape and numerical differences",
    "speed.png": "Speed against the machine's training floor",
    "overfitting.png": "Overfitting: a long run, its validation loss and its best epoch",
}


def build(results, settings, machine, overfitting, parity, gradients, speed, backend_parity=None):
    """Every number of the report, JSON-ready: `report.json`.

    Args:
        results: `{trainer: [metrics.json of each seed]}` (`keras_bp.report.seeds.train_all`).
        settings: `{"seeds", "epochs", "train_samples", "seconds", "reused_runs", "backends"}`.
        machine: `{"cpu", "versions"}`.
        overfitting, parity, gradients, speed, backend_parity: `keras_bp.report.seeds`'s, or
            `None` when skipped.
    """
    trainers = {}
    for label, runs in results.items():
        summary = {m: stats.summarize([r[m] for r in runs]) for m in METRICS}
        (backend,) = {r["backend"] for r in runs}  # a label runs on one backend
        trainers[label] = {
            "backend": backend,
            "runs": [
                {
                    k: r[k]
                    for k in ("seed", "test_accuracy", "test_loss", "train_seconds", "history")
                }
                for r in runs
            ],
            **summary,
            "contains_published": stats.contains(summary["test_accuracy"], PUBLISHED.test_accuracy),
        }
    differences = []
    for a, b in PAIRS:
        if a in results and b in results:
            for metric in METRICS:
                w = stats.welch(*[[r[metric] for r in results[k]] for k in (a, b)])
                sentence = stats.describe_difference(
                    a, b, w, metric.replace("_", " "), n=len(settings["seeds"])
                )
                differences.append({"a": a, "b": b, "metric": metric, **w, "sentence": sentence})
    return {
        "settings": settings,
        "machine": machine,
        "published": {
            "test_accuracy": PUBLISHED.test_accuracy,
            "printed": PUBLISHED.printed,
            "source": PUBLISHED.source,
            "url": PUBLISHED.url,
        },
        "trainers": trainers,
        "differences": differences,
        "overfitting": overfitting,
        "parity": {
            name: {pair: _parity_marks(curve) for pair, curve in pairs.items()}
            for name, pairs in (parity or {}).items()
        },
        "parity_curves": parity,
        "backend_parity": _with_marks(backend_parity),
        "gradients": gradients,
        "speed": speed,
    }


def _with_marks(backend_parity):
    """`seeds.backend_parity_curves`' numbers, with each pair's `_parity_marks`."""
    if backend_parity is None:
        return None
    steps, curves = backend_parity["steps"], backend_parity["curves"]
    marks = {pair: _parity_marks(curve, steps) for pair, curve in curves.items()}
    return {**backend_parity, "marks": marks}


def _parity_marks(curve, steps=None):
    """The curve after the steps of `PARITY_MARKS` and the last, and the first step past 1e-6;
    `steps[i]` is the step of `curve[i]` (by default `i + 1`: every step)."""
    curve = np.asarray(curve)
    steps = list(steps or range(1, len(curve) + 1))
    above = np.flatnonzero(curve > 1e-6)
    marks = {f"step_{s}": float(curve[steps.index(s)]) for s in PARITY_MARKS if s in steps}
    return {
        **marks,
        "last_step": steps[-1],
        "last": float(curve[-1]),
        "first_step_above_1e-6": steps[above[0]] if above.size else None,
    }


def _f(x, digits=4):
    return "–" if x is None else f"{x:.{digits}f}"


def _ci(summary, digits=4):
    if summary["ci_low"] is None:
        return "–"
    return f"{summary['ci_low']:.{digits}f} – {summary['ci_high']:.{digits}f}"


def markdown(report, figures=tuple(FIGURES)) -> str:
    """`report.md`: the tables and sentences of `report`, with `figures` (file names) embedded."""
    s, published = report["settings"], report["published"]
    samples = s["train_samples"] or 60000
    lines = [
        "# keras_bp reproduction report",
        "",
        f"Each trainer ran {len(s['seeds'])} seeds ({s['seeds'][0]}–{s['seeds'][-1]}), "
        f"{s['epochs']} epoch{'s' * (s['epochs'] > 1)} at batch 128 on {samples} training "
        "images, and was evaluated on the 10,000 test images after every epoch. Every trainer "
        "updates with Keras's op-by-op RMSprop, as the recipe does (the loops with "
        "`--no-fused`), so that `fit` and the tape loop do one computation. "
        f"Machine: {report['machine']['cpu']}; "
        f"the report took {s['seconds'] / 60:.1f} minutes"
        + (f", reusing {s['reused_runs']} finished runs." if s["reused_runs"] else "."),
        "",
        *_backends_intro(report["trainers"]),
        f"Published: `{published['printed']}` ({published['source']}, <{published['url']}>).",
        "",
        "## Test accuracy and loss over seeds",
        "",
        "Mean, sample standard deviation, 95% confidence interval of the mean (Student t), "
        "min–max, and whether the interval holds the published test accuracy.",
        "",
    ]
    rows = []
    for label, t in report["trainers"].items():
        acc, loss = t["test_accuracy"], t["test_loss"]
        holds = {True: "yes", False: "no", None: "–"}[t["contains_published"]]
        rows.append(
            [
                f"`{label}`",
                t["backend"],
                acc["n"],
                _f(acc["mean"]),
                _f(acc["std"]),
                _ci(acc),
                f"{_f(acc['min'])} – {_f(acc['max'])}",
                holds,
                _f(loss["mean"]),
                _ci(loss),
            ]
        )
    headers = [
        "trainer",
        "backend",
        "seeds",
        "accuracy",
        "std",
        "95% CI",
        "min – max",
        f"CI holds {published['test_accuracy']}",
        "loss",
        "loss 95% CI",
    ]
    lines += [markdown_table(headers, rows), "", "## Differences between trainers (Welch)", ""]
    rows = [
        [
            f"`{d['a']}` − `{d['b']}`",
            d["metric"].replace("_", " "),
            f"{d['difference']:+.4f}",
            "–" if d["ci_low"] is None else f"{d['ci_low']:+.4f} – {d['ci_high']:+.4f}",
            _f(d["p_value"], 3),
        ]
        for d in report["differences"]
    ]
    lines += [markdown_table(["pair", "metric", "difference", "95% CI", "p"], rows), ""]
    lines += [f"- {d['sentence']}" for d in report["differences"] if d["metric"] == "test_accuracy"]
    lines += _overfitting(report["overfitting"]) + _parity(report["parity"])
    lines += _backend_parity(report["backend_parity"])
    lines += _gradients(report["gradients"]) + _speed(report["speed"])
    lines += ["", "## Figures", ""]
    for name, title in FIGURES.items():
        if name in figures:
            lines += [f"![{title}]({name})", ""]
    return "\n".join(lines)


def _backends_intro(trainers):
    """The paragraph on the rows of other Keras backends, if there are any."""
    elsewhere = [f"`{label}`" for label, t in trainers.items() if t["backend"] != "tensorflow"]
    if not elsewhere:
        return []
    rows = " and ".join(elsewhere)
    return [
        f"{rows} {'are' if len(elsewhere) > 1 else 'is'} the recipe on another of Keras's "
        "backends: `keras-bp train --backend B` (`scripts/train.py`), each run in a process of "
        "its own, from TensorFlow's initial weights for the seed, on the same batches in the "
        "same order as `fit` on TensorFlow. The other rows run on TensorFlow.",
        "",
    ]


def _overfitting(o):
    if not o:
        return []
    h = o["history"]
    best = o["best_epoch"]
    stop = (
        f"Early stopping with patience {o['patience']} would have stopped after epoch "
        f"{o['stopped_epoch']} and kept epoch {o['stopped_best_epoch']}."
        if o["stopped_epoch"]
        else f"Early stopping with patience {o['patience']} would not have stopped."
    )
    return [
        "",
        "## Overfitting",
        "",
        f"One {o['epochs']}-epoch run of the `{o['trainer']}` loop (seed {o['seed']}), with the "
        f"last sixth of the training images held out. The validation loss was lowest after "
        f"epoch {best} ({h['val_loss'][best - 1]:.4f}) and ended at {h['val_loss'][-1]:.4f}, "
        f"while the training loss fell from {h['loss'][best - 1]:.4f} to {h['loss'][-1]:.4f}. "
        f"Test loss: {h['test_loss'][best - 1]:.4f} at the best epoch, {h['test_loss'][-1]:.4f} "
        f"at the last. {stop}",
    ]


def _parity(parity):
    if not parity:
        return []
    rows = []
    for config, pairs in parity.items():
        for pair, m in pairs.items():
            marks = [f"{m[f'step_{s}']:.1e}" if f"step_{s}" in m else "–" for s in PARITY_MARKS]
            rows.append(
                [
                    config,
                    pair,
                    *marks,
                    f"{m['last']:.1e} (step {m['last_step']})",
                    m["first_step_above_1e-6"] or "never",
                ]
            )
    headers = ["config", "pair", *[f"step {s}" for s in PARITY_MARKS], "last", "first > 1e-6"]
    return [
        "",
        "## Parity over steps",
        "",
        "Largest absolute weight difference between two trainers that start from the same "
        "weights and see the same batches; in each configuration all three trainers run alike "
        "(`--fused (shipped)`: RMSprop as one kernel, as the loops ship; `--no-fused`: Keras's "
        "op-by-op RMSprop, as `make train` runs; `--xla`: fused, compiled with XLA).",
        "",
        markdown_table(headers, rows),
    ]


def _backend_parity(b):
    if not b:
        return []
    rows = []
    for pair, m in b["marks"].items():
        marks = [f"{m[f'step_{s}']:.1e}" if f"step_{s}" in m else "–" for s in PARITY_MARKS]
        last = f"{m['last']:.1e} (step {m['last_step']})"
        rows.append([pair, *marks, last, m["first_step_above_1e-6"] or "never"])
    headers = ["pair", *[f"step {s}" for s in PARITY_MARKS], "last", "first > 1e-6"]
    return [
        "",
        "## Parity across backends",
        "",
        f"`{b['trainer']}` on each Keras backend, in a process of its own, from the same "
        "weights on the same batches, with Keras's op-by-op RMSprop (as `--no-fused` above); "
        "largest absolute weight difference between two backends "
        f"(`keras_bp/checks/backend_parity.py`). Compared {_sampled(b['steps'])}; the first "
        "step past 1e-6 is the first of those.",
        "",
        markdown_table(headers, rows),
    ]


def _sampled(steps) -> str:
    """`"after steps 1–10, then every 5th, and after step 468"` for `[1, …, 10, 15, …, 468]`."""
    dense = next((i for i, s in enumerate(steps) if s != i + 1), len(steps))
    if dense == len(steps):
        return f"after each of steps 1–{dense}"
    text = f"after steps 1–{dense}" if dense else "after some steps"
    if dense + 1 < len(steps):
        text += f", then every {steps[dense + 1] - steps[dense]}th"
    return text + f", and after step {steps[-1]}"


def _gradients(g):
    if not g:
        return []
    rows = [
        [label, v["n"], v["zeros"], f"{v['median']:.1e}", f"{v['max']:.1e}", f"{v['rtol']:g}"]
        for label, v in g.items()
    ]
    return [
        "",
        "## Gradient check",
        "",
        "Elementwise error |m − r| / (atol/rtol + |r|) of every hand-written gradient the "
        "tests check: at most rtol exactly when the test's `assert_allclose` passes.",
        "",
        markdown_table(["reference", "elements", "exact zeros", "median", "max", "rtol"], rows),
    ]


def _speed(speed):
    if not speed:
        return ["", "## Speed", "", "No bench results to read: run `make bench` first."]
    rows = [[name, f"{m:.2f}", f"{t:.2f}"] for name, m, t in speed["rows"]]
    return [
        "",
        "## Speed",
        "",
        f"From `{speed['source']}`, measured on {speed['machine']}.",
        "",
        markdown_table(["row", "× matmul floor", "× training floor"], rows),
    ]
