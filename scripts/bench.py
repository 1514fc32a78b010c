"""How close does each trainer get to this machine's matmul limit? `make bench`.

    python scripts/bench.py [--repeats 3] [--epochs 5] [--out runs/bench.json]

Everything runs in this one process, side by side, with the runs interleaved round-robin, so
the ratios to the floor hold on a noisy shared machine. Each figure is a median of `--repeats`
runs. Training time counts compiling and training, not the TensorFlow import or the data load.
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
        "--out", type=Path, default=Path("runs/bench.json"), help="default: %(default)s"
    )
    cli.add_verbose(parser)
    args = parser.parse_args()
    cli.check_out_dir(args.out.parent)
    cli.start_tensorflow(args.verbose)
    import statistics

    import tensorflow as tf

    from keras_bp import atomic, bench, runs
    from keras_bp.data import load_mnist, mnist_arrays

    # Data: the cached load is timed on its own, then preprocessed once for every trainer.
    start = time.perf_counter()
    load_mnist()
    load_seconds = time.perf_counter() - start
    data = mnist_arrays()
    batch_size = bench.BATCH_SIZE  # every row trains at the recipe's batch size
    steps = args.epochs * steps_per_epoch(len(data[0][0]), batch_size)

    # The contestants: the floor twice (TF kernels, XLA), then each trainer as it ships.
    contestants = {
        "floor: 5 matmuls/step, tf.function": lambda: (bench.floor_seconds(steps), None),
        "floor: 5 matmuls/step, XLA": lambda: (bench.floor_seconds(steps, xla=True), None),
        **bench.trainers(data, args.epochs),
    }
    times = {name: [] for name in contestants}
    accuracy = {}
    for r in range(args.repeats):
        for name, run in contestants.items():
            seconds, acc = run()
            times[name].append(seconds)
            accuracy[name] = acc
            print(f"[{r + 1}/{args.repeats}] {name}: {seconds:.2f} s", flush=True)

    # Report: ratios to the faster floor of this same run.
    medians = {name: statistics.median(t) for name, t in times.items()}
    floor = min(medians[n] for n in medians if n.startswith("floor"))
    flops = bench.matmul_flops() * steps
    rows = [
        (
            name,
            f"{s:.2f}",
            f"{s / floor:.2f}×",
            f"{flops / s / 1e9:.0f}" if name.startswith("floor") else "",
            "" if accuracy[name] is None else f"{accuracy[name]:.4f}",
        )
        for name, s in medians.items()
    ]
    table = runs.markdown_table(
        ["what", "seconds (median)", "ratio to floor", "GFLOP/s", "test accuracy"], rows
    )
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, {bench.cpu_description()}; "
        f"TensorFlow {tf.__version__}"
    )
    print(
        f"\n{args.epochs} epochs = {steps} steps of batch {batch_size}; "
        f"median of {args.repeats} runs; "
        f"{machine}\n\n{table}\n\nMNIST load from cache: {load_seconds:.2f} s"
    )
    atomic.write_json(
        args.out,
        {
            "epochs": args.epochs,
            "steps": steps,
            "repeats": args.repeats,
            "machine": machine,
            "floor_seconds": floor,
            "load_seconds": load_seconds,
            "times": times,
            "medians": medians,
            "ratios": {n: s / floor for n, s in medians.items()},
            "test_accuracy": accuracy,
            "versions": runs.versions(),
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli.run(main)
