"""Train the classic Keras MNIST example through `model.fit`: the recipe `make train` runs.

    python scripts/train.py [--epochs 5] [--batch-size 128] [--seed 0] [--out runs/fit]
                            [--train-samples N] [--deterministic] [--fresh]
                            [--steps-per-execution N] [--xla] [--fused]

It prints Keras's progress bar, then `test accuracy: 0.xxxx`, and writes `metrics.json` and
`model.keras` into `--out`. Expect a test accuracy of about 0.978 after 5 epochs.

Killed mid-run, the same command resumes from the last finished epoch (the backup is in
`--out/fit_backup`); `--fresh` starts over. A NaN or Inf loss stops training with an error
naming the epoch and step, exit code 1, and nothing saved over the last good backup.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter quiet

from keras_bp import cli  # noqa: E402


def main():
    # Setup: the seed's settings by default; seeding comes before any TensorFlow op.
    parser = cli.train_parser(__doc__.splitlines()[0], default_out="runs/fit")
    parser.add_argument(
        "--steps-per-execution",
        type=cli.positive_int,
        default=None,
        metavar="N",
        help="run N steps per compiled call (default: Keras's 1); same updates",
    )
    parser.add_argument(
        "--xla", action="store_true", help="compile the train step with XLA; same updates"
    )
    args = parser.parse_args()
    speed = {"jit_compile": True} if args.xla else {}
    if args.fused:
        speed["fused"] = True
    if args.steps_per_execution:
        speed["steps_per_execution"] = args.steps_per_execution
    out = cli.check_out_dir(args.out)  # before the slow imports: bad input fails fast
    from keras_bp import recipe, reproducible

    settings = reproducible.configure(args.seed, args.deterministic)
    config = cli.TrainConfig(args.epochs, args.batch_size, args.seed, out)

    # Data: MNIST, verified, reshaped to (N, 784) float32 / 255, labels one-hot.
    data = recipe.mnist_arrays(args.train_samples)

    # Model and training: Dense(512, relu) -> Dense(10, softmax), rmsprop, 5 epochs of 128.
    model, metrics = recipe.train_fit(
        config, data, fresh=args.fresh, extra_metrics=settings, speed=speed
    )

    # Evaluate: the figure the seed's recipe reports.
    if metrics["resumed_from_epoch"]:
        print(f"resumed after epoch {metrics['resumed_from_epoch']} from {config.out}")
    print(f"test accuracy: {metrics['test_accuracy']:.4f}")
    print(f"test loss: {metrics['test_loss']:.4f}  ({metrics['train_seconds']:.1f} s training)")
    print(f"wrote {config.out / 'metrics.json'} and {config.out / 'model.keras'}")


if __name__ == "__main__":
    cli.run(main)
