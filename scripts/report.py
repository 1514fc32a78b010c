"""Reproduce the recipe over many seeds: statistics, learning curves, parity and figures.

    python scripts/report.py [--seeds 5 | --seeds 3-7] [--epochs 5] [--train-samples N]
                             [--backends tensorflow,jax,torch] [--out runs/report] [--fresh]
                             [--overfit-epochs 30] [--parity-steps N] [--bench runs/bench.json]
                             [--docs DIR]

Trains `fit`, the tape loop, the manual loop, and `fit` on Keras's own shuffle, once per seed,
evaluating the test set after every epoch, and `fit` on each other Keras backend of
`--backends` (`keras-bp train --backend jax|torch`, a process per run; `make backends` installs
them, and `--backends tensorflow` leaves them out). Then it measures what the figures need: one
long run that overfits, the trainers' weight differences step by step, on TensorFlow and across
the backends, the hand-written gradients' errors (`--parity-steps`: by default one epoch's full
batches, 468 on all of MNIST). It writes
`report.md`, `report.json` (every number in the markdown) and six PNG
figures into `--out`, and with `--docs DIR` copies `report.md` and the figures there too
(`make report` regenerates `docs/report/`). Each run keeps its directory under `--out/runs/`;
the same command after a kill reuses every finished run, and `--fresh` retrains them all.
"""

import logging
from pathlib import Path
from time import perf_counter

from keras_bp import cli
from keras_bp.config import DEFAULT_OUT, FitConfig, validation_samples
from keras_bp.runtime import backend_start


