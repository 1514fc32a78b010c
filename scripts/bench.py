"""How close does each trainer get to this machine's own limits? `make bench`.

    python scripts/bench.py [--repeats 3] [--epochs 5] [--rows WORDS] [--out runs/bench.json]

Everything runs in this one process, side by side, with the runs interleaved round-robin, so
the ratios to the floors hold on a noisy shared machine (the rows that need a process of their
own start it in turn). Beside keras_bp's trainers run its peers, what a user would pick
instead: `fit` on the JAX and PyTorch backends, a plain JAX loop and a plain PyTorch loop
(`--rows peer`; without `make backends` they are skipped, in one line). Each figure is a median
of `--repeats` runs. The floors (`keras_bp/speed/floors.py`): the five matrix products of a step,
and those plus one fused RMSprop update of every weight. Training time counts tracing, compiling
and training, not the TensorFlow import or the data load; the table also splits off the tracing
and compiling.
"""

import os
import platform
import time
from pathlib import Path

from keras_bp import cli
from keras_bp.config import FitConfig, steps_per_epoch


def main():
    # Setup.
    parser = cli.Parser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats", type=cli.positive_int, default=3, help="runs of each (default: %(default)s)"
    )
    parser.add_argument(
        "--epochs", type=cli.positive_int, default=FitConfig().epochs, help="default: %(default)s"
    )
    parser.add_argument(
        "--rows",
        metavar="WORDS",
        help="only the trainers' rows whose name contains one of these comma-separated words, "
        "e.g. 'make custom-loop,make manual,gather' or 'peer' or 'jax' (the floors always run; "
        "default: every row)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/bench.json"), help="default: %(default)s"
    )
    cli.add_verbose(parser)
    args = parser.parse_args()
    cli.check_out_dir(args.out.parent)
    cli.start_tensorflow(args.verbose)
    import tensorflow as tf

    from keras_bp.data import load_mnist, mnist_arrays
    from keras_bp.runtime import atomic
    from keras_bp.speed import bench, peers
    from keras_bp.speed.floors import BATCH_SIZE
    from keras_bp.training import runs

    # Data: the cached load is timed on its own, then preprocessed once for every trainer.
    start = time.perf_counter()
    load_mnist()
    load_seconds = time.perf_counter() - start
    data = mnist_arrays()
    steps = args.epochs * steps_per_epoch(len(data[0][0]), BATCH_SIZE)

    # The contestants: the two floors, each trainer as it ships, then op by op (--no-fused) or
    # fit's fastest, then with XLA, then data-parallel, then the peers on JAX and PyTorch.
    trainers = {**bench.trainers(data, args.epochs), **peers.peer_runs(data, args.epochs)}
    if args.rows:
        try:
            trainers = bench.select(trainers, args.rows.split(","))
        except ValueError as error:
            cli.fail(f"argument --rows: {error}")
    trainers, skipped = peers.skip_missing(trainers)
    if skipped:
        print(skipped, flush=True)
    contestants = {**bench.floor_runs(steps), **trainers}
    results = {name: [] for name in contestants}
    for r in range(args.repeats):  # interleaved, so a slow minute of the machine hits all
        for name, run in contestants.items():
            bench.reset_peak_memory()
            figures = run()
            figures.setdefault("peak_rss_mb", bench.peak_memory_mb())
            results[name].append(figures)
            print(f"[{r + 1}/{args.repeats}] {name}: {figures['seconds']:.2f} s", flush=True)

    # Report: ratios to the faster of each floor, measured in this same run.
    summary = bench.summarize(results, steps)
    engines = {"TensorFlow": tf.__version__, **peers.versions(trainers)}
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, {bench.cpu_description()}; "
        + ", ".join(f"{name} {version}" for name, version in engines.items())
    )
    print(
        f"\n{args.epochs} epochs = {steps} steps of batch {BATCH_SIZE}; median of "
        f"{args.repeats} runs; {machine}\n\n{bench.table(summary)}\n\n"
        f"MNIST load from cache: {load_seconds:.2f} s"
    )
    atomic.write_json(
        args.out,
        {
            "epochs": args.epochs,
            "steps": steps,
            "repeats": args.repeats,
            "machine": machine,
            "load_seconds": load_seconds,
            "results": results,
            **summary,
            "versions": runs.versions(),
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli.run(main)
