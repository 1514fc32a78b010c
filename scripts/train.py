"""Train the classic Keras MNIST example through `model.fit`: the recipe `make train` runs.

    python scripts/train.py [--epochs 5] [--batch-size 128] [--seed 0] [--out runs/fit]
                            [--train-samples N] [--optimizer rmsprop|sgd] [--learning-rate LR]
                            [--deterministic] [--fresh] [--steps-per-execution N] [--xla] [--fused]
                            [--early-stopping PATIENCE] [--tensorboard DIR] [--keras-shuffle]
                            [--strategy mirrored --replicas N] [--backend tensorflow|jax|torch]
                            [--verbose]

It prints Keras's progress bar, then `test accuracy: 0.xxxx`, and writes `metrics.json` and
`model.keras` into `--out`. Expect a test accuracy of about 0.978 after 5 epochs. Each epoch
gets a new shuffle, fixed by `(seed, epoch)`: the loops' order (`--keras-shuffle`: Keras's own,
which repeats one order when seeded). The test set is evaluated after every epoch
(`metrics.json`'s `history`); `--early-stopping` holds out a validation set and stops on it,
`--tensorboard` writes event files for `tensorboard --logdir DIR`. `--backend jax` or `torch`
runs the same recipe on that Keras backend (`make backends` installs them), from the same
initial weights on the same batches; the fused kernel, XLA and `--strategy` are TensorFlow's.

Killed mid-run, the same command resumes after the last finished epoch (the backup is in
`--out/resume`); `--fresh` starts over. A NaN or Inf loss stops training with an error naming
the epoch and step, exit code 1, and nothing saved over the last good backup.
"""

from keras_bp import cli
from keras_bp.runtime.walltime import WallClock


def main():
    # Setup: the recipe's settings by default; seeding comes before any TensorFlow op.
    args = cli.train_parser(__doc__.splitlines()[0], "fit").parse_args()
    config = cli.config_from_args(args, "fit")
    cli.check_out_dir(config.out)  # bad input fails fast, before TensorFlow starts
    cli.start_backend(config.backend, args.verbose)  # KERAS_BACKEND before Keras is imported
    from keras_bp import data
    from keras_bp.training import distribute, recipe, reproducible

    settings = reproducible.configure(config.seed, config.deterministic)
    distribute.strategy_for(config)  # before any TensorFlow op: devices, collectives
    clock = WallClock.since_process_start()  # where the wall time goes, printed at the end
    clock.lap("start")

    # Data: MNIST, verified, reshaped to (N, 784) float32 / 255, labels one-hot.
    mnist = data.mnist_arrays(config.train_samples)
    clock.lap("data")

    # Model and training: Dense(512, relu) -> Dense(10, softmax), rmsprop, 5 epochs of 128.
    _, metrics = recipe.train_fit(config, mnist, extra_metrics=settings, clock=clock)

    # Evaluate: the test accuracy and loss, and where the run was written.
    cli.print_summary(metrics, config.out, clock)


if __name__ == "__main__":
    cli.run(main)
