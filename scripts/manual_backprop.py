"""Train the seed's model on hand-written gradients: no autodiff anywhere on the training path.

    python scripts/manual_backprop.py [--optimizer rmsprop|sgd] [--learning-rate LR]
                                      [--epochs 5] [--batch-size 128] [--seed 0] [--out runs/manual]
                                      [--fused] [--xla] [--steps-per-call 52]

Each step runs the forward pass `y = f(w·x + b)` layer by layer (`keras_bp.backprop`), takes the
fused softmax + cross-entropy gradient `(p − y)/N`, walks the layers backwards to `∂L/∂w` and
`∂L/∂b`, and updates with a hand-written optimizer: RMSprop with Keras's defaults, or plain
`w ← w − η·∂L/∂w`. `--fused` runs the RMSprop update as one TensorFlow kernel, the same rule
to float rounding (`keras_bp/fused.py`). The loop itself is the one `scripts/custom_loop.py` uses.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter quiet

from keras_bp import cli  # noqa: E402


def main():
    # Setup.
    parser = cli.loop_parser(__doc__.splitlines()[0], default_out="runs/manual")
    parser.add_argument(
        "--optimizer",
        choices=["rmsprop", "sgd"],
        default="rmsprop",
        help="hand-written optimizer (default: %(default)s)",
    )
    parser.add_argument(
        "--learning-rate",
        type=cli.positive_float,
        default=None,
        help="default: 1e-3 for rmsprop (Keras's), 0.01 for sgd",
    )
    args = parser.parse_args()
    if args.fused and args.optimizer != "rmsprop":  # fail before the slow imports
        parser.error("--fused applies to --optimizer rmsprop only")
    out = cli.check_out_dir(args.out)  # before the slow imports: bad input fails fast
    from keras_bp import gradients, loop, recipe, reproducible

    settings = reproducible.configure(args.seed, args.deterministic)
    config = loop.LoopConfig.from_args(args, out)

    # Data.
    data = recipe.mnist_arrays(args.train_samples)

    # Model: the seed's initial weights for this seed, copied into plain variables.
    source = gradients.make_source(
        "manual", args.seed, args.optimizer, args.learning_rate, args.fused
    )

    # Train: the same loop as the tape trainer, with hand-written gradients.
    metrics = loop.train_loop(
        source,
        data,
        config,
        extra_metrics={**settings, "optimizer": args.optimizer},
    )

    # Evaluate.
    print(f"test accuracy: {metrics['test_accuracy']:.4f}")
    print(f"test loss: {metrics['test_loss']:.4f}  ({metrics['train_seconds']:.1f} s training)")
    print(f"wrote {config.out / 'metrics.json'} and {config.out / 'model.keras'}")


if __name__ == "__main__":
    cli.run(main)
