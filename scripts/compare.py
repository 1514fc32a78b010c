"""Train the seed's model three ways with one seed, and tabulate how they compare.

    python scripts/compare.py [--epochs 5] [--seed 0] [--fused] [--out runs/compare]

The three trainers: `model.fit` (the recipe `make train` runs), the `tf.GradientTape` loop and
the hand-written-gradient loop. All start from the same initial weights. Each writes its run
into `--out/<trainer>/`; the table goes to `--out/compare.md` and to the screen.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter quiet

from keras_bp import cli  # noqa: E402


def main():
    # Setup.
    args = cli.train_parser(__doc__.splitlines()[0], default_out="runs/compare").parse_args()
    out = cli.check_out_dir(args.out)  # before the slow imports: bad input fails fast
    from keras_bp import atomic, gradients, loop, recipe, reproducible, runs

    settings = reproducible.configure(args.seed, args.deterministic)

    # Data.
    data = recipe.mnist_arrays(args.train_samples)

    # Train: model.fit, then the loop with each gradient source, from the same initial weights.
    results = []
    _, fit_metrics = recipe.train_fit(
        cli.TrainConfig(args.epochs, args.batch_size, args.seed, out / "fit"),
        data,
        verbose=2,
        fresh=args.fresh,
        extra_metrics=settings,
        speed={"fused": True} if args.fused else None,
    )
    results.append(fit_metrics)
    for kind in ["tape", "manual"]:
        config = loop.LoopConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            out=out / kind,
            fresh=args.fresh,
        )
        source = gradients.make_source(kind, args.seed, fused=args.fused)
        results.append(loop.train_loop(source, data, config, verbose=2, extra_metrics=settings))

    # Report.
    table = runs.markdown_table(
        ["trainer", "test accuracy", "test loss", "training seconds"],
        [
            (
                m["trainer"],
                f"{m['test_accuracy']:.4f}",
                f"{m['test_loss']:.4f}",
                f"{m['train_seconds']:.1f}",
            )
            for m in results
        ],
    )
    header = (
        f"{args.epochs} epochs, batch {args.batch_size}, seed {args.seed}, "
        f"{results[0]['train_samples']} training images; TensorFlow "
        f"{results[0]['versions']['tensorflow']}, Keras {results[0]['versions']['keras']}"
        + ("; RMSprop fused (--fused)" if args.fused else "")
    )
    report = f"{header}\n\n{table}\n"
    atomic.write_bytes(out / "compare.md", report.encode())
    print(report)
    print(f"wrote {out / 'compare.md'}")


if __name__ == "__main__":
    cli.run(main)