def main():
    # Setup: the recipe's epochs and batch by default; five seeds.
    p = cli.Parser(description=__doc__.splitlines()[0])
    cli.add_verbose(p)
    p.add_argument(
        "--seeds", type=cli.seed_list, default=cli.seed_list("5"), help="5: seeds 0-4; 3-7: a range"
    )
    epochs = FitConfig().epochs
    p.add_argument("--epochs", type=cli.positive_int, default=epochs, help=f"default: {epochs}")
    p.add_argument("--train-samples", type=cli.positive_int, metavar="N", help="default: all 60000")
    p.add_argument(
        "--backends",
        type=cli.backend_list,
        default=list(backend_start.BACKENDS),
        metavar="B1,B2,...",
        help="fit on these Keras backends, tensorflow among them (default: tensorflow,jax,torch; "
        "make backends installs jax and torch)",
    )
    p.add_argument(
        "--out", type=Path, default=Path(DEFAULT_OUT["report"]), help="default: %(default)s"
    )
    p.add_argument("--fresh", action="store_true", help="retrain every run")
    p.add_argument("--overfit-epochs", type=cli.non_negative_int, default=30, help="0: skip")
    p.add_argument(
        "--parity-steps",
        type=cli.non_negative_int,
        metavar="N",
        help="steps of the parity figure, at most one epoch's full batches (default: all of "
        "them, 468 on all of MNIST); 0: skip",
    )
    p.add_argument(
        "--bench",
        type=Path,
        default=Path("runs/bench.json"),
        help="make bench's results, for the speed figure (default: %(default)s)",
    )
    p.add_argument("--docs", type=Path, help="also copy report.md and the figures here")
    args = p.parse_args()
    check_backends(args.backends)
    out = cli.check_out_dir(args.out)  # bad input fails fast, before TensorFlow starts
    if args.docs:
        cli.check_out_dir(args.docs)
    cli.start_tensorflow(args.verbose)
    # Every run builds its own compiled steps; TensorFlow counts them as one function retracing.
    logging.getLogger("tensorflow").addFilter(lambda r: "retracing" not in r.getMessage())
    from keras_bp import data
    from keras_bp.report import document, figures, seeds
    from keras_bp.report.published import PUBLISHED
    from keras_bp.runtime import atomic
    from keras_bp.runtime.runlock import RunLock
    from keras_bp.speed import bench
    from keras_bp.training import runs

    start = perf_counter()
    mnist = data.mnist_arrays(args.train_samples)
    (x, y), _ = mnist
    parity_steps = seeds.parity_steps(args.parity_steps, len(x))  # before anything is written
    with RunLock(out):
        # Train every trainer once per seed, or reuse the finished runs.
        results, reused = seeds.train_all(
            mnist,
            out,
            args.seeds,
            args.epochs,
            args.train_samples,
            args.fresh,
            backends=args.backends,
        )

        # Measure what the figures need beside the runs.
        overfitting = None
        if args.overfit_epochs:
            overfitting = seeds.overfitting_run(mnist, out, args.overfit_epochs, fresh=args.fresh)
        parity = seeds.parity_curves(x, y, parity_steps) if parity_steps else None
        across = None
        if parity_steps and len(args.backends) > 1:
            across = seeds.backend_parity_curves(x, y, args.backends, parity_steps)
        print("gradient check: every hand-written gradient against the tape and numerically")
        samples, gradients = seeds.gradient_errors()
        speed = seeds.speed_rows(args.bench)

        # Numbers, text and figures.
        settings = {
            "seeds": args.seeds,
            "epochs": args.epochs,
            "train_samples": args.train_samples,
            "seconds": round(perf_counter() - start, 1),
            "reused_runs": reused,
            "backends": args.backends,
        }
        versions = runs.versions()
        for rs in results.values():  # and the engine that ran each run on another backend
            versions |= {r["backend"]: r["versions"][r["backend"]] for r in rs[:1]}
        machine = {"cpu": bench.cpu_description(), "versions": versions}
        numbers = document.build(
            results, settings, machine, overfitting, parity, gradients, speed, across
        )
        atomic.write_json(out / "report.json", numbers)
        drawn = [
            figures.learning_curves(
                {label: [r["history"] for r in rs] for label, rs in results.items()},
                out / "learning_curves.png",
            ),
            figures.accuracy_per_seed(
                {
                    label: {r["seed"]: r["test_accuracy"] for r in rs}
                    for label, rs in results.items()
                },
                PUBLISHED.test_accuracy,
                out / "accuracy_per_seed.png",
            ),
            figures.gradcheck_errors(samples.errors, samples.rtol, out / "gradcheck_errors.png"),
        ]
        if parity:
            panels, steps, title = dict(parity), {}, None
            if across:  # fit across backends: Keras's op-by-op RMSprop, as --no-fused
                name = "fit across backends\n(op-by-op RMSprop, as --no-fused)"
                panels[name], steps[name] = across["curves"], across["steps"]
                title = "Weight difference between trainers, and between backends, after each step"
            drawn.append(
                figures.parity_over_steps(panels, out / "parity_over_steps.png", steps, title)
            )
        if speed:
            rows = [(name, ratio) for name, _, ratio in speed["rows"]]  # × training floor
            drawn.append(figures.speed(rows, speed["machine"], out / "speed.png"))
        if overfitting:
            held_out = validation_samples(len(x), overfitting["patience"])
            drawn.append(
                figures.overfitting(
                    overfitting["history"],
                    overfitting["best_epoch"],
                    out / "overfitting.png",
                    stopped_epoch=overfitting["stopped_epoch"],
                    patience=overfitting["patience"],
                    run=f"{overfitting['trainer']} loop, seed {overfitting['seed']}, validation: "
                    f"the last {held_out:,} of {len(x):,} training images",
                )
            )
        # The text embeds, and --docs receives, only the figures drawn by this run.
        text = document.markdown(numbers, [p.name for p in drawn])
        atomic.write_bytes(out / "report.md", text.encode())
        written = [out / "report.md", *drawn]
        if args.docs:
            for path in written:
                atomic.write_bytes(args.docs / path.name, path.read_bytes())

    # Summary: the accuracy table, and where everything went.
    for label, t in numbers["trainers"].items():
        acc = t["test_accuracy"]
        ci = "" if acc["ci_low"] is None else f", 95% CI {acc['ci_low']:.4f}–{acc['ci_high']:.4f}"
        print(
            f"{label:>20}: test accuracy {acc['mean']:.4f} ± {acc['std'] or 0:.4f}{ci} "
            f"(n={acc['n']})"
        )
    print(f"wrote {out / 'report.md'}, {out / 'report.json'} and {len(written) - 1} figures")
    print(f"in {perf_counter() - start:.0f} s" + (f"; copied to {args.docs}" if args.docs else ""))


def check_backends(backends):
    """TensorFlow runs the report's other trainers, so it is among `--backends`; every backend
    listed is installed, or one line names the extra that installs it."""
    if "tensorflow" not in backends:
        raise cli.UsageError(
            f"--backends {','.join(backends)}: the report's trainers run on tensorflow; "
            f"list it too: --backends tensorflow,{','.join(backends)}"
        )
    for backend in backends:
        if not backend_start.installed(backend):
            without = ",".join(b for b in backends if b != backend)
            raise cli.UsageError(
                f"{backend_start.missing_message(backend, '--backends')}, or leave it out: "
                f"--backends {without}"
            )


if __name__ == "__main__":
    cli.run(main)
