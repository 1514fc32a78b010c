"""Train the tutorial's model on hand-written gradients: no autodiff anywhere on the training path.

    python scripts/manual_backprop.py [--optimizer rmsprop|sgd] [--learning-rate LR]
                                      [--epochs 5] [--batch-size 128] [--seed 0] [--out runs/manual]
                                      [--train-samples N] [--deterministic] [--fresh]
                                      [--no-fused] [--xla] [--steps-per-call 52]
                                      [--checkpoint-every 100]
                                      [--early-stopping PATIENCE] [--tensorboard DIR]
                                      [--strategy mirrored --replicas N | --strategy multi-worker]
                                      [--verbose]

Each step runs the forward pass `y = f(w·x + b)` layer by layer (`keras_bp.backprop`), takes the
fused softmax + cross-entropy gradient `(p − y)/N`, walks the layers backwards to `∂L/∂w` and
`∂L/∂b`, and updates with a hand-written optimizer: RMSprop with Keras's defaults, or plain
`w ← w − η·∂L/∂w`. RMSprop's update runs as one TensorFlow kernel, the same rule to float
rounding (`keras_bp/fused.py`); `--no-fused` runs it op by op, as written out in
`keras_bp/optimizers.py`. The loop itself is the one `scripts/custom_loop.py`
uses; `keras_bp/reference.py` shows it in its plain form.
"""

from keras_bp import cli
from keras_bp.runtime import cluster
from keras_bp.runtime.walltime import WallClock


def main():
    # Setup.
    args = cli.train_parser(__doc__.splitlines()[0], "manual").parse_args()
    config = cli.config_from_args(args, "manual")
    # Bad input fails fast, before TensorFlow starts; a worker of a cluster writes its own dir.
    cli.check_out_dir(cluster.process_out(config))
    cli.start_tensorflow(args.verbose)
    from keras_bp import data
    from keras_bp.training import distribute, loop, reproducible

    settings = reproducible.configure(config.seed, config.deterministic)
    distribute.strategy_for(config)  # before any TensorFlow op: devices, collectives
    clock = WallClock.since_process_start()  # where the wall time goes, printed at the end
    clock.lap("start")

    # Data.
    mnist = data.mnist_arrays(config.train_samples)
    clock.lap("data")

    # Model and training: the model's initial weights for this random seed, copied into plain
    # variables; the same loop as the tape trainer, with hand-written gradients.
    _, metrics = loop.train_loop(config, mnist, extra_metrics=settings, clock=clock)

    # Evaluate: the test accuracy and loss, and where the run was written.
    cli.print_summary(metrics, config.out, clock)


if __name__ == "__main__":
    cli.run(main)
