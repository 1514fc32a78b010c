"""Train the seed's model with a custom `tf.GradientTape` loop instead of `model.fit`.

    python scripts/custom_loop.py [--epochs 5] [--batch-size 128] [--seed 0] [--out DIR]
                                  [--fused] [--xla] [--steps-per-call 52]

The loop lives in `keras_bp.loop`; this script picks its gradient source: `tf.GradientTape`
over the Keras model, applied with the model's `keras.optimizers.RMSprop()` (with `--fused`,
`keras_bp.fused.FusedRMSprop`: the same update as one kernel). Same data, same
initial weights (for the same `--seed`) and same batches as the hand-written trainer,
`scripts/manual_backprop.py`. Rerunning after a kill resumes from the last checkpoint in `--out`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter quiet

from keras_bp import cli  # noqa: E402


def main():
    # Setup: the seed's settings by default; seeding comes before any TensorFlow op.
    args = cli.loop_parser(__doc__.splitlines()[0], default_out="runs/custom_loop").parse_args()
    out = cli.check_out_dir(args.out)  # before the slow imports: bad input fails fast
    from keras_bp import gradients, loop, recipe, reproducible

    settings = reproducible.configure(args.seed, args.deterministic)
    config = loop.LoopConfig.from_args(args, out)

    # Data: MNIST, verified, (N, 784) float32 / 255 and one-hot labels.
    data = recipe.mnist_arrays(args.train_samples)

    # Model: Dense(512, relu) -> Dense(10, softmax); gradients from tf.GradientTape.
    source = gradients.make_source("tape", args.seed, fused=args.fused)

    # Train: per-epoch shuffle from (seed, epoch), compiled steps, checkpoints.
    metrics = loop.train_loop(source, data, config, extra_metrics=settings)

    # Evaluate.
    print(f"test accuracy: {metrics['test_accuracy']:.4f}")
    print(f"test loss: {metrics['test_loss']:.4f}  ({metrics['train_seconds']:.1f} s training)")
    print(f"wrote {config.out / 'metrics.json'} and {config.out / 'model.keras'}")


if __name__ == "__main__":
    cli.run(main)
