"""Do `model.fit`, the GradientTape loop and the hand-written loop agree step by step?

    python scripts/parity.py [--steps 100] [--batch-size 128] [--seed 0] [--tolerance 1e-4]
                             [--xla] [--fused | --no-fused] [--replicas N]
                             [--backends tensorflow,jax,torch] [--dtype float32|float64]

All three trainers start from the same initial weights and take the same `--steps` batches of
real MNIST in the same order. The table gives the largest absolute weight difference for each
pair; the command exits with 1 if any pair differs by more than `--tolerance`. With
`--replicas N`, each trainer also runs data-parallel over N mirrored replicas
(`keras_bp.training.distribute`), and a second table gives its distance from itself on one device,
after one step and after `--steps`.

Like is compared with like: all three update with the fused RMSprop kernel by default, as the
loops ship (`fit` with `keras_bp.fused.FusedRMSprop`), or all three with Keras's op-by-op
RMSprop, as `make train` runs, with `--no-fused`.

`--backends tensorflow,jax,torch` (and `--dtype float64`) compares across Keras backends instead:
on each backend, in a process of its own, `fit` and the reference loop's two gradient sources
(the backend's autodiff, the hand-written backward) from the same weights on the same batches,
with Keras's op-by-op RMSprop and the hand-written one (`keras_bp/checks/backend_parity.py`).
The table gives each pair's largest weight difference after 1 step and after `--steps`.
"""

import argparse
from dataclasses import replace

from keras_bp import cli
from keras_bp.config import LoopConfig
from keras_bp.runtime import backend_start


def main():
    # Setup.
    parser = cli.Parser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=cli.positive_int, default=100, help="training steps (default: %(default)s)"
    )
    defaults = LoopConfig()
    parser.add_argument(
        "--batch-size",
        type=cli.positive_int,
        default=defaults.batch_size,
        help="default: %(default)s",
    )
    parser.add_argument(
        "--seed", type=cli.non_negative_int, default=defaults.seed, help="default: %(default)s"
    )
    parser.add_argument(
        "--tolerance",
        type=cli.positive_float,
        default=1e-4,
        help="largest weight difference that passes (default: %(default)s)",
    )
    parser.add_argument(
        "--xla", action="store_true", help="all three with XLA (default: all three without)"
    )
    parser.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=defaults.speed.fused,
        help="all three with the fused RMSprop kernel, as the loops ship; --no-fused: all three "
        "with Keras's op-by-op RMSprop, as make train runs "
        f"(default: {'--fused' if defaults.speed.fused else '--no-fused'})",
    )
    parser.add_argument(
        "--replicas", type=cli.positive_int, metavar="N", help="also compare N mirrored replicas"
    )
    parser.add_argument(
        "--backends",
        type=cli.backend_list,
        metavar="B1,B2,...",
        help="compare across Keras backends: tensorflow, jax, torch (make backends installs them)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        help="with --backends (default: tensorflow alone): train in this dtype (default: float32)",
    )
    cli.add_verbose(parser)
    args = parser.parse_args()
    if args.backends or args.dtype:
        return across_backends(args)
    speed = replace(defaults.speed, xla=args.xla, fused=args.fused)
    if args.replicas and (args.xla or args.batch_size % args.replicas):
        raise cli.UsageError("--replicas needs no --xla and a --batch-size they divide evenly")
    cli.start_tensorflow(args.verbose)
    from keras_bp import data
    from keras_bp.checks import parity
    from keras_bp.training import distribute

    strategy = distribute.mirrored(args.replicas) if args.replicas else None  # before any op

    # Data.
    (x, y), _ = data.mnist_arrays()
    if args.steps * args.batch_size > len(x):
        raise cli.UsageError(
            f"--steps {args.steps} × --batch-size {args.batch_size} exceeds "
            f"the {len(x)} training images"
        )

    # Train the three in lockstep.
    weights = parity.train_in_lockstep(x, y, args.steps, args.batch_size, args.seed, speed)
    rows, moved = parity.parity_table(weights)

    # Report.
    print(
        f"after {args.steps} steps of batch {args.batch_size} (seed {args.seed}), loops "
        f"{'with' if args.xla else 'without'} XLA, {'fused' if args.fused else 'unfused'} "
        f"RMSprop; training moved the weights by up to {moved:.3g}"
    )
    print("| pair | max abs weight difference |\n|---|---|")
    for pair, diff in rows:
        print(f"| {pair} | {diff:.3g} |")
    if strategy:
        header = f"{args.replicas} replicas vs one device, after 1 step"
        print(f"\n| trainer | {header} | after {args.steps} |")
        print("|---|---|---|")
        first = parity.train_in_lockstep(x, y, 1, args.batch_size, args.seed, speed)
        first_replicated = parity.train_in_lockstep(
            x, y, 1, args.batch_size, args.seed, speed, strategy
        )
        replicated = parity.train_in_lockstep(
            x, y, args.steps, args.batch_size, args.seed, speed, strategy
        )
        at_first = dict(parity.replica_table(first, first_replicated))
        for trainer, diff in parity.replica_table(weights, replicated):
            print(f"| {trainer} | {at_first[trainer]:.3g} | {diff:.3g} |")
            rows += [(trainer, at_first[trainer]), (trainer, diff)]
    worst = max(diff for _, diff in rows)
    verdict = "PASS" if worst <= args.tolerance else "FAIL"
    print(f"{verdict}: largest difference {worst:.3g}, tolerance {args.tolerance:g}")
    return 0 if verdict == "PASS" else 1


def across_backends(args):
    """`--backends`/`--dtype`: each backend in a subprocess, from the same weights and batches."""
    if args.xla or args.replicas:
        raise cli.UsageError("--backends and --dtype compare without --xla and --replicas")
    backends = args.backends or ["tensorflow"]
    for backend in backends:
        if not backend_start.installed(backend):
            raise cli.UsageError(backend_start.missing_message(backend))
    dtype = args.dtype or "float32"
    cli.start_tensorflow(args.verbose)
    from keras_bp import data
    from keras_bp.checks import backend_parity

    # Data.
    (x, y), _ = data.mnist_arrays()
    if args.steps * args.batch_size > len(x):
        raise cli.UsageError(
            f"--steps {args.steps} × --batch-size {args.batch_size} exceeds "
            f"the {len(x)} training images"
        )

    # Train on each backend, in a process of its own.
    weights = {}
    for backend in backends:
        weights[backend] = backend_parity.train_on(
            backend, x, y, args.steps, args.batch_size, args.seed, dtype
        )
    rows = backend_parity.across_backends(weights, args.steps)

    # Report.
    print(
        f"{dtype}, {args.steps} steps of batch {args.batch_size} (seed {args.seed}), "
        "op-by-op RMSprop; largest absolute weight difference"
    )
    print(f"| pair | after 1 step | after {args.steps} steps |\n|---|---|---|")
    for pair, first, last in rows:
        print(f"| {pair} | {first:.3g} | {last:.3g} |")
    worst = max(last for _, _, last in rows)
    verdict = "PASS" if worst <= args.tolerance else "FAIL"
    print(f"{verdict}: largest difference {worst:.3g}, tolerance {args.tolerance:g}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(cli.run(main))
