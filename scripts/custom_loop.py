"""Train the tutorial's model with a custom `tf.GradientTape` loop instead of `model.fit`.

    python scripts/custom_loop.py [--epochs 5] [--batch-size 128] [--seed 0]
                                  [--out runs/custom_loop] [--train-samples N]
                                  [--optimizer rmsprop|sgd] [--learning-rate LR]
                                  [--deterministic] [--fresh] [--no-fused] [--xla]
                                  [--steps-per-call 52] [--checkpoint-every 100]
                                  [--early-stopping PATIENCE] [--tensorboard DIR]
                                  [--strategy mirrored --replicas N | --strategy multi-worker]
                                  [--verbose]

The loop lives in `keras_bp.training.loop` (read `keras_bp.reference` for its plain form); this
script picks its gradient source: `tf.GradientTape` over the Keras model, applied with Keras's
`RMSprop` with its update as one kernel (`keras_bp.fused.FusedRMSprop`, the same rule;
`--no-fused`: Keras's op-by-op update, as `scripts/train.py` runs it). Same
data, same initial weights (for the same `--seed`) and same batches as the hand-written
trainer, `scripts/manual_backprop.py`, and as `scripts/train.py`'s `fit`. The test set is
evaluated after every epoch; `--early-stopping` and `--tensorboard` are `fit`'s. Rerunning
after a kill resumes from the last checkpoint.
"""

from keras_bp import cli
from keras_bp.runtime import cluster
from keras_bp.runtime.walltime import WallClock


def main():
    # Setup: the recipe's settings by default; seeding comes before any TensorFlow op.
    args = cli.train_parser(__doc__.splitlines()[0], "tape").parse_args()
    config = cli.config_from_args(args, "tape")
    # Bad input fails fast, before TensorFlow starts; a worker of a cluster writes its own dir.
    cli.check_out_dir(cluster.process_out(config))
    cli.start_tensorflow(args.verbose)
    from keras_bp import data
    from keras_bp.training import distribute, loop, reproducible

    settings = reproducible.configure(config.seed, config.deterministic)
    distribute.strategy_for(config)  # before any TensorFlow op: devices, collectives
    clock = WallClock.since_process_start()  # where the wall time goes, printed at the end
    clock.lap("start")

    # Data: MNIST, verified, (N, 784) float32 / 255 and one-hot labels.
    mnist = data.mnist_arrays(config.train_samples)
    clock.lap("data")

    # Model and training: Dense(512, relu) -> Dense(10, softmax), gradients from
    # tf.GradientTape; a shuffle per epoch from (seed, epoch), compiled steps, checkpoints.
    _, metrics = loop.train_loop(config, mnist, extra_metrics=settings, clock=clock)

    # Evaluate: the test accuracy and loss, and where the run was written.
    cli.print_summary(metrics, config.out, clock)


if __name__ == "__main__":
    cli.run(main)
